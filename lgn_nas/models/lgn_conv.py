"""Convolutional logic gate networks (LogicTreeNet).

Papers:
    `Convolutional Differentiable Logic Gate Networks` - Petersen et al., NeurIPS 2024
        https://arxiv.org/abs/2411.04732
    `Deep Differentiable Logic Gate Networks` - Petersen et al., NeurIPS 2022 (dense head, GroupSum)

A thermometer encoder turns the image into bits; each stage is a ``LogicTreeConv2d`` (a binary tree of
gates per kernel over 2 input channels of a 3x3 or 5x5 field) followed by 2x2 OR pooling; the head
flattens the last map into randomly wired ``LogicDense`` layers and a ``GroupSum``. The head's last
logic layer is timm's classifier.

Gate counts: ``LogicTreeNet.gate_count()`` counts the physical gates of the discrete circuit (every
tree at every position, the OR trees of the pools, the dense gates), which is exactly
``discretize(model).num_gates`` less the one constant gate that zero padding and uneven class groups
read, and beside it the paper's convention (``paper_*`` keys), which leaves out the gates that stay
pass-through wires after training; see ``gate_count`` for the evidence. ``shape_gate_count`` gives the
physical count from the constructor arguments alone, without building the model.
"""
import contextlib
import copy
import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from timm.models import generate_default_cfgs, register_model

from ..groups import check_groups
from ..layers.parametrizations import INITS
from ..layers import GroupSum, LogicDense, LogicSpec, LogicTreeConv2d, LogicTreeConvPool2d, OrPool2d, Thermometer
from ..pretrained import checkpoint_filter_fn, pretrained_model_kwargs, weights_file
from ._args import positive_ints, refuse_unused_drop
from ._base import LogicNetwork, lgn_cfg
from ._builder import build_lgn
from ._heads import UnpooledHead, check_global_pool, check_num_classes, move_like

__all__ = ["LogicTreeNet", "LogicHead", "PASS_THROUGH_GATES", "shape_gate_count", "VARIANT_ARGS"]

# Gate ids (REFERENCE.md section 1) whose output is one of the inputs unchanged: 3 = 'A', 5 = 'B'. In
# hardware they are wires; the residual initialisation starts every gate at 'A'.
PASS_THROUGH_GATES = (3, 5)


def _per_stage(name: str, value: Union[int, Sequence[int]], stages: int) -> List[int]:
    values = ([value] * stages if isinstance(value, int) and not isinstance(value, bool)
              else list(value) if isinstance(value, (list, tuple)) else [])
    if len(values) != stages or any(not isinstance(v, int) or isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an int or a list of {stages} ints, got {value!r}")
    return values


def _per_stage_pool(value: Union[bool, Sequence[bool]], stages: int) -> List[bool]:
    """``pool`` as one bool per stage (a bare bool applies to every stage)."""
    values = [value] * stages if isinstance(value, bool) else list(value) if isinstance(value, (list, tuple)) else None
    if values is None or len(values) != stages or any(not isinstance(v, bool) for v in values):
        raise ValueError(f"pool must be a bool or a list of {stages} bools (one per stage), got {value!r}")
    return values


def _non_pass_through(gate_ids: torch.Tensor) -> int:
    """How many of these discrete gates are not pass-through wires ('A' or 'B')."""
    return int((~torch.isin(gate_ids, torch.tensor(PASS_THROUGH_GATES, device=gate_ids.device))).sum())


def shape_gate_count(*, channels: Sequence[int], kernel_size: Union[int, Sequence[int]] = 3,
                     padding: Union[int, Sequence[int]] = 1, tree_depth: Union[int, Sequence[int]] = 3,
                     head_widths: Sequence[int] = (), img_size: Union[int, Sequence[int]] = 32,
                     pool: Union[bool, Sequence[bool]] = True, **_other: Any) -> Dict[str, int]:
    """The physical gate count of ``LogicTreeNet(**kwargs)`` from its arguments, without building it.

    Same parts as ``LogicTreeNet.gate_count()`` (``trees``, ``or_pools``, ``dense``, ``total``; 2x2 OR
    pools after the stages ``pool`` marks, stride-1 trees); other constructor arguments are accepted and ignored. The paper-convention
    count needs the trained gates, so it is not here.
    """
    channels = positive_ints("channels", channels)
    stages = len(channels)
    kernels = _per_stage("kernel_size", kernel_size, stages)
    paddings = _per_stage("padding", padding, stages)
    depths = _per_stage("tree_depth", tree_depth, stages)
    pooled = _per_stage_pool(pool, stages)
    height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    trees = pools = 0
    for out_c, k, p, d, po in zip(channels, kernels, paddings, depths, pooled):
        height, width = height + 2 * p - k + 1, width + 2 * p - k + 1
        trees += out_c * (2 ** d - 1) * height * width
        if po:
            height, width = height // 2, width // 2
            pools += out_c * 3 * height * width
    dense = sum(head_widths)
    return {"trees": trees, "or_pools": pools, "dense": dense, "total": trees + pools + dense}


class LogicHead(nn.Module):
    """Flatten -> hidden ``LogicDense`` layers (the pre-logits) -> classifier ``LogicDense`` -> ``GroupSum``.

    Any ``num_classes`` up to the last width works (uneven groups, see ``lgn_nas.groups``);
    ``num_classes=0`` leaves out the classifier and GroupSum, so the head returns the pre-logits bits
    (``hidden_size`` per sample). ``reset`` swaps the classifier and keeps the hidden layers.
    """

    def __init__(self, in_features: int, widths: Sequence[int], num_classes: int, *, tau: float,
                 drop_rate: float = 0.0, generator: Optional[torch.Generator] = None,
                 spec: Optional[LogicSpec] = None) -> None:
        super().__init__()
        self.drop_rate = float(drop_rate)
        widths = positive_ints("head_widths", widths)
        hidden = []
        features = in_features
        for w in widths[:-1]:
            hidden.append(LogicDense(features, w, generator=generator, spec=spec))
            features = w
        self.hidden = nn.Sequential(*hidden)
        self.hidden_size = features
        self.classifier_width = widths[-1]
        self.tau = float(tau)
        self.logic_spec = spec
        self.num_classes = 0
        self.classifier = nn.Identity()
        self.group_sum = nn.Identity()
        self.reset(num_classes, generator=generator)

    def reset(self, num_classes: int, *, generator: Optional[torch.Generator] = None) -> None:
        """A new classifier and GroupSum for ``num_classes`` (0: none); the hidden layers stay."""
        check_num_classes(num_classes)
        if num_classes:
            check_groups(self.classifier_width, num_classes, what="the last head width")
            self.classifier = LogicDense(self.hidden_size, self.classifier_width, generator=generator,
                                         spec=self.logic_spec)
            self.group_sum = GroupSum(num_classes, self.tau, in_features=self.classifier_width)
        else:
            self.classifier, self.group_sum = nn.Identity(), nn.Identity()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        x = self.hidden(x.flatten(1))
        if pre_logits:
            return x
        return self.group_sum(self.classifier(x))


class LogicTreeNet(LogicNetwork):
    """Thermometer -> stages of (LogicTreeConv2d, OrPool2d) -> LogicHead.

    ``pool`` (a bool, or one per stage) places the 2x2 OR pools: a pooled stage is a
    ``LogicTreeConvPool2d`` (the fused tree + pool op where a backend has it), an unpooled one a
    ``nn.Sequential`` holding only its ``LogicTreeConv2d`` (same state-dict keys, ``stages.i.0.*``),
    whose map keeps its size for the next stage.

    All constructor arguments are plain JSON values (ints, floats, strings, lists), besides timm's
    ``device``/``dtype``; ``**strategies`` are the six of :class:`~lgn_nas.layers.LogicSpec`, checked once
    and shared by the trees and the head (``connectivity`` wires the head); ``head_init`` (an init name, or ``None``:
    the spec's) starts the dense head from its own initialisation. timm's feature API: ``forward_features`` returns the last map
    ``(B, num_features, *pool_size)``, ``forward_head(pre_logits=True)`` the bits the classifier reads
    (``head_hidden_size``: the last hidden head width), which is also what the model returns with
    ``num_classes=0``; with ``num_classes=0, global_pool=""`` it has no head and returns the map.
    """

    def __init__(
            self,
            *,
            num_classes: int = 10,
            in_chans: int = 3,
            img_size: Union[int, Sequence[int]] = 32,
            channels: Sequence[int] = (32, 128, 512, 1024),
            kernel_size: Union[int, Sequence[int]] = 3,
            padding: Union[int, Sequence[int]] = 1,
            tree_depth: Union[int, Sequence[int]] = 3,
            channels_per_tree: int = 2,
            groups: Union[int, Sequence[int]] = 1,
            pool: Union[bool, Sequence[bool]] = True,
            head_widths: Sequence[int] = (40960, 20480, 10240),
            input_bits: int = 2,
            thresholds: str = "uniform",
            group_tau: float = 20.0,
            head_init: Optional[str] = None,
            global_pool: str = "flatten",
            drop_rate: float = 0.0,
            drop_path_rate: Optional[float] = None,
            drop_block_rate: Optional[float] = None,
            seed: Optional[int] = None,
            device: Optional[Union[str, torch.device]] = None,
            dtype: Optional[torch.dtype] = None,
            **strategies: Any,
    ) -> None:
        super().__init__()
        refuse_unused_drop(type(self).__name__, drop_path_rate=drop_path_rate, drop_block_rate=drop_block_rate)
        self.logic_spec = LogicSpec.coerce(owner=type(self).__name__, **strategies)
        # The dense head may start from its own init (the dense models' Gaussian); the trees keep the spec's.
        self.head_init = head_init
        self.head_spec = self.logic_spec
        if head_init is not None:
            if not isinstance(head_init, str) or head_init not in INITS:
                raise ValueError(f"head_init must be None or one of {', '.join(INITS)}, got {head_init!r}")
            self.head_spec = dataclasses.replace(self.logic_spec, init=head_init)
        check_global_pool(global_pool, type(self).__name__)
        channels = positive_ints("channels", channels)
        stages = len(channels)
        kernel_sizes = _per_stage("kernel_size", kernel_size, stages)
        paddings = _per_stage("padding", padding, stages)
        depths = _per_stage("tree_depth", tree_depth, stages)
        group_counts = _per_stage("groups", groups, stages)
        pooled = _per_stage_pool(pool, stages)
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.drop_rate = float(drop_rate)
        self.group_tau = float(group_tau)
        self.head_widths = positive_ints("head_widths", head_widths)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None

        with torch.device(device) if device is not None else contextlib.nullcontext():
            self.encoder = Thermometer(input_bits, in_channels=in_chans, method=thresholds, img_size=self.img_size)
            height, width = self.img_size
            in_c = self.encoder.out_channels
            blocks = []
            self.feature_info = []
            for i, out_c in enumerate(channels):
                # A stage whose groups are narrower than channels_per_tree (a 1-bit grey image) reads them all.
                per_tree = (min(channels_per_tree, in_c // group_counts[i]) if in_c % group_counts[i] == 0
                            else channels_per_tree)
                conv = LogicTreeConv2d(
                    in_c, out_c, kernel_sizes[i], tree_depth=depths[i], padding=paddings[i],
                    channels_per_tree=per_tree, groups=group_counts[i], generator=generator, spec=self.logic_spec)
                if min(height, width) + 2 * paddings[i] < kernel_sizes[i]:
                    raise ValueError(
                        f"stage {i}: kernel_size={kernel_sizes[i]} is larger than its input {height}x{width} "
                        f"(padding {paddings[i]}); img_size={list(self.img_size)} is too small for {stages} stages")
                height, width = conv.output_size(height, width)
                if pooled[i]:
                    or_pool = OrPool2d(2)
                    if min(height, width) < 2:
                        raise ValueError(f"stage {i}: the OR pool needs a map of at least 2x2, got {height}x{width}; "
                                         f"img_size={list(self.img_size)} is too small for {stages} stages")
                    height, width = or_pool.output_size(height, width)
                    blocks.append(LogicTreeConvPool2d(conv, or_pool))  # fused tree + OR pool where a backend has it
                else:
                    blocks.append(nn.Sequential(conv))  # the tree conv alone (its own, unfused op)
                self.feature_info.append(
                    dict(num_chs=out_c, reduction=self.img_size[0] // height, module=f"stages.{i}"))
                in_c = out_c
            self.stages = nn.Sequential(*blocks)
            self.feature_hw = (height, width)
            self.num_features = in_c
            self.flat_features = in_c * height * width
            self.head_hidden_size = self.head_widths[-2] if len(self.head_widths) > 1 else self.flat_features
            self.head = self._make_head(num_classes, generator)
        if dtype is not None:
            self.to(dtype=dtype)

    def _make_head(self, num_classes: int, generator: Optional[torch.Generator] = None) -> nn.Module:
        check_num_classes(num_classes)
        if num_classes == 0 and not self.global_pool:
            return UnpooledHead()
        return LogicHead(self.flat_features, self.head_widths, num_classes, tau=self.group_tau,
                         drop_rate=self.drop_rate, generator=generator, spec=self.head_spec)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.classifier if isinstance(self.head, LogicHead) else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new classifier for ``num_classes`` (any n >= 0); the hidden head layers stay.

        0 leaves the pre-logits bits (``head_hidden_size``); ``global_pool=""`` with 0 drops the whole head,
        so the model returns the unpooled map (a later ``reset_classifier(n)`` builds a fresh head).
        """
        check_num_classes(num_classes)
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool, type(self).__name__)
        if isinstance(self.head, LogicHead) and (num_classes or self.global_pool):
            self.head.reset(num_classes)
        else:
            self.head = self._make_head(num_classes)
        move_like(self.head, self.encoder.thresholds, self.training)
        self.num_classes = num_classes

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^encoder", blocks=r"^stages\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            raise ValueError("LogicTreeNet does not support gradient checkpointing")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.encoder(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits)

    @torch.jit.ignore
    def gate_count(self) -> Dict[str, int]:
        """Gates of the discrete circuit, two ways.

        Physical count (``trees``, ``or_pools``, ``dense``, ``total``): every gate the netlist holds, i.e.
        each tree's ``2^depth - 1`` gates at every output position, ``kernel^2 - 1`` OR gates per pooled
        output, and one gate per dense neuron. It depends on the shape only and equals
        ``discretize(self).num_gates`` less the constant-0 gate that zero padding and uneven class groups
        read (the netlist holds it once when either is present).

        Paper convention (``paper_trees``, ``or_pools``, ``paper_dense``, ``paper_total``): the same, less
        the gates whose trained choice is a pass-through (``PASS_THROUGH_GATES``: 'A' or 'B'), which are
        wires in hardware. Petersen et al., "Convolutional Differentiable Logic Gate Networks" (NeurIPS
        2024, arXiv 2411.04732) report gate counts (CIFAR-10 S 0.40M, M 3.08M; MNIST S 147K, M 566K)
        that are less than half of, or well under, the physical count of the architecture of their
        Fig. 6 and appendix (CIFAR-10 S: 960,512); asked about this (github.com/Felix-Petersen/difflogic
        issue #42), the author replied that gates left as residual pass-throughs are not counted. So the
        published figure depends on the trained gates and cannot be computed from the shape; the
        physical count is its upper bound. Whether the paper counts the OR pool gates is not stated;
        they are counted here. Dead logic behind a pass-through is not removed (``Netlist.simplify``
        does that). For an untrained residual-initialised model every tree and dense gate is 'A', so
        ``paper_total == or_pools``.
        """
        height, width = self.img_size
        trees = pools = paper_trees = 0
        for stage in self.stages:
            conv = stage[0]
            height, width = conv.output_size(height, width)
            positions = height * width
            trees += conv.out_channels * (conv.num_leaves - 1) * positions
            paper_trees += _non_pass_through(conv.gate_ids()) * positions
            if len(stage) > 1:  # an OR pool follows
                pool = stage[1]
                height, width = pool.output_size(height, width)
                pools += conv.out_channels * (pool.kernel_size ** 2 - 1) * height * width
        dense = paper_dense = 0
        if isinstance(self.head, LogicHead):
            layers = [m for m in (*self.head.hidden, self.head.classifier) if isinstance(m, LogicDense)]
            dense = sum(layer.out_features for layer in layers)
            paper_dense = sum(_non_pass_through(layer.gate_ids()) for layer in layers)
        return {"trees": trees, "or_pools": pools, "dense": dense, "total": trees + pools + dense,
                "paper_trees": paper_trees, "paper_dense": paper_dense,
                "paper_total": paper_trees + pools + paper_dense}

    @torch.jit.ignore
    def to_netlist(self):
        """The discrete circuit this model computes in eval mode (see ``lgn_nas.discretize``)."""
        from ..netlist import NetlistBuilder

        if not self.num_classes:
            raise ValueError("this model has no classifier head (num_classes=0): nothing to discretize")
        builder = NetlistBuilder(self.encoder.to_encoding((self.in_chans, *self.img_size)))
        ids = builder.input_ids()
        for stage in self.stages:
            for module in stage:
                ids = module.lower(builder, ids)
        ids = np.asarray(ids).reshape(-1)
        for layer in self.head.hidden:
            ids = layer.lower(builder, ids)
        ids = self.head.classifier.lower(builder, ids)
        metadata = {"architecture": self.architecture()}
        return builder.build(ids, num_classes=self.num_classes, tau=self.group_tau, metadata=metadata)


def _create_lgn_conv(variant: str, pretrained: bool = False, **kwargs) -> LogicTreeNet:
    """Build ``variant``: its ``VARIANT_ARGS``, then the pretrained weights' model kwargs, then ``kwargs``."""
    kwargs, run_args = pretrained_model_kwargs(variant, pretrained, kwargs)
    kwargs = _variant(variant, kwargs)
    out_indices = kwargs.pop("out_indices", None)
    stages = len(kwargs.get("channels", (0, 0, 0, 0)))
    feature_cfg = dict(flatten_sequential=True, out_indices=out_indices or tuple(range(stages)))
    model = build_lgn(LogicTreeNet, variant, pretrained, feature_cfg=feature_cfg,
                      pretrained_filter_fn=checkpoint_filter_fn, **kwargs)
    if run_args:  # so save_for_hf / get_model_args rebuild the weights' shape (create_model adds the caller's)
        model._model_args = dict(run_args)
    return model


def _cfg(**kwargs) -> Dict[str, Any]:
    fields = dict(input_size=(3, 32, 32), pool_size=(2, 2), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return lgn_cfg(**dict(fields, **kwargs), first_conv="stages.0.0", classifier="head.classifier")


def _mnist_cfg(**kwargs) -> Dict[str, Any]:
    return _cfg(**dict(dict(input_size=(1, 28, 28), pool_size=(3, 3), mean=(0.0,), std=(1.0,)), **kwargs))


default_cfgs = generate_default_cfgs({
    # Shipped weights first, so pretrained=True picks them (records: lgn_nas/pretrained/weights/<tag>.json);
    # while a tag's file is absent, pretrained=True names the missing file and pretrained=False is unaffected.
    "lgn_conv_s.cifar10_jpeg": _cfg(file=weights_file("lgn_conv_s.cifar10_jpeg")),
    # the conv search's CIFAR-10 genome (2 x 85 trees, study conv-cifar-v2 trial 68); its file carries the genome
    "lgn_conv_s.cifar10_jpeg_nas": _cfg(file=weights_file("lgn_conv_s.cifar10_jpeg_nas"), pool_size=(6, 6)),
    "lgn_conv_mnist_s.mnist": _mnist_cfg(file=weights_file("lgn_conv_mnist_s.mnist")),
    # the conv search's MNIST genome (2 x 76 trees, study conv-mnist-v2 trial 45); its file carries the genome
    "lgn_conv_mnist_s.mnist_nas": _mnist_cfg(file=weights_file("lgn_conv_mnist_s.mnist_nas"), pool_size=(5, 5)),
    "lgn_conv_s.untrained": _cfg(),
    "lgn_conv_m.untrained": _cfg(),
    "lgn_conv_b.untrained": _cfg(),
    "lgn_conv_l.untrained": _cfg(),
    "lgn_conv_g.untrained": _cfg(),
    "lgn_conv_mnist_s.untrained": _mnist_cfg(),
    "lgn_conv_mnist_m.untrained": _mnist_cfg(),
    "lgn_conv_mnist_l.untrained": _mnist_cfg(),
})


def _cifar_args(k: int, *, input_bits: int, group_tau: float, head_scale: int = 1) -> Dict[str, Any]:
    flat = 32 * k * 2 * 2
    return dict(channels=[k, 4 * k, 16 * k, 32 * k], kernel_size=3, padding=1, tree_depth=3,
                head_widths=[head_scale * flat * 10, head_scale * flat * 5, head_scale * flat * 10 // 4],
                input_bits=input_bits, group_tau=group_tau, in_chans=3, img_size=32)


def _mnist_args(k: int, *, group_tau: float) -> Dict[str, Any]:
    return dict(channels=[k, 3 * k, 9 * k], kernel_size=[5, 3, 3], padding=[0, 1, 1], tree_depth=3,
                head_widths=[1280 * k, 640 * k, 320 * k], input_bits=1, group_tau=group_tau, in_chans=1,
                img_size=28)


# The registered shapes (constructor arguments), so counts and checks can read them without building.
VARIANT_ARGS: Dict[str, Dict[str, Any]] = {
    "lgn_conv_s": _cifar_args(32, input_bits=2, group_tau=20.0),
    "lgn_conv_m": _cifar_args(256, input_bits=3, group_tau=40.0),
    "lgn_conv_b": _cifar_args(512, input_bits=31, group_tau=280.0),
    "lgn_conv_l": _cifar_args(1024, input_bits=31, group_tau=340.0, head_scale=2),
    "lgn_conv_g": _cifar_args(2048, input_bits=31, group_tau=450.0, head_scale=2),
    "lgn_conv_mnist_s": _mnist_args(16, group_tau=6.5),
    "lgn_conv_mnist_m": _mnist_args(64, group_tau=28.0),
    "lgn_conv_mnist_l": _mnist_args(256, group_tau=35.0),
}


def _variant(name: str, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    return dict(copy.deepcopy(VARIANT_ARGS[name]), **kwargs)


@register_model
def lgn_conv_s(pretrained: bool = False, **kwargs) -> LogicTreeNet:
    """LogicTreeNet-S for CIFAR-10: k=32, 2 input bits, tau 20."""
    return _create_lgn_conv("lgn_conv_s", pretrained, **kwargs)


@register_model
def lgn_conv_m(pretrained: bool = False, **kwargs) -> LogicTreeNet:
    """LogicTreeNet-M for CIFAR-10: k=256, tau 40."""
    return _create_lgn_conv("lgn_conv_m", pretrained, **kwargs)


@register_model
def lgn_conv_b(pretrained: bool = False, **kwargs) -> LogicTreeNet:
    """LogicTreeNet-B for CIFAR-10: k=512, 31 thresholds per channel."""
    return _create_lgn_conv("lgn_conv_b", pretrained, **kwargs)


@register_model
def lgn_conv_l(pretrained: bool = False, **kwargs) -> LogicTreeNet:
    """LogicTreeNet-L for CIFAR-10: k=1024, doubled dense head."""
    return _create_lgn_conv("lgn_conv_l", pretrained, **kwargs)


@register_model
def lgn_conv_g(pretrained: bool = False, **kwargs) -> LogicTreeNet:
    """LogicTreeNet-G for CIFAR-10: k=2048, doubled dense head."""
    return _create_lgn_conv("lgn_conv_g", pretrained, **kwargs)


@register_model
def lgn_conv_mnist_s(pretrained: bool = False, **kwargs) -> LogicTreeNet:
    """LogicTreeNet-S for MNIST: k=16, blocks 5x5 (no padding), 3x3, 3x3."""
    return _create_lgn_conv("lgn_conv_mnist_s", pretrained, **kwargs)


@register_model
def lgn_conv_mnist_m(pretrained: bool = False, **kwargs) -> LogicTreeNet:
    """LogicTreeNet-M for MNIST: k=64."""
    return _create_lgn_conv("lgn_conv_mnist_m", pretrained, **kwargs)


@register_model
def lgn_conv_mnist_l(pretrained: bool = False, **kwargs) -> LogicTreeNet:
    """LogicTreeNet-L for MNIST: k=256, the next step up from M (the paper's MNIST L, 1.27M gates, does not state its k)."""
    return _create_lgn_conv("lgn_conv_mnist_l", pretrained, **kwargs)
