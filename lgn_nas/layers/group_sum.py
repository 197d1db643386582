"""GroupSum: the LGN classification head (class score = sum of the class's output bits / tau)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["GroupSum"]


class GroupSum(nn.Module):
    """Split the last dimension into ``num_classes`` equal groups and sum each, divided by ``tau``.

    Class ``c`` owns inputs ``c * k .. (c + 1) * k - 1`` with ``k = features / num_classes``.
    """

    def __init__(self, num_classes: int, tau: float = 1.0) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"GroupSum num_classes must be a positive int, got {num_classes!r}")
        if not float(tau) > 0:
            raise ValueError(f"GroupSum tau must be > 0, got {tau!r}")
        self.num_classes = num_classes
        self.tau = float(tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.num_classes, -1).sum(-1) / self.tau

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, tau={self.tau}"
