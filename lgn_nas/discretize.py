"""Discretisation: from a trained (relaxed) LGN module to its ``Netlist``."""
from __future__ import annotations

from torch import nn

__all__ = ["discretize"]


def discretize(model: nn.Module, *, simplify: bool = False):
    """The discrete circuit ``model`` computes in eval mode, as a ``Netlist``.

    Every LGN model (and LGN block) implements ``to_netlist()``; the result's ``evaluate`` gives
    exactly the model's eval-mode class scores. ``simplify=True`` also applies the netlist
    simplifications (same outputs, fewer gates).
    """
    to_netlist = getattr(model, "to_netlist", None)
    if to_netlist is None:
        raise TypeError(
            f"cannot discretize {type(model).__name__}: expected an lgn-nas model or block with to_netlist()")
    netlist = to_netlist()
    if simplify:
        netlist, _ = netlist.simplify()
    return netlist
