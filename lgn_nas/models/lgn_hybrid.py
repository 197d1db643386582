"""Hybrid networks: a float timm backbone feeding a logic gate network head.

Papers:
    `Deep Differentiable Logic Gate Networks` - Petersen et al., NeurIPS 2022 (the LGN head)
    `Deep Residual Learning for Image Recognition` - He et al., CVPR 2016 (the default backbone)

Any timm model that supports ``features_only=True`` can be the backbone (``backbone="resnet18"``); the
feature map at ``feature_index`` (the cut point) is normalised, binarised with a straight-through
thermometer and classified by a ``LogicBlock``. The whole model trains end to end; ``discretize``
gives the head's circuit, whose input is ``head_input(x)`` (the normalised backbone features).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Union

import torch
from torch import nn

import timm
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..layers import LogicBlock
from ._heads import PoolHead

__all__ = ["HybridLGN", "HybridHead"]


class HybridHead(nn.Module):
    """Flatten -> BatchNorm -> (dropout) -> LogicBlock with GroupSum."""

    def __init__(self, in_features: int, widths: Sequence[int], num_classes: int, *, drop_rate: float = 0.0,
                 **block_args: Any) -> None:
        super().__init__()
        self.drop_rate = float(drop_rate)
        self.norm = nn.BatchNorm1d(in_features)
        self.block = LogicBlock(in_features, widths, num_classes=num_classes, **block_args)
        self.classifier = self.block.classifier

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The logic block's raw input: normalised, flattened features."""
        return self.norm(x.flatten(1))

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.normalize(x)
        if self.drop_rate > 0.0:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        if pre_logits:
            return self.block.layers(self.block.encoder(x))
        return self.block(x)


class HybridLGN(nn.Module):
    """timm backbone (features_only) -> BatchNorm -> LogicBlock with a GroupSum head."""

    def __init__(
            self,
            *,
            backbone: str = "resnet18",
            feature_index: int = -1,
            num_classes: int = 10,
            in_chans: int = 3,
            img_size: Union[int, Sequence[int]] = 32,
            head_widths: Sequence[int] = (4000, 4000),
            input_bits: int = 2,
            group_tau: float = 10.0,
            connectivity: str = "random",
            relaxation: str = "softmax",
            parametrization: str = "raw16",
            init: str = "residual",
            temperature: float = 1.0,
            global_pool: str = "avg",
            drop_rate: float = 0.0,
            backend: str = "auto",
            seed: Optional[int] = None,
            backbone_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        if backbone not in timm.list_models():
            raise ValueError(f"unknown backbone {backbone!r}: expected a timm model name (timm.list_models())")
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
        self.backbone = timm.create_model(backbone, features_only=True, out_indices=(feature_index,),
                                          in_chans=in_chans, pretrained=False, **(backbone_kwargs or {}))
        with torch.no_grad():
            was_training = self.backbone.training
            shape = self.backbone.eval()(torch.zeros(1, in_chans, *self.img_size))[0].shape
            self.backbone.train(was_training)
        self.num_features = shape[1]
        self.feature_hw = tuple(shape[2:])
        self.flat_features = int(torch.tensor(shape[1:]).prod())
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.drop_rate = float(drop_rate)
        self.group_tau = float(group_tau)
        self.head_widths = list(head_widths)
        self._head_args = dict(group_tau=group_tau, input_bits=input_bits, connectivity=connectivity,
                               relaxation=relaxation, parametrization=parametrization, init=init,
                               temperature=temperature, backend=backend)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.head = self._make_head(num_classes, generator)
        self.head_hidden_size = self.head_widths[-2] if len(self.head_widths) > 1 else self.flat_features
        self.feature_info = self.backbone.feature_info

    def _make_head(self, num_classes: int, generator: Optional[torch.Generator] = None) -> nn.Module:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
        if num_classes == 0:
            return PoolHead(self.global_pool)
        return HybridHead(self.flat_features, self.head_widths, num_classes, drop_rate=self.drop_rate,
                          generator=generator, **self._head_args)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.classifier if isinstance(self.head, HybridHead) else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = self._make_head(num_classes).train(self.training)
        self.num_classes = num_classes

    @torch.jit.ignore
    def set_temperature(self, temperature: float) -> None:
        for module in self.head.modules():
            if hasattr(module, "temperature") and isinstance(module.temperature, float):
                module.temperature = float(temperature)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)[0]

    @torch.jit.ignore
    def head_input(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised backbone features the logic head reads (the netlist's raw input)."""
        if not isinstance(self.head, HybridHead):
            raise ValueError("this model has no logic head (num_classes=0)")
        return self.head.normalize(self.forward_features(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def to_netlist(self):
        """The logic head's circuit; feed it ``head_input(x)`` (eval mode) to get the model's scores."""
        if not isinstance(self.head, HybridHead):
            raise ValueError("this model has no classifier head (num_classes=0): nothing to discretize")
        netlist = self.head.block.to_netlist()
        netlist.metadata["architecture"] = getattr(self, "pretrained_cfg", {}).get("architecture", "HybridLGN")
        netlist.metadata["input"] = "head_input(x): normalised backbone features"
        return netlist


def _create_hybrid(variant: str, pretrained: bool = False, **kwargs) -> HybridLGN:
    if kwargs.pop("features_only", False):
        raise ValueError(f"{variant}: for features, create the backbone itself with features_only=True")
    return build_model_with_cfg(HybridLGN, variant, pretrained, **kwargs)


def _cfg(**kwargs) -> Dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (1, 1),
        "fixed_input_size": True,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
        "first_conv": "backbone.conv1",
        "classifier": "head.block.classifier",
        "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "lgn_hybrid_resnet18.untrained": _cfg(),
    "lgn_hybrid_mobilenetv3.untrained": _cfg(first_conv="backbone.conv_stem"),
})


@register_model
def lgn_hybrid_resnet18(pretrained: bool = False, **kwargs) -> HybridLGN:
    """ResNet-18 features (last stage) -> 2 x 4,000-gate logic head."""
    model_args = dict(backbone="resnet18", head_widths=[4000, 4000])
    return _create_hybrid("lgn_hybrid_resnet18", pretrained, **dict(model_args, **kwargs))


@register_model
def lgn_hybrid_mobilenetv3(pretrained: bool = False, **kwargs) -> HybridLGN:
    """MobileNetV3-Small features (last stage) -> 2 x 4,000-gate logic head."""
    model_args = dict(backbone="mobilenetv3_small_100", head_widths=[4000, 4000])
    return _create_hybrid("lgn_hybrid_mobilenetv3", pretrained, **dict(model_args, **kwargs))
