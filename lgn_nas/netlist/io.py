"""Saving and loading netlists: a versioned safetensors file, no pickle.

Format ``lgn-netlist``, version 1. One safetensors file holding these tensors:

==================  =======  ===========  ================================================
name                dtype    shape        meaning
==================  =======  ===========  ================================================
``thresholds``      float32  (C, T)       thermometer thresholds of the encoding
``outputs``         int64    (K,)         output node ids, K = num_classes * group_size
``layer.{i}.gate``  uint8    (n_i,)       gate ids 0..15 of layer i (i = 0 .. num_layers-1)
``layer.{i}.in_a``  int64    (n_i,)       global node id of input a
``layer.{i}.in_b``  int64    (n_i,)       global node id of input b
==================  =======  ===========  ================================================

and one safetensors metadata entry, ``lgn_netlist``, a JSON object::

    {"format": "lgn-netlist", "version": 1, "input_shape": [C, ...], "encoding_kind": "thermometer",
     "input_domain": "unit", "num_inputs": N, "num_classes": M, "tau": 10.0, "num_layers": L,
     "metadata": {...}}

``input_domain`` (``"unit"`` or ``"real"``, see :mod:`lgn_nas.inputs`) is absent from files written
before it existed; they read as ``"real"`` when their metadata marks a ``LogicBlock`` head (its
``architecture`` is ``"LogicBlock"`` or it has an ``"input"`` note, as hybrids do), else ``"unit"``.

The header also holds ``"sha256"``: a SHA-256 digest of every other header entry and of every
tensor (dtype, shape and bytes), by name (``"input_shape"``, ``"tensor:layer.0.gate"``, ...). A
reader refuses a file whose content does not match, naming the changed entries, so one edited
gate byte or wiring bit is not loaded as a different circuit; files written before the digests
existed (no ``"sha256"``) are read unchecked.

Node ids, bit order and the GroupSum head are as described in :mod:`lgn_nas.netlist.ir`. Readers
refuse files whose ``version`` is newer than the one they support; a change that old readers would
misread must bump the version. Writes are atomic (temporary file in the same directory, then
``os.replace``).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..atomic import atomic_write_bytes
from ..inputs import INPUT_DOMAINS
from .ir import Encoding, Netlist, NetlistLayer

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "METADATA_KEY", "save_netlist", "load_netlist"]

FORMAT_NAME = "lgn-netlist"
FORMAT_VERSION = 1
METADATA_KEY = "lgn_netlist"

PathLike = Union[str, "os.PathLike[str]"]


def _header(netlist: Netlist) -> dict:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "input_shape": list(netlist.encoding.input_shape),
        "encoding_kind": netlist.encoding.kind,
        "input_domain": netlist.encoding.domain,
        "num_inputs": netlist.num_inputs,
        "num_classes": netlist.num_classes,
        "tau": netlist.tau,
        "num_layers": netlist.num_layers,
        "metadata": netlist.metadata,
    }


def _digests(header: dict, tensors: "dict[str, np.ndarray]") -> "dict[str, str]":
    """SHA-256 of each header entry (but ``sha256``) and of each tensor's dtype, shape and bytes."""
    digests = {key: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
               for key, value in header.items() if key != "sha256"}
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        h = hashlib.sha256(f"{array.dtype.str}{list(array.shape)}".encode())
        h.update(array.tobytes())
        digests[f"tensor:{name}"] = h.hexdigest()
    return digests


def _check_digests(header: dict, tensors: "dict[str, np.ndarray]", path: Path) -> None:
    stored = header.get("sha256")
    if stored is None:
        return  # written before the digests existed
    if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.values()):
        raise ValueError(f"{str(path)!r}: header entry 'sha256' is malformed, expected an object of hex digests")
    actual = _digests(header, tensors)
    changed = sorted(k for k in set(stored) | set(actual) if stored.get(k) != actual.get(k))
    if changed:
        def describe(key: str) -> str:
            if key.startswith("tensor:"):
                return f"tensor {key[len('tensor:'):]!r}" + ("" if key in actual else " (missing)")
            return f"header entry {key!r}" + (f" = {json.dumps(header[key])}" if key in header else " (missing)")

        shown = ", ".join(describe(k) for k in changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise ValueError(f"{str(path)!r} does not match its checksum: {shown} changed since it was written "
                         "(edited or corrupted); re-export the netlist")


def save_netlist(netlist: Netlist, path: PathLike) -> None:
    """Write ``netlist`` to ``path`` atomically; the parent directory must exist."""
    from safetensors.numpy import save

    netlist.validate()
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot save netlist to {str(path)!r}: directory {str(parent)!r} does not exist")
    tensors: dict[str, np.ndarray] = {
        "thresholds": np.ascontiguousarray(netlist.encoding.thresholds, dtype=np.float32),
        "outputs": np.ascontiguousarray(netlist.outputs, dtype=np.int64),
    }
    for i, layer in enumerate(netlist.layers):
        tensors[f"layer.{i}.gate"] = np.ascontiguousarray(layer.gate, dtype=np.uint8)
        tensors[f"layer.{i}.in_a"] = np.ascontiguousarray(layer.in_a, dtype=np.int64)
        tensors[f"layer.{i}.in_b"] = np.ascontiguousarray(layer.in_b, dtype=np.int64)
    header = _header(netlist)
    header["sha256"] = _digests(header, tensors)
    payload = save(tensors, metadata={METADATA_KEY: json.dumps(header)})

    atomic_write_bytes(path, payload)


def _require(header: dict, key: str, kinds: tuple, path: Path) -> Any:
    if key not in header:
        raise ValueError(f"{str(path)!r}: netlist header has no {key!r} entry")
    value = header[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(
            f"{str(path)!r}: header entry {key!r} = {value!r}, expected {' or '.join(k.__name__ for k in kinds)}"
        )
    return value


def load_netlist(path: PathLike) -> Netlist:
    """Read and fully validate a netlist written by :func:`save_netlist`.

    Raises FileNotFoundError for a missing file and ValueError for anything else that is wrong
    (not safetensors, truncated, another format, a newer version, inconsistent contents).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"netlist file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="np") as handle:
            file_meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise ValueError(f"{str(path)!r} is not a readable safetensors file ({type(exc).__name__}: {exc})") from None

    if METADATA_KEY not in file_meta:
        raise ValueError(
            f"{str(path)!r} is not an {FORMAT_NAME} file: its safetensors metadata has no {METADATA_KEY!r} entry"
        )
    try:
        header = json.loads(file_meta[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r}: netlist header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{str(path)!r}: netlist header is a {type(header).__name__}, expected a JSON object")
    if header.get("format") != FORMAT_NAME:
        raise ValueError(f"{str(path)!r} has format {header.get('format')!r}, expected {FORMAT_NAME!r}")
    version = _require(header, "version", (int,), path)
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} was written by a newer lgn-nas (version {version}); this one reads up to {FORMAT_VERSION}"
        )
    if version < 1:
        raise ValueError(f"{str(path)!r} has version {version}, expected 1..{FORMAT_VERSION}")

    _check_digests(header, tensors, path)
    input_shape = _require(header, "input_shape", (list,), path)
    kind = _require(header, "encoding_kind", (str,), path)
    num_inputs = _require(header, "num_inputs", (int,), path)
    num_classes = _require(header, "num_classes", (int,), path)
    tau = _require(header, "tau", (int, float), path)
    num_layers = _require(header, "num_layers", (int,), path)
    metadata = _require(header, "metadata", (dict,), path)
    if "input_domain" in header:
        domain = _require(header, "input_domain", (str,), path)
        if domain not in INPUT_DOMAINS:
            raise ValueError(f"{str(path)!r}: header entry 'input_domain' = {domain!r}, expected one of {INPUT_DOMAINS}")
    else:  # written before the entry existed
        domain = "real" if metadata.get("architecture") == "LogicBlock" or "input" in metadata else "unit"

    expected = ["thresholds", "outputs"] + [
        f"layer.{i}.{part}" for i in range(num_layers) for part in ("gate", "in_a", "in_b")
    ]
    missing = [name for name in expected if name not in tensors]
    if missing:
        raise ValueError(f"{str(path)!r} lacks tensor {missing[0]!r} (header says num_layers = {num_layers})")

    try:
        encoding = Encoding(kind, tuple(input_shape), tensors["thresholds"], domain)
    except ValueError as exc:
        raise ValueError(f"{str(path)!r}: header entry 'input_shape' = {json.dumps(input_shape)}: {exc}") from None
    if encoding.num_bits != num_inputs:  # before the wiring, which would blame layer 0 for an edited shape
        raise ValueError(f"{str(path)!r}: header says num_inputs = {num_inputs}, but header entry 'input_shape' = "
                         f"{json.dumps(input_shape)} gives {encoding.num_bits} input bits "
                         f"({tensors['thresholds'].shape[-1]} thresholds per channel): one of them was edited")
    try:
        layers = [
            NetlistLayer(tensors[f"layer.{i}.gate"], tensors[f"layer.{i}.in_a"], tensors[f"layer.{i}.in_b"])
            for i in range(num_layers)
        ]
        netlist = Netlist(encoding, layers, tensors["outputs"], num_classes=num_classes, tau=tau, metadata=metadata)
    except ValueError as exc:
        raise ValueError(f"{str(path)!r}: {exc}") from None
    if netlist.num_inputs != num_inputs:
        raise ValueError(
            f"{str(path)!r}: header says num_inputs = {num_inputs}, but the encoding gives {netlist.num_inputs}"
        )
    return netlist
