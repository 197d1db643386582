"""The 16 two-input Boolean gates.

Gate ids follow the difflogic convention (Petersen et al., 2022): the id is the truth table read as a
4-bit number with out(A=0, B=0) as the most significant bit, then out(0, 1), out(1, 0), out(1, 1).

Every gate's relaxation (its expected output for independent Bernoulli inputs with means a, b) is
``c1 + ca * a + cb * b + cab * a * b``; ``GATE_BASIS`` holds the coefficients (16 x 4). Over GF(2)
every gate is also ``k0 ^ (a & ka) ^ (b & kb) ^ (a & b & kab)``; ``GATE_XOR_BASIS`` holds those bits,
which give branch-free bit-level evaluation with per-gate masks.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

__all__ = [
    "NUM_GATES",
    "GATE_NAMES",
    "GATE_IDS",
    "TRUTH_TABLES",
    "GATE_BASIS",
    "GATE_XOR_BASIS",
    "PASS_A",
    "PASS_B",
    "FALSE",
    "TRUE",
    "gate_basis",
    "gate_id",
    "apply_gate_bits",
    "apply_gates_bits",
    "truth_table_to_gate",
]

NUM_GATES = 16

GATE_NAMES: tuple[str, ...] = (
    "FALSE",
    "AND",
    "A_AND_NOT_B",
    "A",
    "NOT_A_AND_B",
    "B",
    "XOR",
    "OR",
    "NOR",
    "XNOR",
    "NOT_B",
    "A_OR_NOT_B",
    "NOT_A",
    "NOT_A_OR_B",
    "NAND",
    "TRUE",
)
GATE_IDS: dict[str, int] = {name: i for i, name in enumerate(GATE_NAMES)}

FALSE = 0
PASS_A = 3
PASS_B = 5
TRUE = 15

# TRUTH_TABLES[g] = (out(0,0), out(0,1), out(1,0), out(1,1)) for inputs (a, b).
TRUTH_TABLES = np.array([[(g >> (3 - k)) & 1 for k in range(4)] for g in range(NUM_GATES)], dtype=np.uint8)


def _basis_from_truth_tables(tables: np.ndarray) -> np.ndarray:
    t00, t01, t10, t11 = (tables[:, k].astype(np.float64) for k in range(4))
    # Multilinear interpolation of the truth table: exact at the corners of [0, 1]^2.
    return np.stack([t00, t10 - t00, t01 - t00, t00 - t01 - t10 + t11], axis=1)


def _xor_basis_from_truth_tables(tables: np.ndarray) -> np.ndarray:
    t00, t01, t10, t11 = (tables[:, k].astype(np.uint8) for k in range(4))
    # Algebraic normal form over GF(2).
    return np.stack([t00, t00 ^ t10, t00 ^ t01, t00 ^ t01 ^ t10 ^ t11], axis=1)


GATE_BASIS = _basis_from_truth_tables(TRUTH_TABLES)  # float64, (16, 4): (c1, ca, cb, cab)
GATE_XOR_BASIS = _xor_basis_from_truth_tables(TRUTH_TABLES)  # uint8, (16, 4): (k0, ka, kb, kab)
GATE_BASIS.setflags(write=False)
GATE_XOR_BASIS.setflags(write=False)
TRUTH_TABLES.setflags(write=False)


def gate_basis(dtype: torch.dtype = torch.float32, device: Union[torch.device, str, None] = None) -> torch.Tensor:
    """The 16 x 4 coefficient basis as a new tensor (register it as a buffer where a module uses it)."""
    return torch.tensor(GATE_BASIS, dtype=dtype, device=device)


def gate_id(name: Union[str, int]) -> int:
    """Gate id for a name such as ``"XOR"`` (case-insensitive) or an id in 0..15."""
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if 0 <= int(name) < NUM_GATES:
            return int(name)
        raise ValueError(f"gate id {name!r} is out of range: expected 0..{NUM_GATES - 1}")
    key = str(name).upper()
    if key not in GATE_IDS:
        raise ValueError(f"unknown gate {name!r}: expected one of {', '.join(GATE_NAMES)}")
    return GATE_IDS[key]


def truth_table_to_gate(out00: int, out01: int, out10: int, out11: int) -> int:
    """Gate id of the truth table given as outputs for (a, b) = 00, 01, 10, 11."""
    return (int(out00) << 3) | (int(out01) << 2) | (int(out10) << 1) | int(out11)


def apply_gate_bits(gate: int, a, b):
    """Apply one gate to integer/bool arrays or Python ints of any width (bitwise, two's complement)."""
    k0, ka, kb, kab = (int(v) for v in GATE_XOR_BASIS[gate_id(gate)])
    out = (a & b) if kab else (a & 0)
    if ka:
        out = out ^ a
    if kb:
        out = out ^ b
    if k0:
        out = ~out
    return out


def apply_gates_bits(gates: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vectorised bit-level evaluation: row ``i`` of ``a``/``b`` goes through gate ``gates[i]``.

    ``a`` and ``b`` are unsigned integer or bool arrays of shape (n, ...); every bit position is an
    independent sample. Branch-free: each gate's GF(2) form is applied with all-ones/all-zeros masks.
    """
    gates = np.asarray(gates)
    if a.dtype == np.bool_:
        return (apply_gates_bits(gates, a.view(np.uint8), b.view(np.uint8)) & 1).astype(bool)
    dtype = a.dtype
    ones = np.array(np.iinfo(dtype).max, dtype=dtype)
    masks = GATE_XOR_BASIS[gates].astype(dtype) * ones  # (n, 4)
    shape = (gates.shape[0],) + (1,) * (a.ndim - 1)
    k0, ka, kb, kab = (masks[:, k].reshape(shape) for k in range(4))
    out = (a & b & kab) ^ (a & ka) ^ (b & kb) ^ k0
    return out
