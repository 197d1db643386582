"""The discrete netlist IR: input encoding, levelised gate layers and the GroupSum head.

Node ids are global: the ``num_inputs`` encoded input bits are nodes ``0 .. num_inputs - 1``; the gates
of layer 0 get the next ids, then layer 1, and so on. A gate of layer ``l`` may read any input node or
any gate of a layer before ``l`` (never its own layer or a later one), so the net is a levelised DAG.
Outputs may name any node. Class ``c`` owns ``outputs[c * group_size:(c + 1) * group_size]``; its score
is the number of those outputs that are 1, divided by ``tau``. A model whose GroupSum groups are uneven
(``num_classes`` does not divide its head width: sizes differ by one, see ``lgn_nas.groups``) pads each
short group with the constant-0 node (a FALSE gate), so the groups here stay equal and every backend
counts exactly the model's groups; ``NetlistBuilder.build`` does this.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ..gates import GATE_NAMES, NUM_GATES
from ..inputs import check_domain, check_input

__all__ = ["Encoding", "NetlistLayer", "Netlist", "NetlistArrays", "ENCODING_KINDS"]

ENCODING_KINDS = ("thermometer",)


def _as_int_array(value: Any, *, name: str) -> np.ndarray:
    """``value`` as a 1-D integer numpy array (bools and floats are refused, not truncated)."""
    arr = np.asarray(value)
    if arr.ndim == 1 and arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} has dtype {arr.dtype}, expected an integer array")
    if arr.ndim != 1:
        raise ValueError(f"{name} has shape {arr.shape}, expected a 1-D array")
    return arr


@dataclass(eq=False)
class Encoding:
    """How raw inputs become the netlist's input bits.

    ``kind="thermometer"``: ``thresholds`` has shape (C, T) and bit ``(c, t, *spatial)`` is
    ``x[c, *spatial] > thresholds[c, t]`` compared in float32. Bits are ordered as the array
    (C, T, *spatial) flattened, so for 2-D inputs bit ``((c * T + t) * H + h) * W + w``.

    ``domain``: what raw inputs may be (``lgn_nas.inputs``): ``"unit"`` (images: uint8 read as
    ``x / 255``, or floats in [0, 1]) or ``"real"`` (finite floats, e.g. a ``LogicBlock``'s features).
    """

    kind: str
    input_shape: tuple[int, ...]
    thresholds: np.ndarray
    domain: str = "unit"

    def __post_init__(self) -> None:
        try:
            self.input_shape = tuple(int(s) for s in self.input_shape)
        except (TypeError, ValueError):
            raise ValueError(f"input_shape {self.input_shape!r} is not a tuple of ints, expected e.g. (1, 28, 28)")
        thresholds = np.asarray(self.thresholds)
        if thresholds.dtype.kind not in "fiu":
            raise ValueError(f"thresholds have dtype {thresholds.dtype}, expected float32")
        self.thresholds = np.ascontiguousarray(thresholds, dtype=np.float32)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError if kind, input_shape or thresholds are inconsistent."""
        if self.kind not in ENCODING_KINDS:
            raise ValueError(f"encoding kind {self.kind!r} is not supported, expected one of {ENCODING_KINDS}")
        check_domain(self.domain)
        if len(self.input_shape) < 1 or any(s < 1 for s in self.input_shape):
            raise ValueError(
                f"input_shape {self.input_shape} is invalid, expected (C, *spatial) with all sizes >= 1"
            )
        if self.thresholds.ndim != 2 or self.thresholds.shape[0] != self.input_shape[0] or self.thresholds.shape[1] < 1:
            raise ValueError(
                f"thresholds have shape {self.thresholds.shape}, expected (C, T) = ({self.input_shape[0]}, T) "
                f"with T >= 1 for input_shape {self.input_shape}"
            )
        if np.isnan(self.thresholds).any():
            raise ValueError("thresholds contain NaN, expected finite numbers")

    @property
    def num_channels(self) -> int:
        return self.input_shape[0]

    @property
    def bits_per_value(self) -> int:
        """T, the number of thresholds per channel."""
        return int(self.thresholds.shape[1])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.input_shape[1:]

    @property
    def bits_shape(self) -> tuple[int, ...]:
        """Shape of the bits before flattening: (C * T, *spatial)."""
        return (self.num_channels * self.bits_per_value,) + self.spatial_shape

    @property
    def num_bits(self) -> int:
        return int(np.prod(self.bits_shape))

    def encode(self, x: Any) -> np.ndarray:
        """Bool bits (B, num_bits) of raw inputs ``x`` (B, *input_shape).

        ``x`` must meet the input contract of :mod:`lgn_nas.inputs` for this ``domain`` (else an
        ``InputError``); uint8 inputs are scaled to ``x / 255``, floats compared in float32.
        """
        x = check_input(x, self.input_shape, domain=self.domain)
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / np.float32(255.0)
        batch = x.shape[0]
        n_spatial = len(self.spatial_shape)
        thr = self.thresholds.reshape(self.thresholds.shape + (1,) * n_spatial)  # (C, T, 1, ...)
        bits = x[:, :, None] > thr[None]  # (B, C, T, *spatial)
        return bits.reshape(batch, -1)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Encoding):
            return NotImplemented
        return (
            self.kind == other.kind
            and self.input_shape == other.input_shape
            and np.array_equal(self.thresholds, other.thresholds)
            and self.domain == other.domain
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(eq=False)
class NetlistLayer:
    """One level of gates: gate ``i`` computes ``gate[i](node[in_a[i]], node[in_b[i]])``.

    Canonical dtypes are uint8 for ``gate`` and int64 for ``in_a``/``in_b``; ``Netlist`` converts
    (after range checks) when it validates.
    """

    gate: np.ndarray
    in_a: np.ndarray
    in_b: np.ndarray

    def __post_init__(self) -> None:
        self.gate = np.asarray(self.gate)
        self.in_a = np.asarray(self.in_a)
        self.in_b = np.asarray(self.in_b)

    def __len__(self) -> int:
        return int(self.gate.shape[0]) if self.gate.ndim == 1 else 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetlistLayer):
            return NotImplemented
        return (
            np.array_equal(self.gate, other.gate)
            and np.array_equal(self.in_a, other.in_a)
            and np.array_equal(self.in_b, other.in_b)
        )

    __hash__ = None  # type: ignore[assignment]


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class NetlistArrays:
    """A validated :class:`Netlist` as plain, read-only numpy arrays (:meth:`Netlist.arrays`): what the
    lowerings outside this package read (``tvm_ops``, which imports nothing of lgn_nas, and the C
    export), so they need not check the format again.

    ``layers``: per layer (gate uint8, in_a int64, in_b int64) with the netlist's node ids (inputs
    first); ``outputs``: node ids, class ``c`` owning ``outputs[c*k:(c+1)*k]``; ``thresholds``: float32
    (C, T) of the ``encoding_kind`` encoding of raw inputs of shape ``input_shape = (C, *spatial)``, in
    ``input_domain`` (:mod:`lgn_nas.inputs`).
    """

    input_shape: Tuple[int, ...]
    thresholds: np.ndarray
    layers: Tuple[Tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    outputs: np.ndarray
    num_classes: int
    tau: float
    encoding_kind: str
    input_domain: str = "unit"

    @property
    def num_inputs(self) -> int:
        return int(self.thresholds.shape[1] * np.prod(self.input_shape))

    @property
    def num_gates(self) -> int:
        return int(sum(len(gate) for gate, _, _ in self.layers))

    @property
    def group_size(self) -> int:
        return int(self.outputs.shape[0]) // self.num_classes


class Netlist:
    """A discretised logic gate network: encoding, levelised gate layers and the GroupSum head.

    The constructor converts arrays to their canonical dtypes and calls :meth:`validate`.
    """

    def __init__(
        self,
        encoding: Encoding,
        layers: Sequence[NetlistLayer],
        outputs: Any,
        *,
        num_classes: int,
        tau: float,
        metadata: Optional[dict] = None,
    ) -> None:
        if not isinstance(encoding, Encoding):
            raise ValueError(f"encoding is a {type(encoding).__name__}, expected an Encoding")
        self.encoding = encoding
        self.layers = [
            layer if isinstance(layer, NetlistLayer) else NetlistLayer(*layer) for layer in layers
        ]
        self.outputs = np.asarray(outputs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise ValueError(f"num_classes = {num_classes!r}, expected an int >= 1")
        self.num_classes = int(num_classes)
        try:
            self.tau = float(tau)
        except (TypeError, ValueError):
            raise ValueError(f"tau = {tau!r}, expected a finite number > 0")
        self.metadata = dict(metadata) if metadata is not None else {}
        self.validate()

    # ------------------------------------------------------------------ structure
    @property
    def num_inputs(self) -> int:
        return self.encoding.num_bits

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def layer_sizes(self) -> list[int]:
        return [len(layer) for layer in self.layers]

    @property
    def num_gates(self) -> int:
        return int(sum(self.layer_sizes))

    @property
    def num_nodes(self) -> int:
        return self.num_inputs + self.num_gates

    @property
    def num_outputs(self) -> int:
        return int(self.outputs.shape[0])

    @property
    def group_size(self) -> int:
        return self.num_outputs // self.num_classes

    @property
    def layer_offsets(self) -> np.ndarray:
        """First node id of each layer (int64, length num_layers)."""
        sizes = np.asarray(self.layer_sizes, dtype=np.int64)
        starts = np.cumsum(sizes) - sizes
        return (self.num_inputs + starts).astype(np.int64)

    def node_depths(self) -> np.ndarray:
        """Gates on the longest path from the inputs to each node (inputs 0), int64 (num_nodes,)."""
        depth = np.zeros(self.num_nodes, dtype=np.int64)
        for offset, layer in zip(self.layer_offsets, self.layers):
            depth[offset:offset + len(layer)] = 1 + np.maximum(depth[layer.in_a], depth[layer.in_b])
        return depth

    @property
    def logic_depth(self) -> int:
        """Longest gate path from the inputs to any output node, counting gates."""
        if self.num_outputs == 0:
            return 0
        return int(self.node_depths()[self.outputs].max())

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check dtypes, shapes, gate ids, wiring order, outputs, head and encoding; raise ValueError.

        Converts arrays to canonical dtypes (gate uint8, indices int64) once their values are checked.
        """
        self.encoding.validate()
        offset = self.num_inputs
        for index, layer in enumerate(self.layers):
            where = f"layer {index}"
            gate = _as_int_array(layer.gate, name=f"{where}: gate")
            in_a = _as_int_array(layer.in_a, name=f"{where}: in_a")
            in_b = _as_int_array(layer.in_b, name=f"{where}: in_b")
            if not (gate.shape == in_a.shape == in_b.shape):
                raise ValueError(
                    f"{where}: gate, in_a, in_b have lengths {gate.shape[0]}, {in_a.shape[0]}, {in_b.shape[0]}, "
                    "expected equal lengths"
                )
            bad = np.flatnonzero((gate < 0) | (gate >= NUM_GATES))
            if bad.size:
                raise ValueError(
                    f"{where}: gate id {int(gate[bad[0]])} at position {int(bad[0])} is out of range, "
                    f"expected 0..{NUM_GATES - 1}"
                )
            for name, idx in (("in_a", in_a), ("in_b", in_b)):
                bad = np.flatnonzero((idx < 0) | (idx >= offset))
                if bad.size:
                    pos = int(bad[0])
                    value = int(idx[pos])
                    if value < 0 or value >= self._num_nodes_unchecked():
                        problem = f"is out of range (the net has {self._num_nodes_unchecked()} nodes)"
                    else:
                        problem = f"refers to layer {self._layer_of(value)} (its own layer or a later one)"
                    raise ValueError(
                        f"{where}: {name}[{pos}] = {value} {problem}, expected a node id in 0..{offset - 1} "
                        f"(an input or a gate of an earlier layer)"
                    )
            layer.gate = gate.astype(np.uint8, copy=False)
            layer.in_a = in_a.astype(np.int64, copy=False)
            layer.in_b = in_b.astype(np.int64, copy=False)
            offset += gate.shape[0]

        outputs = _as_int_array(self.outputs, name="outputs")
        num_nodes = offset
        bad = np.flatnonzero((outputs < 0) | (outputs >= num_nodes))
        if bad.size:
            raise ValueError(
                f"outputs[{int(bad[0])}] = {int(outputs[bad[0]])} is out of range, expected a node id in 0..{num_nodes - 1}"
            )
        self.outputs = outputs.astype(np.int64, copy=False)
        if self.num_classes < 1:
            raise ValueError(f"num_classes = {self.num_classes}, expected >= 1")
        if outputs.shape[0] == 0 or outputs.shape[0] % self.num_classes:
            raise ValueError(
                f"outputs has length {outputs.shape[0]}, expected num_classes * group_size = "
                f"{self.num_classes} * k with k >= 1 (a positive multiple of {self.num_classes})"
            )
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"tau = {self.tau}, expected a finite number > 0")
        try:
            json.dumps(self.metadata)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata is not JSON-serialisable ({exc}), expected plain JSON data") from None

    def _num_nodes_unchecked(self) -> int:
        return self.num_inputs + sum(int(np.asarray(layer.gate).size) for layer in self.layers)

    def _layer_of(self, node: int) -> int:
        offset = self.num_inputs
        for index, layer in enumerate(self.layers):
            offset += int(np.asarray(layer.gate).size)
            if node < offset:
                return index
        return -1

    # ------------------------------------------------------------------ evaluation
    def encode(self, x: Any) -> np.ndarray:
        """Bool input bits (B, num_inputs) of raw inputs (B, *input_shape)."""
        return self.encoding.encode(x)

    def evaluate_bits(self, bits: Any, *, chunk_size: int = 4096) -> np.ndarray:
        """Per-class counts of 1-outputs, int64 (B, num_classes), for input bits (B, num_inputs)."""
        from .evaluate import evaluate_bits

        return evaluate_bits(self, bits, chunk_size=chunk_size)

    def evaluate(self, x: Any, *, chunk_size: int = 4096) -> np.ndarray:
        """Float32 class scores (B, num_classes) = counts / tau, equal to eval-mode GroupSum."""
        counts = self.evaluate_bits(self.encode(x), chunk_size=chunk_size)
        return counts.astype(np.float32) / np.float32(self.tau)

    def predict(self, x: Any) -> np.ndarray:
        """Predicted class per sample (argmax of the scores; ties go to the lowest class), int64 (B,)."""
        return self.evaluate(x).argmax(axis=1).astype(np.int64)

    def node_values(self, bits: Any) -> np.ndarray:
        """Value of every node, bool (B, num_nodes), for input bits (B, num_inputs). For debugging."""
        from .evaluate import node_values

        return node_values(self, bits)

    def arrays(self) -> NetlistArrays:
        """This netlist as plain read-only arrays (validated when the netlist was made: not again)."""
        enc = self.encoding
        return NetlistArrays(
            input_shape=tuple(enc.input_shape), thresholds=_read_only(enc.thresholds),
            layers=tuple((_read_only(layer.gate), _read_only(layer.in_a), _read_only(layer.in_b))
                         for layer in self.layers),
            outputs=_read_only(self.outputs), num_classes=self.num_classes, tau=self.tau, encoding_kind=enc.kind,
            input_domain=enc.domain)

    # ------------------------------------------------------------------ transforms, I/O
    def simplify(self) -> tuple["Netlist", dict]:
        """Equivalent smaller netlist and statistics; see :func:`lgn_nas.netlist.simplify.simplify`."""
        from .simplify import simplify

        return simplify(self)

    def unused_gate_fraction(self) -> float:
        """Fraction of gates that influence no output (dead or constant); 0.0 for a net without gates."""
        from .simplify import unused_gate_mask

        if self.num_gates == 0:
            return 0.0
        return float(unused_gate_mask(self).mean())

    def save(self, path: Any) -> None:
        """Write the netlist to ``path`` (safetensors, see :mod:`lgn_nas.netlist.io`), atomically."""
        from .io import save_netlist

        save_netlist(self, path)

    # ------------------------------------------------------------------ display
    def gate_histogram(self) -> dict[str, int]:
        """Number of gates of each kind, by gate name (all 16 names present)."""
        counts = np.zeros(NUM_GATES, dtype=np.int64)
        for layer in self.layers:
            counts += np.bincount(layer.gate, minlength=NUM_GATES)
        return {name: int(c) for name, c in zip(GATE_NAMES, counts)}

    def summary(self) -> str:
        """Human-readable overview: inputs, gates per layer, depth, head."""
        lines = [
            f"Netlist: {self.num_inputs} inputs ({self.encoding.kind}, input_shape {self.encoding.input_shape}, "
            f"T={self.encoding.bits_per_value}), {self.num_gates} gates in {self.num_layers} layers, "
            f"logic depth {self.logic_depth}",
        ]
        for index, (offset, size) in enumerate(zip(self.layer_offsets, self.layer_sizes)):
            lines.append(f"  layer {index}: {size} gates (nodes {offset}..{offset + size - 1})")
        lines.append(
            f"  head: {self.num_classes} classes x {self.group_size} outputs, tau {self.tau:g}"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Netlist(num_inputs={self.num_inputs}, num_gates={self.num_gates}, num_layers={self.num_layers}, "
            f"num_classes={self.num_classes}, group_size={self.group_size}, tau={self.tau:g})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Netlist):
            return NotImplemented
        return (
            self.encoding == other.encoding
            and len(self.layers) == len(other.layers)
            and all(a == b for a, b in zip(self.layers, other.layers))
            and np.array_equal(self.outputs, other.outputs)
            and self.num_classes == other.num_classes
            and self.tau == other.tau
            and self.metadata == other.metadata
        )

    __hash__ = None  # type: ignore[assignment]
