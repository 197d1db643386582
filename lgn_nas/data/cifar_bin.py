"""CIFAR-10 from the official binary layout (``cifar-10-batches-bin``), read with numpy only.

Each batch file (``data_batch_1.bin`` .. ``data_batch_5.bin``, ``test_batch.bin``) is a run of
3,073-byte records: one label byte (0..9), then 3,072 pixel bytes, the 1,024 red values, then the
green, then the blue, each plane a row-major 32x32 image. The official files hold exactly 10,000
records (30,730,000 bytes) each. Any positive whole number of records is accepted (pass
``records=`` / ``records_per_batch=`` to insist on a count), so subsets and tests work; the five
training batches must hold equally many, as the official ones do, which catches one truncated copy.
``batches.meta.txt`` (optional) lists the 10 class names, one per line.

No pickle is involved: files are memory-mapped and their pixels copied once into the result.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .cifar import CIFAR10_CLASSES
from .fetch import DatasetFormatError

__all__ = [
    "CIFAR10_BIN_DIRNAME",
    "CIFAR10_BIN_TRAIN_BATCHES",
    "CIFAR10_BIN_TEST_BATCH",
    "CIFAR10_BIN_META",
    "CIFAR10_BIN_RECORD_BYTES",
    "CIFAR10_BIN_OFFICIAL_RECORDS",
    "read_cifar_bin_batch",
    "is_cifar10_bin_dir",
    "load_cifar10_bin_arrays",
]

PathLike = Union[str, os.PathLike]
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]

CIFAR10_BIN_DIRNAME = "cifar-10-batches-bin"
CIFAR10_BIN_TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_BIN_TEST_BATCH = "test_batch.bin"
CIFAR10_BIN_META = "batches.meta.txt"
_PIXEL_BYTES = 3 * 32 * 32
CIFAR10_BIN_RECORD_BYTES = 1 + _PIXEL_BYTES
CIFAR10_BIN_OFFICIAL_RECORDS = 10_000


def _map_records(path: Path, records: Optional[int]) -> np.memmap:
    """The file as a read-only (N, 3073) uint8 memmap, after checking its size and labels."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CIFAR-10 binary batch missing")
    size = path.stat().st_size
    official = CIFAR10_BIN_OFFICIAL_RECORDS * CIFAR10_BIN_RECORD_BYTES
    if size == 0 or size % CIFAR10_BIN_RECORD_BYTES:
        raise DatasetFormatError(
            f"{path}: {size:,} bytes is not a positive whole number of {CIFAR10_BIN_RECORD_BYTES:,}-byte records "
            f"(1 label byte + {_PIXEL_BYTES:,} pixel bytes); an official CIFAR-10 binary batch is {official:,} bytes"
        )
    count = size // CIFAR10_BIN_RECORD_BYTES
    if records is not None and count != records:
        raise DatasetFormatError(
            f"{path}: {count:,} records ({size:,} bytes), expected {records:,} "
            f"({records * CIFAR10_BIN_RECORD_BYTES:,} bytes)"
        )
    table = np.memmap(path, dtype=np.uint8, mode="r", shape=(count, CIFAR10_BIN_RECORD_BYTES))
    bad = np.flatnonzero(table[:, 0] > 9)
    if bad.size:
        raise DatasetFormatError(
            f"{path}: record {int(bad[0]):,} has label {int(table[bad[0], 0])}, expected 0..9 "
            f"({bad.size:,} records out of range)"
        )
    return table


def read_cifar_bin_batch(path: PathLike, *, records: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one CIFAR-10 binary batch file.

    ``records`` insists on that many records (the official files have 10,000); None takes any N >= 1.
    """
    table = _map_records(Path(path), records)
    images = np.array(table[:, 1:]).reshape(-1, 3, 32, 32)
    return images, table[:, 0].astype(np.int64)


def is_cifar10_bin_dir(directory: PathLike) -> bool:
    """Whether ``directory`` holds all six binary batch files (sizes are checked when read)."""
    directory = Path(directory)
    return all((directory / name).is_file() for name in CIFAR10_BIN_TRAIN_BATCHES + (CIFAR10_BIN_TEST_BATCH,))


def _read_class_names(directory: Path) -> tuple[str, ...]:
    meta_path = directory / CIFAR10_BIN_META
    if not meta_path.is_file():
        return CIFAR10_CLASSES
    try:
        names = [line.strip() for line in meta_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as error:
        raise DatasetFormatError(f"{meta_path}: not UTF-8 text ({error})") from None
    if len(names) != 10:
        raise DatasetFormatError(f"{meta_path}: expected 10 class names, one per line, got {len(names)}")
    return tuple(names)


def load_cifar10_bin_arrays(directory: PathLike, *, records_per_batch: Optional[int] = None) -> Arrays:
    """(x_train, y_train, x_test, y_test, class_names) from a ``cifar-10-batches-bin`` directory.

    Images are uint8 (N, 3, 32, 32), labels int64; training batches concatenated in order 1..5. Each
    pixel is copied once, from the mapped file straight into the returned array.
    """
    directory = Path(directory)
    missing = [name for name in CIFAR10_BIN_TRAIN_BATCHES + (CIFAR10_BIN_TEST_BATCH,)
               if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{directory}: CIFAR-10 binary batch {', '.join(missing)} missing (a {CIFAR10_BIN_DIRNAME} directory "
            f"holds {CIFAR10_BIN_TRAIN_BATCHES[0]} .. {CIFAR10_BIN_TRAIN_BATCHES[-1]} and {CIFAR10_BIN_TEST_BATCH})"
        )
    train = [_map_records(directory / name, records_per_batch) for name in CIFAR10_BIN_TRAIN_BATCHES]
    for name, table in zip(CIFAR10_BIN_TRAIN_BATCHES[1:], train[1:]):
        if table.shape[0] != train[0].shape[0]:
            raise DatasetFormatError(
                f"{directory / name}: {table.shape[0]:,} records, but {CIFAR10_BIN_TRAIN_BATCHES[0]} has "
                f"{train[0].shape[0]:,}; the five training batches hold equally many "
                f"({CIFAR10_BIN_OFFICIAL_RECORDS:,} each in the official files)"
            )
    x_train = np.empty((sum(t.shape[0] for t in train), _PIXEL_BYTES), dtype=np.uint8)
    y_train = np.empty(x_train.shape[0], dtype=np.int64)
    start = 0
    for table in train:
        stop = start + table.shape[0]
        x_train[start:stop] = table[:, 1:]
        y_train[start:stop] = table[:, 0]
        start = stop
    x_test, y_test = read_cifar_bin_batch(directory / CIFAR10_BIN_TEST_BATCH, records=records_per_batch)
    return x_train.reshape(-1, 3, 32, 32), y_train, x_test, y_test, _read_class_names(directory)
