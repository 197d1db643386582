"""What the model families share: :class:`LogicNetwork` and the defaults of their pretrained cfgs."""
from typing import Any, Dict, Set

import torch
from torch import nn

from ..interfaces import LowersToNetlist
from ..layers.logic import set_temperature as set_gate_temperature
from ._optim import gate_logit_names, threshold_names

__all__ = ["LogicNetwork", "lgn_cfg"]


class LogicNetwork(nn.Module, LowersToNetlist):
    """The base of ``LogicDenseNet``, ``LogicTreeNet`` and ``HybridLGN``: timm's ``forward`` (features,
    then head), the temperature of every logic layer, the gate logits as ``no_weight_decay()``, and the
    architecture name a netlist records."""

    @torch.jit.ignore
    def set_temperature(self, temperature: float) -> None:
        """Set the relaxation temperature of every logic layer (for temperature schedules)."""
        set_gate_temperature(self, temperature)

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        """The gate logits and learnable input thresholds: timm's optimizer factory then decays what
        ``lgn-nas train`` does by default."""
        return gate_logit_names(self) | threshold_names(self)

    @torch.jit.ignore
    def architecture(self) -> str:
        """The timm name the model was created under (its pretrained cfg's), else its class name."""
        return getattr(self, "pretrained_cfg", {}).get("architecture", type(self).__name__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def lgn_cfg(*, input_size, pool_size, mean, std, first_conv: str, classifier: str, **kwargs: Any) -> Dict[str, Any]:
    """A pretrained cfg of an lgn* model: the family's input, statistics and module names, and the
    defaults all share (10 classes, a fixed input size, no crop, Apache-2.0)."""
    return {
        "url": "",
        "num_classes": 10,
        "input_size": input_size,
        "pool_size": pool_size,
        "fixed_input_size": True,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": mean,
        "std": std,
        "first_conv": first_conv,
        "classifier": classifier,
        "license": "apache-2.0",
        **kwargs,
    }
