"""What the model families share about their heads: the ``global_pool`` values and the headless stand-in.

A logic head reads every bit of the last feature map (``global_pool="flatten"``, the default). Averaging
or max-pooling the map is not part of these networks, so ``"avg"``/``"max"`` are refused. ``""`` matters
only without a classifier (``num_classes=0``): the model then has no head at all and returns the
unpooled map, as timm's ``reset_classifier(0, "")``.
"""
from typing import Optional

import torch
from torch import nn

__all__ = ["GLOBAL_POOLS", "UnpooledHead", "check_global_pool", "check_num_classes", "move_like"]

GLOBAL_POOLS = ("flatten", "")


def check_global_pool(global_pool: str, owner: str) -> str:
    """``global_pool`` if ``owner`` supports it, else one ValueError naming the value and the choices."""
    if global_pool not in GLOBAL_POOLS:
        raise ValueError(
            f"{owner}: global_pool={global_pool!r} is not supported; expected 'flatten' (the logic head reads "
            f"the flattened bit map) or '' (no head with num_classes=0: the unpooled map)")
    return global_pool


def check_num_classes(num_classes: int) -> int:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
    return num_classes


def move_like(module: nn.Module, like: Optional[torch.Tensor], training: bool) -> nn.Module:
    """``module`` on ``like``'s device and floating dtype, in ``training`` mode (for rebuilt heads)."""
    if like is not None:
        module = module.to(device=like.device, dtype=like.dtype if like.is_floating_point() else None)
    return module.train(training)


class UnpooledHead(nn.Module):
    """The head of a model with ``num_classes=0`` and ``global_pool=""``: the feature map, unchanged."""

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x
