"""How GroupSum splits a layer's outputs into classes: contiguous groups whose sizes differ by at most one.

With ``features = num_classes * base + extra`` (``0 <= extra < num_classes``), the first ``extra``
classes own ``base + 1`` outputs and the others ``base``, in order: class ``c`` owns outputs
``starts[c] .. starts[c + 1] - 1`` with ``starts[c] = c * base + min(c, extra)``. When ``num_classes``
divides ``features`` every group has ``features / num_classes`` outputs (the papers' head). The models,
``GroupSum`` and ``NetlistBuilder.build`` share this one rule (no torch here).
"""
from typing import List

__all__ = ["check_groups", "group_sizes", "group_starts"]


def check_groups(features: int, num_classes: int, *, what: str = "the head width") -> None:
    """Raise ValueError unless ``features`` outputs can give each of ``num_classes`` classes at least one."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(features, int) or isinstance(features, bool) or features < num_classes:
        raise ValueError(
            f"num_classes={num_classes} exceeds {what} {features!r}: every class needs at least one output, "
            f"so choose a width of at least {num_classes}")


def group_sizes(features: int, num_classes: int) -> List[int]:
    """Outputs per class: ``features // num_classes``, one more for the first ``features % num_classes``."""
    check_groups(features, num_classes, what="the number of outputs")
    base, extra = divmod(features, num_classes)
    return [base + 1] * extra + [base] * (num_classes - extra)


def group_starts(features: int, num_classes: int) -> List[int]:
    """First output of each class, plus ``features`` at the end (``num_classes + 1`` ints)."""
    starts = [0]
    for size in group_sizes(features, num_classes):
        starts.append(starts[-1] + size)
    return starts
