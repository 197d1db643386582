"""lgn-nas: logic gate networks for timm, Optuna and TVM.

``import lgn_nas`` registers the LGN model families with timm, so ``timm.create_model("lgn_dense_s")``
works; ``lgn_nas.discretize(model)`` gives the trained network's discrete ``Netlist``.
"""
from . import models  # noqa: F401  (registers the timm models)
from .discretize import discretize
from .gates import GATE_NAMES, NUM_GATES
from .metrics import accuracy, discretization_gap, unused_gate_fraction
from .netlist import Encoding, Netlist, NetlistBuilder, load_netlist

__version__ = "0.1.0"

__all__ = [
    "discretize", "Netlist", "NetlistBuilder", "Encoding", "load_netlist",
    "accuracy", "discretization_gap", "unused_gate_fraction", "GATE_NAMES", "NUM_GATES", "__version__",
]
