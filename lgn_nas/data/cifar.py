"""CIFAR-10 from the standard ``cifar-10-batches-py`` layout, without trusting its pickles.

The batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``, ``batches.meta``) are Python
pickles of dicts with bytes keys: ``b'data'`` a uint8 array (N x 3072, rows are 1024 red, 1024
green, 1024 blue values of a 32x32 image), ``b'labels'`` a list of N ints in 0..9. They are read
with :class:`RestrictedUnpickler`, which resolves only the few globals a plain numpy array needs
and refuses object arrays, so a crafted file cannot run code.

No package ships CIFAR-10 here: put the directory under ``<root>/cifar-10-batches-py/`` (or pass
the directory itself as ``root``), or drop the official ``cifar-10-python.tar.gz`` into ``<root>``
and it is extracted (checked member by member) on first use. :mod:`.cifar_layout` chooses between
this layout and the binary one (:mod:`.cifar_bin`).
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, Union

import numpy as np

from .fetch import extract_members, install_dir_atomically

__all__ = [
    "CIFAR10_DIRNAME",
    "CIFAR10_TARBALL",
    "CIFAR10_TRAIN_BATCHES",
    "CIFAR10_CLASSES",
    "RestrictedUnpickler",
    "safe_load_pickle",
    "read_cifar_batch",
    "is_cifar10_py_dir",
    "extract_cifar10_tarball",
    "load_cifar10_arrays",
]

PathLike = Union[str, os.PathLike]

CIFAR10_DIRNAME = "cifar-10-batches-py"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_META = "batches.meta"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
_ROW_BYTES = 3 * 32 * 32


# --- restricted unpickling ---------------------------------------------------------------------

class _NdarrayType:
    """Stands in for ``numpy.ndarray`` in a pickle: only usable as _reconstruct's first argument."""


_NDARRAY_TOKEN = _NdarrayType()
_numpy_reconstruct = np.zeros(1).__reduce__()[0]  # numpy{._core,.core}.multiarray._reconstruct


def _checked_dtype(dtype: Any) -> np.dtype:
    if not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError(f"expected a numpy dtype, got {type(dtype).__name__}")
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing numpy dtype {dtype} holding Python objects")
    return dtype


def _safe_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    if isinstance(spec, bytes):  # Python 2 pickles read with encoding='bytes'
        spec = spec.decode("ascii")
    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f"refusing numpy dtype built from {type(spec).__name__}")
    return _checked_dtype(np.dtype(spec, bool(align), bool(copy)))


def _safe_reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not _NDARRAY_TOKEN:
        raise pickle.UnpicklingError("refusing to reconstruct anything but a plain numpy.ndarray")
    # The result is an empty array; its contents arrive via ndarray.__setstate__ (pickle BUILD),
    # whose dtype can only come from _safe_dtype, so no object array can be rebuilt.
    return _numpy_reconstruct(np.ndarray, shape, typecode)


def _safe_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(buffer, (bytes, bytearray, memoryview, pickle.PickleBuffer)):
        raise pickle.UnpicklingError(f"refusing array buffer of type {type(buffer).__name__}")
    array = np.frombuffer(buffer, dtype=_checked_dtype(dtype))
    return array.reshape(tuple(shape), order="F" if order == "F" else "C").copy()


def _latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed as (str, 'latin1')")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY_TOKEN,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for plain data and non-object numpy arrays; every other global is refused.

    Allowed: dict/list/tuple/str/bytes/int/float/bool/None (no globals needed), and numpy arrays
    via ``numpy.core.multiarray._reconstruct`` + ``numpy.ndarray`` + ``numpy.dtype`` (protocols
    0-4, Python 2 files included) or ``numpy.core.numeric._frombuffer`` (protocol 5), under
    either the ``numpy.core`` or ``numpy._core`` spelling. Each is replaced by a checked wrapper.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays and plain data are allowed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids")


def safe_load_pickle(path: PathLike) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; any failure is a ValueError naming it."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: unsafe or invalid pickle: {error}") from error
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as error:
        raise ValueError(f"{path}: corrupt pickle ({type(error).__name__}: {error})") from error


# --- CIFAR-10 batches --------------------------------------------------------------------------

def _get(batch: dict, key: str) -> Any:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise KeyError(key)


def read_cifar_batch(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one CIFAR-10 python batch file.

    Any N >= 1 is accepted (the real files have 10000) so that subsets and tests work.
    """
    path = Path(path)
    batch = safe_load_pickle(path)
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a dict with b'data' and b'labels', got {type(batch).__name__}")
    try:
        data, labels = _get(batch, "data"), _get(batch, "labels")
    except KeyError as error:
        raise ValueError(f"{path}: missing key b'{error.args[0]}' (keys: {sorted(map(repr, batch))})") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW_BYTES:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: b'data' must be a uint8 array of shape (N, {_ROW_BYTES}), got {got}")
    if not isinstance(labels, (list, tuple, np.ndarray)):
        raise ValueError(f"{path}: b'labels' must be a list of ints, got {type(labels).__name__}")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        raise ValueError(f"{path}: b'labels' must hold only ints")
    label_array = np.asarray(labels, dtype=np.int64).reshape(-1)
    if label_array.shape[0] != data.shape[0]:
        raise ValueError(f"{path}: {data.shape[0]} images but {label_array.shape[0]} labels")
    if data.shape[0] == 0:
        raise ValueError(f"{path}: batch holds no images")
    if label_array.min() < 0 or label_array.max() > 9:
        raise ValueError(f"{path}: labels must be in 0..9, got {label_array.min()}..{label_array.max()}")
    return data.reshape(-1, 3, 32, 32), label_array


def _read_class_names(directory: Path) -> tuple[str, ...]:
    meta_path = directory / CIFAR10_META
    if not meta_path.is_file():
        return CIFAR10_CLASSES
    meta = safe_load_pickle(meta_path)
    try:
        names = _get(meta, "label_names") if isinstance(meta, dict) else None
    except KeyError:
        names = None
    if not isinstance(names, (list, tuple)) or len(names) != 10:
        raise ValueError(f"{meta_path}: expected b'label_names' with 10 class names")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def is_cifar10_py_dir(directory: PathLike) -> bool:
    """Whether ``directory`` holds the six python batch files (their contents are checked when read)."""
    directory = Path(directory)
    return all((directory / name).is_file() for name in CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,))


def extract_cifar10_tarball(base: PathLike) -> Path:
    """Extract ``<base>/cifar-10-python.tar.gz`` (named members only) into ``<base>/cifar-10-batches-py``."""
    base = Path(base)
    names = CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH, CIFAR10_META)
    members = {f"{CIFAR10_DIRNAME}/{name}": name for name in names}
    tarball = base / CIFAR10_TARBALL
    return install_dir_atomically(base / CIFAR10_DIRNAME, lambda tmp: extract_members(tarball, members, tmp))


def load_cifar10_arrays(
    directory: PathLike,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """(x_train, y_train, x_test, y_test, class_names) from a cifar-10-batches-py directory.

    Images are uint8 (N, 3, 32, 32); labels int64; training batches concatenated in order 1..5.
    """
    directory = Path(directory)
    if not is_cifar10_py_dir(directory):
        raise FileNotFoundError(f"{directory}: not a {CIFAR10_DIRNAME} directory (needs data_batch_1..5, test_batch)")
    train = [read_cifar_batch(directory / name) for name in CIFAR10_TRAIN_BATCHES]
    x_test, y_test = read_cifar_batch(directory / CIFAR10_TEST_BATCH)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test, _read_class_names(directory)
