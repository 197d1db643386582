"""Incremental construction of a :class:`Netlist`, layer by layer (used by model discretisation)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..gates import NUM_GATES
from ..groups import group_starts
from .ir import Encoding, Netlist, NetlistLayer

__all__ = ["NetlistBuilder"]


def _int_array(value: Any, *, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} has dtype {arr.dtype}, expected integers")
    return arr.astype(np.int64)


class NetlistBuilder:
    """Builds a netlist: input node ids from the encoding, then one :meth:`add_layer` per level.

    Example::

        builder = NetlistBuilder(encoding)
        x = builder.input_ids()                       # (C * T, *spatial) node ids
        h = builder.add_layer(gates, x.ravel()[a], x.ravel()[b])
        netlist = builder.build(h, num_classes=10, tau=10.0)
    """

    def __init__(self, encoding: Encoding) -> None:
        if not isinstance(encoding, Encoding):
            raise ValueError(f"encoding is a {type(encoding).__name__}, expected an Encoding")
        self.encoding = encoding
        self._layers: list[NetlistLayer] = []
        self._num_nodes = encoding.num_bits
        self._constants: dict[int, int] = {}

    @property
    def num_inputs(self) -> int:
        return self.encoding.num_bits

    @property
    def num_nodes(self) -> int:
        """Nodes so far (inputs plus every gate added)."""
        return self._num_nodes

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    def input_ids(self) -> np.ndarray:
        """Node ids of the input bits, int64 shaped (C * T, *spatial) in bit order."""
        return np.arange(self.num_inputs, dtype=np.int64).reshape(self.encoding.bits_shape)

    def constant(self, value: int) -> int:
        """Node id of a constant 0 or 1 (a FALSE/TRUE gate, added once; padding reads it)."""
        if value not in (0, 1):
            raise ValueError(f"constant value must be 0 or 1, got {value!r}")
        if value not in self._constants:
            gate = 15 if value else 0
            self._constants[value] = int(self.add_layer(np.array([gate]), np.array([0]), np.array([0]))[0])
        return self._constants[value]

    def add_layer(self, gate: Any, in_a: Any, in_b: Any) -> np.ndarray:
        """Append one layer; returns the new gates' node ids, shaped like ``in_a``.

        ``in_a`` and ``in_b`` are arrays of existing node ids of the same (any) shape, flattened in C
        order; ``gate`` has that shape too, or is a single gate id used for every gate.
        """
        index = len(self._layers)
        a = _int_array(in_a, name=f"layer {index}: in_a")
        b = _int_array(in_b, name=f"layer {index}: in_b")
        if a.shape != b.shape:
            raise ValueError(f"layer {index}: in_a has shape {a.shape} but in_b has shape {b.shape}, expected equal shapes")
        g = _int_array(gate, name=f"layer {index}: gate")
        if g.ndim == 0:
            g = np.full(a.shape, int(g), dtype=np.int64)
        if g.shape != a.shape:
            raise ValueError(f"layer {index}: gate has shape {g.shape}, expected {a.shape} (the shape of in_a) or a scalar")
        bad = np.flatnonzero((g < 0) | (g >= NUM_GATES))
        if bad.size:
            raise ValueError(f"layer {index}: gate id {int(g.ravel()[bad[0]])} is out of range, expected 0..{NUM_GATES - 1}")
        for name, ids in (("in_a", a), ("in_b", b)):
            bad = np.flatnonzero((ids < 0) | (ids >= self._num_nodes))
            if bad.size:
                raise ValueError(
                    f"layer {index}: {name} node id {int(ids.ravel()[bad[0]])} does not exist yet, "
                    f"expected 0..{self._num_nodes - 1} (inputs and gates of earlier layers)"
                )
        self._layers.append(NetlistLayer(g.ravel().astype(np.uint8), a.ravel(), b.ravel()))
        start = self._num_nodes
        self._num_nodes += a.size
        return np.arange(start, self._num_nodes, dtype=np.int64).reshape(a.shape)

    def build(self, outputs: Any, *, num_classes: int, tau: float, metadata: Optional[dict] = None) -> Netlist:
        """The finished netlist; ``outputs`` (any shape, flattened in C order) are node ids.

        ``outputs`` are the GroupSum's inputs in order. When ``num_classes`` does not divide their number,
        the classes own groups whose sizes differ by one (``lgn_nas.groups``) and every short group is
        padded with the constant-0 node, so the netlist keeps ``num_classes`` equal groups and each
        class counts exactly its own outputs.
        """
        out = _int_array(outputs, name="outputs").ravel()
        if (isinstance(num_classes, (int, np.integer)) and not isinstance(num_classes, bool)
                and 1 <= num_classes <= out.size and out.size % num_classes):
            starts = group_starts(int(out.size), int(num_classes))
            width = starts[1] - starts[0]  # the first group is one of the longest
            zero = self.constant(0)
            out = np.concatenate([
                np.concatenate([out[a:b], np.full(width - (b - a), zero, dtype=np.int64)])
                for a, b in zip(starts[:-1], starts[1:])])
        return Netlist(
            self.encoding,
            [NetlistLayer(l.gate.copy(), l.in_a.copy(), l.in_b.copy()) for l in self._layers],
            out,
            num_classes=num_classes,
            tau=tau,
            metadata=metadata,
        )
