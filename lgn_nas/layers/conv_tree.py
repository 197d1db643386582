"""LogicTreeConv2d and OrPool2d: the convolutional building blocks of LogicTreeNet (Petersen et al. 2024)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from timm.layers import register_notrace_function

from .backends import tree_conv_op, tree_conv_or_pool_op
from .logic import LogicGates
from .spec import LogicSpec
from .tree_ops import logic_tree_conv_plain, tree_output_size

__all__ = ["LogicTreeConv2d", "OrPool2d", "LogicTreeConvPool2d", "logic_tree_conv_forward",
           "logic_tree_conv_pool_forward", "MAX_TREE_DEPTH"]

MAX_TREE_DEPTH = 6
OR_GATE = 7


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _distinct_draws(rows: int, population: int, count: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """``(rows, count)`` draws from ``range(population)``, distinct within each row."""
    if rows * population <= 1 << 22:
        return torch.rand(rows, population, generator=generator).argsort(dim=1)[:, :count]
    draws = torch.randint(0, population, (rows, count), generator=generator)
    while True:
        ordered = draws.sort(dim=1).values
        clash = (ordered[:, 1:] == ordered[:, :-1]).any(dim=1)
        if not bool(clash.any()):
            return draws
        draws[clash] = torch.randint(0, population, (int(clash.sum()), count), generator=generator)


def _check_tree_input_scripted(x: torch.Tensor, in_channels: int, kernel_size: int, padding: int) -> None:
    """The input checks of the tree-conv leaves, in TorchScript's string handling."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError("LogicTreeConv2d expects input of shape (batch, " + str(in_channels) + ", H, W), got "
                         + str(list(x.shape)))
    if min(x.shape[2], x.shape[3]) + 2 * padding < kernel_size:
        raise ValueError("kernel_size=" + str(kernel_size) + " is larger than the input "
                         + str(list(x.shape[2:])) + " padded by " + str(padding))


@register_notrace_function
def logic_tree_conv_forward(
        x: torch.Tensor, leaf_index: torch.Tensor, coefficients: torch.Tensor, in_channels: int,
        kernel_size: int, stride: int, padding: int, backend: str,
) -> torch.Tensor:
    """Evaluate a logic-tree convolution with ``backend``'s op (an FX leaf: traced as one call).

    TorchScript (an FX graph scripted) compiles only the first branch: the plain torch op.
    """
    if torch.jit.is_scripting():
        _check_tree_input_scripted(x, in_channels, kernel_size, padding)
        return logic_tree_conv_plain(x, leaf_index, coefficients, kernel_size, stride, padding)
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"LogicTreeConv2d expects input of shape (batch, {in_channels}, H, W), got {tuple(x.shape)}")
    if min(x.shape[2], x.shape[3]) + 2 * padding < kernel_size:
        raise ValueError(
            f"kernel_size={kernel_size} is larger than the input {tuple(x.shape[2:])} padded by {padding}")
    return tree_conv_op(backend)(x, leaf_index, coefficients, kernel_size, stride, padding)


@register_notrace_function
def logic_tree_conv_pool_forward(
        x: torch.Tensor, leaf_index: torch.Tensor, coefficients: torch.Tensor, in_channels: int,
        kernel_size: int, stride: int, padding: int, backend: str,
) -> torch.Tensor:
    """A logic-tree convolution followed by 2x2 OR pooling (stride 2) with ``backend``'s fused op
    (an FX leaf). The torch backend computes ``max_pool2d(logic_tree_conv(...), 2)``; so does
    TorchScript (an FX graph scripted), which compiles only the first branch."""
    if torch.jit.is_scripting():
        _check_tree_input_scripted(x, in_channels, kernel_size, padding)
        return F.max_pool2d(logic_tree_conv_plain(x, leaf_index, coefficients, kernel_size, stride, padding), 2, 2)
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"LogicTreeConv2d expects input of shape (batch, {in_channels}, H, W), got {tuple(x.shape)}")
    if min(x.shape[2], x.shape[3]) + 2 * padding < kernel_size:
        raise ValueError(
            f"kernel_size={kernel_size} is larger than the input {tuple(x.shape[2:])} padded by {padding}")
    return tree_conv_or_pool_op(backend)(x, leaf_index, coefficients, kernel_size, stride, padding)


torch.fx.wrap("logic_tree_conv_forward")
torch.fx.wrap("logic_tree_conv_pool_forward")


class LogicTreeConv2d(LogicGates):
    """Each output channel is a binary tree of logic gates applied at every position.

    The tree has depth ``tree_depth`` (``2^depth - 1`` gates); its ``2^depth`` leaves are drawn at random
    (persistent buffer ``leaf_index``) from the ``kernel_size x kernel_size`` receptive field over
    ``channels_per_tree`` input channels of the output channel's group. Zero padding reads constant 0.
    The strategies are a :class:`~lgn_nas.layers.LogicSpec` (``spec``) or its fields by name; the
    trees' wiring is their own (``connectivity`` is for dense layers).
    """

    def __init__(
            self,
            in_channels: int,
            out_channels: int,
            kernel_size: int = 3,
            *,
            tree_depth: int = 3,
            stride: int = 1,
            padding: int = 0,
            channels_per_tree: int = 2,
            groups: int = 1,
            spec: Optional[LogicSpec] = None,
            generator: Optional[torch.Generator] = None,
            **strategies: Any,
    ) -> None:
        super().__init__()
        spec = LogicSpec.coerce(spec, owner=type(self).__name__, **strategies)
        self.in_channels = _positive_int("in_channels", in_channels)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        self.stride = _positive_int("stride", stride)
        self.padding = _positive_int("padding", padding, minimum=0)
        self.groups = _positive_int("groups", groups)
        if not isinstance(tree_depth, int) or isinstance(tree_depth, bool) or not 1 <= tree_depth <= MAX_TREE_DEPTH:
            raise ValueError(f"tree_depth must be an int in 1..{MAX_TREE_DEPTH}, got {tree_depth!r}")
        self.tree_depth = tree_depth
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        group_size = in_channels // groups
        _positive_int("channels_per_tree", channels_per_tree)
        if channels_per_tree > group_size:
            raise ValueError(
                f"channels_per_tree={channels_per_tree} is larger than the group: in_channels={in_channels} "
                f"in groups={groups} gives {group_size} channels per group")
        self.channels_per_tree = channels_per_tree
        self._init_strategies(spec)
        self.register_buffer("leaf_index", self._draw_leaves(generator))
        self._init_gates((out_channels, 2 ** tree_depth - 1), generator)

    @property
    def num_leaves(self) -> int:
        return 1 << self.tree_depth

    def _draw_leaves(self, generator: Optional[torch.Generator]) -> torch.Tensor:
        """The wiring, drawn on the CPU (the draws read values) and returned on the default device."""
        device = torch.get_default_device()
        with torch.device("cpu"):
            return self._draw_leaves_cpu(generator).to(device)

    def _draw_leaves_cpu(self, generator: Optional[torch.Generator]) -> torch.Tensor:
        k2 = self.kernel_size ** 2
        group_in = self.in_channels // self.groups
        group_out = self.out_channels // self.groups
        slots = self.channels_per_tree * k2
        num_out = self.out_channels
        first = (torch.arange(num_out) // group_out) * group_in
        channels = _distinct_draws(num_out, group_in, self.channels_per_tree, generator)
        if self.num_leaves <= slots:
            pick = _distinct_draws(num_out, slots, self.num_leaves, generator)
        else:
            pick = torch.randint(0, slots, (num_out, self.num_leaves), generator=generator)
        channel = first[:, None] + channels.gather(1, pick // k2)
        return channel * k2 + pick % k2

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return (tree_output_size(height, self.kernel_size, self.stride, self.padding),
                tree_output_size(width, self.kernel_size, self.stride, self.padding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coefficients = self.coefficients()
        if torch.jit.is_scripting():
            if x.dim() != 4 or x.shape[1] != self.in_channels:
                raise ValueError("LogicTreeConv2d expects input of shape (batch, " + str(self.in_channels) + ", H, W)")
            return logic_tree_conv_plain(x, self.leaf_index, coefficients, self.kernel_size, self.stride, self.padding)
        return logic_tree_conv_forward(x, self.leaf_index, coefficients, self.in_channels, self.kernel_size,
                                       self.stride, self.padding, self._resolved_backend)

    @torch.jit.unused
    def lower(self, builder, node_ids: np.ndarray) -> np.ndarray:
        """Append the trees at every position to a ``NetlistBuilder``; ``node_ids`` is ``(C, H, W)``."""
        node_ids = np.asarray(node_ids)
        if node_ids.ndim != 3 or node_ids.shape[0] != self.in_channels:
            raise ValueError(f"LogicTreeConv2d.lower expects node ids (C={self.in_channels}, H, W), got {node_ids.shape}")
        _, height, width = node_ids.shape
        out_h, out_w = self.output_size(height, width)
        p, k, s = self.padding, self.kernel_size, self.stride
        padded = node_ids
        if p:
            padded = np.full((self.in_channels, height + 2 * p, width + 2 * p), builder.constant(0), dtype=np.int64)
            padded[:, p:p + height, p:p + width] = node_ids
        leaf = self.leaf_index.cpu().numpy()
        c, dy, dx = leaf // (k * k), (leaf // k) % k, leaf % k
        rows = (np.arange(out_h) * s)[None, None, :, None] + dy[:, :, None, None]
        cols = (np.arange(out_w) * s)[None, None, None, :] + dx[:, :, None, None]
        values = padded[c[:, :, None, None], rows, cols]  # (O, L, H', W')
        gates = self.gate_ids().cpu().numpy().astype(np.uint8)
        start = 0
        while values.shape[1] > 1:
            n = values.shape[1] // 2
            level = np.broadcast_to(gates[:, start:start + n, None, None], (self.out_channels, n, out_h, out_w))
            values = builder.add_layer(level, values[:, 0::2], values[:, 1::2])
            start += n
        return values[:, 0]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"tree_depth={self.tree_depth}, stride={self.stride}, padding={self.padding}, "
                f"channels_per_tree={self.channels_per_tree}, groups={self.groups}, "
                f"relaxation={self.relaxation!r}, parametrization={self.parametrization!r}")


class OrPool2d(nn.Module):
    """OR pooling: the maximum over each window (relaxed), which is the logical OR on bits (discrete).

    Gradients flow only through the maximum, as in max pooling.
    """

    def __init__(self, kernel_size: int = 2, stride: Optional[int] = None) -> None:
        super().__init__()
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        self.stride = _positive_int("stride", stride if stride is not None else kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return ((height - self.kernel_size) // self.stride + 1, (width - self.kernel_size) // self.stride + 1)

    @torch.jit.unused
    def lower(self, builder, node_ids: np.ndarray) -> np.ndarray:
        """OR-reduce each window with a balanced tree of OR gates; ``node_ids`` is ``(C, H, W)``."""
        node_ids = np.asarray(node_ids)
        out_h, out_w = self.output_size(node_ids.shape[1], node_ids.shape[2])
        k, s = self.kernel_size, self.stride
        windows = [node_ids[:, dy:dy + s * (out_h - 1) + 1:s, dx:dx + s * (out_w - 1) + 1:s]
                   for dy in range(k) for dx in range(k)]
        while len(windows) > 1:
            pairs = len(windows) // 2
            merged = builder.add_layer(OR_GATE, np.stack(windows[0:2 * pairs:2]), np.stack(windows[1:2 * pairs:2]))
            windows = list(merged) + windows[2 * pairs:]
        return windows[0]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class LogicTreeConvPool2d(nn.Sequential):
    """A ``LogicTreeConv2d`` followed by an ``OrPool2d``, computed by one fused op where possible.

    Holds the two modules like ``nn.Sequential(conv, pool)`` (same indexing, same state-dict keys,
    so checkpoints of either load into the other). When the pool is 2x2 with stride 2 and the conv's
    backend is "tvm" (or "auto" choosing TVM for the call), the forward runs the fused TVM op
    (``tvm_ops.training.logic_tree_conv_or_pool``: the tree at the window's four positions in one
    kernel, only the maximum and its position stored, the tree recomputed at the winning position in
    the backward pass); values and gradients equal ``pool(conv(x))``. Otherwise, under TorchScript,
    and with backend "torch" it computes ``pool(conv(x))`` exactly as the unfused pair does. A fused
    call does not run the conv's forward hooks.
    """

    def __init__(self, conv: LogicTreeConv2d, pool: OrPool2d) -> None:
        if not isinstance(conv, LogicTreeConv2d) or not isinstance(pool, OrPool2d):
            raise TypeError(f"LogicTreeConvPool2d needs (LogicTreeConv2d, OrPool2d), got "
                            f"({type(conv).__name__}, {type(pool).__name__})")
        super().__init__(conv, pool)

    @property
    def fusable(self) -> bool:
        """Whether the pool is the 2x2, stride-2 OR pool the fused op computes."""
        pool = self[1]
        return pool.kernel_size == 2 and pool.stride == 2

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self[1].output_size(*self[0].output_size(height, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            for module in self:
                x = module(x)
            return x
        return self._forward_eager(x)

    @torch.jit.unused
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        conv, pool = self[0], self[1]
        if conv._resolved_backend == "torch" or not self.fusable:
            return pool(conv(x))
        return logic_tree_conv_pool_forward(x, conv.leaf_index, conv.coefficients(), conv.in_channels,
                                            conv.kernel_size, conv.stride, conv.padding, conv._resolved_backend)
