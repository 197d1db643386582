"""Metrics shared by training, search and reports."""
from __future__ import annotations

import torch

__all__ = ["accuracy", "discretization_gap", "unused_gate_fraction"]


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1] of class scores (B, C) against integer labels (B,)."""
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores and labels differ in batch size: {scores.shape[0]} vs {labels.shape[0]}")
    if scores.shape[0] == 0:
        raise ValueError("accuracy of an empty batch is undefined")
    return float((scores.argmax(dim=-1) == labels).float().mean())


def discretization_gap(relaxed_accuracy: float, discrete_accuracy: float) -> float:
    """Relaxed minus discrete accuracy (same units as the inputs; positive when discretising hurts)."""
    return float(relaxed_accuracy) - float(discrete_accuracy)


def unused_gate_fraction(model_or_netlist) -> float:
    """Fraction of gates that are unused: unreachable from every output, or constant.

    Accepts an LGN model (discretised first) or a ``Netlist``.
    """
    from .discretize import discretize
    from .netlist import Netlist

    netlist = model_or_netlist if isinstance(model_or_netlist, Netlist) else discretize(model_or_netlist)
    return float(netlist.unused_gate_fraction())
