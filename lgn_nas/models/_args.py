"""Checks of the model arguments every LGN family shares.

``refuse_unused_drop``: timm's common arguments that an LGN has no use for, refused by name. timm's
scripts pass ``drop_path_rate``/``drop_block_rate`` only when set; stochastic depth and DropBlock need
residual branches and float feature maps, which a logic network has not (its only regularizer
argument is ``drop_rate``, dropout on the head input). ``None`` or 0 are accepted.

``positive_ints``: a list of widths or channels, with a message naming the value when it is not one
(a string such as ``"64,128"`` is refused rather than split into characters).
"""
from typing import Any, List, Optional

__all__ = ["refuse_unused_drop", "positive_ints"]


def positive_ints(name: str, value: Any) -> List[int]:
    """``value`` as a non-empty list of positive ints, or a ValueError naming ``name`` and the value."""
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        return list(value)
    hint = " (a string; give a list such as [64, 128])" if isinstance(value, str) else ""
    raise ValueError(f"{name} must be a non-empty list of positive ints, got {value!r}{hint}")


def refuse_unused_drop(owner: str, *, drop_path_rate: Optional[float] = None,
                       drop_block_rate: Optional[float] = None) -> None:
    for name, value in (("drop_path_rate", drop_path_rate), ("drop_block_rate", drop_block_rate)):
        if value:
            raise ValueError(
                f"{owner}: {name}={value!r} is not supported (a logic network has no residual branches or "
                f"float maps to drop); expected 0 or None, and drop_rate for dropout on the head input")
