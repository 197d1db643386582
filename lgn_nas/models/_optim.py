"""The models' ``no_weight_decay()``: the gate logits, which ``lgn-nas train`` leaves undecayed by default.

The gate logits are the parameters of the logic layers (:class:`~lgn_nas.layers.LogicGates`:
``LogicDense.weight``, ``LogicTreeConv2d.weight``, and learnable wiring's ``LogicDense.wire_a`` /
``wire_b``, logits too); float parts (a hybrid's backbone and BatchNorm) are
torch/timm modules.
timm's ``create_optimizer_v2(model, weight_decay=...)`` exempts the names ``no_weight_decay()`` lists,
and 1-d tensors and biases, so it gives each parameter the weight decay ``make_param_groups`` does.
"""
from typing import Set

from torch import nn

from ..layers.logic import LogicGates
from ..layers.thermometer import Thermometer

__all__ = ["is_gate_logit_module", "gate_logit_names", "is_threshold_parameter", "threshold_names"]


def is_gate_logit_module(module: nn.Module) -> bool:
    """True for the logic layers (every parameter they own is a gate logit)."""
    return isinstance(module, LogicGates)


def gate_logit_names(model: nn.Module) -> Set[str]:
    """The names of ``model``'s gate-logit parameters, as ``named_parameters`` spells them."""
    names = set()
    for prefix, module in model.named_modules():
        if is_gate_logit_module(module):
            for name, _ in module.named_parameters(recurse=False):
                names.add(f"{prefix}.{name}" if prefix else name)
    return names


def is_threshold_parameter(module: nn.Module, name: str) -> bool:
    """True for a learnable encoder's thresholds (``Thermometer(method="learnable")``): never decayed."""
    return isinstance(module, Thermometer) and name == "thresholds"


def threshold_names(model: nn.Module) -> Set[str]:
    """The names of ``model``'s learnable input thresholds, as ``named_parameters`` spells them."""
    return {f"{prefix}.{name}" if prefix else name for prefix, module in model.named_modules()
            for name, _ in module.named_parameters(recurse=False) if is_threshold_parameter(module, name)}
