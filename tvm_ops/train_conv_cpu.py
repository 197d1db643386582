"""The CPU (LLVM) kernels of the logic-tree convolution: :data:`~tvm_ops.train_conv.FWD`, ``BWD``,
``POOL_FWD`` and ``POOL_BWD`` (described in :mod:`tvm_ops.train_conv`), written with the loop kinds in
TIR directly (parallel over (sample, channel) or over sample chunks, 8 output columns per vector)."""
from __future__ import annotations

from .train_conv import BWD, FWD, POOL_BWD, POOL_FWD, VEC, _align, tree_macros

__all__ = ["cpu_funcs"]


def cpu_funcs(dtype: str, depth: int, stride: int):
    """The four unscheduled-but-annotated CPU TIR functions ``(fwd, bwd, pool_fwd, pool_bwd)``."""
    from tvm.script import tirx as T

    V = VEC
    L = 1 << depth
    G = L - 1  # gates
    N = 2 * L - 1  # nodes
    S = stride
    al = _align(dtype)
    m = tree_macros(dtype, depth, stride)
    tree_row_vec, tree_scalar, backprop_vec, backprop_scalar = m.tree_row_vec, m.tree_scalar, m.backprop_vec, m.backprop_scalar
    leaf_select, leaf_scatter, scatter_scalar = m.leaf_select, m.leaf_scatter, m.scatter_scalar
    task_prologue, task_epilogue, reduce_parts = m.task_prologue, m.task_epilogue, m.reduce_parts
    zero_acc, flush_acc, gates_vec = m.zero_acc, m.flush_acc, m.gates_vec

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
        for bo in T.parallel(B * O):
            v = T.alloc_buffer((N, V), dtype, scope="local")
            u = T.alloc_buffer((N,), dtype, scope="local")
            for oy in range(Ho):
                for xo in range(T.if_then_else(Wo >= V, (Wo + V - 1) // V, 0)):
                    tree_row_vec(v, xf, off, c, bo // O * (C * Hp * Wp), bo % O, oy * S * Wp, T.min(xo * V, Wo - V))
                    for i in T.vectorized(V):
                        out[bo // O, bo % O, oy, T.min(xo * V, Wo - V) + i] = v[N - 1, i]
                for ox in range(T.if_then_else(Wo >= V, 0, Wo)):
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
        for bo in T.parallel(B * O):
            v = T.alloc_buffer((N, V), dtype, scope="local")
            sc = T.alloc_buffer((2, 2 * V), dtype, scope="local")
            best = T.alloc_buffer((V,), dtype, scope="local")
            am = T.alloc_buffer((V,), "int32", scope="local")
            u = T.alloc_buffer((N,), dtype, scope="local")
            for py in range(Hq):
                for qo in range(T.if_then_else(Wq >= V, (Wq + V - 1) // V, 0)):
                    for r in T.unroll(2):
                        for h in T.unroll(2):
                            tree_row_vec(v, xf, off, c, bo // O * (C * Hp * Wp), bo % O, (2 * py + r) * S * Wp,
                                         2 * T.min(qo * V, Wq - V) + h * V)
                            for i in T.vectorized(V):
                                sc[r, h * V + i] = v[N - 1, i]
                    for i in T.vectorized(V):
                        best[i] = sc[0, 2 * i]
                        am[i] = 0
                    for w in T.unroll(1, 4):
                        for i in T.vectorized(V):
                            am[i] = T.Select((sc[w // 2, 2 * i + w % 2] > best[i]) or T.isnan(sc[w // 2, 2 * i + w % 2]),
                                             w, am[i])
                            best[i] = T.Select((sc[w // 2, 2 * i + w % 2] > best[i]) or T.isnan(sc[w // 2, 2 * i + w % 2]),
                                               sc[w // 2, 2 * i + w % 2], best[i])
                    for i in T.vectorized(V):
                        out[bo // O, bo % O, py, T.min(qo * V, Wq - V) + i] = best[i]
                        arg[bo // O, bo % O, py, T.min(qo * V, Wq - V) + i] = T.Cast("uint8", am[i])
                for px in range(T.if_then_else(Wq >= V, 0, Wq)):
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
    @T.prim_func
    def bwd(xp_h: T.handle, off_h: T.handle, c_h: T.handle, g_h: T.handle, gxp_h: T.handle, gx_h: T.handle,
            part_h: T.handle, gc_h: T.handle):
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
        rows = (B + P - 1) // P
        for p in T.parallel(P):
            task_prologue(gxf, part, p, rows, B, C, Hp, Wp, O)
            v = T.alloc_buffer((N, V), dtype, scope="local")
            gv = T.alloc_buffer((N, V), dtype, scope="local")
            acc = T.alloc_buffer((G, 4, V), dtype, scope="local")
            u = T.alloc_buffer((N,), dtype, scope="local")
            gu = T.alloc_buffer((N,), dtype, scope="local")
            for o in range(O):
                for r in range(T.max(T.min(rows, B - p * rows), 0)):
                    zero_acc(acc)
                    for oy in range(Ho):
                        for xo in range(Wo // V):
                            tree_row_vec(v, xf, off, c, (p * rows + r) * (C * Hp * Wp), o, oy * S * Wp, xo * V)
                            for i in T.vectorized(V):
                                gv[N - 1, i] = gout[p * rows + r, o, oy, xo * V + i]
                            backprop_vec(v, gv, acc, c, o)
                            # one leaf at V distinct positions: the lanes never collide
                            for j in range(L):
                                for i in T.vectorized(V):
                                    gxf[(p * rows + r) * (C * Hp * Wp) + off[o, j] + oy * S * Wp + (xo * V + i) * S] = (
                                        gxf[(p * rows + r) * (C * Hp * Wp) + off[o, j] + oy * S * Wp + (xo * V + i) * S]
                                        + gv[j, i])
                        for ox in range(Wo // V * V, Wo):
                            tree_scalar(u, xf, off, c, (p * rows + r) * (C * Hp * Wp), o, oy * S * Wp + ox * S)
                            gu[N - 1] = gout[p * rows + r, o, oy, ox]
                            backprop_scalar(u, gu, acc, c, o)
                            scatter_scalar(gxf, gu, off, (p * rows + r) * (C * Hp * Wp), o, oy * S * Wp + ox * S)
                    flush_acc(acc, part, p, o)
            task_epilogue(gxp, gx, p, rows, B, C, H, W, Hp, Wp)
        reduce_parts(part, gc, P, O)

    @T.prim_func
    def pool_bwd(xp_h: T.handle, off_h: T.handle, c_h: T.handle, arg_h: T.handle, g_h: T.handle, gxp_h: T.handle,
                 gx_h: T.handle, part_h: T.handle, gc_h: T.handle):
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
        rows = (B + P - 1) // P
        for p in T.parallel(P):
            task_prologue(gxf, part, p, rows, B, C, Hp, Wp, O)
            v = T.alloc_buffer((N, V), dtype, scope="local")
            gv = T.alloc_buffer((N, V), dtype, scope="local")
            acc = T.alloc_buffer((G, 4, V), dtype, scope="local")
            pos = T.alloc_buffer((V,), "int32", scope="local")
            u = T.alloc_buffer((N,), dtype, scope="local")
            gu = T.alloc_buffer((N,), dtype, scope="local")
            for o in range(O):
                for r in range(T.max(T.min(rows, B - p * rows), 0)):
                    zero_acc(acc)
                    for py in range(Hq):
                        for qo in range(Wq // V):
                            if S == 1:
                                # the 2 x 16 inputs under 8 windows are two contiguous rows: load both,
                                # split even / odd columns and select each lane's winner (no gathers)
                                for i in T.vectorized(V):
                                    pos[i] = T.Cast("int32", arg[p * rows + r, o, py, qo * V + i])
                                for j in T.unroll(L):
                                    leaf_select(v, xf, pos, (p * rows + r) * (C * Hp * Wp) + off[o, j] + 2 * py * Wp
                                                + 2 * qo * V, Wp, j)
                            else:
                                for i in T.vectorized(V):
                                    pos[i] = (2 * py + T.Cast("int32", arg[p * rows + r, o, py, qo * V + i]) // 2) * S * Wp + (
                                        2 * (qo * V + i) + T.Cast("int32", arg[p * rows + r, o, py, qo * V + i]) % 2) * S
                                for j in T.unroll(L):
                                    for i in T.vectorized(V):
                                        v[j, i] = xf[(p * rows + r) * (C * Hp * Wp) + off[o, j] + pos[i]]
                            gates_vec(v, c, o)
                            for i in T.vectorized(V):
                                gv[N - 1, i] = gout[p * rows + r, o, py, qo * V + i]
                            backprop_vec(v, gv, acc, c, o)
                            if S == 1:
                                # the leaf gradients go to the winners: masked, interleaved back into the
                                # two rows, added as contiguous vectors (zeros elsewhere)
                                for j in range(L):
                                    leaf_scatter(gxf, gv, pos, (p * rows + r) * (C * Hp * Wp) + off[o, j] + 2 * py * Wp
                                                 + 2 * qo * V, Wp, j)
                            else:
                                # one leaf at V distinct winning positions (different windows): no collisions
                                for j in range(L):
                                    for i in T.vectorized(V):
                                        gxf[(p * rows + r) * (C * Hp * Wp) + off[o, j] + pos[i]] = (
                                            gxf[(p * rows + r) * (C * Hp * Wp) + off[o, j] + pos[i]] + gv[j, i])
                        for px in range(Wq // V * V, Wq):
                            tree_scalar(u, xf, off, c, (p * rows + r) * (C * Hp * Wp), o,
                                        (2 * py + T.Cast("int32", arg[p * rows + r, o, py, px]) // 2) * S * Wp
                                        + (2 * px + T.Cast("int32", arg[p * rows + r, o, py, px]) % 2) * S)
                            gu[N - 1] = gout[p * rows + r, o, py, px]
                            backprop_scalar(u, gu, acc, c, o)
                            scatter_scalar(gxf, gu, off, (p * rows + r) * (C * Hp * Wp), o,
                                           (2 * py + T.Cast("int32", arg[p * rows + r, o, py, px]) // 2) * S * Wp
                                           + (2 * px + T.Cast("int32", arg[p * rows + r, o, py, px]) % 2) * S)
                    flush_acc(acc, part, p, o)
            task_epilogue(gxp, gx, p, rows, B, C, H, W, Hp, Wp)
        reduce_parts(part, gc, P, O)

    return fwd, bwd, pool_fwd, pool_bwd
