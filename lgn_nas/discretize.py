"""Discretisation: from a trained (relaxed) LGN module to its ``Netlist``."""
from __future__ import annotations

from torch import nn

from .interfaces import LowersToNetlist

__all__ = ["discretize"]


def discretize(model: nn.Module, *, simplify: bool = False):
    """The discrete circuit ``model`` computes in eval mode, as a ``Netlist``.

    Every LGN model (and LGN block) is a :class:`~lgn_nas.interfaces.LowersToNetlist`; the result's
    ``evaluate`` gives exactly the model's eval-mode class scores. ``simplify=True`` also applies the
    netlist simplifications (same outputs, fewer gates).
    """
    if not isinstance(model, LowersToNetlist):
        raise TypeError(
            f"cannot discretize {type(model).__name__}: expected an lgn-nas model or block with to_netlist()")
    netlist = model.to_netlist()
    if simplify:
        netlist, _ = netlist.simplify()
    return netlist
