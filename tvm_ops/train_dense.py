"""TVM kernels for training a dense logic layer on the 4-coefficient basis.

The layer (see ``lgn_nas.layers.functional.logic_dense``): ``x`` (B, NI), wiring ``ia``, ``ib``
(N,), coefficients ``c`` (N, 4) = (c1, ca, cb, cab); ``out[b, j] = c1 + ca*a + cb*b + cab*a*b`` with
``a = x[b, ia[j]]``, ``b = x[b, ib[j]]``. Batch-major layout, as torch holds the tensors: no
transposes at the boundary.

Every shape is symbolic, so one compiled module serves every layer size and batch size (tests and
the last short batch of an epoch never trigger new compiles); only the dtype and the target are
compile-time constants.

CPU kernels (LLVM):

* ``dense_fwd``: parallel over samples; inside a sample, 8 neurons per vector: gather both inputs
  from the sample's row (which stays in L1/L2), three multiply-adds, contiguous store. The main part
  is a scheduled ``s_tir`` block (``parallel(b)``, ``vectorize(ji)``) and a scalar tail block handles
  ``N % 8`` neurons, so no predicated vector loop is left for the vectoriser to give up on.
* ``dense_bwd``: a single pass over ``grad_out`` that re-gathers ``a`` and ``b`` (nothing gathered is
  stored between the passes). The batch is split into ``P`` chunks of rows (``P`` = threads, a
  runtime argument), one parallel task each. Per row, vectorised over neurons, it accumulates
  ``g, g*a, g*b, g*a*b`` into the chunk's partial sums ``part[p, k, j]`` (contiguous, summed over the
  chunks by the caller: ``P * 4 * N`` floats), and writes the input-gradient terms ``g*(ca + cab*b)``
  and ``g*(cb + cab*a)`` to a per-task vector buffer; a scalar loop then scatter-adds them into the
  row of ``grad_x``. A row belongs to exactly one task and its scatter is sequential, so duplicated
  indices (one input feeding many neurons, or ``ia[j] == ib[j]``) are summed race-free and without
  atomics; the vector lanes never scatter (two lanes with one index would lose an update).
  ``grad_x`` and ``part`` are zeroed by the kernel (pass ``torch.empty``).

Buffers are declared with element alignment only (``align`` = item size), so misaligned views are
safe; indices are int32 and must be validated by the caller (no bounds checks inside).

CUDA (``cuda_module``): the same formulas with thread binding: forward one thread per output;
coefficient sums one thread per (neuron, coefficient) looping over the batch; input gradients as a
gather over an inverse index (CSR of each input's consumers, computed once per wiring), one thread
per (sample, input), so no atomics are needed either.
"""
from __future__ import annotations

from typing import Any

__all__ = ["VEC", "FWD_ROWS", "BWD_ROWS", "KERNEL_VERSION", "dense_forward_func", "dense_backward_func", "cpu_module", "cuda_module",
           "FWD", "BWD", "CUDA_FWD", "CUDA_COEF", "CUDA_GX"]

FWD_ROWS = 4  # forward: samples per block, sharing the loads of coefficients and indices
BWD_ROWS = 1  # backward: samples per block (larger blocks measured slower here: register pressure)
VEC = 8  # neurons per vector (AVX2: 8 x float32; LLVM splits float64 into two registers)
KERNEL_VERSION = 1  # bump when the kernels change (part of the on-disk cache key)

FWD = "lgn_dense_fwd"
BWD = "lgn_dense_bwd"
CUDA_FWD = "lgn_dense_fwd_cuda"
CUDA_COEF = "lgn_dense_coef_cuda"
CUDA_GX = "lgn_dense_gx_cuda"


def _align(dtype: str) -> int:
    return 8 if dtype == "float64" else 4


def dense_forward_func(dtype: str = "float32"):
    """Unscheduled forward ``(x, ia, ib, c, out)``, ``c`` transposed (4, N): a main block over whole
    vectors of neurons and a tail block for the last ``N % VEC``."""
    from tvm.script import tirx as T

    V = VEC
    al = _align(dtype)

    @T.macro
    def body(x, ia, ib, c, out, b, j):
        out[b, j] = c[0, j] + x[b, ia[j]] * (c[1, j] + c[3, j] * x[b, ib[j]]) + c[2, j] * x[b, ib[j]]

    @T.prim_func(s_tir=True)
    def fwd(x_h: T.handle, ia_h: T.handle, ib_h: T.handle, c_h: T.handle, out_h: T.handle):
        T.func_attr({"global_symbol": FWD, "tirx.noalias": True})
        B = T.int32()
        NI = T.int32()
        N = T.int32()
        x = T.match_buffer(x_h, (B, NI), dtype, align=al, offset_factor=1)
        ia = T.match_buffer(ia_h, (N,), "int32", align=4, offset_factor=1)
        ib = T.match_buffer(ib_h, (N,), "int32", align=4, offset_factor=1)
        c = T.match_buffer(c_h, (4, N), dtype, align=al, offset_factor=1)
        out = T.match_buffer(out_h, (B, N), dtype, align=al, offset_factor=1)
        for b, jo, ji in T.grid(B, N // V, V):
            with T.sblock("main"):
                vb, vjo, vji = T.axis.remap("SSS", [b, jo, ji])
                body(x, ia, ib, c, out, vb, vjo * V + vji)
        for b, jt in T.grid(B, N % V):
            with T.sblock("tail"):
                vb, vjt = T.axis.remap("SS", [b, jt])
                body(x, ia, ib, c, out, vb, N // V * V + vjt)

    return fwd


def dense_backward_func(dtype: str = "float32", rows_per_block: int = BWD_ROWS):
    """Hand-scheduled single-pass backward ``(x, ia, ib, c, g, gx, part)``, see the module docstring.

    ``c`` is transposed, (4, N). The scatter of the input gradients is not an affine block, so this
    kernel is written with its loop kinds (parallel chunks, unrolled row blocks, vectorised neuron
    lanes, sequential scatter) in TIR directly. A block of ``rows_per_block`` rows shares one load and
    store of the partial sums and of the coefficients per vector of neurons.
    """
    from tvm.script import tirx as T

    V = VEC
    R = rows_per_block
    al = _align(dtype)
    zero = 0.0

    @T.prim_func
    def bwd(x_h: T.handle, ia_h: T.handle, ib_h: T.handle, c_h: T.handle, g_h: T.handle, gx_h: T.handle,
            part_h: T.handle):
        T.func_attr({"global_symbol": BWD, "tirx.noalias": True})
        B = T.int32()
        NI = T.int32()
        N = T.int32()
        P = T.int32()
        x = T.match_buffer(x_h, (B, NI), dtype, align=al, offset_factor=1)
        ia = T.match_buffer(ia_h, (N,), "int32", align=4, offset_factor=1)
        ib = T.match_buffer(ib_h, (N,), "int32", align=4, offset_factor=1)
        c = T.match_buffer(c_h, (4, N), dtype, align=al, offset_factor=1)
        g = T.match_buffer(g_h, (B, N), dtype, align=al, offset_factor=1)
        gx = T.match_buffer(gx_h, (B, NI), dtype, align=al, offset_factor=1)
        part = T.match_buffer(part_h, (P, 4, N), dtype, align=al, offset_factor=1)
        rows = (B + P - 1) // P
        for p in T.parallel(P):
            av = T.alloc_buffer((R, V), dtype, scope="local")
            bv = T.alloc_buffer((R, V), dtype, scope="local")
            ta = T.alloc_buffer((R, V), dtype, scope="local")
            tb = T.alloc_buffer((R, V), dtype, scope="local")
            acc = T.alloc_buffer((4, V), dtype, scope="local")
            r0 = p * rows
            nr = T.max(T.min(rows, B - r0), 0)
            for k, jo in T.grid(4, N // V):
                for ji in T.vectorized(V):
                    part[p, k, jo * V + ji] = T.Cast(dtype, zero)
            for k, jt in T.grid(4, N % V):
                part[p, k, N // V * V + jt] = T.Cast(dtype, zero)
            for r, io in T.grid(nr, NI // V):
                for ii in T.vectorized(V):
                    gx[r0 + r, io * V + ii] = T.Cast(dtype, zero)
            for r, it in T.grid(nr, NI % V):
                gx[r0 + r, NI // V * V + it] = T.Cast(dtype, zero)
            for blk in range((nr + R - 1) // R):
                for jo in range(N // V):
                    for k in T.unroll(4):
                        for ji in T.vectorized(V):
                            acc[k, ji] = part[p, k, jo * V + ji]
                    for r in T.unroll(R):
                        if blk * R + r < nr:
                            for ji in T.vectorized(V):
                                av[r, ji] = x[r0 + blk * R + r, ia[jo * V + ji]]
                                bv[r, ji] = x[r0 + blk * R + r, ib[jo * V + ji]]
                                acc[0, ji] = acc[0, ji] + g[r0 + blk * R + r, jo * V + ji]
                                acc[1, ji] = acc[1, ji] + g[r0 + blk * R + r, jo * V + ji] * av[r, ji]
                                acc[2, ji] = acc[2, ji] + g[r0 + blk * R + r, jo * V + ji] * bv[r, ji]
                                acc[3, ji] = acc[3, ji] + g[r0 + blk * R + r, jo * V + ji] * av[r, ji] * bv[r, ji]
                                ta[r, ji] = g[r0 + blk * R + r, jo * V + ji] * (
                                    c[1, jo * V + ji] + c[3, jo * V + ji] * bv[r, ji])
                                tb[r, ji] = g[r0 + blk * R + r, jo * V + ji] * (
                                    c[2, jo * V + ji] + c[3, jo * V + ji] * av[r, ji])
                            for ji in range(V):
                                gx[r0 + blk * R + r, ia[jo * V + ji]] = gx[r0 + blk * R + r, ia[jo * V + ji]] + ta[r, ji]
                                gx[r0 + blk * R + r, ib[jo * V + ji]] = gx[r0 + blk * R + r, ib[jo * V + ji]] + tb[r, ji]
                    for k in T.unroll(4):
                        for ji in T.vectorized(V):
                            part[p, k, jo * V + ji] = acc[k, ji]
                for r, jt in T.grid(T.min(R, nr - blk * R), N % V):
                    j = N // V * V + jt
                    row = r0 + blk * R + r
                    part[p, 0, j] = part[p, 0, j] + g[row, j]
                    part[p, 1, j] = part[p, 1, j] + g[row, j] * x[row, ia[j]]
                    part[p, 2, j] = part[p, 2, j] + g[row, j] * x[row, ib[j]]
                    part[p, 3, j] = part[p, 3, j] + g[row, j] * x[row, ia[j]] * x[row, ib[j]]
                    gx[row, ia[j]] = gx[row, ia[j]] + g[row, j] * (c[1, j] + c[3, j] * x[row, ib[j]])
                    gx[row, ib[j]] = gx[row, ib[j]] + g[row, j] * (c[2, j] + c[3, j] * x[row, ia[j]])

    return bwd


def cpu_module(dtype: str = "float32", fwd_rows: int = FWD_ROWS, bwd_rows: int = BWD_ROWS):
    """IRModule with the scheduled CPU forward (:data:`FWD`) and backward (:data:`BWD`) for ``dtype``.

    Forward schedule: ``b -> (bo, bi)`` with ``bi`` = ``fwd_rows`` unrolled inside the neuron-vector
    loop (one load of indices and coefficients serves ``fwd_rows`` samples), ``bo`` parallel, the
    8 neuron lanes vectorised.
    """
    import tvm
    from tvm import s_tir

    sch = s_tir.Schedule(dense_forward_func(dtype))
    b, jo, ji = sch.get_loops(sch.get_sblock("main"))
    if fwd_rows > 1:
        bo, bi = sch.split(b, factors=[None, fwd_rows])
        sch.reorder(bo, jo, bi, ji)
        sch.parallel(bo)
        sch.unroll(bi)
    else:
        sch.parallel(b)
    sch.vectorize(ji)
    b_tail, _ = sch.get_loops(sch.get_sblock("tail"))
    sch.parallel(b_tail)
    fwd = sch.mod["main"]
    bwd = dense_backward_func(dtype, bwd_rows)
    return tvm.IRModule({FWD: fwd, BWD: bwd})


# --------------------------------------------------------------------------------------------- CUDA

def cuda_module(dtype: str = "float32", threads: int = 256):
    """IRModule with the CUDA kernels (thread-bound ``s_tir`` schedules).

    * :data:`CUDA_FWD` ``(x, ia, ib, c, out)``: the forward block, one thread per output.
    * :data:`CUDA_COEF` ``(x, ia, ib, g, gc)``: ``gc[k, j]`` = batch sums of ``g, g*a, g*b, g*a*b``,
      one thread per (coefficient, neuron) with the batch reduction inside it.
    * :data:`CUDA_GX` ``(x, c, g, ptr, cj, cp, crole, gx)``: input gradients as a gather over the
      inverse index: input ``i``'s consumers are ``ptr[i]:ptr[i+1]``, each with its neuron ``cj``,
      the partner input ``cp`` and ``crole`` (1 if ``i`` is the neuron's ``a``, 2 if its ``b``).
    """
    import tvm
    from tvm import s_tir, te
    from tvm.script import tirx as T

    B, NI, N = te.var("B"), te.var("NI"), te.var("N")
    x = te.placeholder((B, NI), dtype, name="x")
    ia = te.placeholder((N,), "int32", name="ia")
    ib = te.placeholder((N,), "int32", name="ib")
    c = te.placeholder((4, N), dtype, name="c")
    g = te.placeholder((B, N), dtype, name="g")

    def fwd_body(b, j):
        a, bb = x[b, ia[j]], x[b, ib[j]]
        return c[0, j] + a * (c[1, j] + c[3, j] * bb) + c[2, j] * bb

    out = te.compute((B, N), fwd_body, name="out")
    sch = s_tir.Schedule(te.create_prim_func([x, ia, ib, c, out]))
    fused = sch.fuse(*sch.get_loops(sch.get_sblock("out")))
    bx, tx = sch.split(fused, factors=[None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    fwd = sch.mod["main"].with_attr("global_symbol", CUDA_FWD)

    rb = te.reduce_axis((0, B), name="rb")
    one = tvm.tirx.const(1, dtype)

    def coef_body(k, j):
        a, bb = x[rb, ia[j]], x[rb, ib[j]]
        fa = tvm.tirx.Select(k % 2 == 1, a, one)
        fb = tvm.tirx.Select(k >= 2, bb, one)
        return te.sum(g[rb, j] * fa * fb, axis=rb)

    gc = te.compute((4, N), coef_body, name="gc")
    sch = s_tir.Schedule(te.create_prim_func([x, ia, ib, g, gc]))
    k, j, _ = sch.get_loops(sch.get_sblock("gc"))
    fused = sch.fuse(k, j)
    bx, tx = sch.split(fused, factors=[None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
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
        cb = T.match_buffer(c_h, (4, Nv), dtype, offset_factor=1)
        gb = T.match_buffer(g_h, (Bv, Nv), dtype, offset_factor=1)
        ptr = T.match_buffer(ptr_h, (NIv + 1,), "int32", offset_factor=1)
        cj = T.match_buffer(cj_h, (E,), "int32", offset_factor=1)
        cp = T.match_buffer(cp_h, (E,), "int32", offset_factor=1)
        crole = T.match_buffer(crole_h, (E,), "int32", offset_factor=1)
        gx = T.match_buffer(gx_h, (Bv, NIv), dtype, offset_factor=1)
        for bx in T.thread_binding((Bv * NIv + threads - 1) // threads, thread="blockIdx.x"):
            for tx in T.thread_binding(threads, thread="threadIdx.x"):
                acc = T.alloc_buffer((1,), dtype, scope="local")
                if bx * threads + tx < Bv * NIv:
                    acc[0] = T.Cast(dtype, 0)
                    for e in range(ptr[(bx * threads + tx) % NIv], ptr[(bx * threads + tx) % NIv + 1]):
                        acc[0] = acc[0] + gb[(bx * threads + tx) // NIv, cj[e]] * (
                            cb[crole[e], cj[e]] + cb[3, cj[e]] * xb[(bx * threads + tx) // NIv, cp[e]])
                    gx[(bx * threads + tx) // NIv, (bx * threads + tx) % NIv] = acc[0]

    return tvm.IRModule({CUDA_FWD: fwd, CUDA_COEF: coef, CUDA_GX: gx_func})


def build(mod: Any, target: dict):
    """``tvm.compile`` with the settings these kernels want."""
    import tvm

    return tvm.compile(mod, target=target)
