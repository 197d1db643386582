"""IDX files (the MNIST container format), raw or gzip-compressed.

Layout: two zero bytes, one dtype code, one byte giving the number of dimensions, then one
big-endian uint32 per dimension, then the payload in C order and big-endian byte order.
Every field is checked; a bad file raises ``ValueError`` naming the file and what is wrong.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..atomic import atomic_write_bytes

__all__ = ["IDX_DTYPES", "read_idx", "write_idx"]

PathLike = Union[str, os.PathLike]

#: IDX dtype code -> numpy dtype (big-endian where it matters).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
# Refuse absurd headers before allocating anything (a 4-byte field can claim 4 GiB per dim).
_MAX_NDIM = 8
_MAX_PAYLOAD_BYTES = 1 << 34


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the file starts with the gzip magic."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: corrupt gzip stream ({error})") from error
    return data


def read_idx(path: PathLike, *, expected_shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a native-endian numpy array.

    ``expected_shape`` (optional) is checked against the header; ``-1`` entries match anything.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(data)} bytes, shorter than the 4-byte magic")
    zero0, zero1, dtype_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000 then dtype code and ndim)"
        )
    if dtype_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX dtype code 0x{dtype_code:02X} (expected one of {known})")
    if not 1 <= ndim <= _MAX_NDIM:
        raise ValueError(f"{path}: IDX header has {ndim} dimensions (expected 1..{_MAX_NDIM})")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(
            f"{path}: truncated header: {ndim} dimensions need {header_len} bytes, file has {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = IDX_DTYPES[dtype_code]
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    shape_text = "x".join(str(dim) for dim in shape)
    if expected_bytes > _MAX_PAYLOAD_BYTES:
        raise ValueError(f"{path}: IDX header claims {shape_text} = {expected_bytes} bytes, too large")
    payload_len = len(data) - header_len
    if payload_len < expected_bytes:
        raise ValueError(
            f"{path}: truncated: header says {shape_text} = {expected_bytes} bytes, file has {payload_len}"
        )
    if payload_len > expected_bytes:
        raise ValueError(
            f"{path}: {payload_len - expected_bytes} trailing bytes after the {shape_text} payload "
            f"({expected_bytes} bytes)"
        )
    if expected_shape is not None:
        expected = tuple(int(dim) for dim in expected_shape)
        if len(expected) != len(shape) or any(e not in (-1, s) for e, s in zip(expected, shape)):
            wanted = "x".join("?" if e == -1 else str(e) for e in expected)  # ?: any size
            if len(expected) != len(shape):
                wanted = f"{len(expected)} dimension{'s' if len(expected) != 1 else ''} ({wanted})"
            raise ValueError(f"{path}: IDX shape {shape_text}, expected {wanted}")
    array = np.frombuffer(data, dtype=dtype, count=expected_bytes // dtype.itemsize, offset=header_len)
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: PathLike, array: np.ndarray, *, compress: Optional[bool] = None) -> Path:
    """Write ``array`` as an IDX file; gzip it when ``compress`` or (if None) the name ends in .gz."""
    path = Path(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"dtype {array.dtype} has no IDX code (supported: {sorted(map(str, codes))})")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    blob = header + payload
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        blob = gzip.compress(blob)
    return atomic_write_bytes(path, blob)
