"""TVM kernels for training a dense logic layer whose gate inputs choose among candidate wires.

The op (``tvm_ops.training.logic_dense_learnable``): ``x`` (B, NI); candidates ``ca``, ``cb``
(N, K) int32; relaxed wire weights ``wa``, ``wb`` (N, K) (already relaxed by the caller, e.g. a
softmax over K); coefficients ``c`` (N, 4) = (c1, ca, cb, cab)::

    a[b, n] = sum_k wa[n, k] * x[b, ca[n, k]]        b[b, n] likewise with cb, wb
    out[b, n] = c1 + ca*a + cb*b + cab*a*b

With K = 1 and weights 1 it is the fixed-wiring op of :mod:`tvm_ops.train_dense`, and the kernels
are built the same way (that module's docstring says why): batch tiles, each transposed to
feature-major in a per-task workspace, so that gathering a candidate for a tile's samples is a
vector load and scattering its gradient a vector read-modify-write. A tile here is ``TILE`` = 16
samples (two 8-lane vectors, ``SAMPLE_VECS``): each candidate's index and weight, loaded once per
tile, then serve 16 samples instead of 8. Measured against 8-sample tiles (8000 -> 8000, batch 128,
one thread, interleaved calls, median CPU time, on a loaded machine): forward + backward 10%
faster at K = 8 and 22% at K = 16, 16% slower at K = 1; 32-sample tiles were no faster in the
backward and slower in the forward. Storing ``a`` and ``b`` in the forward for the backward,
instead of gathering them again there, measured 5% faster at K = 8 and 16 and 14% slower at K = 1
for 2 x N x B more saved values: not done. The workspace is ``xg[i, 0:16]``
(input ``i`` of the tile's samples) and, in the backward, ``xg[i, 16:32]`` its gradient. Tiles are
split among ``P`` parallel tasks; within a task neurons and candidates run in order, so a
candidate shared by several neurons, or by both inputs of one, accumulates sequentially: no
atomics, nothing lost. Sums over a tile's samples (the wire-weight and coefficient gradients) add
the two halves, then sum the 8 lanes of 8 neurons at once with a transpose-and-add network (14
shuffles, 7 adds) into one vector of 8 neuron sums.

* :data:`FWD` ``(x, ca, cb, wa, wb, c, out)``: per tile, transpose ``x`` in; per block of 8
  neurons accumulate ``a``, ``b`` over the K candidates (vector FMAs with broadcast weights),
  evaluate, transpose the outputs back to rows (8 x 8 at a time) and store them.
* :data:`BWD` ``(x, ca, cb, wa, wb, c, g, gx, partc, partw, gc, gwa, gwb)``: per tile and block of
  8 neurons, as the forward, then ``ga = g*(ca + cab*b)`` and ``gb = g*(cb + cab*a)``; per
  candidate ``k``: ``xg[ca[n,k], 16:32] += wa[n,k] * ga`` (input gradient) and the sums over the
  tile of ``ga * x[:, ca[n,k]]`` into the task's partial sums ``partw[p, 0, k, n]`` (``wb``
  likewise into ``partw[p, 1]``); the sums of ``g, g*a, g*b, g*a*b`` into ``partc[p, :, n]``. The
  tile's gradient half is transposed out into ``gx``; a last parallel loop over neurons sums the
  ``P`` partial sums into ``gc`` (N, 4), ``gwa`` and ``gwb`` (N, K), the parameters' own layouts.
  Every output and scratch buffer is fully written by the kernel (pass ``torch.empty``):
  ``partc`` (P, 4, N) and ``partw`` (P, 2, K, N).

Shapes (B, NI, N, K, P) are symbolic: one build per dtype serves every layer, candidate count and
batch. Buffers are declared with element alignment only; indices must be validated by the caller
(no bounds checks inside).
"""
from __future__ import annotations

__all__ = ["KERNEL_VERSION", "SAMPLE_VECS", "TILE", "FWD", "BWD", "forward_func", "backward_func", "cpu_module",
           "SOURCES"]

KERNEL_VERSION = 2  # bump when the kernels change (part of the on-disk cache key)
SAMPLE_VECS = 2  # 8-sample vectors per tile
TILE = 8 * SAMPLE_VECS  # samples per tile

FWD = "lgn_dense_learnable_fwd"
BWD = "lgn_dense_learnable_bwd"


def _sources() -> tuple:
    from . import train_dense

    return (__file__, train_dense.__file__)  # the tile transposes come from train_dense


SOURCES = _sources()


def _rowsum_macro():
    """``rowsum8(src, dst)``: ``dst[j] = sum_r src[j, r]`` for an (8, 8) local buffer
    (the horizontal sums of its 8 rows in one vector): pairwise interleave and add, three stages."""
    from tvm.script import tirx as T

    @T.macro
    def rowsum8(src, dst):
        v0 = src[0, T.Ramp(0, 1, 8)]
        v1 = src[1, T.Ramp(0, 1, 8)]
        v2 = src[2, T.Ramp(0, 1, 8)]
        v3 = src[3, T.Ramp(0, 1, 8)]
        v4 = src[4, T.Ramp(0, 1, 8)]
        v5 = src[5, T.Ramp(0, 1, 8)]
        v6 = src[6, T.Ramp(0, 1, 8)]
        v7 = src[7, T.Ramp(0, 1, 8)]
        # u0 = [v0(0+2), v1(0+2), v0(1+3), v1(1+3), v0(4+6), v1(4+6), v0(5+7), v1(5+7)], ...
        u0 = T.Shuffle([v0, v1], [0, 8, 1, 9, 4, 12, 5, 13]) + T.Shuffle([v0, v1], [2, 10, 3, 11, 6, 14, 7, 15])
        u1 = T.Shuffle([v2, v3], [0, 8, 1, 9, 4, 12, 5, 13]) + T.Shuffle([v2, v3], [2, 10, 3, 11, 6, 14, 7, 15])
        u2 = T.Shuffle([v4, v5], [0, 8, 1, 9, 4, 12, 5, 13]) + T.Shuffle([v4, v5], [2, 10, 3, 11, 6, 14, 7, 15])
        u3 = T.Shuffle([v6, v7], [0, 8, 1, 9, 4, 12, 5, 13]) + T.Shuffle([v6, v7], [2, 10, 3, 11, 6, 14, 7, 15])
        # w0 = [v0 lo, v1 lo, v2 lo, v3 lo, v0 hi, v1 hi, v2 hi, v3 hi] (lo/hi: sums of lanes 0-3/4-7)
        w0 = T.Shuffle([u0, u1], [0, 1, 8, 9, 4, 5, 12, 13]) + T.Shuffle([u0, u1], [2, 3, 10, 11, 6, 7, 14, 15])
        w1 = T.Shuffle([u2, u3], [0, 1, 8, 9, 4, 5, 12, 13]) + T.Shuffle([u2, u3], [2, 3, 10, 11, 6, 7, 14, 15])
        dst[T.Ramp(0, 1, 8)] = (T.Shuffle([w0, w1], [0, 1, 2, 3, 8, 9, 10, 11])
                                + T.Shuffle([w0, w1], [4, 5, 6, 7, 12, 13, 14, 15]))

    return rowsum8


def _gather_macro(dtype: str, lanes: int):
    """``gather(xg, ca, cb, wa, wb, at, bt, jj, n, K)``: ``at[jj, :]``, ``bt[jj, :]`` = the relaxed
    inputs ``a``, ``b`` of neuron ``n`` for the tile's ``lanes`` samples."""
    from tvm.script import tirx as T

    V = lanes
    zero = 0.0

    @T.macro
    def gather(xg, ca, cb, wa, wb, at, bt, jj, n, K):
        for r in T.vectorized(V):
            at[jj, r] = T.Cast(dtype, zero)
            bt[jj, r] = T.Cast(dtype, zero)
        for k in range(K):
            for r in T.vectorized(V):
                at[jj, r] = at[jj, r] + wa[n, k] * xg[ca[n, k], r]
                bt[jj, r] = bt[jj, r] + wb[n, k] * xg[cb[n, k], r]

    return gather


def _tile_in_macro(dtype: str, vecs: int):
    """``tile_in(x, xg, tr, tt, t, B, NI, zero_grad)``: rows ``TS*t .. TS*t+TS-1`` of ``x`` (zeros past
    the end; ``TS = 8 * vecs``) into ``xg[:, 0:TS]``, feature-major, 8 x 8 blocks through ``tr``/``tt``;
    with ``zero_grad`` also ``xg[:, TS:2*TS] = 0``."""
    from tvm.script import tirx as T

    from .train_dense import VEC, _transpose_macro

    V = VEC
    S = vecs
    TS = S * V
    transpose8 = _transpose_macro()
    zero = 0.0

    @T.macro
    def tile_in(x, xg, tr, tt, t, B, NI, zero_grad):
        for io in range(NI // V):
            for h in T.unroll(S):
                for r in T.unroll(V):
                    for ii in T.vectorized(V):
                        tr[r, ii] = T.Select(t * TS + h * V + r < B, x[T.min(t * TS + h * V + r, B - 1), io * V + ii],
                                             T.Cast(dtype, zero))
                transpose8(tr, tt)
                for ii in T.unroll(V):
                    for r in T.vectorized(V):
                        xg[io * V + ii, h * V + r] = tt[ii, r]
            if zero_grad:
                for ii in T.unroll(V):
                    for r in T.vectorized(TS):
                        xg[io * V + ii, TS + r] = T.Cast(dtype, zero)
        for it, r in T.grid(NI % V, TS):
            xg[NI // V * V + it, r] = T.Select(t * TS + r < B, x[T.min(t * TS + r, B - 1), NI // V * V + it],
                                               T.Cast(dtype, zero))
            if zero_grad:
                xg[NI // V * V + it, TS + r] = T.Cast(dtype, zero)

    return tile_in


def forward_func(dtype: str = "float32", vecs: int = SAMPLE_VECS):
    """Forward ``(x, ca, cb, wa, wb, c, out)`` on batch tiles, see the module docstring."""
    from tvm.script import tirx as T

    from .train_dense import VEC, _align, _transpose_macro

    V = VEC
    S = vecs
    TS = S * V
    al = _align(dtype)
    zero = 0.0
    transpose8 = _transpose_macro()
    tile_in = _tile_in_macro(dtype, vecs)
    gather = _gather_macro(dtype, TS)

    @T.prim_func
    def fwd(x_h: T.handle, ca_h: T.handle, cb_h: T.handle, wa_h: T.handle, wb_h: T.handle, c_h: T.handle,
            out_h: T.handle):
        T.func_attr({"global_symbol": FWD, "tirx.noalias": True})
        B = T.int32()
        NI = T.int32()
        N = T.int32()
        K = T.int32()
        x = T.match_buffer(x_h, (B, NI), dtype, align=al, offset_factor=1)
        ca = T.match_buffer(ca_h, (N, K), "int32", align=4, offset_factor=1)
        cb = T.match_buffer(cb_h, (N, K), "int32", align=4, offset_factor=1)
        wa = T.match_buffer(wa_h, (N, K), dtype, align=al, offset_factor=1)
        wb = T.match_buffer(wb_h, (N, K), dtype, align=al, offset_factor=1)
        c = T.match_buffer(c_h, (N, 4), dtype, align=al, offset_factor=1)
        out = T.match_buffer(out_h, (B, N), dtype, align=al, offset_factor=1)
        for t in T.parallel((B + TS - 1) // TS):
            xg = T.alloc_buffer((NI, TS), dtype)
            tr = T.alloc_buffer((V, V), dtype, scope="local")
            tt = T.alloc_buffer((V, V), dtype, scope="local")
            at = T.alloc_buffer((V, TS), dtype, scope="local")
            bt = T.alloc_buffer((V, TS), dtype, scope="local")
            ot = T.alloc_buffer((V, TS), dtype, scope="local")
            orow = T.alloc_buffer((V, V), dtype, scope="local")
            s = T.alloc_buffer((2,), dtype, scope="local")
            tile_in(x, xg, tr, tt, t, B, NI, False)
            for jo in range(N // V):
                for jj in T.unroll(V):
                    gather(xg, ca, cb, wa, wb, at, bt, jj, jo * V + jj, K)
                    for r in T.vectorized(TS):
                        ot[jj, r] = c[jo * V + jj, 0] + at[jj, r] * (
                            c[jo * V + jj, 1] + c[jo * V + jj, 3] * bt[jj, r]) + c[jo * V + jj, 2] * bt[jj, r]
                for h in T.unroll(S):
                    for jj in T.unroll(V):
                        for r in T.vectorized(V):
                            tr[jj, r] = ot[jj, h * V + r]
                    transpose8(tr, orow)
                    for r in T.unroll(V):
                        if t * TS + h * V + r < B:
                            for jj in T.vectorized(V):
                                out[t * TS + h * V + r, jo * V + jj] = orow[r, jj]
            for jt, r in T.grid(N % V, T.min(TS, B - t * TS)):
                s[0] = T.Cast(dtype, zero)
                s[1] = T.Cast(dtype, zero)
                for k in range(K):
                    s[0] = s[0] + wa[N // V * V + jt, k] * xg[ca[N // V * V + jt, k], r]
                    s[1] = s[1] + wb[N // V * V + jt, k] * xg[cb[N // V * V + jt, k], r]
                out[t * TS + r, N // V * V + jt] = c[N // V * V + jt, 0] + s[0] * (
                    c[N // V * V + jt, 1] + c[N // V * V + jt, 3] * s[1]) + c[N // V * V + jt, 2] * s[1]

    return fwd


def backward_func(dtype: str = "float32", vecs: int = SAMPLE_VECS):
    """Backward ``(x, ca, cb, wa, wb, c, g, gx, partc, partw, gc, gwa, gwb)``, see the module docstring."""
    from tvm.script import tirx as T

    from .train_dense import VEC, _align, _transpose_macro

    V = VEC
    S = vecs
    TS = S * V
    al = _align(dtype)
    zero = 0.0
    transpose8 = _transpose_macro()
    tile_in = _tile_in_macro(dtype, vecs)
    gather = _gather_macro(dtype, TS)
    rowsum8 = _rowsum_macro()

    @T.macro
    def add_rowsums(pr, ws, part, p, q, j0):
        """``part[p, q, j0:j0+8] += `` the row sums of ``pr`` (8, 8)."""
        rowsum8(pr, ws)
        for jj in T.vectorized(V):
            part[p, q, j0 + jj] = part[p, q, j0 + jj] + ws[jj]

    @T.macro
    def add_rowsums_w(pr, ws, partw, p, q, k, j0):
        rowsum8(pr, ws)
        for jj in T.vectorized(V):
            partw[p, q, k, j0 + jj] = partw[p, q, k, j0 + jj] + ws[jj]

    @T.macro
    def neuron_blocks(ca, cb, wa, wb, c, g, partc, partw, xg, gr, tr, gt, at, bt, ga, gb, pr, ws, p, t, B, N, K,
                      full):
        """All whole blocks of 8 neurons for tile ``t``."""
        for jo in range(N // V):
            for h in T.unroll(S):
                for r in T.unroll(V):
                    for jj in T.vectorized(V):
                        if full:  # no row past the batch end: plain loads
                            gr[r, jj] = g[t * TS + h * V + r, jo * V + jj]
                        else:
                            gr[r, jj] = T.Select(t * TS + h * V + r < B, g[T.min(t * TS + h * V + r, B - 1),
                                                                           jo * V + jj], T.Cast(dtype, zero))
                transpose8(gr, tr)
                for jj in T.unroll(V):
                    for r in T.vectorized(V):
                        gt[jj, h * V + r] = tr[jj, r]
            for jj in T.unroll(V):
                gather(xg, ca, cb, wa, wb, at, bt, jj, jo * V + jj, K)
                for r in T.vectorized(TS):
                    ga[jj, r] = gt[jj, r] * (c[jo * V + jj, 1] + c[jo * V + jj, 3] * bt[jj, r])
                    gb[jj, r] = gt[jj, r] * (c[jo * V + jj, 2] + c[jo * V + jj, 3] * at[jj, r])
            for k in range(K):
                for jj in T.unroll(V):
                    for r in T.vectorized(V):
                        pr[jj, r] = ga[jj, r] * xg[ca[jo * V + jj, k], r]
                    for h in T.unroll(S - 1):
                        for r in T.vectorized(V):
                            pr[jj, r] = pr[jj, r] + ga[jj, (h + 1) * V + r] * xg[ca[jo * V + jj, k], (h + 1) * V + r]
                    for r in T.vectorized(TS):
                        xg[ca[jo * V + jj, k], TS + r] = xg[ca[jo * V + jj, k], TS + r] + wa[jo * V + jj, k] * ga[jj, r]
                add_rowsums_w(pr, ws, partw, p, 0, k, jo * V)
                for jj in T.unroll(V):
                    for r in T.vectorized(V):
                        pr[jj, r] = gb[jj, r] * xg[cb[jo * V + jj, k], r]
                    for h in T.unroll(S - 1):
                        for r in T.vectorized(V):
                            pr[jj, r] = pr[jj, r] + gb[jj, (h + 1) * V + r] * xg[cb[jo * V + jj, k], (h + 1) * V + r]
                    for r in T.vectorized(TS):
                        xg[cb[jo * V + jj, k], TS + r] = xg[cb[jo * V + jj, k], TS + r] + wb[jo * V + jj, k] * gb[jj, r]
                add_rowsums_w(pr, ws, partw, p, 1, k, jo * V)
            # coefficient sums over the tile's samples: g, g*a, g*b, g*a*b
            for jj in T.unroll(V):
                for r in T.vectorized(V):
                    pr[jj, r] = gt[jj, r]
                for h in T.unroll(S - 1):
                    for r in T.vectorized(V):
                        pr[jj, r] = pr[jj, r] + gt[jj, (h + 1) * V + r]
            add_rowsums(pr, ws, partc, p, 0, jo * V)
            for jj in T.unroll(V):
                for r in T.vectorized(V):
                    pr[jj, r] = gt[jj, r] * at[jj, r]
                for h in T.unroll(S - 1):
                    for r in T.vectorized(V):
                        pr[jj, r] = pr[jj, r] + gt[jj, (h + 1) * V + r] * at[jj, (h + 1) * V + r]
            add_rowsums(pr, ws, partc, p, 1, jo * V)
            for jj in T.unroll(V):
                for r in T.vectorized(V):
                    pr[jj, r] = gt[jj, r] * bt[jj, r]
                for h in T.unroll(S - 1):
                    for r in T.vectorized(V):
                        pr[jj, r] = pr[jj, r] + gt[jj, (h + 1) * V + r] * bt[jj, (h + 1) * V + r]
            add_rowsums(pr, ws, partc, p, 2, jo * V)
            for jj in T.unroll(V):
                for r in T.vectorized(V):
                    pr[jj, r] = gt[jj, r] * at[jj, r] * bt[jj, r]
                for h in T.unroll(S - 1):
                    for r in T.vectorized(V):
                        pr[jj, r] = pr[jj, r] + gt[jj, (h + 1) * V + r] * at[jj, (h + 1) * V + r] * bt[
                            jj, (h + 1) * V + r]
            add_rowsums(pr, ws, partc, p, 3, jo * V)

    @T.prim_func
    def bwd(x_h: T.handle, ca_h: T.handle, cb_h: T.handle, wa_h: T.handle, wb_h: T.handle, c_h: T.handle,
            g_h: T.handle, gx_h: T.handle, partc_h: T.handle, partw_h: T.handle, gc_h: T.handle, gwa_h: T.handle,
            gwb_h: T.handle):
        T.func_attr({"global_symbol": BWD, "tirx.noalias": True})
        B = T.int32()
        NI = T.int32()
        N = T.int32()
        K = T.int32()
        P = T.int32()
        x = T.match_buffer(x_h, (B, NI), dtype, align=al, offset_factor=1)
        ca = T.match_buffer(ca_h, (N, K), "int32", align=4, offset_factor=1)
        cb = T.match_buffer(cb_h, (N, K), "int32", align=4, offset_factor=1)
        wa = T.match_buffer(wa_h, (N, K), dtype, align=al, offset_factor=1)
        wb = T.match_buffer(wb_h, (N, K), dtype, align=al, offset_factor=1)
        c = T.match_buffer(c_h, (N, 4), dtype, align=al, offset_factor=1)
        g = T.match_buffer(g_h, (B, N), dtype, align=al, offset_factor=1)
        gx = T.match_buffer(gx_h, (B, NI), dtype, align=al, offset_factor=1)
        partc = T.match_buffer(partc_h, (P, 4, N), dtype, align=al, offset_factor=1)
        partw = T.match_buffer(partw_h, (P, 2, K, N), dtype, align=al, offset_factor=1)
        gc = T.match_buffer(gc_h, (N, 4), dtype, align=al, offset_factor=1)
        gwa = T.match_buffer(gwa_h, (N, K), dtype, align=al, offset_factor=1)
        gwb = T.match_buffer(gwb_h, (N, K), dtype, align=al, offset_factor=1)
        tiles = (B + TS - 1) // TS
        per = (tiles + P - 1) // P
        for p in T.parallel(P):
            xg = T.alloc_buffer((NI, 2 * TS), dtype)  # [i, 0:TS] inputs, [i, TS:2*TS] their gradients
            tr = T.alloc_buffer((V, V), dtype, scope="local")
            tt = T.alloc_buffer((V, V), dtype, scope="local")
            gr = T.alloc_buffer((V, V), dtype, scope="local")  # g rows: [sample, neuron]
            gt = T.alloc_buffer((V, TS), dtype, scope="local")  # transposed: [neuron, sample]
            at = T.alloc_buffer((V, TS), dtype, scope="local")
            bt = T.alloc_buffer((V, TS), dtype, scope="local")
            ga = T.alloc_buffer((V, TS), dtype, scope="local")
            gb = T.alloc_buffer((V, TS), dtype, scope="local")
            pr = T.alloc_buffer((V, V), dtype, scope="local")
            ws = T.alloc_buffer((V,), dtype, scope="local")
            s = T.alloc_buffer((4,), dtype, scope="local")  # tail neurons: a, b, g*(ca+cab*b), g*(cb+cab*a)
            for q, j in T.grid(4, N):
                partc[p, q, j] = T.Cast(dtype, zero)
            for q, k, j in T.grid(2, K, N):
                partw[p, q, k, j] = T.Cast(dtype, zero)
            for t in range(p * per, T.min(p * per + per, tiles)):
                tile_in(x, xg, tr, tt, t, B, NI, True)
                if t * TS + TS <= B:
                    neuron_blocks(ca, cb, wa, wb, c, g, partc, partw, xg, gr, tr, gt, at, bt, ga, gb, pr, ws, p, t,
                                  B, N, K, True)
                else:
                    neuron_blocks(ca, cb, wa, wb, c, g, partc, partw, xg, gr, tr, gt, at, bt, ga, gb, pr, ws, p, t,
                                  B, N, K, False)
                for jt, r in T.grid(N % V, T.min(TS, B - t * TS)):
                    s[0] = T.Cast(dtype, zero)
                    s[1] = T.Cast(dtype, zero)
                    for k in range(K):
                        s[0] = s[0] + wa[N // V * V + jt, k] * xg[ca[N // V * V + jt, k], r]
                        s[1] = s[1] + wb[N // V * V + jt, k] * xg[cb[N // V * V + jt, k], r]
                    partc[p, 0, N // V * V + jt] = partc[p, 0, N // V * V + jt] + g[t * TS + r, N // V * V + jt]
                    partc[p, 1, N // V * V + jt] = partc[p, 1, N // V * V + jt] + g[t * TS + r, N // V * V + jt] * s[0]
                    partc[p, 2, N // V * V + jt] = partc[p, 2, N // V * V + jt] + g[t * TS + r, N // V * V + jt] * s[1]
                    partc[p, 3, N // V * V + jt] = partc[p, 3, N // V * V + jt] + g[t * TS + r, N // V * V + jt] * s[
                        0] * s[1]
                    s[2] = g[t * TS + r, N // V * V + jt] * (c[N // V * V + jt, 1] + c[N // V * V + jt, 3] * s[1])
                    s[3] = g[t * TS + r, N // V * V + jt] * (c[N // V * V + jt, 2] + c[N // V * V + jt, 3] * s[0])
                    for k in range(K):
                        partw[p, 0, k, N // V * V + jt] = partw[p, 0, k, N // V * V + jt] + s[2] * xg[
                            ca[N // V * V + jt, k], r]
                        xg[ca[N // V * V + jt, k], TS + r] = xg[ca[N // V * V + jt, k], TS + r] + wa[
                            N // V * V + jt, k] * s[2]
                    for k in range(K):
                        partw[p, 1, k, N // V * V + jt] = partw[p, 1, k, N // V * V + jt] + s[3] * xg[
                            cb[N // V * V + jt, k], r]
                        xg[cb[N // V * V + jt, k], TS + r] = xg[cb[N // V * V + jt, k], TS + r] + wb[
                            N // V * V + jt, k] * s[3]
                for io in range(NI // V):
                    for h in T.unroll(S):
                        for ii in T.unroll(V):
                            for r in T.vectorized(V):
                                tr[ii, r] = xg[io * V + ii, TS + h * V + r]
                        transpose8(tr, tt)
                        for r in T.unroll(V):
                            if t * TS + h * V + r < B:
                                for ii in T.vectorized(V):
                                    gx[t * TS + h * V + r, io * V + ii] = tt[r, ii]
                for r, it in T.grid(T.min(TS, B - t * TS), NI % V):
                    gx[t * TS + r, NI // V * V + it] = xg[NI // V * V + it, TS + r]
        for j in T.parallel(N):
            for q in T.unroll(4):
                gc[j, q] = partc[0, q, j]
                for pp in range(1, P):
                    gc[j, q] = gc[j, q] + partc[pp, q, j]
            for k in range(K):
                gwa[j, k] = partw[0, 0, k, j]
                gwb[j, k] = partw[0, 1, k, j]
                for pp in range(1, P):
                    gwa[j, k] = gwa[j, k] + partw[pp, 0, k, j]
                    gwb[j, k] = gwb[j, k] + partw[pp, 1, k, j]

    return bwd


def cpu_module(dtype: str = "float32", vecs: int = SAMPLE_VECS):
    """IRModule with the CPU forward (:data:`FWD`) and backward (:data:`BWD`) for ``dtype``, on tiles
    of ``8 * vecs`` samples (the caller must use the same tile when it counts tasks)."""
    import tvm

    return tvm.IRModule({FWD: forward_func(dtype, vecs), BWD: backward_func(dtype, vecs)})
