"""Dense (randomly wired) logic gate networks.

Papers:
    `Deep Differentiable Logic Gate Networks` - Petersen et al., NeurIPS 2022
        https://arxiv.org/abs/2210.08277
    `Mind the Gap: Removing the Discretization Gap in Differentiable Logic Gate Networks`
        - Yousefi et al., NeurIPS 2025 (Gumbel straight-through training)

A thermometer encoder turns the image into bits, ``depth`` layers of ``LogicDense`` gates follow,
and a ``GroupSum`` head counts each class's output bits. The last logic layer is the classifier.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..layers import GroupSum, LogicDense, Thermometer
from ..pretrained import checkpoint_filter_fn, pretrained_model_kwargs, weights_file

__all__ = ["LogicDenseNet"]


def _as_pair(size: Union[int, Sequence[int]]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"img_size must be an int or (height, width), got {size!r}")
    return size


def _widths(depth: int, width: Union[int, Sequence[int]]) -> List[int]:
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    widths = [width] * depth if isinstance(width, int) and not isinstance(width, bool) else list(width)
    if len(widths) != depth or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in widths):
        raise ValueError(f"width must be a positive int or a list of {depth} positive ints, got {width!r}")
    return widths


class LogicDenseNet(nn.Module):
    """Thermometer encoder -> ``depth`` randomly wired logic layers -> GroupSum.

    All constructor arguments are plain JSON values so a genome, a checkpoint config and timm's
    ``config.json`` hold the same dict. ``init`` defaults to ``gaussian``: on MNIST one epoch of
    ``lgn_dense_s`` reached 89.3% discrete accuracy with it against 68.9% with the residual init, whose
    argmax gates mostly stay pass-throughs (measured here; the residual init matters for deep conv nets).
    ``input_crop`` (an int or (height, width)) wires the first logic layer to the central crop of the
    image only, as the 2022 paper's MNIST runs (20x20): the border pixels, blank on MNIST, are never
    read. The model and its netlist still take the full image.
    """

    def __init__(
            self,
            *,
            num_classes: int = 10,
            in_chans: int = 1,
            img_size: Union[int, Sequence[int]] = 28,
            depth: int = 6,
            width: Union[int, Sequence[int]] = 8000,
            input_bits: int = 1,
            thresholds: str = "uniform",
            connectivity: str = "random",
            relaxation: str = "softmax",
            parametrization: str = "raw16",
            init: str = "gaussian",
            temperature: float = 1.0,
            group_tau: float = 10.0,
            global_pool: str = "",
            drop_rate: float = 0.0,
            backend: str = "auto",
            seed: Optional[int] = None,
            input_crop: Optional[Union[int, Sequence[int]]] = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.img_size = _as_pair(img_size)
        self.widths = _widths(depth, width)
        self.group_tau = float(group_tau)
        self.drop_rate = float(drop_rate)
        self.global_pool = global_pool
        self._layer_args: Dict[str, Any] = dict(
            connectivity=connectivity, relaxation=relaxation, parametrization=parametrization, init=init,
            temperature=temperature, backend=backend)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None

        self.encoder = Thermometer(input_bits, in_channels=in_chans, method=thresholds)
        features = self.encoder.out_channels * self.img_size[0] * self.img_size[1]
        self.input_features = features
        self.input_crop = None if input_crop is None else list(_as_pair(input_crop))
        subset = self._crop_subset()
        blocks = []
        for w in self.widths[:-1]:
            blocks.append(LogicDense(features, w, generator=generator, in_subset=subset, **self._layer_args))
            features, subset = w, None
        self.blocks = nn.Sequential(*blocks)
        self.num_features = self.head_hidden_size = features
        self.head_width = self.widths[-1]
        self._head_subset = subset  # the classifier is the first layer when depth == 1
        self.classifier, self.group_sum = self._make_head(num_classes, generator)

    def _crop_subset(self) -> Optional[torch.Tensor]:
        """Encoded-feature indices of the pixels inside the centre crop (None: every feature)."""
        if self.input_crop is None:
            return None
        (height, width), (ch, cw) = self.img_size, self.input_crop
        if not (1 <= ch <= height and 1 <= cw <= width):
            raise ValueError(f"input_crop={self.input_crop} must fit inside img_size={list(self.img_size)}")
        top, left = (height - ch) // 2, (width - cw) // 2
        mask = torch.zeros(self.encoder.out_channels, height, width, dtype=torch.bool)
        mask[:, top:top + ch, left:left + cw] = True
        return mask.flatten().nonzero().flatten()

    def _make_head(self, num_classes: int, generator: Optional[torch.Generator] = None) -> tuple[nn.Module, nn.Module]:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
        if num_classes == 0:
            return nn.Identity(), nn.Identity()
        if self.head_width % num_classes:
            raise ValueError(
                f"num_classes={num_classes} does not divide the head width {self.head_width}: "
                f"choose a last-layer width that is a multiple of num_classes")
        classifier = LogicDense(self.num_features, self.head_width, generator=generator,
                                in_subset=self._head_subset, **self._layer_args)
        return classifier, GroupSum(num_classes, self.group_tau)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the last logic layer and GroupSum for ``num_classes`` (0 removes the head)."""
        if global_pool is not None:
            self.global_pool = global_pool
        self.classifier, self.group_sum = self._make_head(num_classes)
        self.classifier.train(self.training)
        self.num_classes = num_classes

    @torch.jit.ignore
    def set_temperature(self, temperature: float) -> None:
        """Set the relaxation temperature of every logic layer (for temperature schedules)."""
        for module in self.modules():
            if isinstance(module, LogicDense):
                module.temperature = float(temperature)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^encoder", blocks=r"^blocks\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            raise ValueError("LogicDenseNet does not support gradient checkpointing")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder(x).flatten(1)
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        if pre_logits:
            return x
        return self.group_sum(self.classifier(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def to_netlist(self):
        """The discrete circuit this model computes in eval mode (see ``lgn_nas.discretize``)."""
        from ..netlist import NetlistBuilder

        if not isinstance(self.classifier, LogicDense):
            raise ValueError("this model has no classifier head (num_classes=0): nothing to discretize")
        builder = NetlistBuilder(self.encoder.to_encoding((self.in_chans, *self.img_size)))
        ids = np.asarray(builder.input_ids()).reshape(-1)
        for layer in self.blocks:
            ids = layer.lower(builder, ids)
        ids = self.classifier.lower(builder, ids)
        metadata = {"architecture": getattr(self, "pretrained_cfg", {}).get("architecture", type(self).__name__)}
        return builder.build(ids, num_classes=self.num_classes, tau=self.group_tau, metadata=metadata)


def _create_lgn_dense(variant: str, pretrained: bool, model_args: Dict[str, Any], **kwargs) -> LogicDenseNet:
    """Build ``variant``: its ``model_args``, then the pretrained weights' model kwargs, then ``kwargs``."""
    if kwargs.pop("features_only", False):
        raise ValueError(f"{variant} has no spatial feature maps: features_only=True is not supported")
    kwargs, run_args = pretrained_model_kwargs(variant, pretrained, kwargs)
    model = build_model_with_cfg(LogicDenseNet, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                 **dict(model_args, **kwargs))
    if run_args:  # so save_for_hf / get_model_args rebuild the weights' shape (create_model adds the caller's)
        model._model_args = dict(run_args)
    return model


def _cfg(**kwargs) -> Dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (1, 28, 28),
        "pool_size": None,
        "fixed_input_size": True,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.0,),
        "std": (1.0,),
        "first_conv": "blocks.0",
        "classifier": "classifier",
        "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    # Shipped weights first, so pretrained=True picks them. No description: save_for_hf would copy it into
    # every model exported from these cfgs; the command and accuracy are in lgn_nas/pretrained/weights/<tag>.json.
    "lgn_dense_s.mnist": _cfg(file=weights_file("lgn_dense_s.mnist")),
    "lgn_dense_m.fashion_mnist": _cfg(file=weights_file("lgn_dense_m.fashion_mnist")),
    "lgn_dense_s.untrained": _cfg(),
    "lgn_dense_m.untrained": _cfg(),
    "lgn_dense_l.untrained": _cfg(),
})


@register_model
def lgn_dense_s(pretrained: bool = False, **kwargs) -> LogicDenseNet:
    """Dense LGN, 6 x 8,000 gates (48K): the 2022 paper's small MNIST network."""
    model_args = dict(depth=6, width=8000, group_tau=10.0)
    return _create_lgn_dense("lgn_dense_s", pretrained, model_args, **kwargs)


@register_model
def lgn_dense_m(pretrained: bool = False, **kwargs) -> LogicDenseNet:
    """Dense LGN, 6 x 64,000 gates (384K): the 2022 paper's large MNIST network."""
    model_args = dict(depth=6, width=64000, group_tau=30.0)
    return _create_lgn_dense("lgn_dense_m", pretrained, model_args, **kwargs)


@register_model
def lgn_dense_l(pretrained: bool = False, **kwargs) -> LogicDenseNet:
    """Dense LGN, 5 x 256,000 gates (1.28M): the 2022 paper's CIFAR-10 L shape."""
    model_args = dict(depth=5, width=256000, group_tau=100.0)
    return _create_lgn_dense("lgn_dense_l", pretrained, model_args, **kwargs)
