"""TVM kernels for training a dense logic layer on the 4-coefficient basis.

The layer (see ``lgn_nas.layers.functional.logic_dense``): ``x`` (B, NI), wiring ``ia``, ``ib``
(N,), coefficients ``c`` (N, 4) = (c1, ca, cb, cab); ``out[b, j] = c1 + ca*a + cb*b + cab*a*b`` with
``a = x[b, ia[j]]``, ``b = x[b, ib[j]]``. The tensors cross the boundary batch-major, as torch holds
them (no transposes by the caller), and ``c`` in the layer's own (N, 4) layout.

Every shape is symbolic, so one compiled module serves every layer size and batch size (tests and
the last short batch of an epoch never trigger new compiles); only the dtype and the target are
compile-time constants.

CPU kernels (LLVM): batch tiles, feature-major inside
--------------------------------------------------------

In batch-major memory every gathered input and every scattered input gradient is one element of a
different cache line of a 64 KB row (16,000 features): the kernels were bound by L1 misses, not by
arithmetic (measured: about two cycles per gathered element whether scalarised or with hardware
gathers). So both kernels work on tiles of ``TILE`` = 8 samples and transpose each tile to
feature-major in a per-task workspace: ``xg[i, 0:8]`` holds input ``i`` of the 8 samples and (in the
backward) ``xg[i, 8:16]`` its gradient, one 64-byte line per input. Gathering ``a``, ``b`` for a
neuron is then one vector load for 8 samples, and the input-gradient "scatter" is one vector
read-modify-write of the same line. Tiles are split among ``P`` parallel tasks; within a task
neurons run in order, so repeated indices (one input feeding many neurons, or ``ia[j] == ib[j]``)
add sequentially: no atomics, no races, nothing lost. The 8 x 8 transposes (input tile in, output
or gradient tile out, and between the sample and neuron orientations in the middle) are
shuffle networks (``T.Shuffle``) on registers. Rows past the batch end are read as zeros and never
stored.

* :data:`FWD` ``(x, ia, ib, c, out)``: per tile, transpose ``x`` in; per block of 8 neurons
  evaluate the 8 x 8 outputs in the sample orientation, transpose, store 8 row vectors.
* :data:`BWD` ``(x, ia, ib, c, g, gx, part, gc)``: per tile, transpose ``x`` in (gradient half
  zeroed); per block of 8 neurons load the 8 ``g`` row vectors, transpose them, update the input
  gradients of both operands in ``xg``, and transpose ``a``, ``b`` back to the neuron orientation
  to accumulate the coefficient sums ``g, g*a, g*b, g*a*b`` per neuron into the task's partial
  sums ``part[p, k, j]``; finally transpose the gradient half out into ``gx``. A second parallel
  loop sums the ``P`` partial sums into ``gc`` (N, 4), the coefficients' layout. ``gx``, ``part``
  and ``gc`` are fully written by the kernel (pass ``torch.empty``); ``part`` is scratch, (P, 4, N)
  with ``P`` = the number of tasks (a runtime size).

Buffers are declared with element alignment only (``align`` = item size), so misaligned views are
safe; indices are int32 and must be validated by the caller (no bounds checks inside).

CUDA (``cuda_module``): the same formulas with thread binding: forward one thread per output;
coefficient sums one thread per (neuron, coefficient) looping over the batch; input gradients as a
gather over an inverse index (CSR of each input's consumers, computed once per wiring), one thread
per (sample, input), so no atomics are needed either.
"""
from __future__ import annotations

from typing import Any

__all__ = ["VEC", "TILE", "KERNEL_VERSION", "dense_forward_func", "dense_backward_func", "cpu_module", "cuda_module",
           "FWD", "BWD", "CUDA_FWD", "CUDA_COEF", "CUDA_GX"]

VEC = 8  # neurons / features per vector (AVX2 8 x float32; LLVM splits float64 into two registers)
TILE = 8  # samples per tile (= VEC: the in-register transposes are square)
KERNEL_VERSION = 4  # bump when the kernels change (part of the on-disk cache key)

FWD = "lgn_dense_fwd"
BWD = "lgn_dense_bwd"
CUDA_FWD = "lgn_dense_fwd_cuda"
CUDA_COEF = "lgn_dense_coef_cuda"
CUDA_GX = "lgn_dense_gx_cuda"


def _align(dtype: str) -> int:
    return 8 if dtype == "float64" else 4


def _transpose_macro():
    """``transpose8(src, dst)``: ``dst[i, :] = src[:, i]`` for (8, 8) local buffers, as a 3-stage
    shuffle network (unpack pairs, interleave 64-bit pairs, swap 128-bit halves): 24 shuffles."""
    from tvm.script import tirx as T

    @T.macro
    def transpose8(src, dst):
        v0 = src[0, T.Ramp(0, 1, 8)]
        v1 = src[1, T.Ramp(0, 1, 8)]
        v2 = src[2, T.Ramp(0, 1, 8)]
        v3 = src[3, T.Ramp(0, 1, 8)]
        v4 = src[4, T.Ramp(0, 1, 8)]
        v5 = src[5, T.Ramp(0, 1, 8)]
        v6 = src[6, T.Ramp(0, 1, 8)]
        v7 = src[7, T.Ramp(0, 1, 8)]
        t0 = T.Shuffle([v0, v1], [0, 8, 1, 9, 4, 12, 5, 13])
        t1 = T.Shuffle([v0, v1], [2, 10, 3, 11, 6, 14, 7, 15])
        t2 = T.Shuffle([v2, v3], [0, 8, 1, 9, 4, 12, 5, 13])
        t3 = T.Shuffle([v2, v3], [2, 10, 3, 11, 6, 14, 7, 15])
        t4 = T.Shuffle([v4, v5], [0, 8, 1, 9, 4, 12, 5, 13])
        t5 = T.Shuffle([v4, v5], [2, 10, 3, 11, 6, 14, 7, 15])
        t6 = T.Shuffle([v6, v7], [0, 8, 1, 9, 4, 12, 5, 13])
        t7 = T.Shuffle([v6, v7], [2, 10, 3, 11, 6, 14, 7, 15])
        s0 = T.Shuffle([t0, t2], [0, 1, 8, 9, 4, 5, 12, 13])
        s1 = T.Shuffle([t0, t2], [2, 3, 10, 11, 6, 7, 14, 15])
        s2 = T.Shuffle([t1, t3], [0, 1, 8, 9, 4, 5, 12, 13])
        s3 = T.Shuffle([t1, t3], [2, 3, 10, 11, 6, 7, 14, 15])
        s4 = T.Shuffle([t4, t6], [0, 1, 8, 9, 4, 5, 12, 13])
        s5 = T.Shuffle([t4, t6], [2, 3, 10, 11, 6, 7, 14, 15])
        s6 = T.Shuffle([t5, t7], [0, 1, 8, 9, 4, 5, 12, 13])
        s7 = T.Shuffle([t5, t7], [2, 3, 10, 11, 6, 7, 14, 15])
        dst[0, T.Ramp(0, 1, 8)] = T.Shuffle([s0, s4], [0, 1, 2, 3, 8, 9, 10, 11])
        dst[1, T.Ramp(0, 1, 8)] = T.Shuffle([s1, s5], [0, 1, 2, 3, 8, 9, 10, 11])
        dst[2, T.Ramp(0, 1, 8)] = T.Shuffle([s2, s6], [0, 1, 2, 3, 8, 9, 10, 11])
        dst[3, T.Ramp(0, 1, 8)] = T.Shuffle([s3, s7], [0, 1, 2, 3, 8, 9, 10, 11])
        dst[4, T.Ramp(0, 1, 8)] = T.Shuffle([s0, s4], [4, 5, 6, 7, 12, 13, 14, 15])
        dst[5, T.Ramp(0, 1, 8)] = T.Shuffle([s1, s5], [4, 5, 6, 7, 12, 13, 14, 15])
        dst[6, T.Ramp(0, 1, 8)] = T.Shuffle([s2, s6], [4, 5, 6, 7, 12, 13, 14, 15])
        dst[7, T.Ramp(0, 1, 8)] = T.Shuffle([s3, s7], [4, 5, 6, 7, 12, 13, 14, 15])

    return transpose8


def _tile_in_macro(dtype: str):
    """``tile_in(x, xg, tr, tt, t, zero_grad)``: rows ``8t .. 8t+7`` of ``x`` (zeros past the end)
    into ``xg[:, 0:8]``, feature-major; with ``zero_grad`` also ``xg[:, 8:16] = 0``."""
    from tvm.script import tirx as T

    V = VEC
    transpose8 = _transpose_macro()
    zero = 0.0

    @T.macro
    def tile_in(x, xg, tr, tt, t, B, NI, zero_grad):
        for io in range(NI // V):
            for r in T.unroll(V):
                for ii in T.vectorized(V):
                    tr[r, ii] = T.Select(t * V + r < B, x[T.min(t * V + r, B - 1), io * V + ii], T.Cast(dtype, zero))
            transpose8(tr, tt)
            for ii in T.unroll(V):
                for r in T.vectorized(V):
                    xg[io * V + ii, r] = tt[ii, r]
                if zero_grad:
                    for r in T.vectorized(V):
                        xg[io * V + ii, V + r] = T.Cast(dtype, zero)
        for it, r in T.grid(NI % V, V):
            xg[NI // V * V + it, r] = T.Select(t * V + r < B, x[T.min(t * V + r, B - 1), NI // V * V + it],
                                               T.Cast(dtype, zero))
            if zero_grad:
                xg[NI // V * V + it, V + r] = T.Cast(dtype, zero)

    return tile_in


def dense_forward_func(dtype: str = "float32"):
    """Forward ``(x, ia, ib, c, out)`` on batch tiles, see the module docstring."""
    from tvm.script import tirx as T

    V = VEC
    al = _align(dtype)
    transpose8 = _transpose_macro()
    tile_in = _tile_in_macro(dtype)

    @T.prim_func
    def fwd(x_h: T.handle, ia_h: T.handle, ib_h: T.handle, c_h: T.handle, out_h: T.handle):
        T.func_attr({"global_symbol": FWD, "tirx.noalias": True})
        B = T.int32()
        NI = T.int32()
        N = T.int32()
        x = T.match_buffer(x_h, (B, NI), dtype, align=al, offset_factor=1)
        ia = T.match_buffer(ia_h, (N,), "int32", align=4, offset_factor=1)
        ib = T.match_buffer(ib_h, (N,), "int32", align=4, offset_factor=1)
        c = T.match_buffer(c_h, (N, 4), dtype, align=al, offset_factor=1)
        out = T.match_buffer(out_h, (B, N), dtype, align=al, offset_factor=1)
        for t in T.parallel((B + V - 1) // V):
            xg = T.alloc_buffer((NI, V), dtype)
            # "global" scratch under 1 KB is a stack array (registers); "local" would be a workspace
            tr = T.alloc_buffer((V, V), dtype, scope="global")
            tt = T.alloc_buffer((V, V), dtype, scope="global")
            ot = T.alloc_buffer((V, V), dtype, scope="global")
            orow = T.alloc_buffer((V, V), dtype, scope="global")
            tile_in(x, xg, tr, tt, t, B, NI, False)
            for jo in range(N // V):
                for jj in T.unroll(V):
                    for r in T.vectorized(V):
                        ot[jj, r] = c[jo * V + jj, 0] + xg[ia[jo * V + jj], r] * (
                            c[jo * V + jj, 1] + c[jo * V + jj, 3] * xg[ib[jo * V + jj], r]) + c[jo * V + jj, 2] * xg[
                            ib[jo * V + jj], r]
                transpose8(ot, orow)
                for r in T.unroll(V):
                    if t * V + r < B:
                        for jj in T.vectorized(V):
                            out[t * V + r, jo * V + jj] = orow[r, jj]
            for jt, r in T.grid(N % V, T.min(V, B - t * V)):
                out[t * V + r, N // V * V + jt] = c[N // V * V + jt, 0] + xg[ia[N // V * V + jt], r] * (
                    c[N // V * V + jt, 1] + c[N // V * V + jt, 3] * xg[ib[N // V * V + jt], r]) + c[
                    N // V * V + jt, 2] * xg[ib[N // V * V + jt], r]

    return fwd


def dense_backward_func(dtype: str = "float32"):
    """Backward ``(x, ia, ib, c, g, gx, part, gc)`` on batch tiles, see the module docstring."""
    from tvm.script import tirx as T

    V = VEC
    al = _align(dtype)
    zero = 0.0
    transpose8 = _transpose_macro()
    tile_in = _tile_in_macro(dtype)

    @T.macro
    def neuron_blocks(x, ia, ib, c, g, part, xg, gr, gt, at, bt, ar, br, acc, p, t, B, N, full):
        """All whole blocks of 8 neurons for tile ``t``: input gradients into ``xg[:, 8:16]``,
        coefficient sums into ``part[p]``."""
        for jo in range(N // V):
            for r in T.unroll(V):
                for jj in T.vectorized(V):
                    if full:  # no row past the batch end: plain loads
                        gr[r, jj] = g[t * V + r, jo * V + jj]
                    else:
                        gr[r, jj] = T.Select(t * V + r < B, g[T.min(t * V + r, B - 1), jo * V + jj],
                                             T.Cast(dtype, zero))
            transpose8(gr, gt)
            for jj in T.unroll(V):
                for r in T.vectorized(V):
                    at[jj, r] = xg[ia[jo * V + jj], r]
                    bt[jj, r] = xg[ib[jo * V + jj], r]
                for r in T.vectorized(V):
                    xg[ia[jo * V + jj], V + r] = xg[ia[jo * V + jj], V + r] + gt[jj, r] * (
                        c[jo * V + jj, 1] + c[jo * V + jj, 3] * bt[jj, r])
                for r in T.vectorized(V):
                    xg[ib[jo * V + jj], V + r] = xg[ib[jo * V + jj], V + r] + gt[jj, r] * (
                        c[jo * V + jj, 2] + c[jo * V + jj, 3] * at[jj, r])
            transpose8(at, ar)
            transpose8(bt, br)
            for k in T.unroll(4):
                for jj in T.vectorized(V):
                    acc[k, jj] = part[p, k, jo * V + jj]
            for r in T.unroll(V):
                for jj in T.vectorized(V):
                    acc[0, jj] = acc[0, jj] + gr[r, jj]
                    acc[1, jj] = acc[1, jj] + gr[r, jj] * ar[r, jj]
                    acc[2, jj] = acc[2, jj] + gr[r, jj] * br[r, jj]
                    acc[3, jj] = acc[3, jj] + gr[r, jj] * ar[r, jj] * br[r, jj]
            for k in T.unroll(4):
                for jj in T.vectorized(V):
                    part[p, k, jo * V + jj] = acc[k, jj]

    @T.prim_func
    def bwd(x_h: T.handle, ia_h: T.handle, ib_h: T.handle, c_h: T.handle, g_h: T.handle, gx_h: T.handle,
            part_h: T.handle, gc_h: T.handle):
        T.func_attr({"global_symbol": BWD, "tirx.noalias": True})
        B = T.int32()
        NI = T.int32()
        N = T.int32()
        P = T.int32()
        x = T.match_buffer(x_h, (B, NI), dtype, align=al, offset_factor=1)
        ia = T.match_buffer(ia_h, (N,), "int32", align=4, offset_factor=1)
        ib = T.match_buffer(ib_h, (N,), "int32", align=4, offset_factor=1)
        c = T.match_buffer(c_h, (N, 4), dtype, align=al, offset_factor=1)
        g = T.match_buffer(g_h, (B, N), dtype, align=al, offset_factor=1)
        gx = T.match_buffer(gx_h, (B, NI), dtype, align=al, offset_factor=1)
        part = T.match_buffer(part_h, (P, 4, N), dtype, align=al, offset_factor=1)
        gc = T.match_buffer(gc_h, (N, 4), dtype, align=al, offset_factor=1)
        tiles = (B + V - 1) // V
        per = (tiles + P - 1) // P
        for p in T.parallel(P):
            xg = T.alloc_buffer((NI, 2 * V), dtype)  # [i, 0:8] inputs, [i, 8:16] their gradients
            # "global" scratch under 1 KB is a stack array (registers); "local" would be a workspace
            tr = T.alloc_buffer((V, V), dtype, scope="global")
            tt = T.alloc_buffer((V, V), dtype, scope="global")
            gr = T.alloc_buffer((V, V), dtype, scope="global")  # g rows: [sample, neuron]
            gt = T.alloc_buffer((V, V), dtype, scope="global")  # transposed: [neuron, sample]
            at = T.alloc_buffer((V, V), dtype, scope="global")
            bt = T.alloc_buffer((V, V), dtype, scope="global")
            ar = T.alloc_buffer((V, V), dtype, scope="global")
            br = T.alloc_buffer((V, V), dtype, scope="global")
            acc = T.alloc_buffer((4, V), dtype, scope="global")
            for k, jo in T.grid(4, N // V):
                for jj in T.vectorized(V):
                    part[p, k, jo * V + jj] = T.Cast(dtype, zero)
            for k, jt in T.grid(4, N % V):
                part[p, k, N // V * V + jt] = T.Cast(dtype, zero)
            for t in range(p * per, T.min(p * per + per, tiles)):
                tile_in(x, xg, tr, tt, t, B, NI, True)
                if t * V + V <= B:
                    neuron_blocks(x, ia, ib, c, g, part, xg, gr, gt, at, bt, ar, br, acc, p, t, B, N, True)
                else:
                    neuron_blocks(x, ia, ib, c, g, part, xg, gr, gt, at, bt, ar, br, acc, p, t, B, N, False)
                for jt, r in T.grid(N % V, T.min(V, B - t * V)):
                    part[p, 0, N // V * V + jt] = part[p, 0, N // V * V + jt] + g[t * V + r, N // V * V + jt]
                    part[p, 1, N // V * V + jt] = part[p, 1, N // V * V + jt] + g[t * V + r, N // V * V + jt] * xg[
                        ia[N // V * V + jt], r]
                    part[p, 2, N // V * V + jt] = part[p, 2, N // V * V + jt] + g[t * V + r, N // V * V + jt] * xg[
                        ib[N // V * V + jt], r]
                    part[p, 3, N // V * V + jt] = part[p, 3, N // V * V + jt] + g[t * V + r, N // V * V + jt] * xg[
                        ia[N // V * V + jt], r] * xg[ib[N // V * V + jt], r]
                    xg[ia[N // V * V + jt], V + r] = xg[ia[N // V * V + jt], V + r] + g[t * V + r, N // V * V + jt] * (
                        c[N // V * V + jt, 1] + c[N // V * V + jt, 3] * xg[ib[N // V * V + jt], r])
                    xg[ib[N // V * V + jt], V + r] = xg[ib[N // V * V + jt], V + r] + g[t * V + r, N // V * V + jt] * (
                        c[N // V * V + jt, 2] + c[N // V * V + jt, 3] * xg[ia[N // V * V + jt], r])
                for io in range(NI // V):
                    for ii in T.unroll(V):
                        for r in T.vectorized(V):
                            tr[ii, r] = xg[io * V + ii, V + r]
                    transpose8(tr, tt)
                    for r in T.unroll(V):
                        if t * V + r < B:
                            for ii in T.vectorized(V):
                                gx[t * V + r, io * V + ii] = tt[r, ii]
                for r, it in T.grid(T.min(V, B - t * V), NI % V):
                    gx[t * V + r, NI // V * V + it] = xg[NI // V * V + it, V + r]
        for j in T.parallel(N):
            for k in T.unroll(4):
                gc[j, k] = part[0, k, j]
                for q in range(1, P):
                    gc[j, k] = gc[j, k] + part[q, k, j]

    return bwd


def cpu_module(dtype: str = "float32"):
    """IRModule with the CPU forward (:data:`FWD`) and backward (:data:`BWD`) for ``dtype``."""
    import tvm

    return tvm.IRModule({FWD: dense_forward_func(dtype), BWD: dense_backward_func(dtype)})


# --------------------------------------------------------------------------------------------- CUDA

def cuda_module(dtype: str = "float32", threads: int = 256, serial: bool = False):
    """IRModule with the CUDA kernels (thread-bound ``s_tir`` schedules).

    ``c`` and ``gc`` are (N, 4), as on the CPU.

    * :data:`CUDA_FWD` ``(x, ia, ib, c, out)``: the forward block, one thread per output.
    * :data:`CUDA_COEF` ``(x, ia, ib, g, gc)``: ``gc[j, k]`` = batch sums of ``g, g*a, g*b, g*a*b``,
      one thread per (neuron, coefficient) with the batch reduction inside it.
    * :data:`CUDA_GX` ``(x, c, g, ptr, cj, cp, crole, gx)``: input gradients as a gather over the
      inverse index: input ``i``'s consumers are ``ptr[i]:ptr[i+1]``, each with its neuron ``cj``,
      the partner input ``cp`` and ``crole`` (1 if ``i`` is the neuron's ``a``, 2 if its ``b``).

    ``serial=True`` leaves the thread loops as plain loops: the same kernels for an LLVM target, so
    tests can check their values on a machine without a GPU.
    """
    import tvm
    from tvm import s_tir, te
    from tvm.script import tirx as T

    def bind(sch, loop, tag):
        if not serial:
            sch.bind(loop, tag)

    def thread_loop(extent, tag):
        return T.serial(extent) if serial else T.thread_binding(extent, thread=tag)

    B, NI, N = te.var("B"), te.var("NI"), te.var("N")
    x = te.placeholder((B, NI), dtype, name="x")
    ia = te.placeholder((N,), "int32", name="ia")
    ib = te.placeholder((N,), "int32", name="ib")
    c = te.placeholder((N, 4), dtype, name="c")
    g = te.placeholder((B, N), dtype, name="g")

    def fwd_body(b, j):
        a, bb = x[b, ia[j]], x[b, ib[j]]
        return c[j, 0] + a * (c[j, 1] + c[j, 3] * bb) + c[j, 2] * bb

    out = te.compute((B, N), fwd_body, name="out")
    sch = s_tir.Schedule(te.create_prim_func([x, ia, ib, c, out]))
    fused = sch.fuse(*sch.get_loops(sch.get_sblock("out")))
    bx, tx = sch.split(fused, factors=[None, threads])
    bind(sch, bx, "blockIdx.x")
    bind(sch, tx, "threadIdx.x")
    fwd = sch.mod["main"].with_attr("global_symbol", CUDA_FWD)

    rb = te.reduce_axis((0, B), name="rb")
    one = tvm.tirx.const(1, dtype)

    def coef_body(j, k):
        a, bb = x[rb, ia[j]], x[rb, ib[j]]
        fa = tvm.tirx.Select(k % 2 == 1, a, one)
        fb = tvm.tirx.Select(k >= 2, bb, one)
        return te.sum(g[rb, j] * fa * fb, axis=rb)

    gc = te.compute((N, 4), coef_body, name="gc")
    sch = s_tir.Schedule(te.create_prim_func([x, ia, ib, g, gc]))
    j, k, _ = sch.get_loops(sch.get_sblock("gc"))
    fused = sch.fuse(j, k)
    bx, tx = sch.split(fused, factors=[None, threads])
    bind(sch, bx, "blockIdx.x")
    bind(sch, tx, "threadIdx.x")
    coef = sch.mod["main"].with_attr("global_symbol", CUDA_COEF)

    @T.prim_func
    def gx_func(x_h: T.handle, c_h: T.handle, g_h: T.handle, ptr_h: T.handle, cj_h: T.handle, cp_h: T.handle,
                crole_h: T.handle, gx_h: T.handle):
        T.func_attr({"global_symbol": CUDA_GX, "tirx.noalias": True})
        Bv = T.int32()
        NIv = T.int32()
        Nv = T.int32()
        E = T.int32()
        xb = T.match_buffer(x_h, (Bv, NIv), dtype, offset_factor=1)
        cb = T.match_buffer(c_h, (Nv, 4), dtype, offset_factor=1)
        gb = T.match_buffer(g_h, (Bv, Nv), dtype, offset_factor=1)
        ptr = T.match_buffer(ptr_h, (NIv + 1,), "int32", offset_factor=1)
        cj = T.match_buffer(cj_h, (E,), "int32", offset_factor=1)
        cp = T.match_buffer(cp_h, (E,), "int32", offset_factor=1)
        crole = T.match_buffer(crole_h, (E,), "int32", offset_factor=1)
        gx = T.match_buffer(gx_h, (Bv, NIv), dtype, offset_factor=1)
        for bx in thread_loop((Bv * NIv + threads - 1) // threads, "blockIdx.x"):
            for tx in thread_loop(threads, "threadIdx.x"):
                acc = T.alloc_buffer((1,), dtype, scope="local")
                if bx * threads + tx < Bv * NIv:
                    acc[0] = T.Cast(dtype, 0)
                    for e in range(ptr[(bx * threads + tx) % NIv], ptr[(bx * threads + tx) % NIv + 1]):
                        acc[0] = acc[0] + gb[(bx * threads + tx) // NIv, cj[e]] * (
                            cb[cj[e], crole[e]] + cb[cj[e], 3] * xb[(bx * threads + tx) // NIv, cp[e]])
                    gx[(bx * threads + tx) // NIv, (bx * threads + tx) % NIv] = acc[0]

    return tvm.IRModule({CUDA_FWD: fwd, CUDA_COEF: coef, CUDA_GX: gx_func})


def build(mod: Any, target: dict):
    """``tvm.compile`` with the settings these kernels want."""
    import tvm

    return tvm.compile(mod, target=target)
