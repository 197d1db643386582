"""The models' ``no_weight_decay()``: the gate logits, which ``lgn-nas train`` leaves undecayed by default.

Every parameter an lgn-nas module owns itself is a gate logit (``LogicDense.weight``,
``LogicTreeConv2d.weight``); float parts (a hybrid's backbone and BatchNorm) are torch/timm modules.
timm's ``create_optimizer_v2(model, weight_decay=...)`` exempts the names ``no_weight_decay()`` lists,
and 1-d tensors and biases, so it gives each parameter the weight decay ``make_param_groups`` does.
"""
from typing import Set

from torch import nn

__all__ = ["is_gate_logit_module", "gate_logit_names"]


def is_gate_logit_module(module: nn.Module) -> bool:
    """True for lgn-nas layers (every parameter they own is a gate logit)."""
    return type(module).__module__.startswith("lgn_nas.")


def gate_logit_names(model: nn.Module) -> Set[str]:
    """The names of ``model``'s gate-logit parameters, as ``named_parameters`` spells them."""
    names = set()
    for prefix, module in model.named_modules():
        if is_gate_logit_module(module):
            for name, _ in module.named_parameters(recurse=False):
                names.add(f"{prefix}.{name}" if prefix else name)
    return names
