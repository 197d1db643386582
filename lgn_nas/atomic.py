"""Atomic file writes: a temporary sibling file, fsync, then a rename over the target.

A crash or an error leaves either the old file or the new one, never a half-written one, and no
temporary file behind. Used for checkpoints, netlists, exported sources, metrics and data files. The
writer itself is ``tvm_ops.atomic``'s (the package below this one, which writes compiled netlists the
same way); the text and JSON forms are here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

from tvm_ops.atomic import atomic_write, atomic_write_bytes

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json"]

PathLike = Union[str, os.PathLike]


def atomic_write_text(path: PathLike, text: str, *, make_parents: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), make_parents=make_parents)


def atomic_write_json(path: PathLike, data: Any, *, make_parents: bool = False) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", make_parents=make_parents)
