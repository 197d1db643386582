"""LGN layers: logic layers, encoders, heads, and the strategies they are built from."""
from .backends import check_backend, list_backends, resolve_backend
from .conv_tree import LogicTreeConv2d, LogicTreeConvPool2d, OrPool2d
from .connectivity import list_connectivities, make_candidates, make_connections
from .functional import (
    logic_dense, logic_dense_learnable, logic_dense_learnable_plain, logic_dense_mixture, logic_dense_plain,
)
from .group_sum import GroupSum
from .logic_block import LogicBlock, StraightThroughThermometer
from .dense import LogicDense
from .logic import LogicGates
from .parametrizations import list_parametrizations
from .relaxations import list_relaxations
from .spec import LogicSpec
from .thermometer import Thermometer
from .tree_ops import logic_tree_conv, logic_tree_conv_plain

__all__ = [
    "LogicDense", "LogicTreeConv2d", "LogicTreeConvPool2d", "OrPool2d", "GroupSum", "Thermometer", "LogicBlock",
    "LogicGates", "LogicSpec",
    "StraightThroughThermometer",
    "logic_tree_conv", "logic_tree_conv_plain",
    "logic_dense", "logic_dense_plain", "logic_dense_mixture", "logic_dense_learnable", "logic_dense_learnable_plain",
    "list_backends", "list_connectivities", "list_parametrizations", "list_relaxations",
    "make_connections", "make_candidates", "check_backend", "resolve_backend",
]
