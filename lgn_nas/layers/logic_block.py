"""LogicBlock: an LGN block that drops into any network as an ordinary layer."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.fx
from torch import nn
from timm.layers import register_notrace_function

from ..groups import check_groups
from ..interfaces import LowersToNetlist
from .dense import LogicDense
from .group_sum import GroupSum
from .spec import LogicSpec

__all__ = ["LogicBlock", "StraightThroughThermometer", "check_features"]


@register_notrace_function
def check_features(x: torch.Tensor, in_features: int) -> torch.Tensor:
    """``x`` unchanged if it holds ``in_features`` values per sample, else a ``ValueError`` (an FX leaf)."""
    if x.dim() < 2 or x[0].numel() != in_features:
        raise ValueError("LogicBlock expects " + str(in_features) + " features per sample, got shape "
                         + str(list(x.shape)))
    return x


torch.fx.wrap("check_features")


class StraightThroughThermometer(nn.Module):
    """Float features -> ``num_bits`` bits each (``x > threshold``), with a straight-through gradient.

    Thresholds are evenly spaced inside (low, high). The forward pass gives hard bits; the backward pass
    uses the slope of a clipped linear ramp around each threshold, so the network before the block
    trains through it. Bit order: feature-major (feature ``f``, threshold ``t`` -> ``f * num_bits + t``).
    """

    def __init__(self, num_bits: int = 1, *, low: float = -1.0, high: float = 1.0) -> None:
        super().__init__()
        if not isinstance(num_bits, int) or isinstance(num_bits, bool) or num_bits < 1:
            raise ValueError(f"num_bits must be a positive int, got {num_bits!r}")
        if not high > low:
            raise ValueError(f"need low < high, got low={low!r}, high={high!r}")
        self.num_bits = num_bits
        self.width = (high - low) / (num_bits + 1)
        self.register_buffer("thresholds", low + self.width * torch.arange(1, num_bits + 1, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = x.flatten(1).unsqueeze(-1) - self.thresholds.to(x.dtype)
        hard = (diff > 0).to(x.dtype)
        soft = (diff / self.width + 0.5).clamp(0.0, 1.0)
        return (hard + (soft - soft.detach())).flatten(1)  # exactly the hard bits, soft gradient


class LogicBlock(nn.Module, LowersToNetlist):
    """Binarise float input, run randomly wired logic layers, return group scores or bits.

    ``x (B, *) -> bits (B, in_features * input_bits) -> LogicDense x len(widths)`` then, with
    ``num_classes > 0``, ``GroupSum`` class scores ``(B, num_classes)``; with ``num_classes=0`` the last
    layer's bits ``(B, widths[-1])`` (0/1 in eval mode, relaxed in training). The layers' strategies:
    a :class:`~lgn_nas.layers.LogicSpec` (``spec``) or its fields by name.
    """

    def __init__(
            self,
            in_features: int,
            widths: Sequence[int],
            *,
            num_classes: int = 0,
            group_tau: float = 1.0,
            input_bits: int = 1,
            input_range: Sequence[float] = (-1.0, 1.0),
            spec: Optional[LogicSpec] = None,
            generator: Optional[torch.Generator] = None,
            **strategies: Any,
    ) -> None:
        super().__init__()
        self.logic_spec = LogicSpec.coerce(spec, owner=type(self).__name__, **strategies)
        widths = list(widths)
        if not widths or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty list of positive ints, got {widths!r}")
        if num_classes:
            check_groups(widths[-1], num_classes, what="the last width")
        self.in_features = in_features
        self.num_classes = num_classes
        self.encoder = StraightThroughThermometer(input_bits, low=float(input_range[0]), high=float(input_range[1]))
        layers = []
        features = in_features * input_bits
        for w in widths[:-1]:
            layers.append(LogicDense(features, w, generator=generator, spec=self.logic_spec))
            features = w
        self.layers = nn.Sequential(*layers)
        self.hidden_size = features
        self.classifier_width = widths[-1]
        self.classifier = LogicDense(features, widths[-1], generator=generator, spec=self.logic_spec)
        self.group_tau = float(group_tau)
        self.group_sum = GroupSum(num_classes, group_tau, in_features=widths[-1]) if num_classes else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        """timm's classifier reset: a new last layer (same width) and GroupSum for ``num_classes`` > 0.

        0 removes the last layer too, so the block then returns its hidden layers' bits
        (``hidden_size``), unlike a block built with ``num_classes=0``, which keeps it.
        """
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
        if num_classes:
            check_groups(self.classifier_width, num_classes, what="the last width")
            like = self.encoder.thresholds
            self.classifier = LogicDense(self.hidden_size, self.classifier_width, spec=self.logic_spec).to(
                device=like.device, dtype=like.dtype).train(self.training)
            self.group_sum = GroupSum(num_classes, self.group_tau, in_features=self.classifier_width)
        else:
            self.classifier, self.group_sum = nn.Identity(), nn.Identity()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_features(x, self.in_features)
        return self.group_sum(self.classifier(self.layers(self.encoder(x))))

    @torch.jit.ignore
    def to_netlist(self):
        """The block's discrete circuit; its raw input is the block's (flattened) float input."""
        from ..netlist import Encoding, NetlistBuilder

        if not self.num_classes or not isinstance(self.classifier, LogicDense):
            raise ValueError("LogicBlock(num_classes=0) returns bits, not class scores: nothing to discretize")
        thresholds = self.encoder.thresholds.detach().cpu().numpy().astype(np.float32)
        encoding = Encoding(kind="thermometer", input_shape=(self.in_features,),
                            thresholds=np.broadcast_to(thresholds, (self.in_features, thresholds.size)).copy(),
                            domain="real")
        builder = NetlistBuilder(encoding)
        ids = builder.input_ids().reshape(-1)
        for layer in self.layers:
            ids = layer.lower(builder, ids)
        ids = self.classifier.lower(builder, ids)
        return builder.build(ids, num_classes=self.num_classes, tau=self.group_tau,
                             metadata={"architecture": "LogicBlock"})
