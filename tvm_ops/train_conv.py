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

This module holds the kernel names, the TIR macros both targets are made of (:func:`tree_macros`: the
gate formula and the back-propagation through a tree) and the two module builders; the kernels are in
:mod:`tvm_ops.train_conv_cpu` and :mod:`tvm_ops.train_conv_cuda`.

CPU kernels (LLVM), in one module. Vectors hold 8 lanes. A lane block is addressed in "q = y * Wp + x"
coordinates (output position (y, x), or pooled window (y, x), in the padded input's row pitch): the
leaves of consecutive q are contiguous loads (stride ``s``) even across rows, so a narrow row's vector
runs on into the next rows, and the last vector of the map is moved back so that it ends at the last
position: every lane reads inside its sample and nothing needs a scalar tail. Lanes outside the
outputs a block owns are not stored (forward) or get a zero gradient and zero leaves (backward), so
they add exact zeros even over inf or NaN inputs.

* :data:`FWD` ``(xp, off, c, out)``: ``out`` (B, O, Ho, Wo). Parallel over (sample, channel), 8
  output columns per vector; a row of ``Wo >= 8`` ends with a vector starting at ``Wo - 8`` (it
  recomputes a few outputs), a narrower row takes one vector from its first column. Maps smaller
  than one vector (``(Ho - 1) * Wp + Wo < 8``) run a scalar loop.
* :data:`POOL_FWD` ``(xp, off, c, out, arg)``: the tree + 2x2 OR pool (max, stride 2) of the
  2024 paper. One vector of 8 unpooled columns in each of the two window rows gives 4 pooled
  outputs (the same blocks as above, in pooled units of 4); the maximum of each window and its
  position ``arg`` (uint8, row-major in the window: 0 = top-left .. 3 = bottom-right) are kept. Ties
  keep the first maximum and NaN wins, as ``torch.nn.functional.max_pool2d`` does on CPU; nothing
  else is stored.
* :data:`BWD` ``(xp, off, c, g, gxp, gx, part, gc, need_gx)`` and :data:`POOL_BWD` ``(xp, off, c,
  arg, g, gxp, gx, part, gc, need_gx)``: the batch is split into ``P`` chunks of samples (``P`` =
  threads, a runtime size), one parallel task each. A task zeroes its samples' padded input gradient
  ``gxp``; per output channel it recomputes the tree (for the pooled op: only at each window's
  winning position), back-propagates through it in registers, accumulates the coefficient gradients
  per vector lane over one sample, adds those into per-lane totals over its samples and writes their
  sums to ``part[p, o, g, k]`` (two-level sums for float32 accuracy), and adds the leaf gradients
  into ``gxp``; finally it copies the interior of its samples' ``gxp`` into ``gx`` (the crop). A
  second parallel loop sums the partial sums into ``gc``. With ``need_gx`` 0 (the input needs no
  gradient) ``gxp`` and ``gx`` are neither read nor written. A sample belongs to exactly one task and
  its updates are sequential, so overlapping receptive fields and repeated leaves add race-free
  without atomics. Two block kinds:

  - rows of 8 positions (``Wo``, ``Wq >= 8``): blocks tile each row without overlap; the leaf
    gradients of a (sample, channel) are kept per block and added afterwards leaf by leaf, so that
    consecutive read-modify-writes of ``gxp`` never half-overlap (each would wait for the previous
    store). Stride 1, pooled: the leaves of 8 windows are read as the two 16-wide input rows under
    them (vector loads, even / odd lanes split by shuffles, each lane's winner selected by ``arg``)
    and their gradients added back the same way, masked to the winners; otherwise gathered per lane.
  - narrow maps (``Wo``, ``Wq < 8``): the lanes are 8 samples at one (pooled) position, every lane
    used whatever the width; leaves and winners are gathered, the gradients scattered to 8 distinct
    samples.

  ``gxp`` and ``part`` are scratch and ``gx``, ``gc`` fully written (pass ``torch.empty``); the
  padding is symmetric: ``(Hp - H) / 2`` rows and ``(Wp - W) / 2`` columns. No torch op runs between
  the kernels.

Scratch buffers are "global" allocations under :data:`STACK_BYTES`, which TVM places on the stack
(LLVM keeps them in registers); TVM turns a "local" one into a workspace allocation and free each
time its scope runs, and a buffer in memory forces every gate's value through a store and a load.

Buffers are declared with element alignment only, so views at any offset are safe; the leaf tables
are int32 and must be validated by the caller (no bounds checks inside).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["VEC", "KERNEL_VERSION", "FWD", "BWD", "POOL_FWD", "POOL_BWD", "cpu_module", "cuda_module", "tree_macros",
           "TreeMacros", "SOURCES", "STACK_BYTES",
           "CUDA_FWD", "CUDA_POOL_FWD", "CUDA_LEAF", "CUDA_POOL_LEAF", "CUDA_GX", "CUDA_POOL_GX"]

VEC = 8  # output columns per vector (AVX2: 8 x float32)
# TVM 0.27 puts a constant-size "global" scratch buffer under this many bytes on the stack (an alloca that
# LLVM keeps in registers); larger ones, and every "local" one, become a workspace allocation and free.
STACK_BYTES = 1024
KERNEL_VERSION = 4  # bump when the kernels change (part of the on-disk cache key)

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


# The files whose text is part of the kernels' on-disk cache key (tvm_ops.training).
SOURCES = tuple(str(Path(__file__).with_name(name)) for name in ("train_conv.py", "train_conv_cpu.py", "train_conv_cuda.py"))


class TreeMacros(NamedTuple):
    """The TIR macros of :func:`tree_macros` (inlined where a kernel calls them)."""

    gates_vec: Any
    gates_scalar: Any
    leaves_vec: Any
    tree_row_vec: Any
    mask_leaves: Any
    tree_scalar: Any
    backprop_vec: Any
    backprop_scalar: Any
    leaf_select: Any
    row_scatter: Any
    task_prologue: Any
    task_epilogue: Any
    reduce_parts: Any
    zero_acc: Any
    flush_acc: Any
    add_acc: Any


def tree_macros(dtype: str, depth: int, stride: int) -> TreeMacros:
    """The shared pieces of the tree-conv kernels for one (dtype, depth, stride): the gate formula
    (vector and scalar), a tree over 8 consecutive positions or at one position, lane masks, the
    back-propagation through a tree, the pooled leaf select and gradient row, and the per-task
    bookkeeping of the CPU backward (scratch zeroing, crop, per-lane coefficient sums).
    The CUDA kernels use the scalar ones, so both targets evaluate and differentiate the same formulas."""
    from tvm.script import tirx as T

    V = VEC
    L = 1 << depth
    G = L - 1  # gates
    S = stride
    zero = 0.0
    EVEN = list(range(0, 2 * V, 2))  # shuffle indices: even / odd lanes of a 2V vector, and their inverse
    ODD = list(range(1, 2 * V, 2))
    INTERLEAVE = [k for i in range(V) for k in (i, V + i)]

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
    def leaves_vec(v, xf, off, base, o, rowoff, ox0):
        """The leaves at columns ``ox0 + i`` of the row at ``rowoff`` for the V lanes ``i`` (``ox0`` may
        be negative: the lanes then start in an earlier row, ``rowoff + ox0 * S`` stays >= 0)."""
        for j in T.unroll(L):
            for i in T.vectorized(V):
                v[j, i] = xf[base + off[o, j] + rowoff + (ox0 + i) * S]

    @T.macro
    def tree_row_vec(v, xf, off, c, base, o, rowoff, ox0):
        """Tree at columns ``ox0 + i`` of the row at ``rowoff`` for the V lanes ``i``; root in ``v[N - 1]``."""
        leaves_vec(v, xf, off, base, o, rowoff, ox0)
        gates_vec(v, c, o)

    @T.macro
    def mask_leaves(v, c0, lo, hi):
        """Zero the leaves of the lanes ``i`` whose column ``c0 + i`` lies outside ``[lo, hi)`` (lanes a
        vector computes for another block, another row or no output: with zero leaves and a zero root
        gradient they add exact zeros, even where the input they read holds inf or NaN)."""
        for j in T.unroll(L):
            for i in T.vectorized(V):
                v[j, i] = T.Select(c0 + i >= lo and c0 + i < hi, v[j, i], T.Cast(dtype, zero))

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
        ``pos[i]`` (0..3 row-major; 4, a masked lane: any), read from the two 16-wide input rows at
        ``base`` and ``base + Wp``."""
        top = T.meta_var(xf[T.Ramp(base, 1, 2 * V)])
        bot = T.meta_var(xf[T.Ramp(base + Wp, 1, 2 * V)])
        w = T.meta_var(pos[T.Ramp(0, 1, V)])
        v[j, T.Ramp(0, 1, V)] = T.Select(
            w == T.Broadcast(0, V), T.Shuffle([top], EVEN), T.Select(
                w == T.Broadcast(1, V), T.Shuffle([top], ODD), T.Select(
                    w == T.Broadcast(2, V), T.Shuffle([bot], EVEN), T.Shuffle([bot], ODD))))

    @T.macro
    def row_scatter(gxf, gj, w, base, rr):
        """Stride 1, 8 pooled columns, window row ``rr``: add lane ``i``'s leaf gradient ``gj[i]`` (a
        vector) at its winner ``w[i]`` if that is in row ``rr`` (``2 * rr`` or ``2 * rr + 1``), 0 at the
        other positions of the 16-wide input row at ``base`` (``w`` 4: no winner, all 0)."""
        zv = T.meta_var(T.Broadcast(T.Cast(dtype, zero), V))
        gxf[T.Ramp(base, 1, 2 * V)] = gxf[T.Ramp(base, 1, 2 * V)] + T.Shuffle(
            [T.Select(w == T.Broadcast(2 * rr, V), gj, zv), T.Select(w == T.Broadcast(2 * rr + 1, V), gj, zv)],
            INTERLEAVE)

    @T.macro
    def task_prologue(gxf, need_gx, p, rows, B, C, Hp, Wp):
        """Zero the padded input gradient of the task's samples (with ``need_gx``)."""
        for r in range(T.if_then_else(need_gx != 0, T.max(T.min(rows, B - p * rows), 0), 0)):
            for io in range(C * Hp * Wp // V):
                for i in T.vectorized(V):
                    gxf[(p * rows + r) * (C * Hp * Wp) + io * V + i] = T.Cast(dtype, zero)
            for it in range(C * Hp * Wp % V):
                gxf[(p * rows + r) * (C * Hp * Wp) + C * Hp * Wp // V * V + it] = T.Cast(dtype, zero)

    @T.macro
    def task_epilogue(gxp, gx, need_gx, p, rows, B, C, H, W, Hp, Wp):
        """Copy the interior of the task's samples' padded input gradient into ``gx`` (the crop; only
        with ``need_gx``)."""
        for r, ch, y in T.grid(T.if_then_else(need_gx != 0, T.max(T.min(rows, B - p * rows), 0), 0), C, H):
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

    # Per-lane coefficient-gradient sums (G, 4, V): zero_acc(acc); add_acc(total, acc): total += acc;
    # flush_acc(acc, part, p, o): part[p, o] = the sums of acc's lanes.
    if G * 4 * V * (8 if dtype == "float64" else 4) < STACK_BYTES:
        # ``acc`` lives on the stack: constant indices let LLVM keep it in registers
        @T.macro
        def zero_acc(acc):
            for g in T.unroll(G):
                for k in T.unroll(4):
                    for i in T.vectorized(V):
                        acc[g, k, i] = T.Cast(dtype, zero)

        @T.macro
        def flush_acc(acc, part, p, o):
            for g in T.unroll(G):
                for k in T.unroll(4):
                    part[p, o, g, k] = acc[g, k, 0]
                    for i in T.unroll(1, V):
                        part[p, o, g, k] = part[p, o, g, k] + acc[g, k, i]

        @T.macro
        def add_acc(total, acc):
            for g in T.unroll(G):
                for k in T.unroll(4):
                    for i in T.vectorized(V):
                        total[g, k, i] = total[g, k, i] + acc[g, k, i]
    else:
        @T.macro
        def zero_acc(acc):
            for g, k in T.grid(G, 4):
                for i in T.vectorized(V):
                    acc[g, k, i] = T.Cast(dtype, zero)

        @T.macro
        def flush_acc(acc, part, p, o):
            for g, k in T.grid(G, 4):
                part[p, o, g, k] = acc[g, k, 0]
                for i in range(1, V):
                    part[p, o, g, k] = part[p, o, g, k] + acc[g, k, i]

        @T.macro
        def add_acc(total, acc):
            for g, k in T.grid(G, 4):
                for i in T.vectorized(V):
                    total[g, k, i] = total[g, k, i] + acc[g, k, i]

    return TreeMacros(
        gates_vec=gates_vec, gates_scalar=gates_scalar, leaves_vec=leaves_vec, tree_row_vec=tree_row_vec,
        mask_leaves=mask_leaves, tree_scalar=tree_scalar, backprop_vec=backprop_vec, backprop_scalar=backprop_scalar,
        leaf_select=leaf_select, row_scatter=row_scatter, task_prologue=task_prologue, task_epilogue=task_epilogue,
        reduce_parts=reduce_parts, zero_acc=zero_acc, flush_acc=flush_acc, add_acc=add_acc)


def _check_geometry(depth: int, stride: int) -> None:
    if not 1 <= depth <= 8:
        raise ValueError(f"tree depth must be in 1..8, got {depth}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")


def cpu_module(dtype: str = "float32", depth: int = 3, stride: int = 1):
    """IRModule with :data:`FWD`, :data:`BWD`, :data:`POOL_FWD` and :data:`POOL_BWD` for one
    (dtype, tree depth, stride); every size is symbolic (:mod:`tvm_ops.train_conv_cpu`)."""
    import tvm

    from .train_conv_cpu import cpu_funcs

    _check_geometry(depth, stride)
    fwd, bwd, pool_fwd, pool_bwd = cpu_funcs(dtype, depth, stride)
    return tvm.IRModule({FWD: fwd, BWD: bwd, POOL_FWD: pool_fwd, POOL_BWD: pool_bwd})


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

    from .train_conv_cuda import cuda_funcs

    _check_geometry(depth, stride)
    return tvm.IRModule(cuda_funcs(dtype, depth, stride, threads=threads, serial=serial))
