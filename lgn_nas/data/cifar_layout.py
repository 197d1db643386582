"""Where CIFAR-10 is, and which of its two official layouts a directory holds.

:func:`locate_cifar10` looks in ``root`` itself, then ``<root>/cifar-10-batches-py``, then
``<root>/cifar-10-batches-bin`` (``root`` defaults to ``$LGN_DATA_DIR``, else ``~/.cache/lgn_nas``)
and returns the first directory holding every batch file of a layout: the python pickles
(:mod:`.cifar`) or the binary records (:mod:`.cifar_bin`); a directory holding both is read as
python. Failing that, an official ``cifar-10-python.tar.gz`` in ``root`` is extracted. A directory
holding only some batch files of a layout (or an empty ``cifar-10-batches-bin``) is reported with
the files it lacks; nothing at all gives a ``FileNotFoundError`` listing every place and file looked
for. :func:`load_cifar10` reads whichever layout a directory holds.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .cifar import (
    CIFAR10_DIRNAME, CIFAR10_TARBALL, CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES, extract_cifar10_tarball,
    load_cifar10_arrays,
)
from .cifar_bin import CIFAR10_BIN_DIRNAME, CIFAR10_BIN_TEST_BATCH, CIFAR10_BIN_TRAIN_BATCHES, load_cifar10_bin_arrays
from .fetch import data_root

__all__ = ["CIFAR10_LAYOUTS", "cifar10_layout", "locate_cifar10", "load_cifar10"]

PathLike = Union[str, os.PathLike]
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]

#: Layout -> (its official directory name, its batch files), in the order they are tried.
CIFAR10_LAYOUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "python": (CIFAR10_DIRNAME, CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,)),
    "binary": (CIFAR10_BIN_DIRNAME, CIFAR10_BIN_TRAIN_BATCHES + (CIFAR10_BIN_TEST_BATCH,)),
}


def _describe(layout: str) -> str:
    _, batches = CIFAR10_LAYOUTS[layout]
    return f"{batches[0]} .. {batches[-2]} and {batches[-1]}"


def cifar10_layout(directory: PathLike) -> Optional[str]:
    """``"python"`` or ``"binary"``: the first layout whose batch files are all in ``directory``; else None."""
    directory = Path(directory)
    for layout, (_, batches) in CIFAR10_LAYOUTS.items():
        if all((directory / name).is_file() for name in batches):
            return layout
    return None


def _incomplete(directory: Path) -> Optional[str]:
    """The refusal for a directory that holds part of a layout (or is named after one), else None."""
    for layout, (dirname, batches) in CIFAR10_LAYOUTS.items():
        present = [name for name in batches if (directory / name).is_file()]
        if present or (directory.name == dirname and directory.is_dir()):
            missing = [name for name in batches if name not in present]
            return (f"{directory}: CIFAR-10 {layout} batch {', '.join(missing)} missing "
                    f"(a {dirname} directory holds {_describe(layout)})")
    return None


def locate_cifar10(root: Optional[PathLike] = None, *, extract: bool = True) -> Path:
    """The CIFAR-10 directory (either layout) under ``root``; see the module docstring for the order.

    ``extract=False`` never unpacks the tarball.
    """
    base = data_root(root)
    candidates = [base, base / CIFAR10_DIRNAME, base / CIFAR10_BIN_DIRNAME]
    for directory in candidates:
        if cifar10_layout(directory) is not None:
            return directory
    if extract and (base / CIFAR10_TARBALL).is_file():
        return extract_cifar10_tarball(base)
    for directory in candidates:
        problem = _incomplete(directory)
        if problem is not None:
            raise FileNotFoundError(problem)
    raise FileNotFoundError(
        f"CIFAR-10 not found: looked in {', '.join(str(c) for c in candidates)} for the python batches "
        f"({_describe('python')}) or the binary ones ({_describe('binary')}), and for {base / CIFAR10_TARBALL}. "
        f"No package ships it: download it from https://www.cs.toronto.edu/~kriz/cifar.html and put "
        f"{CIFAR10_TARBALL} (extracted on first use) or an extracted {CIFAR10_DIRNAME}/ or {CIFAR10_BIN_DIRNAME}/ "
        f"directory in {base}, or pass root=DIR (lgn-nas: --data-root DIR) / set $LGN_DATA_DIR"
    )


def load_cifar10(directory: PathLike) -> Arrays:
    """(x_train, y_train, x_test, y_test, class_names) from a directory of either layout.

    Images are uint8 (N, 3, 32, 32), labels int64, training batches in order 1..5.
    """
    directory = Path(directory)
    layout = cifar10_layout(directory)
    if layout == "python":
        return load_cifar10_arrays(directory)
    if layout == "binary":
        return load_cifar10_bin_arrays(directory)
    raise FileNotFoundError(_incomplete(directory) or (
        f"{directory}: holds neither CIFAR-10 layout (python: {_describe('python')}; "
        f"binary: {_describe('binary')})"))
