"""The discrete netlist IR: the single hand-over point from training to deployment.

- :class:`Encoding`, :class:`NetlistLayer`, :class:`Netlist` (``ir``): the data and its validation;
- :func:`evaluate_bits` and friends (``evaluate``): the bit-parallel reference evaluator;
- :func:`simplify`, :func:`unused_gate_mask` (``simplify``): exact simplification;
- :func:`save_netlist`, :func:`load_netlist` (``io``): the versioned safetensors format;
- :class:`NetlistBuilder` (``builder``): layer-by-layer construction for model discretisation.
"""
from .builder import NetlistBuilder
from .evaluate import check_bits, evaluate_bits, node_values, node_values_packed, pack_bits, unpack_bits
from .io import FORMAT_NAME, FORMAT_VERSION, load_netlist, save_netlist
from .ir import ENCODING_KINDS, Encoding, Netlist, NetlistArrays, NetlistLayer
from .simplify import simplify, unused_gate_mask

__all__ = [
    "Encoding",
    "NetlistLayer",
    "Netlist",
    "NetlistArrays",
    "NetlistBuilder",
    "ENCODING_KINDS",
    "load_netlist",
    "save_netlist",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "simplify",
    "unused_gate_mask",
    "evaluate_bits",
    "node_values",
    "node_values_packed",
    "check_bits",
    "pack_bits",
    "unpack_bits",
]
