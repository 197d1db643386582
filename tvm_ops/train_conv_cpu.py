"""The CPU (LLVM) kernels of the logic-tree convolution: :data:`~tvm_ops.train_conv.FWD`, ``BWD``,
``POOL_FWD`` and ``POOL_BWD`` (described in :mod:`tvm_ops.train_conv`), written with the loop kinds in
TIR directly (parallel over (sample, channel) or over sample chunks, 8 lanes per vector). Scratch
buffers are "global" allocations (stack arrays, see :data:`~tvm_ops.train_conv.STACK_BYTES`)."""
from __future__ import annotations

from .train_conv import BWD, FWD, POOL_BWD, POOL_FWD, VEC, _align, tree_macros

__all__ = ["cpu_funcs"]


def cpu_funcs(dtype: str, depth: int, stride: int):
    """The four unscheduled-but-annotated CPU TIR functions ``(fwd, bwd, pool_fwd, pool_bwd)``."""
    from tvm.script import tirx as T

    V = VEC
    HV = VEC // 2  # pooled outputs per vector of unpooled columns
    L = 1 << depth
    G = L - 1  # gates
    N = 2 * L - 1  # nodes
    S = stride
    al = _align(dtype)
    m = tree_macros(dtype, depth, stride)
    tree_row_vec, tree_scalar, backprop_vec = m.tree_row_vec, m.tree_scalar, m.backprop_vec
    leaf_select, row_scatter = m.leaf_select, m.row_scatter
    task_prologue, task_epilogue, reduce_parts = m.task_prologue, m.task_epilogue, m.reduce_parts
    zero_acc, flush_acc, add_acc, gates_vec = m.zero_acc, m.flush_acc, m.add_acc, m.gates_vec
    leaves_vec, mask_leaves = m.leaves_vec, m.mask_leaves
    zero = 0.0

    # Blocks of lanes. Output (or pooled) position (y, x) is "q = y * Wp + x" in the padded input's row
    # pitch: its leaves sit at offset S*q (pooled: its window's top-left at 2*S*q), so consecutive q are
    # contiguous (stride S) loads even across rows. A row of width w >= lanes is covered by blocks
    # starting at columns min(k * lanes, w - lanes) (the last one overlapping); a narrower row by one
    # block from column 0 whose extra lanes read the next rows. No block starts past "qlast" (the last
    # position minus the lanes), so every lane reads inside the sample; a block moved back there has a
    # negative first column "c0" (its first lanes lie in earlier rows). The forward stores only its lanes in [0, w) (a
    # recomputed overlap stores the same values); the backward masks every lane outside the columns
    # its block owns, [k * lanes, w), to a zero root gradient and zero leaves, so they add exact zeros.
    # Maps too small for one block ("qlast" < 0) take scalar loops in the forward; the backward of every
    # map narrower than a vector puts samples in the lanes instead.

    # ------------------------------------------------------------------------------------ forward
    @T.prim_func
    def fwd(xp_h: T.handle, off_h: T.handle, c_h: T.handle, out_h: T.handle):
        T.func_attr({"global_symbol": FWD, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Ho = T.int32()
        Wo = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, align=al, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", align=4, offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, align=al, offset_factor=1)
        out = T.match_buffer(out_h, (B, O, Ho, Wo), dtype, align=al, offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        qlast = T.meta_var((Ho - 1) * Wp + Wo - V)
        for bo in T.parallel(B * O):
            v = T.alloc_buffer((N, V), dtype, scope="global")
            u = T.alloc_buffer((N,), dtype, scope="global")
            for oy in range(Ho):
                for xo in range(T.if_then_else(qlast >= 0, (Wo + V - 1) // V, 0)):
                    c0 = T.meta_var(T.min(T.min(xo * V, T.max(Wo - V, 0)), qlast - oy * Wp))
                    tree_row_vec(v, xf, off, c, bo // O * (C * Hp * Wp), bo % O, oy * S * Wp, c0)
                    if c0 >= 0 and c0 + V <= Wo:
                        for i in T.vectorized(V):
                            out[bo // O, bo % O, oy, c0 + i] = v[N - 1, i]
                    else:
                        for i in T.unroll(V):
                            if c0 + i >= 0 and c0 + i < Wo:
                                out[bo // O, bo % O, oy, c0 + i] = v[N - 1, i]
                for ox in range(T.if_then_else(qlast >= 0, 0, Wo)):
                    tree_scalar(u, xf, off, c, bo // O * (C * Hp * Wp), bo % O, oy * S * Wp + ox * S)
                    out[bo // O, bo % O, oy, ox] = u[N - 1]

    @T.prim_func
    def pool_fwd(xp_h: T.handle, off_h: T.handle, c_h: T.handle, out_h: T.handle, arg_h: T.handle):
        T.func_attr({"global_symbol": POOL_FWD, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Hq = T.int32()
        Wq = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, align=al, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", align=4, offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, align=al, offset_factor=1)
        out = T.match_buffer(out_h, (B, O, Hq, Wq), dtype, align=al, offset_factor=1)
        arg = T.match_buffer(arg_h, (B, O, Hq, Wq), "uint8", align=1, offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        # one vector of V unpooled columns per window row: V / 2 pooled outputs per block
        qlast = T.meta_var((Hq - 1) * Wp + Wq - HV)
        for bo in T.parallel(B * O):
            v = T.alloc_buffer((N, V), dtype, scope="global")
            sc = T.alloc_buffer((2, V), dtype, scope="global")
            best = T.alloc_buffer((HV,), dtype, scope="global")
            am = T.alloc_buffer((HV,), "int32", scope="global")
            u = T.alloc_buffer((N,), dtype, scope="global")
            for py in range(Hq):
                for qo in range(T.if_then_else(qlast >= 0, (Wq + HV - 1) // HV, 0)):
                    c0 = T.meta_var(T.min(T.min(qo * HV, T.max(Wq - HV, 0)), qlast - py * Wp))
                    for r in T.unroll(2):
                        tree_row_vec(v, xf, off, c, bo // O * (C * Hp * Wp), bo % O, (2 * py + r) * S * Wp, 2 * c0)
                        for i in T.vectorized(V):
                            sc[r, i] = v[N - 1, i]
                    for i in T.vectorized(HV):
                        best[i] = sc[0, 2 * i]
                        am[i] = 0
                    for w in T.unroll(1, 4):
                        for i in T.vectorized(HV):
                            am[i] = T.Select((sc[w // 2, 2 * i + w % 2] > best[i]) or T.isnan(sc[w // 2, 2 * i + w % 2]),
                                             w, am[i])
                            best[i] = T.Select((sc[w // 2, 2 * i + w % 2] > best[i]) or T.isnan(sc[w // 2, 2 * i + w % 2]),
                                               sc[w // 2, 2 * i + w % 2], best[i])
                    if c0 >= 0 and c0 + HV <= Wq:
                        for i in T.vectorized(HV):
                            out[bo // O, bo % O, py, c0 + i] = best[i]
                            arg[bo // O, bo % O, py, c0 + i] = T.Cast("uint8", am[i])
                    else:
                        for i in T.unroll(HV):
                            if c0 + i >= 0 and c0 + i < Wq:
                                out[bo // O, bo % O, py, c0 + i] = best[i]
                                arg[bo // O, bo % O, py, c0 + i] = T.Cast("uint8", am[i])
                for px in range(T.if_then_else(qlast >= 0, 0, Wq)):
                    for w in T.unroll(4):
                        tree_scalar(u, xf, off, c, bo // O * (C * Hp * Wp), bo % O,
                                    (2 * py + w // 2) * S * Wp + (2 * px + w % 2) * S)
                        sc[0, w] = u[N - 1]
                    best[0] = sc[0, 0]
                    am[0] = 0
                    for w in T.unroll(1, 4):
                        if sc[0, w] > best[0] or T.isnan(sc[0, w]):
                            best[0] = sc[0, w]
                            am[0] = w
                    out[bo // O, bo % O, py, px] = best[0]
                    arg[bo // O, bo % O, py, px] = T.Cast("uint8", am[0])

    # ----------------------------------------------------------------------------------- backward
    # Blocks tile each row without overlap here (the last one of the map still ends at "qlast"), and the
    # leaf gradients of a (sample, channel) are added in a second pass, leaf by leaf over its blocks:
    # added at once, the 16 overlapping vectors of a block's leaves would each wait for the previous
    # one's store (a failed store-to-load forwarding); in a leaf's pass consecutive vectors are disjoint.

    @T.macro
    def sample_lanes(v, gv, acc, xf, gxf, need_gx, off, c, pos, o, rb, nrows):
        """One output position of V samples (lanes ``i``: sample block ``rb``'s sample ``i``, whose leaf
        ``j`` sits at ``off[o, j] + pos[i]``; the root gradients are in ``gv[N - 1]``, 0 for lanes past
        the task's ``nrows`` samples, which read the last sample's position): recompute the tree,
        back-propagate, add the leaf gradients."""
        for j in T.unroll(L):
            for i in T.vectorized(V):
                v[j, i] = xf[off[o, j] + pos[i]]
        if rb * V + V > nrows:
            mask_leaves(v, rb * V, 0, nrows)
        gates_vec(v, c, o)
        backprop_vec(v, gv, acc, c, o)
        if need_gx != 0 and rb * V + V <= nrows:
            # V samples: V distinct positions, no collisions
            for j in T.unroll(L):
                for i in T.vectorized(V):
                    gxf[off[o, j] + pos[i]] = gxf[off[o, j] + pos[i]] + gv[j, i]
        elif need_gx != 0:
            # lanes past the last sample share its position: lane by lane (their zeros too)
            for j in T.unroll(L):
                for i in T.unroll(V):
                    gxf[off[o, j] + pos[i]] = gxf[off[o, j] + pos[i]] + gv[j, i]

    @T.prim_func
    def bwd(xp_h: T.handle, off_h: T.handle, c_h: T.handle, g_h: T.handle, gxp_h: T.handle, gx_h: T.handle,
            part_h: T.handle, gc_h: T.handle, need_gx: T.int32):
        T.func_attr({"global_symbol": BWD, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Ho = T.int32()
        Wo = T.int32()
        P = T.int32()
        H = T.int32()
        W = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, align=al, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", align=4, offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, align=al, offset_factor=1)
        gout = T.match_buffer(g_h, (B, O, Ho, Wo), dtype, align=al, offset_factor=1)
        gxp = T.match_buffer(gxp_h, (B, C, Hp, Wp), dtype, align=al, offset_factor=1)
        gx = T.match_buffer(gx_h, (B, C, H, W), dtype, align=al, offset_factor=1)
        part = T.match_buffer(part_h, (P, O, G, 4), dtype, align=al, offset_factor=1)
        gc = T.match_buffer(gc_h, (O, G, 4), dtype, align=al, offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        gxf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=gxp.data, elem_offset=gxp.elem_offset)
        rows = T.meta_var((B + P - 1) // P)
        qlast = T.meta_var((Ho - 1) * Wp + Wo - V)
        nxo = T.meta_var((Wo + V - 1) // V)
        for p in T.parallel(P):
            nrows = T.meta_var(T.max(T.min(rows, B - p * rows), 0))  # the task's samples
            task_prologue(gxf, need_gx, p, rows, B, C, Hp, Wp)
            pos = T.alloc_buffer((V,), "int32", scope="global")
            v = T.alloc_buffer((N, V), dtype, scope="global")
            gv = T.alloc_buffer((N, V), dtype, scope="global")
            acc = T.alloc_buffer((G, 4, V), dtype, scope="global")
            total = T.alloc_buffer((G, 4, V), dtype, scope="global")
            lg = T.alloc_buffer((T.max(Ho * nxo, 1) * L * V,), dtype, scope="global")  # leaf gradients per block
            for o in range(O):
                zero_acc(total)
                # narrow maps: the lanes are V samples at one output position (gathers, every lane used)
                for rb in range(T.if_then_else(Wo < V, (nrows + V - 1) // V, 0)):
                    zero_acc(acc)
                    for oy in range(Ho):
                        for ox in range(Wo):
                            for i in T.vectorized(V):
                                si = T.meta_var(p * rows + T.min(rb * V + i, nrows - 1))  # lane i's sample
                                pos[i] = si * (C * Hp * Wp) + oy * S * Wp + ox * S
                                gv[N - 1, i] = T.Select(rb * V + i < nrows, gout[si, o, oy, ox], T.Cast(dtype, zero))
                            sample_lanes(v, gv, acc, xf, gxf, need_gx, off, c, pos, o, rb, nrows)
                    add_acc(total, acc)
                for r in range(T.if_then_else(Wo < V, 0, nrows)):
                    zero_acc(acc)
                    for oy in range(Ho):
                        for xo in range(nxo):
                            c0 = T.meta_var(T.min(xo * V, qlast - oy * Wp))
                            leaves_vec(v, xf, off, (p * rows + r) * (C * Hp * Wp), o, oy * S * Wp, c0)
                            if c0 == xo * V and c0 + V <= Wo:
                                for i in T.vectorized(V):
                                    gv[N - 1, i] = gout[p * rows + r, o, oy, c0 + i]
                            else:  # lanes outside [xo * V, Wo): another block's, another row's or none
                                for i in T.vectorized(V):
                                    gv[N - 1, i] = T.Select(c0 + i >= xo * V and c0 + i < Wo,
                                                            gout[p * rows + r, o, oy, T.max(T.min(c0 + i, Wo - 1), 0)],
                                                            T.Cast(dtype, zero))
                                mask_leaves(v, c0, xo * V, Wo)
                            gates_vec(v, c, o)
                            backprop_vec(v, gv, acc, c, o)
                            for j in T.unroll(L):
                                for i in T.vectorized(V):
                                    lg[((oy * nxo + xo) * L + j) * V + i] = gv[j, i]
                    # one leaf at V distinct positions per block (the lanes never collide), blocks disjoint
                    for j in range(T.if_then_else(need_gx != 0, L, 0)):
                        for oy in range(Ho):
                            for xo in range(nxo):
                                for i in T.vectorized(V):
                                    gxf[(p * rows + r) * (C * Hp * Wp) + off[o, j] + oy * S * Wp
                                        + (T.min(xo * V, qlast - oy * Wp) + i) * S] = (
                                        gxf[(p * rows + r) * (C * Hp * Wp) + off[o, j] + oy * S * Wp
                                            + (T.min(xo * V, qlast - oy * Wp) + i) * S]
                                        + lg[((oy * nxo + xo) * L + j) * V + i])
                    add_acc(total, acc)
                flush_acc(total, part, p, o)
            task_epilogue(gxp, gx, need_gx, p, rows, B, C, H, W, Hp, Wp)
        reduce_parts(part, gc, P, O)

    @T.prim_func
    def pool_bwd(xp_h: T.handle, off_h: T.handle, c_h: T.handle, arg_h: T.handle, g_h: T.handle, gxp_h: T.handle,
                 gx_h: T.handle, part_h: T.handle, gc_h: T.handle, need_gx: T.int32):
        T.func_attr({"global_symbol": POOL_BWD, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Hq = T.int32()
        Wq = T.int32()
        P = T.int32()
        H = T.int32()
        W = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, align=al, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", align=4, offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, align=al, offset_factor=1)
        arg = T.match_buffer(arg_h, (B, O, Hq, Wq), "uint8", align=1, offset_factor=1)
        gout = T.match_buffer(g_h, (B, O, Hq, Wq), dtype, align=al, offset_factor=1)
        gxp = T.match_buffer(gxp_h, (B, C, Hp, Wp), dtype, align=al, offset_factor=1)
        gx = T.match_buffer(gx_h, (B, C, H, W), dtype, align=al, offset_factor=1)
        part = T.match_buffer(part_h, (P, O, G, 4), dtype, align=al, offset_factor=1)
        gc = T.match_buffer(gc_h, (O, G, 4), dtype, align=al, offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        gxf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=gxp.data, elem_offset=gxp.elem_offset)
        rows = T.meta_var((B + P - 1) // P)
        # V pooled outputs per block (the tree only at each window's winner)
        qlast = T.meta_var((Hq - 1) * Wp + Wq - V)
        nqo = T.meta_var((Wq + V - 1) // V)
        for p in T.parallel(P):
            nrows = T.meta_var(T.max(T.min(rows, B - p * rows), 0))  # the task's samples
            task_prologue(gxf, need_gx, p, rows, B, C, Hp, Wp)
            v = T.alloc_buffer((N, V), dtype, scope="global")
            gv = T.alloc_buffer((N, V), dtype, scope="global")
            acc = T.alloc_buffer((G, 4, V), dtype, scope="global")
            total = T.alloc_buffer((G, 4, V), dtype, scope="global")
            pos = T.alloc_buffer((V,), "int32", scope="global")
            lg = T.alloc_buffer((T.max(Hq * nqo, 1) * L * V,), dtype, scope="global")  # leaf gradients per block
            lp = T.alloc_buffer((T.max(Hq * nqo, 1) * V,), "int32", scope="global")  # and the winners
            for o in range(O):
                zero_acc(total)
                # narrow maps: the lanes are V samples at one pooled position (gathers, every lane used)
                for rb in range(T.if_then_else(Wq < V, (nrows + V - 1) // V, 0)):
                    zero_acc(acc)
                    for py in range(Hq):
                        for px in range(Wq):
                            for i in T.vectorized(V):
                                si = T.meta_var(p * rows + T.min(rb * V + i, nrows - 1))  # lane i's sample
                                ai = T.meta_var(T.Cast("int32", arg[si, o, py, px]))
                                pos[i] = si * (C * Hp * Wp) + (2 * py + ai // 2) * S * Wp + (2 * px + ai % 2) * S
                                gv[N - 1, i] = T.Select(rb * V + i < nrows, gout[si, o, py, px], T.Cast(dtype, zero))
                            sample_lanes(v, gv, acc, xf, gxf, need_gx, off, c, pos, o, rb, nrows)
                    add_acc(total, acc)
                for r in range(T.if_then_else(Wq < V, 0, nrows)):
                    zero_acc(acc)
                    for py in range(Hq):
                        for qo in range(nqo):
                            c0 = T.meta_var(T.min(qo * V, qlast - py * Wp))
                            if c0 == qo * V and c0 + V <= Wq:
                                for i in T.vectorized(V):
                                    gv[N - 1, i] = gout[p * rows + r, o, py, c0 + i]
                                if S == 1:
                                    for i in T.vectorized(V):
                                        pos[i] = T.Cast("int32", arg[p * rows + r, o, py, c0 + i])
                                else:
                                    for i in T.vectorized(V):
                                        ai = T.meta_var(T.Cast("int32", arg[p * rows + r, o, py, c0 + i]))
                                        pos[i] = (2 * py + ai // 2) * S * Wp + (2 * (c0 + i) + ai % 2) * S
                            else:  # lanes outside [qo * V, Wq): zero gradient; stride 1: position 4 (none)
                                for i in T.vectorized(V):
                                    gv[N - 1, i] = T.Select(c0 + i >= qo * V and c0 + i < Wq,
                                                            gout[p * rows + r, o, py, T.max(T.min(c0 + i, Wq - 1), 0)],
                                                            T.Cast(dtype, zero))
                                if S == 1:
                                    for i in T.vectorized(V):
                                        pos[i] = T.Select(c0 + i >= qo * V and c0 + i < Wq, T.Cast(
                                            "int32", arg[p * rows + r, o, py, T.max(T.min(c0 + i, Wq - 1), 0)]), 4)
                                else:  # a position inside the sample for every lane (all reads stay in bounds)
                                    for i in T.vectorized(V):
                                        ai = T.meta_var(T.Cast("int32", arg[p * rows + r, o, py, T.max(T.min(c0 + i, Wq - 1), 0)]))
                                        pos[i] = (2 * py + ai // 2) * S * Wp + (2 * (c0 + i) + ai % 2) * S
                            if S == 1:
                                # the 2 x 16 inputs under 8 windows are two contiguous rows: load both,
                                # split even / odd columns and select each lane's winner (no gathers)
                                for j in T.unroll(L):
                                    leaf_select(v, xf, pos, (p * rows + r) * (C * Hp * Wp) + off[o, j] + 2 * py * Wp
                                                + 2 * c0, Wp, j)
                            else:
                                for j in T.unroll(L):
                                    for i in T.vectorized(V):
                                        v[j, i] = xf[(p * rows + r) * (C * Hp * Wp) + off[o, j] + pos[i]]
                            if c0 != qo * V or c0 + V > Wq:
                                mask_leaves(v, c0, qo * V, Wq)
                            gates_vec(v, c, o)
                            backprop_vec(v, gv, acc, c, o)
                            for j in T.unroll(L):
                                for i in T.vectorized(V):
                                    lg[((py * nqo + qo) * L + j) * V + i] = gv[j, i]
                            for i in T.vectorized(V):
                                lp[(py * nqo + qo) * V + i] = pos[i]
                    if S == 1:
                        # the leaf gradients go to the winners: masked, interleaved back into the window
                        # rows, added as contiguous 16-wide vectors (zeros elsewhere and at position 4)
                        for j in range(T.if_then_else(need_gx != 0, L, 0)):
                            for rr in T.unroll(2):
                                for py in range(Hq):
                                    for qo in range(nqo):
                                        row_scatter(gxf, lg[T.Ramp(((py * nqo + qo) * L + j) * V, 1, V)],
                                                    lp[T.Ramp((py * nqo + qo) * V, 1, V)],
                                                    (p * rows + r) * (C * Hp * Wp) + off[o, j] + (2 * py + rr) * Wp
                                                    + 2 * T.min(qo * V, qlast - py * Wp), rr)
                    else:
                        for j in range(T.if_then_else(need_gx != 0, L, 0)):
                            for py in range(Hq):
                                for qo in range(nqo):
                                    if T.min(qo * V, qlast - py * Wp) == qo * V and qo * V + V <= Wq:
                                        # V distinct winning positions (different windows): no collisions
                                        for i in T.vectorized(V):
                                            gxf[(p * rows + r) * (C * Hp * Wp) + off[o, j] + lp[(py * nqo + qo) * V + i]] = (
                                                gxf[(p * rows + r) * (C * Hp * Wp) + off[o, j] + lp[(py * nqo + qo) * V + i]]
                                                + lg[((py * nqo + qo) * L + j) * V + i])
                                    else:
                                        # a masked lane's position may be a real lane's: lane by lane (its zeros too)
                                        for i in T.unroll(V):
                                            gxf[(p * rows + r) * (C * Hp * Wp) + off[o, j] + lp[(py * nqo + qo) * V + i]] = (
                                                gxf[(p * rows + r) * (C * Hp * Wp) + off[o, j] + lp[(py * nqo + qo) * V + i]]
                                                + lg[((py * nqo + qo) * L + j) * V + i])
                    add_acc(total, acc)
                flush_acc(total, part, p, o)
            task_epilogue(gxp, gx, need_gx, p, rows, B, C, H, W, Hp, Wp)
        reduce_parts(part, gc, P, O)

    return fwd, bwd, pool_fwd, pool_bwd
