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

* :data:`FWD` ``(xp, off, c, out)``: ``out`` (B, O, Ho, Wo). Parallel over (sample, channel),
  8 output columns per vector (contiguous leaf loads for stride 1). A row of ``Wo >= 8`` ends with
  one vector starting at ``Wo - 8`` (it recomputes a few outputs instead of a scalar tail);
  narrower rows run a scalar loop.
* :data:`POOL_FWD` ``(xp, off, c, out, arg)``: the tree + 2x2 OR pool (max, stride 2) of the
  2024 paper. For 8 pooled columns it evaluates the tree at the 16 unpooled columns of both window
  rows (four contiguous vectors), keeps the maximum of each window and its position ``arg`` (uint8,
  row-major in the window: 0 = top-left .. 3 = bottom-right). Ties keep the first maximum and NaN
  wins, as ``torch.nn.functional.max_pool2d`` does on CPU; nothing else is stored.
* :data:`BWD` ``(xp, off, c, g, gxp, gx, part, gc)`` and :data:`POOL_BWD` ``(xp, off, c, arg, g,
  gxp, gx, part, gc)``: the batch is split into ``P`` chunks of samples (``P`` = threads, a runtime
  size), one parallel task each. A task zeroes its samples' padded input gradient ``gxp`` and its
  partial sums; per output channel and sample it recomputes the tree (for the pooled op: only at
  each window's winning position), back-propagates through it in registers, accumulates the
  coefficient gradients per vector lane over one sample, adds them into its partial sums
  ``part[p, o, g, k]`` (two-level sums for float32 accuracy), and adds the leaf gradients into
  ``gxp``; finally it copies the interior of its samples' ``gxp`` into ``gx`` (the crop). A second
  parallel loop sums the partial sums into ``gc``. A sample belongs to exactly one task and its
  updates are sequential, so overlapping receptive fields and repeated leaves add race-free
  without atomics. Stride 1, pooled: the leaves of 8 windows are read as the two 16-wide input rows
  under them (vector loads, even / odd lanes split by shuffles, each lane's winner selected by
  ``arg``) and their gradients added back the same way, masked to the winners; otherwise gathered
  and scattered per lane. ``gxp`` and ``part`` are scratch and ``gx``, ``gc`` fully written (pass
  ``torch.empty``); the padding is symmetric: ``(Hp - H) / 2`` rows and ``(Wp - W) / 2`` columns.
  No torch op runs between the kernels.

Buffers are declared with element alignment only, so views at any offset are safe; the leaf tables
are int32 and must be validated by the caller (no bounds checks inside).
"""
from __future__ import annotations

__all__ = ["VEC", "KERNEL_VERSION", "FWD", "BWD", "POOL_FWD", "POOL_BWD", "cpu_module", "cuda_module",
           "CUDA_FWD", "CUDA_POOL_FWD", "CUDA_LEAF", "CUDA_POOL_LEAF", "CUDA_GX", "CUDA_POOL_GX"]

VEC = 8  # output columns per vector (AVX2: 8 x float32)
KERNEL_VERSION = 3  # bump when the kernels change (part of the on-disk cache key)

FWD = "lgn_tree_conv_fwd"
BWD = "lgn_tree_conv_bwd"
POOL_FWD = "lgn_tree_conv_pool_fwd"
POOL_BWD = "lgn_tree_conv_pool_bwd"
CUDA_FWD = "lgn_tree_conv_fwd_cuda"
CUDA_POOL_FWD = "lgn_tree_conv_pool_fwd_cuda"
CUDA_LEAF = "lgn_tree_conv_leaf_cuda"
CUDA_POOL_LEAF = "lgn_tree_conv_pool_leaf_cuda"
CUDA_GX = "lgn_tree_conv_gx_cuda"
CUDA_POOL_GX = "lgn_tree_conv_pool_gx_cuda"


def _align(dtype: str) -> int:
    return 8 if dtype == "float64" else 4


def _funcs(dtype: str, depth: int, stride: int, cuda_threads: int = 0, serial: bool = False):
    """The four unscheduled-but-annotated CPU TIR functions (loop kinds written in TIR directly), or
    with ``cuda_threads`` the six thread-bound CUDA functions (:func:`cuda_module`); both use the
    same tree macros (gate formula, back-propagation through the tree)."""
    from tvm.script import tirx as T

    V = VEC
    L = 1 << depth
    G = L - 1  # gates
    N = 2 * L - 1  # nodes
    S = stride
    al = _align(dtype)
    zero = 0.0
    EVEN = list(range(0, 2 * V, 2))  # shuffle indices: even / odd lanes of a 2V vector, and their inverse
    ODD = list(range(1, 2 * V, 2))
    INTERLEAVE = [k for i in range(V) for k in (i, V + i)]

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
    def leaf_select(v, xf, pos, base, Wp, j):
        """Stride 1, 8 pooled columns: ``v[j, i]`` = the leaf at lane ``i``'s winning window position
        ``pos[i]`` (0..3 row-major), read from the two 16-wide input rows at ``base`` and ``base + Wp``."""
        top = xf[T.Ramp(base, 1, 2 * V)]
        bot = xf[T.Ramp(base + Wp, 1, 2 * V)]
        w = pos[T.Ramp(0, 1, V)]
        v[j, T.Ramp(0, 1, V)] = T.Select(
            w == T.Broadcast(0, V), T.Shuffle([top], EVEN), T.Select(
                w == T.Broadcast(1, V), T.Shuffle([top], ODD), T.Select(
                    w == T.Broadcast(2, V), T.Shuffle([bot], EVEN), T.Shuffle([bot], ODD))))

    @T.macro
    def leaf_scatter(gxf, gv, pos, base, Wp, j):
        """Inverse of ``leaf_select``: add ``gv[j, i]`` at lane ``i``'s winner, 0 at the other three."""
        w = pos[T.Ramp(0, 1, V)]
        gj = gv[j, T.Ramp(0, 1, V)]
        zv = T.Broadcast(T.Cast(dtype, zero), V)
        gxf[T.Ramp(base, 1, 2 * V)] = gxf[T.Ramp(base, 1, 2 * V)] + T.Shuffle(
            [T.Select(w == T.Broadcast(0, V), gj, zv), T.Select(w == T.Broadcast(1, V), gj, zv)], INTERLEAVE)
        gxf[T.Ramp(base + Wp, 1, 2 * V)] = gxf[T.Ramp(base + Wp, 1, 2 * V)] + T.Shuffle(
            [T.Select(w == T.Broadcast(2, V), gj, zv), T.Select(w == T.Broadcast(3, V), gj, zv)], INTERLEAVE)

    @T.macro
    def task_prologue(gxf, part, p, rows, B, C, Hp, Wp, O):
        """Zero the task's partial sums and the padded input gradient of its samples."""
        for o, g, k in T.grid(O, G, 4):
            part[p, o, g, k] = T.Cast(dtype, zero)
        for r in range(T.max(T.min(rows, B - p * rows), 0)):
            for io in range(C * Hp * Wp // V):
                for i in T.vectorized(V):
                    gxf[(p * rows + r) * (C * Hp * Wp) + io * V + i] = T.Cast(dtype, zero)
            for it in range(C * Hp * Wp % V):
                gxf[(p * rows + r) * (C * Hp * Wp) + C * Hp * Wp // V * V + it] = T.Cast(dtype, zero)

    @T.macro
    def task_epilogue(gxp, gx, p, rows, B, C, H, W, Hp, Wp):
        """Copy the interior of the task's samples' padded input gradient into ``gx`` (the crop)."""
        for r, ch, y in T.grid(T.max(T.min(rows, B - p * rows), 0), C, H):
            for xo in range(W // V):
                for i in T.vectorized(V):
                    gx[p * rows + r, ch, y, xo * V + i] = gxp[p * rows + r, ch, y + (Hp - H) // 2, xo * V + i + (Wp - W) // 2]
            for xt in range(W % V):
                gx[p * rows + r, ch, y, W // V * V + xt] = gxp[p * rows + r, ch, y + (Hp - H) // 2,
                                                                W // V * V + xt + (Wp - W) // 2]

    @T.macro
    def reduce_parts(part, gc, P, O):
        """``gc[o] = sum_p part[p, o]``, parallel over output channels."""
        for o in T.parallel(O):
            for g, k in T.grid(G, 4):
                gc[o, g, k] = part[0, o, g, k]
                for q in range(1, P):
                    gc[o, g, k] = gc[o, g, k] + part[q, o, g, k]

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

    if cuda_threads:
        return _cuda_funcs(T, dtype, L, G, N, S, cuda_threads, tree_scalar, backprop_scalar, serial)

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


# --------------------------------------------------------------------------------------------- CUDA

def _cuda_funcs(T, dtype, L, G, N, S, threads, tree_scalar, backprop_scalar, serial=False):
    """Thread-bound CUDA versions (see :func:`cuda_module`); ``tree_scalar`` and ``backprop_scalar``
    are the CPU kernels' macros, so both targets evaluate and differentiate the same formulas. With
    ``serial`` the thread loops are plain loops: the same kernels, runnable on the CPU (tests)."""
    zero = 0.0

    def bind(extent, tag):
        return T.serial(extent) if serial else T.thread_binding(extent, thread=tag)

    @T.prim_func
    def fwd(xp_h: T.handle, off_h: T.handle, c_h: T.handle, out_h: T.handle):
        T.func_attr({"global_symbol": CUDA_FWD, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Ho = T.int32()
        Wo = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, offset_factor=1)
        out = T.match_buffer(out_h, (B, O, Ho, Wo), dtype, offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        outf = T.decl_buffer((B * O * Ho * Wo,), dtype, data=out.data, elem_offset=out.elem_offset)
        for bx in bind((B * O * Ho * Wo + threads - 1) // threads, "blockIdx.x"):
            for tx in bind(threads, "threadIdx.x"):
                u = T.alloc_buffer((N,), dtype, scope="local")
                if bx * threads + tx < B * O * Ho * Wo:
                    tree_scalar(u, xf, off, c, (bx * threads + tx) // (O * Ho * Wo) * (C * Hp * Wp),
                                (bx * threads + tx) // (Ho * Wo) % O,
                                (bx * threads + tx) // Wo % Ho * S * Wp + (bx * threads + tx) % Wo * S)
                    outf[bx * threads + tx] = u[N - 1]

    @T.prim_func
    def pool_fwd(xp_h: T.handle, off_h: T.handle, c_h: T.handle, out_h: T.handle, arg_h: T.handle):
        T.func_attr({"global_symbol": CUDA_POOL_FWD, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Hq = T.int32()
        Wq = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, offset_factor=1)
        out = T.match_buffer(out_h, (B, O, Hq, Wq), dtype, offset_factor=1)
        arg = T.match_buffer(arg_h, (B, O, Hq, Wq), "uint8", offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        outf = T.decl_buffer((B * O * Hq * Wq,), dtype, data=out.data, elem_offset=out.elem_offset)
        argf = T.decl_buffer((B * O * Hq * Wq,), "uint8", data=arg.data, elem_offset=arg.elem_offset)
        for bx in bind((B * O * Hq * Wq + threads - 1) // threads, "blockIdx.x"):
            for tx in bind(threads, "threadIdx.x"):
                u = T.alloc_buffer((N,), dtype, scope="local")
                best = T.alloc_buffer((1,), dtype, scope="local")
                am = T.alloc_buffer((1,), "int32", scope="local")
                if bx * threads + tx < B * O * Hq * Wq:
                    for w in range(4):  # window positions row-major; first maximum wins, NaN wins
                        tree_scalar(u, xf, off, c, (bx * threads + tx) // (O * Hq * Wq) * (C * Hp * Wp),
                                    (bx * threads + tx) // (Hq * Wq) % O,
                                    (2 * ((bx * threads + tx) // Wq % Hq) + w // 2) * S * Wp
                                    + (2 * ((bx * threads + tx) % Wq) + w % 2) * S)
                        if w == 0 or u[N - 1] > best[0] or T.isnan(u[N - 1]):
                            best[0] = u[N - 1]
                            am[0] = w
                    outf[bx * threads + tx] = best[0]
                    argf[bx * threads + tx] = T.Cast("uint8", am[0])

    @T.macro
    def leaf_body(xf, off, c, gf, lgf, cpart, bo, O, C, Hp, Wp, Hq, Wq, pooled, argf):
        """One thread per (sample, channel): every (pooled) output position in turn: recompute the
        tree (at the window's winner when pooled), back-propagate, store the leaf gradients in
        ``lg``, sum the coefficient gradients in registers and store them in ``cpart``."""
        u = T.alloc_buffer((N,), dtype, scope="local")
        gu = T.alloc_buffer((N,), dtype, scope="local")
        acc = T.alloc_buffer((G, 4, 1), dtype, scope="local")
        for g, k in T.grid(G, 4):
            acc[g, k, 0] = T.Cast(dtype, zero)
        for q in range(Hq * Wq):
            if pooled:
                tree_scalar(u, xf, off, c, bo // O * (C * Hp * Wp), bo % O,
                            (2 * (q // Wq) + T.Cast("int32", argf[bo * Hq * Wq + q]) // 2) * S * Wp
                            + (2 * (q % Wq) + T.Cast("int32", argf[bo * Hq * Wq + q]) % 2) * S)
            else:
                tree_scalar(u, xf, off, c, bo // O * (C * Hp * Wp), bo % O, q // Wq * S * Wp + q % Wq * S)
            gu[N - 1] = gf[bo * Hq * Wq + q]
            backprop_scalar(u, gu, acc, c, bo % O)
            for j in range(L):
                lgf[(bo * Hq * Wq + q) * L + j] = gu[j]
        for g, k in T.grid(G, 4):
            cpart[bo // O, bo % O, g, k] = acc[g, k, 0]

    @T.prim_func
    def leaf(xp_h: T.handle, off_h: T.handle, c_h: T.handle, g_h: T.handle, lg_h: T.handle, cpart_h: T.handle):
        T.func_attr({"global_symbol": CUDA_LEAF, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Ho = T.int32()
        Wo = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, offset_factor=1)
        gout = T.match_buffer(g_h, (B, O, Ho, Wo), dtype, offset_factor=1)
        lg = T.match_buffer(lg_h, (B, O, Ho, Wo, L), dtype, offset_factor=1)
        cpart = T.match_buffer(cpart_h, (B, O, G, 4), dtype, offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        gf = T.decl_buffer((B * O * Ho * Wo,), dtype, data=gout.data, elem_offset=gout.elem_offset)
        lgf = T.decl_buffer((B * O * Ho * Wo * L,), dtype, data=lg.data, elem_offset=lg.elem_offset)
        for bx in bind((B * O + threads - 1) // threads, "blockIdx.x"):
            for tx in bind(threads, "threadIdx.x"):
                if bx * threads + tx < B * O:
                    leaf_body(xf, off, c, gf, lgf, cpart, bx * threads + tx, O, C, Hp, Wp, Ho, Wo, False, gf)

    @T.prim_func
    def pool_leaf(xp_h: T.handle, off_h: T.handle, c_h: T.handle, arg_h: T.handle, g_h: T.handle, lg_h: T.handle,
                  cpart_h: T.handle):
        T.func_attr({"global_symbol": CUDA_POOL_LEAF, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Hq = T.int32()
        Wq = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, offset_factor=1)
        arg = T.match_buffer(arg_h, (B, O, Hq, Wq), "uint8", offset_factor=1)
        gout = T.match_buffer(g_h, (B, O, Hq, Wq), dtype, offset_factor=1)
        lg = T.match_buffer(lg_h, (B, O, Hq, Wq, L), dtype, offset_factor=1)
        cpart = T.match_buffer(cpart_h, (B, O, G, 4), dtype, offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        argf = T.decl_buffer((B * O * Hq * Wq,), "uint8", data=arg.data, elem_offset=arg.elem_offset)
        gf = T.decl_buffer((B * O * Hq * Wq,), dtype, data=gout.data, elem_offset=gout.elem_offset)
        lgf = T.decl_buffer((B * O * Hq * Wq * L,), dtype, data=lg.data, elem_offset=lg.elem_offset)
        for bx in bind((B * O + threads - 1) // threads, "blockIdx.x"):
            for tx in bind(threads, "threadIdx.x"):
                if bx * threads + tx < B * O:
                    leaf_body(xf, off, c, gf, lgf, cpart, bx * threads + tx, O, C, Hp, Wp, Hq, Wq, True, argf)

    @T.macro
    def gx_body(lgf, ptr, eo, ej, erel, gxf, idx, O, C, Hp, Wp, Ho, Wo, pooled, argf):
        """``gxp`` element ``idx`` = (b, ch, y, x): the sum of the leaf gradients of every leaf that
        reads channel ``ch`` (the inverse index) at an output position covering (y, x); pooled, only
        where that position won its window."""
        acc = T.alloc_buffer((1,), dtype, scope="local")
        acc[0] = T.Cast(dtype, zero)
        for e in range(ptr[idx // (Hp * Wp) % C], ptr[idx // (Hp * Wp) % C + 1]):
            # output position (oy, ox) with oy*S + dy == y, ox*S + dx == x
            if (idx // Wp % Hp - erel[e] // Wp >= 0 and (idx // Wp % Hp - erel[e] // Wp) % S == 0
                    and idx % Wp - erel[e] % Wp >= 0 and (idx % Wp - erel[e] % Wp) % S == 0):
                if pooled:
                    if ((idx // Wp % Hp - erel[e] // Wp) // S < 2 * Ho and (idx % Wp - erel[e] % Wp) // S < 2 * Wo):
                        if T.Cast("int32", argf[((idx // (C * Hp * Wp) * O + eo[e]) * Ho
                                                 + (idx // Wp % Hp - erel[e] // Wp) // S // 2) * Wo
                                                + (idx % Wp - erel[e] % Wp) // S // 2]) == (
                                (idx // Wp % Hp - erel[e] // Wp) // S % 2 * 2 + (idx % Wp - erel[e] % Wp) // S % 2):
                            acc[0] = acc[0] + lgf[(((idx // (C * Hp * Wp) * O + eo[e]) * Ho
                                                    + (idx // Wp % Hp - erel[e] // Wp) // S // 2) * Wo
                                                   + (idx % Wp - erel[e] % Wp) // S // 2) * L + ej[e]]
                else:
                    if (idx // Wp % Hp - erel[e] // Wp) // S < Ho and (idx % Wp - erel[e] % Wp) // S < Wo:
                        acc[0] = acc[0] + lgf[(((idx // (C * Hp * Wp) * O + eo[e]) * Ho
                                                + (idx // Wp % Hp - erel[e] // Wp) // S) * Wo
                                               + (idx % Wp - erel[e] % Wp) // S) * L + ej[e]]
        gxf[idx] = acc[0]

    @T.prim_func
    def gx(lg_h: T.handle, ptr_h: T.handle, eo_h: T.handle, ej_h: T.handle, erel_h: T.handle, gxp_h: T.handle):
        T.func_attr({"global_symbol": CUDA_GX, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Ho = T.int32()
        Wo = T.int32()
        E = T.int32()
        C1 = T.int32()
        lg = T.match_buffer(lg_h, (B, O, Ho, Wo, L), dtype, offset_factor=1)
        ptr = T.match_buffer(ptr_h, (C1,), "int32", offset_factor=1)
        eo = T.match_buffer(eo_h, (E,), "int32", offset_factor=1)
        ej = T.match_buffer(ej_h, (E,), "int32", offset_factor=1)
        erel = T.match_buffer(erel_h, (E,), "int32", offset_factor=1)
        gxp = T.match_buffer(gxp_h, (B, C, Hp, Wp), dtype, offset_factor=1)
        lgf = T.decl_buffer((B * O * Ho * Wo * L,), dtype, data=lg.data, elem_offset=lg.elem_offset)
        gxf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=gxp.data, elem_offset=gxp.elem_offset)
        for bx in bind((B * C * Hp * Wp + threads - 1) // threads, "blockIdx.x"):
            for tx in bind(threads, "threadIdx.x"):
                if bx * threads + tx < B * C * Hp * Wp:
                    gx_body(lgf, ptr, eo, ej, erel, gxf, bx * threads + tx, O, C, Hp, Wp, Ho, Wo, False, ptr)

    @T.prim_func
    def pool_gx(lg_h: T.handle, arg_h: T.handle, ptr_h: T.handle, eo_h: T.handle, ej_h: T.handle, erel_h: T.handle,
                gxp_h: T.handle):
        T.func_attr({"global_symbol": CUDA_POOL_GX, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Hq = T.int32()
        Wq = T.int32()
        E = T.int32()
        C1 = T.int32()
        lg = T.match_buffer(lg_h, (B, O, Hq, Wq, L), dtype, offset_factor=1)
        arg = T.match_buffer(arg_h, (B, O, Hq, Wq), "uint8", offset_factor=1)
        ptr = T.match_buffer(ptr_h, (C1,), "int32", offset_factor=1)
        eo = T.match_buffer(eo_h, (E,), "int32", offset_factor=1)
        ej = T.match_buffer(ej_h, (E,), "int32", offset_factor=1)
        erel = T.match_buffer(erel_h, (E,), "int32", offset_factor=1)
        gxp = T.match_buffer(gxp_h, (B, C, Hp, Wp), dtype, offset_factor=1)
        lgf = T.decl_buffer((B * O * Hq * Wq * L,), dtype, data=lg.data, elem_offset=lg.elem_offset)
        argf = T.decl_buffer((B * O * Hq * Wq,), "uint8", data=arg.data, elem_offset=arg.elem_offset)
        gxf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=gxp.data, elem_offset=gxp.elem_offset)
        for bx in bind((B * C * Hp * Wp + threads - 1) // threads, "blockIdx.x"):
            for tx in bind(threads, "threadIdx.x"):
                if bx * threads + tx < B * C * Hp * Wp:
                    gx_body(lgf, ptr, eo, ej, erel, gxf, bx * threads + tx, O, C, Hp, Wp, Hq, Wq, True, argf)

    return {CUDA_FWD: fwd, CUDA_POOL_FWD: pool_fwd, CUDA_LEAF: leaf, CUDA_POOL_LEAF: pool_leaf, CUDA_GX: gx,
            CUDA_POOL_GX: pool_gx}


def cuda_module(dtype: str = "float32", depth: int = 3, stride: int = 1, threads: int = 128, serial: bool = False):
    """IRModule with the CUDA tree-conv kernels for one (dtype, depth, stride), thread-bound (every
    size symbolic). Gradients without atomics, as on the CPU, but as gathers:

    * :data:`CUDA_FWD` ``(xp, off, c, out)``, :data:`CUDA_POOL_FWD` ``(xp, off, c, out, arg)``: one
      thread per (pooled) output; the pooled one evaluates the tree at the window's four positions
      and keeps the first maximum (NaN wins) and its position, like the CPU kernel.
    * :data:`CUDA_LEAF` ``(xp, off, c, g, lg, cpart)`` / :data:`CUDA_POOL_LEAF` ``(xp, off, c, arg, g,
      lg, cpart)``: one thread per (sample, channel) walks its (pooled) output positions, recomputes
      the tree (at the winner), back-propagates, writes the leaf gradients ``lg`` (B, O, H', W', L)
      and its coefficient-gradient sums ``cpart`` (B, O, G, 4) (summed over the batch by the caller).
    * :data:`CUDA_GX` ``(lg, ptr, eo, ej, erel, gxp)`` / :data:`CUDA_POOL_GX` ``(lg, arg, ptr, eo, ej,
      erel, gxp)``: one thread per padded input element gathers the leaf gradients over the inverse
      leaf index (``tvm_ops.training.leaf_consumer_index``): channel ``ch``'s readers are entries
      ``ptr[ch]:ptr[ch+1]`` with tree ``eo``, leaf ``ej`` and field offset ``erel = dy*Wp + dx``.
      ``gxp`` is fully written.

    ``serial=True`` replaces the thread bindings by plain loops: the same kernels for an LLVM target,
    so tests can check their values on a machine without a GPU.
    """
    import tvm

    if not 1 <= depth <= 8:
        raise ValueError(f"tree depth must be in 1..8, got {depth}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return tvm.IRModule(_funcs(dtype, depth, stride, cuda_threads=threads, serial=serial))
