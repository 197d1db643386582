"""Hybrid networks: a float timm backbone feeding a logic gate network head.

Papers:
    `Deep Differentiable Logic Gate Networks` - Petersen et al., NeurIPS 2022 (the LGN head)
    `Deep Residual Learning for Image Recognition` - He et al., CVPR 2016 (the default backbone)

Any timm model that supports ``features_only=True`` can be the backbone (``backbone="resnet18"``); the
feature map at ``feature_index`` (the cut point) is normalised, binarised with a straight-through
thermometer and classified by a ``LogicBlock``. The whole model trains end to end; ``discretize``
gives the head's circuit, whose input is ``head_input(x)`` (the normalised backbone features).
"""
import contextlib
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

import timm
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from ..interfaces import HasLogicHead
from ..layers import LogicBlock, LogicSpec
from ._args import positive_ints
from ._base import LogicNetwork, lgn_cfg
from ._builder import build_lgn
from ._heads import UnpooledHead, check_global_pool, check_num_classes, move_like

__all__ = ["HybridLGN", "HybridHead"]


class HybridHead(nn.Module):
    """Flatten -> BatchNorm -> (dropout) -> LogicBlock with GroupSum; ``reset`` swaps the block's last layer.

    With ``num_classes=0`` the block has no last layer and the head returns its hidden layers' bits.
    """

    def __init__(self, in_features: int, widths: Sequence[int], num_classes: int, *, drop_rate: float = 0.0,
                 **block_args: Any) -> None:
        super().__init__()
        self.drop_rate = float(drop_rate)
        self.norm = nn.BatchNorm1d(in_features)
        self.block = LogicBlock(in_features, widths, num_classes=num_classes, **block_args)
        if not num_classes:
            self.block.reset_classifier(0)
        self.hidden_size = self.block.hidden_size

    def reset(self, num_classes: int) -> None:
        self.block.reset_classifier(num_classes)

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

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # Checkpoints written before the head dropped its alias of block.classifier hold it twice.
        for key in [k for k in state_dict if k.startswith(prefix + "classifier.")]:
            state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def _backbone_levels(backbone: str, feature_index: int, in_chans: int,
                     backbone_kwargs: Dict[str, Any]) -> Tuple[int, ...]:
    """The backbone's feature levels up to the cut (``feature_index``; negative counts from the last)."""
    if feature_index >= 0:
        return tuple(range(feature_index + 1))
    with torch.device("meta"):  # only to count the levels
        probe = timm.create_model(backbone, features_only=True, out_indices=(feature_index,), in_chans=in_chans,
                                  pretrained=False, **backbone_kwargs)
    return tuple(range(len(probe.feature_info.info) + feature_index + 1))


class HybridLGN(LogicNetwork, HasLogicHead):
    """timm backbone (features_only) -> BatchNorm -> LogicBlock with a GroupSum head.

    timm's feature API: ``forward_features`` returns the backbone's map at the cut
    (``num_features`` channels), ``forward_head(pre_logits=True)`` the bits the classifier reads
    (``head_hidden_size``), also what the model returns with ``num_classes=0``; with ``num_classes=0,
    global_pool=""`` it has no head and returns the map. ``features_only=True`` gives the backbone's
    feature maps up to the cut. ``**strategies``: the six of :class:`~lgn_nas.layers.LogicSpec` for the
    logic head, checked once.
    """

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
            global_pool: str = "flatten",
            drop_rate: float = 0.0,
            drop_path_rate: Optional[float] = None,
            drop_block_rate: Optional[float] = None,
            seed: Optional[int] = None,
            backbone_kwargs: Optional[Dict[str, Any]] = None,
            device: Optional[Union[str, torch.device]] = None,
            dtype: Optional[torch.dtype] = None,
            **strategies: Any,
    ) -> None:
        super().__init__()
        self.logic_spec = LogicSpec.coerce(owner=type(self).__name__, **strategies)
        if backbone not in timm.list_models():
            raise ValueError(f"unknown backbone {backbone!r}: expected a timm model name (timm.list_models())")
        check_num_classes(num_classes)
        self.global_pool = check_global_pool(global_pool, type(self).__name__)
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
        self.in_chans = in_chans
        backbone_kwargs = dict(backbone_kwargs or {})
        for name, value in (("drop_path_rate", drop_path_rate), ("drop_block_rate", drop_block_rate)):
            if value is not None:  # the backbone's regularizers (timm refuses them where it has none)
                backbone_kwargs.setdefault(name, value)
        with torch.device(device) if device is not None else contextlib.nullcontext():
            levels = _backbone_levels(backbone, feature_index, in_chans, backbone_kwargs)
            self.backbone = timm.create_model(backbone, features_only=True, out_indices=levels, in_chans=in_chans,
                                              pretrained=False, **backbone_kwargs)
            with torch.no_grad():
                was_training = self.backbone.training
                shape = self.backbone.eval()(torch.zeros(1, in_chans, *self.img_size))[-1].shape
                self.backbone.train(was_training)
            self.num_features = shape[1]
            self.feature_hw = tuple(shape[2:])
            self.flat_features = math.prod(shape[1:])
            self.num_classes = num_classes
            self.drop_rate = float(drop_rate)
            self.group_tau = float(group_tau)
            self.head_widths = positive_ints("head_widths", head_widths)
            self.head_hidden_size = (self.head_widths[-2] if len(self.head_widths) > 1
                                     else self.flat_features * input_bits)
            self._head_args = dict(group_tau=group_tau, input_bits=input_bits, spec=self.logic_spec)
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            self.head = self._make_head(num_classes, generator)
        self.feature_info = [dict(info, module="backbone." + info["module"])
                             for info in self.backbone.feature_info.get_dicts()]
        if dtype is not None:
            self.to(dtype=dtype)

    def _make_head(self, num_classes: int, generator: Optional[torch.Generator] = None) -> nn.Module:
        check_num_classes(num_classes)
        if num_classes == 0 and not self.global_pool:
            return UnpooledHead()
        return HybridHead(self.flat_features, self.head_widths, num_classes, drop_rate=self.drop_rate,
                          generator=generator, **self._head_args)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.block.classifier if isinstance(self.head, HybridHead) else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new last logic layer for ``num_classes`` (any n >= 0); the norm and hidden layers stay.

        ``global_pool=""`` with 0 drops the whole head (the model returns the backbone's map).
        """
        check_num_classes(num_classes)
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool, type(self).__name__)
        if isinstance(self.head, HybridHead) and (num_classes or self.global_pool):
            self.head.reset(num_classes)
        else:
            like = next(self.backbone.parameters(), None)
            self.head = move_like(self._make_head(num_classes), like, self.training)
        self.num_classes = num_classes

    @torch.jit.ignore
    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """The backbone's feature maps up to the cut (timm's API; the backbone always runs to the cut)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r} is not supported: expected 'NCHW'")
        take_indices, _ = feature_take_indices(len(self.feature_info), indices)
        features = self.backbone(x)
        intermediates = [features[i] for i in take_indices]
        if intermediates_only:
            return intermediates
        return features[-1], intermediates

    @torch.jit.ignore
    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the logic head (the backbone is kept to the cut); returns the kept indices."""
        take_indices, _ = feature_take_indices(len(self.feature_info), indices)
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)[-1]

    @torch.jit.ignore
    def head_input(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised backbone features the logic head reads (the netlist's raw input)."""
        if not isinstance(self.head, HybridHead):
            raise ValueError("this model has no logic head (num_classes=0, global_pool='')")
        return self.head.normalize(self.forward_features(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits)

    @torch.jit.ignore
    def to_netlist(self):
        """The logic head's circuit; feed it ``head_input(x)`` (eval mode) to get the model's scores."""
        if not self.num_classes or not isinstance(self.head, HybridHead):
            raise ValueError("this model has no classifier head (num_classes=0): nothing to discretize")
        netlist = self.head.block.to_netlist()
        netlist.metadata["architecture"] = self.architecture()
        netlist.metadata["input"] = "head_input(x): normalised backbone features"
        return netlist


def _create_hybrid(variant: str, pretrained: bool = False, **kwargs) -> HybridLGN:
    # features_only: the backbone's maps up to the cut, all of them unless out_indices says otherwise
    feature_cfg = dict(feature_cls="getter", out_indices=None)
    return build_lgn(HybridLGN, variant, pretrained, feature_cfg=feature_cfg, **kwargs)


def _cfg(**kwargs) -> Dict[str, Any]:
    fields = dict(first_conv="backbone.conv1")
    return lgn_cfg(input_size=(3, 32, 32), pool_size=(1, 1), mean=(0.4914, 0.4822, 0.4465),
                   std=(0.2470, 0.2435, 0.2616), classifier="head.block.classifier", **dict(fields, **kwargs))


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
