"""Atomic file writes and single-file training checkpoints (safetensors + JSON metadata).

A checkpoint is one ``.safetensors`` file: the model's state dict under ``model.*``, the optimizer's
tensor state under ``optimizer.<param index>.<key>``, and everything else (config, epoch, step,
history, optimizer param groups and scalar state) as JSON in the safetensors metadata under
``lgn_nas``. One file means one atomic rename: a crash leaves either the old or the new checkpoint,
never a mix. Nothing is unpickled on load.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write
from ..atomic import atomic_write_bytes as _atomic_bytes
from ..atomic import atomic_write_json as _atomic_json
from ..atomic import atomic_write_text as _atomic_text

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "save_checkpoint", "load_checkpoint",
           "CHECKPOINT_NAME", "BEST_CHECKPOINT_NAME", "CHECKPOINT_FORMAT", "checkpoint_file"]

PathLike = Union[str, os.PathLike]
CHECKPOINT_NAME = "checkpoint.safetensors"
BEST_CHECKPOINT_NAME = "best.safetensors"  # the selected epoch of a ``select_best`` run, same format
CHECKPOINT_FORMAT = "lgn_nas.train.checkpoint/1"


def _atomic_write(path: PathLike, write) -> Path:
    return atomic_write(path, write, make_parents=True)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` atomically, creating the directory if needed."""
    return _atomic_bytes(path, data, make_parents=True)


def atomic_write_text(path: PathLike, text: str) -> Path:
    return _atomic_text(path, text, make_parents=True)


def atomic_write_json(path: PathLike, data: Any) -> Path:
    return _atomic_json(path, data, make_parents=True)


def _plain(value: Any) -> Any:
    """JSON-able copy of optimizer metadata (tuples -> lists, tensors -> numbers)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_checkpoint(
        path: PathLike,
        *,
        model_state: Dict[str, torch.Tensor],
        optimizer_state: Optional[Dict[str, Any]],
        meta: Dict[str, Any],
) -> Path:
    """Write one checkpoint file atomically; ``meta`` must be JSON-serialisable."""
    tensors: Dict[str, torch.Tensor] = {}
    for name, tensor in model_state.items():
        tensors[f"model.{name}"] = tensor.detach().cpu().contiguous()
    optimizer_meta = None
    if optimizer_state is not None:
        scalar_state: Dict[str, Dict[str, Any]] = {}
        tensor_keys: Dict[str, list] = {}
        for index, state in optimizer_state["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
                    tensor_keys.setdefault(str(index), []).append(key)
                else:
                    scalar_state.setdefault(str(index), {})[key] = _plain(value)
        optimizer_meta = {
            "param_groups": _plain(optimizer_state["param_groups"]),
            "scalar_state": scalar_state,
            "tensor_keys": tensor_keys,
        }
    full_meta = {"format": CHECKPOINT_FORMAT, "optimizer": optimizer_meta, **meta}
    text = json.dumps(full_meta)
    return _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"lgn_nas": text}))


def checkpoint_file(path: PathLike) -> Path:
    """The checkpoint a path names: ``path`` itself when it is a file; for a run directory, the model its
    metrics describe: ``best.safetensors`` when the run finished with a selected epoch (``select_best``),
    else ``checkpoint.safetensors`` (which may not exist)."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / BEST_CHECKPOINT_NAME).is_file() and _selected_epoch(path / "metrics.json") is not None:
        return path / BEST_CHECKPOINT_NAME
    return path / CHECKPOINT_NAME


def _selected_epoch(metrics_path: Path) -> Optional[int]:
    try:
        return json.loads(metrics_path.read_text()).get("selected_epoch")
    except (OSError, ValueError, AttributeError):
        return None


def load_checkpoint(path: PathLike, *, device: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Read a checkpoint: ``{"model": state_dict, "optimizer": state_dict or None, "meta": dict}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path), device=str(device))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own types for truncated or foreign files
        raise ValueError(f"{path} is not a readable safetensors checkpoint (truncated, or another format such as "
                         f"a pickle): {type(error).__name__}: {error}") from None
    if "lgn_nas" not in metadata:
        raise ValueError(f"{path} is not an lgn-nas training checkpoint (no 'lgn_nas' metadata)")
    try:
        meta = json.loads(metadata["lgn_nas"])
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: its 'lgn_nas' metadata is not valid JSON ({error})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT}")
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optimizer_meta = meta.pop("optimizer")
    optimizer_state = None
    if optimizer_meta is not None:
        state: Dict[int, Dict[str, Any]] = {}
        for index, keys in optimizer_meta["tensor_keys"].items():
            for key in keys:
                state.setdefault(int(index), {})[key] = tensors[f"optimizer.{index}.{key}"]
        for index, scalars in optimizer_meta["scalar_state"].items():
            state.setdefault(int(index), {}).update(scalars)
        optimizer_state = {"state": state, "param_groups": optimizer_meta["param_groups"]}
    return {"model": model_state, "optimizer": optimizer_state, "meta": meta}
