"""What an LGN model is, to the code that uses one: the interfaces the model families implement.

- :class:`LowersToNetlist`: its eval-mode forward is a discrete circuit, ``to_netlist()`` returns it
  (``lgn_nas.discretize``). Every family (``LogicDenseNet``, ``LogicTreeNet``, ``HybridLGN``) and
  ``LogicBlock``.
- :class:`HasLogicHead`: a float network feeding a logic head (``HybridLGN``); its netlist is the
  head's and reads ``head_input(x)``, not the images (training scores it so, the search times it so).

Layers of gates are :class:`lgn_nas.layers.LogicGates`. Callers ask ``isinstance``; nothing probes for
methods by name.
"""
from __future__ import annotations

import abc
from typing import Any

__all__ = ["LowersToNetlist", "HasLogicHead"]


class LowersToNetlist(abc.ABC):
    """A module whose eval-mode forward is a discrete circuit."""

    @abc.abstractmethod
    def to_netlist(self) -> Any:
        """The discrete circuit (a ``Netlist``) this module computes in eval mode."""


class HasLogicHead(LowersToNetlist):
    """A float network feeding a logic head: :meth:`to_netlist` is the head's circuit."""

    @abc.abstractmethod
    def head_input(self, x: Any) -> Any:
        """What the head's netlist reads for images ``x`` (e.g. normalised backbone features)."""
