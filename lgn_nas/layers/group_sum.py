"""GroupSum: the LGN classification head (class score = sum of the class's output bits / tau)."""
from typing import Optional

import torch
from torch import nn

from ..groups import check_groups

__all__ = ["GroupSum"]


class GroupSum(nn.Module):
    """Split the last dimension into ``num_classes`` contiguous groups and sum each, divided by ``tau``.

    With ``in_features`` given, any ``num_classes <= in_features`` works: group sizes differ by at most
    one, the first ``in_features % num_classes`` classes owning one output more (``lgn_nas.groups``).
    Without it the groups are equal, ``features / num_classes`` each, and the width must be a multiple.
    """

    def __init__(self, num_classes: int, tau: float = 1.0, *, in_features: Optional[int] = None) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"GroupSum num_classes must be a positive int, got {num_classes!r}")
        if not float(tau) > 0:
            raise ValueError(f"GroupSum tau must be > 0, got {tau!r}")
        if in_features is not None:
            check_groups(in_features, num_classes, what="the GroupSum input width")
        self.num_classes = num_classes
        self.tau = float(tau)
        self.in_features = -1 if in_features is None else int(in_features)
        # classes 0 .. extra - 1 own base + 1 outputs, the rest base (extra = 0: equal groups)
        self.base = max(self.in_features, 0) // num_classes
        self.extra = max(self.in_features, 0) % num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if self.extra == 0:
            return x.reshape(batch, self.num_classes, -1).sum(-1) / self.tau
        split = self.extra * (self.base + 1)
        long_groups = x[:, :split].reshape(batch, self.extra, self.base + 1).sum(-1)
        short_groups = x[:, split:].reshape(batch, self.num_classes - self.extra, self.base).sum(-1)
        return torch.cat([long_groups, short_groups], dim=1) / self.tau

    def extra_repr(self) -> str:
        width = "" if self.in_features < 0 else f", in_features={self.in_features}"
        return f"num_classes={self.num_classes}, tau={self.tau}{width}"
