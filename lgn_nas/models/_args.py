"""timm's common model arguments that an LGN has no use for, refused by name.

timm's scripts pass ``drop_path_rate``/``drop_block_rate`` only when set; stochastic depth and
DropBlock need residual branches and float feature maps, which a logic network has not (its only
regularizer argument is ``drop_rate``, dropout on the head input). ``None`` or 0 are accepted.
"""
from typing import Optional

__all__ = ["refuse_unused_drop"]


def refuse_unused_drop(owner: str, *, drop_path_rate: Optional[float] = None,
                       drop_block_rate: Optional[float] = None) -> None:
    for name, value in (("drop_path_rate", drop_path_rate), ("drop_block_rate", drop_block_rate)):
        if value:
            raise ValueError(
                f"{owner}: {name}={value!r} is not supported (a logic network has no residual branches or "
                f"float maps to drop); expected 0 or None, and drop_rate for dropout on the head input")
