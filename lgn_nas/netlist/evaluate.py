"""Reference evaluator: bit-parallel, 64 samples per ``np.uint64`` word, layer by layer.

Every backend (TVM lowering, C, Verilog) must agree with :func:`evaluate_bits` bit for bit.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..gates import apply_gates_bits

if TYPE_CHECKING:  # pragma: no cover
    from .ir import Netlist

__all__ = ["check_bits", "pack_bits", "unpack_bits", "node_values_packed", "node_values", "evaluate_bits"]

DEFAULT_CHUNK_SIZE = 4096


def check_bits(bits: Any, num_inputs: int) -> np.ndarray:
    """``bits`` (B, num_inputs) of bool or 0/1 values as a bool array; ValueError otherwise.

    Integer and float arrays are accepted when every value is exactly 0 or 1.
    """
    arr = np.asarray(bits)
    if arr.ndim != 2 or arr.shape[1] != num_inputs:
        raise ValueError(f"bits have shape {arr.shape}, expected (B, {num_inputs})")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"bits have dtype {arr.dtype}, expected bool or 0/1 integers")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        sample, column = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"bits must be binary: found {arr[sample, column].item()!r} at sample {sample}, input {column}, expected 0 or 1"
        )
    return arr.astype(bool)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Bool (B, n) -> uint64 (n, ceil(B / 64)); sample ``j`` is bit ``j % 64`` of word ``j // 64``."""
    batch, n = bits.shape
    words = max(1, -(-batch // 64))
    packed = np.packbits(np.ascontiguousarray(bits.T), axis=1, bitorder="little")  # (n, ceil(B / 8))
    padded = np.zeros((n, words * 8), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return padded.view("<u8").astype(np.uint64, copy=False)


def unpack_bits(words: np.ndarray, num_samples: int) -> np.ndarray:
    """uint64 (n, W) -> bool (num_samples, n); inverse of :func:`pack_bits`."""
    as_bytes = np.ascontiguousarray(words.astype("<u8", copy=False)).view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=1, count=num_samples, bitorder="little")
    return bits.T.astype(bool)


def node_values_packed(netlist: "Netlist", packed_inputs: np.ndarray) -> np.ndarray:
    """Packed values of every node, uint64 (num_nodes, W), from packed inputs (num_inputs, W)."""
    if packed_inputs.shape[0] != netlist.num_inputs or packed_inputs.dtype != np.uint64:
        raise ValueError(
            f"packed inputs have shape {packed_inputs.shape} and dtype {packed_inputs.dtype}, "
            f"expected ({netlist.num_inputs}, W) uint64"
        )
    vals = np.empty((netlist.num_nodes, packed_inputs.shape[1]), dtype=np.uint64)
    vals[: netlist.num_inputs] = packed_inputs
    for offset, layer in zip(netlist.layer_offsets, netlist.layers):
        if len(layer):
            vals[offset : offset + len(layer)] = apply_gates_bits(layer.gate, vals[layer.in_a], vals[layer.in_b])
    return vals


def node_values(netlist: "Netlist", bits: Any) -> np.ndarray:
    """Value of every node, bool (B, num_nodes), for input bits (B, num_inputs)."""
    bits = check_bits(bits, netlist.num_inputs)
    return unpack_bits(node_values_packed(netlist, pack_bits(bits)), bits.shape[0])


def evaluate_bits(netlist: "Netlist", bits: Any, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
    """Per-class popcount of the class's outputs, int64 (B, num_classes), for bits (B, num_inputs).

    The batch is processed ``chunk_size`` samples at a time (rounded up to a multiple of 64), so memory
    stays at about ``num_nodes * chunk_size / 8`` bytes.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size = {chunk_size!r}, expected an int >= 1")
    bits = check_bits(bits, netlist.num_inputs)
    batch = bits.shape[0]
    chunk = -(-int(chunk_size) // 64) * 64
    counts = np.zeros((batch, netlist.num_classes), dtype=np.int64)
    shape = (netlist.num_classes, netlist.group_size, -1)
    for start in range(0, batch, chunk):
        part = bits[start : start + chunk]
        vals = node_values_packed(netlist, pack_bits(part))
        out_bytes = np.ascontiguousarray(vals[netlist.outputs].astype("<u8", copy=False)).view(np.uint8)
        out_bits = np.unpackbits(out_bytes, axis=1, count=part.shape[0], bitorder="little")  # (n_out, b)
        counts[start : start + part.shape[0]] = out_bits.reshape(shape).sum(axis=1, dtype=np.int64).T
    return counts
