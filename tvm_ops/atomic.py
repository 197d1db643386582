"""Atomic file writes: a temporary sibling file, fsync, then a rename over the target.

A crash or an error leaves either the old file or the new one, never a half-written one, and no
temporary file behind. The compiled netlists and their sidecars are written so; ``lgn_nas.atomic``
builds its text and JSON writers on these (tvm_ops sits below lgn_nas, so the writer lives here).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Union

__all__ = ["atomic_write", "atomic_write_bytes"]

PathLike = Union[str, os.PathLike]


def atomic_write(path: PathLike, write: Callable[[str], None], *, make_parents: bool = False,
                 suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)`` to fill a temporary sibling of ``path``, fsync it, then rename it over
    ``path``. ``suffix`` ends the temporary's name (a writer may choose the format by it, as TVM's
    ``export_library`` does). Without ``make_parents`` a missing directory is a ``FileNotFoundError``
    naming it.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if make_parents:
        parent.mkdir(parents=True, exist_ok=True)
    elif not parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: directory {str(parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=parent)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: PathLike, data: bytes, *, make_parents: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)
    return atomic_write(path, write, make_parents=make_parents)
