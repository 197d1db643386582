"""Metrics shared by training, search and reports.

Unused gates are counted two ways (the registry ``UNUSED_GATE_COUNTS``, chosen by name):

* ``netlist`` (ours, the default): a gate is unused when it influences no output: constant after
  exact constant folding, or with no path to an output along inputs that the gates on the way depend
  on (:func:`lgn_nas.netlist.unused_gate_mask`; transitive: a gate read only by unused gates is unused).
* ``next_layer``: a gate is unused when it is not an output and no gate reads it on an input that the
  reader's gate function depends on (the ignored input of a pass-through gate, both inputs of a
  constant gate are no use). One hop, no folding: a gate read only by unused gates still counts as
  used, and a constant gate that is read counts as used. This is the count the trained gate ids and the
  wiring alone give, layer by layer, which is all the layers of the public gumbel-lgn code (Yousefi et
  al. 2025, "Mind the Gap"; ``difflogic/difflogic.py``, ``LogicLayer``: gate logits ``weights`` and
  wiring ``indices``) keep. That code defines no unused-gate count of its own (neither ``main.py`` nor
  ``experiments/main.py`` nor the compiled model count unused gates; they log accuracies and time
  only), and the paper's definition could not be read, so this is our reconstruction of a per-layer
  count, not the paper's code.
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np
import torch

__all__ = ["accuracy", "discretization_gap", "unused_gate_fraction", "unused_gate_mask_next_layer",
           "UNUSED_GATE_COUNTS"]


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


def unused_gate_mask_next_layer(netlist) -> np.ndarray:
    """Bool ``(num_gates,)``: True for gates that are no output and that no gate reads on an input its
    gate function depends on (the ``next_layer`` count of the module docstring)."""
    from .gates import GATE_XOR_BASIS

    read = np.zeros(netlist.num_nodes, dtype=bool)
    read[np.asarray(netlist.outputs)] = True
    for layer in netlist.layers:
        basis = GATE_XOR_BASIS[np.asarray(layer.gate)]
        dep_a = (basis[:, 1] | basis[:, 3]).astype(bool)
        dep_b = (basis[:, 2] | basis[:, 3]).astype(bool)
        read[np.asarray(layer.in_a)[dep_a]] = True
        read[np.asarray(layer.in_b)[dep_b]] = True
    return ~read[netlist.num_inputs:]


def _netlist_mask(netlist) -> np.ndarray:
    from .netlist import unused_gate_mask

    return unused_gate_mask(netlist)


UNUSED_GATE_COUNTS: Dict[str, Callable[..., np.ndarray]] = {
    "netlist": _netlist_mask,
    "next_layer": unused_gate_mask_next_layer,
}


def unused_gate_fraction(model_or_netlist, count: str = "netlist") -> float:
    """Fraction of gates that are unused by the count ``count`` (``UNUSED_GATE_COUNTS``: ``netlist``,
    dead or constant, the default; ``next_layer``, read by no gate); 0.0 for a net without gates.

    Accepts an LGN model (discretised first) or a ``Netlist``.
    """
    from .discretize import discretize
    from .netlist import Netlist

    if count not in UNUSED_GATE_COUNTS:
        raise ValueError(f"unknown unused-gate count {count!r}: expected one of {', '.join(UNUSED_GATE_COUNTS)}")
    netlist = model_or_netlist if isinstance(model_or_netlist, Netlist) else discretize(model_or_netlist)
    if netlist.num_gates == 0:
        return 0.0
    return float(UNUSED_GATE_COUNTS[count](netlist).mean())
