"""Differentiable logic-tree convolution ops (LogicTreeNet, Petersen et al. 2024).

Each output channel ``o`` owns a binary tree of gates of depth ``d`` whose ``2^d`` leaves read fixed
positions of the receptive field (``leaf_index[o, j] = c * k * k + dy * k + dx`` over the zero-padded
input); the same tree is evaluated at every output position. Level ``l`` of the tree has
``2^(d-l-1)`` gates; gate ``i`` of a level reads outputs ``2i`` and ``2i+1`` of the level below. The
per-gate coefficients are stored level after level (``(O, 2^d - 1, 4)``, leaves' level first, root
last).

``logic_tree_conv`` is a fused autograd function that saves only its input, the leaf indices and the
coefficients, and recomputes the tree in the backward pass, processing output channels in chunks so
the transient memory stays bounded. Leaves are gathered from the im2col patches (contiguous rows), and input gradients are
scattered back into patch gradients and folded (col2im). ``logic_tree_conv_plain`` is the same computation in ordinary
autograd ops (TorchScript path and reference).
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F

__all__ = ["logic_tree_conv", "logic_tree_conv_plain", "tree_output_size", "leaf_gather_index"]

# Elements of the transient leaf tensor (batch x channels x leaves x positions) per chunk.
_CHUNK_ELEMENTS = 1 << 21


def tree_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Output length along one spatial axis."""
    return (size + 2 * padding - kernel_size) // stride + 1


def leaf_gather_index(
        leaf_index: torch.Tensor, padded_hw: Tuple[int, int], kernel_size: int, stride: int,
        out_hw: Tuple[int, int],
) -> torch.Tensor:
    """Flat indices ``(O, L, P)`` into a padded input viewed as ``(B, C * Hp * Wp)``."""
    hp, wp = padded_hw
    k = kernel_size
    c = leaf_index // (k * k)
    dy = (leaf_index // k) % k
    dx = leaf_index % k
    base = c * (hp * wp) + dy * wp + dx  # (O, L)
    oy = torch.arange(out_hw[0], device=leaf_index.device) * stride
    ox = torch.arange(out_hw[1], device=leaf_index.device) * stride
    pos = (oy[:, None] * wp + ox[None, :]).reshape(-1)  # (P,)
    return base[:, :, None] + pos[None, None, :]


def _tree_levels(leaves: torch.Tensor, coefficients: torch.Tensor, depth: int) -> List[torch.Tensor]:
    """All level inputs: ``[leaves, level-1 outputs, ..., root]`` for leaves ``(B, O, L, P)``."""
    values = [leaves]
    start = 0
    v = leaves
    for level in range(depth):
        n = v.shape[2] // 2
        c = coefficients[:, start:start + n, :]  # (O, n, 4)
        start += n
        a = v[:, :, 0::2]
        b = v[:, :, 1::2]
        c1 = c[None, :, :, 0, None]
        ca = c[None, :, :, 1, None]
        cb = c[None, :, :, 2, None]
        cab = c[None, :, :, 3, None]
        v = torch.addcmul(ca, cab, b).mul_(a).add_(torch.addcmul(c1, cb, b))
        values.append(v)
    return values


def _chunks(num_channels: int, per_channel: int) -> List[Tuple[int, int]]:
    step = max(1, _CHUNK_ELEMENTS // max(1, per_channel))
    return [(o, min(o + step, num_channels)) for o in range(0, num_channels, step)]


def _patches(x: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """``(B, C * k * k, P)`` receptive-field values (im2col; rows are contiguous over positions).

    Built from strided views plus one copy, which is several times faster on CPU than ``F.unfold``.
    """
    batch, channels = x.shape[0], x.shape[1]
    xp = F.pad(x, (padding, padding, padding, padding)) if padding else x
    windows = xp.unfold(2, kernel_size, stride).unfold(3, kernel_size, stride)  # (B, C, H', W', k, k)
    out_h, out_w = windows.shape[2], windows.shape[3]
    return windows.permute(0, 1, 4, 5, 2, 3).reshape(batch, channels * kernel_size * kernel_size, out_h * out_w)


class _LogicTreeConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, leaf_index, coefficients, kernel_size: int, stride: int, padding: int):
        x = x.contiguous()
        coefficients = coefficients.to(x.dtype).contiguous()
        batch, _, height, width = x.shape
        out_hw = (tree_output_size(height, kernel_size, stride, padding),
                  tree_output_size(width, kernel_size, stride, padding))
        patches = _patches(x, kernel_size, stride, padding)
        num_out, num_leaves = leaf_index.shape
        positions = patches.shape[2]
        depth = num_leaves.bit_length() - 1
        out = x.new_empty(batch, num_out, positions)
        for lo, hi in _chunks(num_out, batch * num_leaves * positions):
            leaves = patches.index_select(1, leaf_index[lo:hi].reshape(-1)).view(batch, hi - lo, num_leaves, positions)
            out[:, lo:hi] = _tree_levels(leaves, coefficients[lo:hi], depth)[-1][:, :, 0]
        ctx.save_for_backward(x, leaf_index, coefficients)
        ctx.conv_args = (kernel_size, stride, padding)
        return out.view(batch, num_out, *out_hw)

    @staticmethod
    def backward(ctx, grad_out):
        x, leaf_index, coefficients = ctx.saved_tensors
        kernel_size, stride, padding = ctx.conv_args
        batch, _, height, width = x.shape
        patches = _patches(x, kernel_size, stride, padding)
        num_out, num_leaves = leaf_index.shape
        positions = patches.shape[2]
        depth = num_leaves.bit_length() - 1
        grad_out = grad_out.reshape(batch, num_out, 1, positions)
        grad_coefficients = torch.zeros_like(coefficients)
        grad_patches = torch.zeros_like(patches) if ctx.needs_input_grad[0] else None
        for lo, hi in _chunks(num_out, batch * num_leaves * positions):
            index = leaf_index[lo:hi].reshape(-1)
            leaves = patches.index_select(1, index).view(batch, hi - lo, num_leaves, positions)
            values = _tree_levels(leaves, coefficients[lo:hi], depth)
            g = grad_out[:, lo:hi]
            end = coefficients.shape[1]
            for level in range(depth - 1, -1, -1):
                v = values[level]
                n = v.shape[2] // 2
                start = end - n
                c = coefficients[lo:hi, start:end]
                a = v[:, :, 0::2]
                b = v[:, :, 1::2]
                ga = g * a
                grad_coefficients[lo:hi, start:end, 0] = g.sum((0, 3))
                grad_coefficients[lo:hi, start:end, 1] = ga.sum((0, 3))
                grad_coefficients[lo:hi, start:end, 2] = (g * b).sum((0, 3))
                grad_coefficients[lo:hi, start:end, 3] = (ga * b).sum((0, 3))
                if level == 0 and grad_patches is None:
                    break
                g_in = torch.empty_like(v)
                g_in[:, :, 0::2] = g * torch.addcmul(c[None, :, :, 1, None], c[None, :, :, 3, None], b)
                g_in[:, :, 1::2] = g * torch.addcmul(c[None, :, :, 2, None], c[None, :, :, 3, None], a)
                g = g_in
                end = start
            if grad_patches is not None:
                grad_patches.index_add_(1, index, g.reshape(batch, -1, positions))
        grad_x = None
        if grad_patches is not None:
            grad_x = F.fold(grad_patches, (height, width), kernel_size, padding=padding, stride=stride)
        return grad_x, None, grad_coefficients, None, None, None


def _check(x: torch.Tensor, leaf_index: torch.Tensor, coefficients: torch.Tensor, kernel_size: int) -> None:
    if x.dim() != 4:
        raise ValueError(f"logic tree conv input must be 4-D (batch, channels, height, width), got {tuple(x.shape)}")
    leaves = leaf_index.shape[1]
    if leaves < 2 or leaves & (leaves - 1) or coefficients.shape[:2] != (leaf_index.shape[0], leaves - 1):
        raise ValueError(
            f"coefficients {tuple(coefficients.shape)} do not fit trees with {leaves} leaves: "
            f"expected ({leaf_index.shape[0]}, {leaves - 1}, 4)")


def logic_tree_conv(
        x: torch.Tensor, leaf_index: torch.Tensor, coefficients: torch.Tensor,
        kernel_size: int, stride: int = 1, padding: int = 0,
) -> torch.Tensor:
    """Fused logic-tree convolution: ``(B, C, H, W) -> (B, O, H', W')``."""
    _check(x, leaf_index, coefficients, kernel_size)
    return _LogicTreeConvFunction.apply(x, leaf_index, coefficients, kernel_size, stride, padding)


def logic_tree_conv_plain(
        x: torch.Tensor, leaf_index: torch.Tensor, coefficients: torch.Tensor,
        kernel_size: int, stride: int = 1, padding: int = 0,
) -> torch.Tensor:
    """The same op in ordinary autograd ops (TorchScript-compatible; keeps every level for backward)."""
    batch = x.shape[0]
    height = x.shape[2]
    width = x.shape[3]
    out_h = (height + 2 * padding - kernel_size) // stride + 1
    out_w = (width + 2 * padding - kernel_size) // stride + 1
    xp = F.pad(x, [padding, padding, padding, padding]) if padding > 0 else x
    index = leaf_gather_index(leaf_index, (xp.shape[2], xp.shape[3]), kernel_size, stride, (out_h, out_w))
    num_out = index.shape[0]
    num_leaves = index.shape[1]
    positions = index.shape[2]
    leaves = xp.reshape(batch, -1).index_select(1, index.reshape(-1)).view(batch, num_out, num_leaves, positions)
    depth = 0
    while (1 << depth) < num_leaves:
        depth += 1
    root = _tree_levels(leaves, coefficients.to(x.dtype), depth)[-1]
    return root.reshape(batch, num_out, out_h, out_w)
