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
     "num_inputs": N, "num_classes": M, "tau": 10.0, "num_layers": L, "metadata": {...}}

Node ids, bit order and the GroupSum head are as described in :mod:`lgn_nas.netlist.ir`. Readers
refuse files whose ``version`` is newer than the one they support; a change that old readers would
misread must bump the version. Writes are atomic (temporary file in the same directory, then
``os.replace``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..atomic import atomic_write_bytes
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
        "num_inputs": netlist.num_inputs,
        "num_classes": netlist.num_classes,
        "tau": netlist.tau,
        "num_layers": netlist.num_layers,
        "metadata": netlist.metadata,
    }


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
    payload = save(tensors, metadata={METADATA_KEY: json.dumps(_header(netlist))})

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

    input_shape = _require(header, "input_shape", (list,), path)
    kind = _require(header, "encoding_kind", (str,), path)
    num_inputs = _require(header, "num_inputs", (int,), path)
    num_classes = _require(header, "num_classes", (int,), path)
    tau = _require(header, "tau", (int, float), path)
    num_layers = _require(header, "num_layers", (int,), path)
    metadata = _require(header, "metadata", (dict,), path)

    expected = ["thresholds", "outputs"] + [
        f"layer.{i}.{part}" for i in range(num_layers) for part in ("gate", "in_a", "in_b")
    ]
    missing = [name for name in expected if name not in tensors]
    if missing:
        raise ValueError(f"{str(path)!r} lacks tensor {missing[0]!r} (header says num_layers = {num_layers})")

    try:
        encoding = Encoding(kind, tuple(input_shape), tensors["thresholds"])
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
