"""Dense (randomly wired) logic gate networks.

Papers:
    `Deep Differentiable Logic Gate Networks` - Petersen et al., NeurIPS 2022
        https://arxiv.org/abs/2210.08277
    `Mind the Gap: Removing the Discretization Gap in Differentiable Logic Gate Networks`
        - Yousefi et al., NeurIPS 2025 (Gumbel straight-through training)

A thermometer encoder turns the image into bits, ``depth`` layers of ``LogicDense`` gates follow,
and a ``GroupSum`` head counts each class's output bits. The last logic layer is the classifier.
"""
import contextlib
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from ..groups import check_groups
from ..layers import GroupSum, LogicDense, LogicSpec, Thermometer
from ..pretrained import checkpoint_filter_fn, pretrained_model_kwargs, weights_file
from ._args import refuse_unused_drop
from ._base import LogicNetwork, lgn_cfg
from ._builder import build_lgn
from ._heads import check_global_pool, check_num_classes, move_like

__all__ = ["LogicDenseNet"]

# Where the dense family's strategies differ from LogicSpec's (see the class docstring for why).
STRATEGY_DEFAULTS = {"init": "gaussian"}


def _as_pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"img_size must be an int or (height, width), got {size!r}")
    return size


def _widths(depth: int, width: Union[int, Sequence[int]]) -> List[int]:
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    widths = ([width] * depth if isinstance(width, int) and not isinstance(width, bool)
              else list(width) if isinstance(width, (list, tuple)) else [])
    if len(widths) != depth or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in widths):
        raise ValueError(f"width must be a positive int or a list of {depth} positive ints, got {width!r}")
    return widths


class LogicDenseNet(LogicNetwork):
    """Thermometer encoder -> ``depth`` randomly wired logic layers -> GroupSum.

    All constructor arguments are plain JSON values so a genome, a checkpoint config and timm's
    ``config.json`` hold the same dict; ``**strategies`` are the six of :class:`~lgn_nas.layers.LogicSpec`
    (``connectivity``, ``relaxation``, ``parametrization``, ``init``, ``temperature``, ``backend``), checked
    once and shared by every layer. ``init`` defaults to ``gaussian``: on MNIST one epoch of
    ``lgn_dense_s`` reached 89.3% discrete accuracy with it against 68.9% with the residual init, whose
    argmax gates mostly stay pass-throughs (measured here; the residual init matters for deep conv nets).
    ``input_crop`` (an int or (height, width)) wires the first logic layer to the central crop of the
    image only, as the 2022 paper's MNIST runs (20x20): the border pixels, blank on MNIST, are never
    read. The model and its netlist still take the full image.

    timm's feature API: the last layer is the classifier and the layers before it are the body, whose
    bits ``forward_features`` returns as a ``(B, num_features, 1, 1)`` map (the layers have no spatial
    structure, so the map is 1x1, ``pool_size`` (1, 1)); ``features_only=True`` gives each hidden
    layer's bits that way (reduction: the image size).
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
            group_tau: float = 10.0,
            global_pool: str = "flatten",
            drop_rate: float = 0.0,
            drop_path_rate: Optional[float] = None,
            drop_block_rate: Optional[float] = None,
            seed: Optional[int] = None,
            input_crop: Optional[Union[int, Sequence[int]]] = None,
            device: Optional[Union[str, torch.device]] = None,
            dtype: Optional[torch.dtype] = None,
            **strategies: Any,
    ) -> None:
        super().__init__()
        refuse_unused_drop(type(self).__name__, drop_path_rate=drop_path_rate, drop_block_rate=drop_block_rate)
        self.logic_spec = LogicSpec.coerce(owner=type(self).__name__, defaults=STRATEGY_DEFAULTS, **strategies)
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.img_size = _as_pair(img_size)
        self.widths = _widths(depth, width)
        self.group_tau = float(group_tau)
        self.drop_rate = float(drop_rate)
        self.global_pool = check_global_pool(global_pool, type(self).__name__)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None

        with torch.device(device) if device is not None else contextlib.nullcontext():
            self.encoder = Thermometer(input_bits, in_channels=in_chans, method=thresholds, img_size=self.img_size)
            features = self.encoder.out_channels * self.img_size[0] * self.img_size[1]
            self.input_features = features
            self.input_crop = None if input_crop is None else list(_as_pair(input_crop))
            subset = self._crop_subset()
            blocks = []
            self.feature_info = []
            for i, w in enumerate(self.widths[:-1]):
                blocks.append(LogicDense(features, w, generator=generator, in_subset=subset, spec=self.logic_spec))
                features, subset = w, None
                self.feature_info.append(dict(num_chs=w, reduction=max(self.img_size), module=f"blocks.{i}"))
            self.blocks = nn.Sequential(*blocks)
            self.num_features = self.head_hidden_size = features
            self.feature_hw = (1, 1)
            self.head_width = self.widths[-1]
            self._head_subset = subset  # the classifier is the first layer when depth == 1
            self.classifier, self.group_sum = self._make_head(num_classes, generator)
        if dtype is not None:
            self.to(dtype=dtype)

    def _crop_subset(self) -> Optional[torch.Tensor]:
        """Encoded-feature indices of the pixels inside the centre crop (None: every feature)."""
        if self.input_crop is None:
            return None
        (height, width), (ch, cw) = self.img_size, self.input_crop
        if not (1 <= ch <= height and 1 <= cw <= width):
            raise ValueError(f"input_crop={self.input_crop} must fit inside img_size={list(self.img_size)}")
        top, left = (height - ch) // 2, (width - cw) // 2
        mask = torch.zeros(self.encoder.out_channels, height, width, dtype=torch.bool, device="cpu")
        mask[:, top:top + ch, left:left + cw] = True
        return mask.flatten().nonzero().flatten()

    def _make_head(self, num_classes: int, generator: Optional[torch.Generator] = None) -> Tuple[nn.Module, nn.Module]:
        check_num_classes(num_classes)
        if num_classes == 0:
            return nn.Identity(), nn.Identity()
        check_groups(self.head_width, num_classes, what="the head width")
        classifier = LogicDense(self.num_features, self.head_width, generator=generator,
                                in_subset=self._head_subset, spec=self.logic_spec)
        return classifier, GroupSum(num_classes, self.group_tau, in_features=self.head_width)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the last logic layer and GroupSum for ``num_classes`` (any n >= 0; 0 removes them).

        Without a classifier the model returns the pre-logits bits, ``(B, num_features)``, or with
        ``global_pool=""`` the ``(B, num_features, 1, 1)`` map.
        """
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool, type(self).__name__)
        classifier, group_sum = self._make_head(num_classes)
        self.classifier = move_like(classifier, self.encoder.thresholds, self.training)
        self.group_sum = group_sum.train(self.training)
        self.num_classes = num_classes

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^encoder", blocks=r"^blocks\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            raise ValueError("LogicDenseNet does not support gradient checkpointing")

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
        """The hidden layers' bits as ``(B, width, 1, 1)`` maps (timm's API; ``norm`` has nothing to apply).

        ``indices``: the last n layers if an int, all if None, else those layers.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r} is not supported: expected 'NCHW'")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        intermediates = []
        x = self.encoder(x).flatten(1)
        blocks = self.blocks[:max_index + 1] if stop_early or intermediates_only else self.blocks
        for i, block in enumerate(blocks):
            x = block(x)
            if i in take_indices:
                intermediates.append(x[:, :, None, None])
        if intermediates_only:
            return intermediates
        return x[:, :, None, None], intermediates

    @torch.jit.ignore
    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the layers after the last of ``indices`` (and the classifier); returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        if max_index < len(self.blocks) - 1:
            self.blocks = self.blocks[:max_index + 1]
            self.num_features = self.head_hidden_size = self.widths[max_index]
            prune_head = True  # the classifier reads the dropped layers
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.encoder(x).flatten(1))
        return x[:, :, None, None]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if not self.global_pool and (pre_logits or self.num_classes == 0):
            return x
        x = x.flatten(1)
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        if pre_logits:
            return x
        return self.group_sum(self.classifier(x))

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
        metadata = {"architecture": self.architecture()}
        return builder.build(ids, num_classes=self.num_classes, tau=self.group_tau, metadata=metadata)


def _create_lgn_dense(variant: str, pretrained: bool, model_args: Dict[str, Any], **kwargs) -> LogicDenseNet:
    """Build ``variant``: its ``model_args``, then the pretrained weights' model kwargs, then ``kwargs``."""
    kwargs, run_args = pretrained_model_kwargs(variant, pretrained, kwargs)
    kwargs = dict(model_args, **kwargs)
    depth = kwargs.get("depth", 6)
    if kwargs.get("features_only", False) and isinstance(depth, int) and depth < 2:
        raise ValueError(
            f"{variant} with depth={depth} has no hidden layer to take features from: features_only=True "
            f"needs depth >= 2 (or use forward_features)")
    hidden = depth - 1 if isinstance(depth, int) else 0
    feature_cfg = dict(feature_cls="getter", out_indices=tuple(range(hidden)))
    model = build_lgn(LogicDenseNet, variant, pretrained, feature_cfg=feature_cfg,
                      pretrained_filter_fn=checkpoint_filter_fn, **kwargs)
    if run_args:  # so save_for_hf / get_model_args rebuild the weights' shape (create_model adds the caller's)
        model._model_args = dict(run_args)
    return model


def _cfg(**kwargs) -> Dict[str, Any]:
    return lgn_cfg(input_size=(1, 28, 28), pool_size=(1, 1), mean=(0.0,), std=(1.0,), first_conv="blocks.0",
                   classifier="classifier", **kwargs)


default_cfgs = generate_default_cfgs({
    # Shipped weights first, so pretrained=True picks them. No description: save_for_hf would copy it into
    # every model exported from these cfgs; the command and accuracy are in lgn_nas/pretrained/weights/<tag>.json.
    "lgn_dense_s.mnist": _cfg(file=weights_file("lgn_dense_s.mnist")),
    "lgn_dense_m.fashion_mnist": _cfg(file=weights_file("lgn_dense_m.fashion_mnist")),
    "lgn_dense_learnable_4k.mnist": _cfg(file=weights_file("lgn_dense_learnable_4k.mnist")),
    "lgn_dense_learnable_8k.mnist": _cfg(file=weights_file("lgn_dense_learnable_8k.mnist")),
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


# Learnable wiring (issue 16): each gate input picks one of 16 candidate wires; the 20x20 centre crop at
# 2 thermometer bits. Small raw widths, since the simplified circuit keeps a fraction of them.
_LEARNABLE = dict(connectivity="learnable", candidates=16, relaxation="softmax", input_crop=20, input_bits=2)


@register_model
def lgn_dense_learnable_4k(pretrained: bool = False, **kwargs) -> LogicDenseNet:
    """Dense LGN with learnable wiring, 3,000-3,000-2,000-2,000 gates (10K raw), for MNIST at <= 4,000 gates."""
    model_args = dict(depth=4, width=[3000, 3000, 2000, 2000], group_tau=5.0, **_LEARNABLE)
    return _create_lgn_dense("lgn_dense_learnable_4k", pretrained, model_args, **kwargs)


@register_model
def lgn_dense_learnable_8k(pretrained: bool = False, **kwargs) -> LogicDenseNet:
    """Dense LGN with learnable wiring, 6,000-6,000-4,000-4,000 gates (20K raw), for MNIST at <= 8,000 gates."""
    model_args = dict(depth=4, width=[6000, 6000, 4000, 4000], group_tau=7.0, **_LEARNABLE)
    return _create_lgn_dense("lgn_dense_learnable_8k", pretrained, model_args, **kwargs)
