"""lgn-nas: logic gate networks for timm, Optuna and TVM."""
from .gates import GATE_NAMES, NUM_GATES

__version__ = "0.1.0"
