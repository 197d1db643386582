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

from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["VEC", "KERNEL_VERSION", "FWD", "BWD", "POOL_FWD", "POOL_BWD", "cpu_module", "cuda_module", "tree_macros",
           "TreeMacros", "SOURCES",
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


# The files whose text is part of the kernels' on-disk cache key (tvm_ops.training).
SOURCES = tuple(str(Path(__file__).with_name(name)) for name in ("train_conv.py", "train_conv_cpu.py", "train_conv_cuda.py"))


class TreeMacros(NamedTuple):
    """The TIR macros of :func:`tree_macros` (inlined where a kernel calls them)."""

    gates_vec: Any
    gates_scalar: Any
    tree_row_vec: Any
    tree_scalar: Any
    backprop_vec: Any
    backprop_scalar: Any
    leaf_select: Any
    leaf_scatter: Any
    task_prologue: Any
    task_epilogue: Any
    reduce_parts: Any
    zero_acc: Any
    flush_acc: Any
    scatter_scalar: Any


def tree_macros(dtype: str, depth: int, stride: int) -> TreeMacros:
    """The shared pieces of the tree-conv kernels for one (dtype, depth, stride): the gate formula
    (vector and scalar), a tree over a row of 8 outputs or at one position, the back-propagation
    through a tree, the pooled leaf select / scatter and the per-task bookkeeping of the CPU backward.
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

    return TreeMacros(gates_vec=gates_vec, gates_scalar=gates_scalar, tree_row_vec=tree_row_vec, tree_scalar=tree_scalar, backprop_vec=backprop_vec, backprop_scalar=backprop_scalar, leaf_select=leaf_select, leaf_scatter=leaf_scatter, task_prologue=task_prologue, task_epilogue=task_epilogue, reduce_parts=reduce_parts, zero_acc=zero_acc, flush_acc=flush_acc, scatter_scalar=scatter_scalar)


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
