"""TVM kernels for training logic-tree convolutions (LogicTreeNet), alone or fused with 2x2 OR pooling.

The op (see ``lgn_nas.layers.tree_ops.logic_tree_conv``): input ``x`` (B, C, H, W), zero padding
``p``, stride ``s``; output channel ``o`` owns a tree of depth ``d`` (``L = 2^d`` leaves) whose leaf
``j`` reads channel ``lc[o, j]`` at offset ``(ly[o, j], lx[o, j])`` of the k x k field, and whose
gates carry coefficients ``c[o, g] = (c1, ca, cb, cab)``. The kernels read the zero-padded input
``xp`` (B, C, Hp, Wp) (padding is done by the caller, so no bounds tests inside), so the leaf of an
output position ``(oy, ox)`` is ``xp[b, lc, oy*s + ly, ox*s + lx]``.

Node numbering: the ``L`` leaves are nodes ``0 .. L-1``; gate ``g`` (level by level, leaves' level
first, as the coefficients are stored) computes node ``L + g`` from nodes ``2g`` and ``2g + 1``;
the root is node ``2L - 2``. A gate evaluates ``(ca + cab*b)*a + (c1 + cb*b)``, the torch op's order.

The tree depth and the stride are compile-time constants (the trees unroll into registers); every
other size (B, C, H, W, O) is symbolic, so one module per (dtype, depth, stride) serves every layer.

CPU kernels (LLVM), in one module:

* :data:`FWD` ``(xp, lc, ly, lx, c, out)``: ``out`` (B, O, Ho, Wo). Parallel over (sample, channel),
  8 output columns per vector (contiguous leaf loads for stride 1). A row of ``Wo >= 8`` ends with
  one vector starting at ``Wo - 8`` (it recomputes a few outputs instead of a scalar tail);
  narrower rows run a scalar loop.
* :data:`POOL_FWD` ``(xp, lc, ly, lx, c, out, arg)``: the tree + 2x2 OR pool (max, stride 2) of the
  2024 paper. For 8 pooled columns it evaluates the tree at the 16 unpooled columns of both window
  rows (four contiguous vectors), keeps the maximum of each window and its position ``arg`` (uint8,
  row-major in the window: 0 = top-left .. 3 = bottom-right). Ties keep the first maximum and NaN
  wins, as ``torch.nn.functional.max_pool2d`` does on CPU; nothing else is stored.
* :data:`BWD` ``(xp, lc, ly, lx, c, g, gxp, part)`` and :data:`POOL_BWD` ``(xp, lc, ly, lx, c, arg,
  g, gxp, part)``: the batch is split into ``P`` chunks of samples (``P`` = threads, a runtime
  size), one parallel task each. Per output channel and sample the task recomputes the tree (for
  the pooled op: only at each window's winning position, gathered through ``arg``), back-propagates
  through it in registers, accumulates the coefficient gradients per vector lane over one sample,
  adds them into the chunk's partial sums ``part[p, o, g, k]`` (summed over chunks by the caller;
  the sums stay two-level for float32 accuracy), and scatter-adds
  the leaf gradients into the padded input gradient ``gxp`` by a scalar loop. A sample belongs to
  exactly one task and its scatter is sequential, so overlapping receptive fields and repeated leaves
  add race-free without atomics. ``gxp`` and ``part`` must be zeroed by the caller.

Buffers are declared with element alignment only, so views at any offset are safe; the leaf tables
are int32 and must be validated by the caller (no bounds checks inside).
"""
from __future__ import annotations

__all__ = ["VEC", "KERNEL_VERSION", "FWD", "BWD", "POOL_FWD", "POOL_BWD", "cpu_module"]

VEC = 8  # output columns per vector (AVX2: 8 x float32)
KERNEL_VERSION = 1  # bump when the kernels change (part of the on-disk cache key)

FWD = "lgn_tree_conv_fwd"
BWD = "lgn_tree_conv_bwd"
POOL_FWD = "lgn_tree_conv_pool_fwd"
POOL_BWD = "lgn_tree_conv_pool_bwd"


def _align(dtype: str) -> int:
    return 8 if dtype == "float64" else 4


def _funcs(dtype: str, depth: int, stride: int):
    """The four unscheduled-but-annotated TIR functions (loop kinds written in TIR directly)."""
    from tvm.script import tirx as T

    V = VEC
    L = 1 << depth
    G = L - 1  # gates
    N = 2 * L - 1  # nodes
    S = stride
    al = _align(dtype)
    zero = 0.0

    # ---------------------------------------------------------------- shared pieces (inlined macros)
    @T.macro
    def gates_vec(v, c, o):
        for g in T.unroll(G):
            for i in T.vectorized(V):
                v[L + g, i] = (c[o, g, 1] + c[o, g, 3] * v[2 * g + 1, i]) * v[2 * g, i] + (
                    c[o, g, 0] + c[o, g, 2] * v[2 * g + 1, i])

    @T.macro
    def gates_scalar(u, c, o):
        for g in T.unroll(G):
            u[L + g] = (c[o, g, 1] + c[o, g, 3] * u[2 * g + 1]) * u[2 * g] + (c[o, g, 0] + c[o, g, 2] * u[2 * g + 1])

    @T.macro
    def tree_row_vec(v, xf, off, c, base, o, rowoff, ox0):
        """Tree at columns ``ox0 + i`` of the row at ``rowoff`` for the V lanes ``i``; root in ``v[N - 1]``."""
        for j in T.unroll(L):
            for i in T.vectorized(V):
                v[j, i] = xf[base + off[o, j] + rowoff + (ox0 + i) * S]
        gates_vec(v, c, o)

    @T.macro
    def tree_scalar(u, xf, off, c, base, o, pos):
        for j in T.unroll(L):
            u[j] = xf[base + off[o, j] + pos]
        gates_scalar(u, c, o)

    @T.macro
    def backprop_vec(v, gv, acc, c, o):
        """Given the tree values ``v`` and the root gradient in ``gv[N - 1]``: coefficient gradients
        into ``acc`` (per lane) and the leaf gradients into ``gv[0:L]``."""
        for gg in T.unroll(G):
            for i in T.vectorized(V):
                acc[G - 1 - gg, 0, i] = acc[G - 1 - gg, 0, i] + gv[L + G - 1 - gg, i]
                acc[G - 1 - gg, 1, i] = acc[G - 1 - gg, 1, i] + gv[L + G - 1 - gg, i] * v[2 * (G - 1 - gg), i]
                acc[G - 1 - gg, 2, i] = acc[G - 1 - gg, 2, i] + gv[L + G - 1 - gg, i] * v[2 * (G - 1 - gg) + 1, i]
                acc[G - 1 - gg, 3, i] = acc[G - 1 - gg, 3, i] + gv[L + G - 1 - gg, i] * v[2 * (G - 1 - gg), i] * v[
                    2 * (G - 1 - gg) + 1, i]
                gv[2 * (G - 1 - gg), i] = gv[L + G - 1 - gg, i] * (
                    c[o, G - 1 - gg, 1] + c[o, G - 1 - gg, 3] * v[2 * (G - 1 - gg) + 1, i])
                gv[2 * (G - 1 - gg) + 1, i] = gv[L + G - 1 - gg, i] * (
                    c[o, G - 1 - gg, 2] + c[o, G - 1 - gg, 3] * v[2 * (G - 1 - gg), i])

    @T.macro
    def backprop_scalar(u, gu, acc, c, o):
        """Scalar version: accumulates into lane 0 of ``acc``."""
        for gg in T.unroll(G):
            acc[G - 1 - gg, 0, 0] = acc[G - 1 - gg, 0, 0] + gu[L + G - 1 - gg]
            acc[G - 1 - gg, 1, 0] = acc[G - 1 - gg, 1, 0] + gu[L + G - 1 - gg] * u[2 * (G - 1 - gg)]
            acc[G - 1 - gg, 2, 0] = acc[G - 1 - gg, 2, 0] + gu[L + G - 1 - gg] * u[2 * (G - 1 - gg) + 1]
            acc[G - 1 - gg, 3, 0] = acc[G - 1 - gg, 3, 0] + gu[L + G - 1 - gg] * u[2 * (G - 1 - gg)] * u[
                2 * (G - 1 - gg) + 1]
            gu[2 * (G - 1 - gg)] = gu[L + G - 1 - gg] * (c[o, G - 1 - gg, 1] + c[o, G - 1 - gg, 3] * u[2 * (G - 1 - gg) + 1])
            gu[2 * (G - 1 - gg) + 1] = gu[L + G - 1 - gg] * (c[o, G - 1 - gg, 2] + c[o, G - 1 - gg, 3] * u[2 * (G - 1 - gg)])

    @T.macro
    def zero_acc(acc):
        for g, k in T.grid(G, 4):
            for i in T.vectorized(V):
                acc[g, k, i] = T.Cast(dtype, zero)

    @T.macro
    def flush_acc(acc, part, p, o):
        for g, k in T.grid(G, 4):
            for i in range(V):
                part[p, o, g, k] = part[p, o, g, k] + acc[g, k, i]

    @T.macro
    def scatter_scalar(gxf, gu, off, base, o, pos):
        for j in range(L):
            gxf[base + off[o, j] + pos] = gxf[base + off[o, j] + pos] + gu[j]

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
    def bwd(xp_h: T.handle, off_h: T.handle, c_h: T.handle, g_h: T.handle, gxp_h: T.handle, part_h: T.handle):
        T.func_attr({"global_symbol": BWD, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Ho = T.int32()
        Wo = T.int32()
        P = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, align=al, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", align=4, offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, align=al, offset_factor=1)
        gout = T.match_buffer(g_h, (B, O, Ho, Wo), dtype, align=al, offset_factor=1)
        gxp = T.match_buffer(gxp_h, (B, C, Hp, Wp), dtype, align=al, offset_factor=1)
        part = T.match_buffer(part_h, (P, O, G, 4), dtype, align=al, offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        gxf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=gxp.data, elem_offset=gxp.elem_offset)
        rows = (B + P - 1) // P
        for p in T.parallel(P):
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

    @T.prim_func
    def pool_bwd(xp_h: T.handle, off_h: T.handle, c_h: T.handle, arg_h: T.handle, g_h: T.handle, gxp_h: T.handle,
                 part_h: T.handle):
        T.func_attr({"global_symbol": POOL_BWD, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Hq = T.int32()
        Wq = T.int32()
        P = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, align=al, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", align=4, offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, align=al, offset_factor=1)
        arg = T.match_buffer(arg_h, (B, O, Hq, Wq), "uint8", align=1, offset_factor=1)
        gout = T.match_buffer(g_h, (B, O, Hq, Wq), dtype, align=al, offset_factor=1)
        gxp = T.match_buffer(gxp_h, (B, C, Hp, Wp), dtype, align=al, offset_factor=1)
        part = T.match_buffer(part_h, (P, O, G, 4), dtype, align=al, offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        gxf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=gxp.data, elem_offset=gxp.elem_offset)
        rows = (B + P - 1) // P
        for p in T.parallel(P):
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

    return fwd, bwd, pool_fwd, pool_bwd


def cpu_module(dtype: str = "float32", depth: int = 3, stride: int = 1):
    """IRModule with :data:`FWD`, :data:`BWD`, :data:`POOL_FWD` and :data:`POOL_BWD` for one
    (dtype, tree depth, stride); every size is symbolic."""
    import tvm

    if not 1 <= depth <= 8:
        raise ValueError(f"tree depth must be in 1..8, got {depth}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    fwd, bwd, pool_fwd, pool_bwd = _funcs(dtype, depth, stride)
    return tvm.IRModule({FWD: fwd, BWD: bwd, POOL_FWD: pool_fwd, POOL_BWD: pool_bwd})
