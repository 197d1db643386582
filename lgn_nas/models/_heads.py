"""Heads shared by the model families: the logic head's stand-in when the classifier is removed."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["PoolHead", "GLOBAL_POOLS"]

GLOBAL_POOLS = ("max", "avg", "flatten", "")


class PoolHead(nn.Module):
    """What ``reset_classifier(0, global_pool)`` leaves: pooled (or unpooled, ``""``) features.

    ``max`` is OR pooling on bits. Same call signature as the logic heads, so ``forward_head`` needs no
    type checks (TorchScript compiles it for either head).
    """

    def __init__(self, global_pool: str = "max") -> None:
        super().__init__()
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"unknown global_pool {global_pool!r}: expected one of {GLOBAL_POOLS}")
        self.global_pool = global_pool

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "max":
            return x.amax(dim=(2, 3))
        if self.global_pool == "avg":
            return x.mean(dim=(2, 3))
        if self.global_pool == "flatten":
            return x.flatten(1)
        return x
