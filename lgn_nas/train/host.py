"""Process settings for the length of a training run: flush-to-zero floats and a heap that keeps memory.

Both are process-wide and set by :func:`training_host` (``Trainer.fit`` runs inside it), measured in
``benchmarks/RESULTS.md`` (issue 13):

- **Flush-to-zero.** A cold softmax over large gate logits gives mixture weights below float32's
  normal range (1.2e-38); on x86 every product with such a denormal takes the slow path, which made a
  trained conv net's step 4-12x slower. Flushed, they become 0. Threads started inside (TVM's pool,
  OpenMP) inherit the mode.
- **A heap that keeps freed memory (glibc).** A step allocates and frees tens of MB of activations;
  glibc's defaults hand most of it back to the kernel (``mmap``/``trim`` thresholds of 128 KB), so the
  next step page-faults it in again: about 8,000 faults a conv MNIST step (what they cost is within the
  run-to-run noise of the step benchmark on the development machine). Inside,
  blocks under 32 MB (glibc's ceiling for the threshold) come from the heap and the heap is not trimmed;
  after, both return to glibc's default values (fixed ones: glibc's dynamic mmap threshold, which
  the first ``mallopt`` turned off, stays off). Skipped when the user set ``MALLOC_MMAP_THRESHOLD_``
  or ``MALLOC_TRIM_THRESHOLD_`` (their choice stands) and where the C library is not glibc.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import sys
from typing import Any, Iterator, Optional

import torch

__all__ = ["HostSettings", "training_host", "KEEP_MMAP_THRESHOLD", "KEEP_TRIM_THRESHOLD"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024
KEEP_MMAP_THRESHOLD = 32 * 1024 * 1024  # HEAP_MAX_SIZE / 2 on 64-bit: glibc refuses more
KEEP_TRIM_THRESHOLD = 2 ** 31 - 1
_USER_MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


@dataclasses.dataclass(frozen=True)
class HostSettings:
    """What :func:`training_host` turned on: ``flush_denormal`` and ``keep_heap`` (glibc thresholds)."""

    flush_denormal: bool
    keep_heap: bool


def _glibc() -> Optional[Any]:
    """The process's C library when it is glibc (it has ``mallopt`` and ``gnu_get_libc_version``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (a symbol only glibc has)
        return libc
    except (OSError, AttributeError):
        return None


def _mallopt(libc: Any, parameter: int, value: int) -> bool:
    return libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) == 1


@contextlib.contextmanager
def training_host() -> Iterator[HostSettings]:
    """Flush denormals and keep freed heap memory while the block runs; undo both after."""
    flushing = bool(torch.set_flush_denormal(True))
    libc = None if any(name in os.environ for name in _USER_MALLOC_VARIABLES) else _glibc()
    keeping = (libc is not None and _mallopt(libc, _M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD)
               and _mallopt(libc, _M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD))
    try:
        yield HostSettings(flush_denormal=flushing, keep_heap=bool(keeping))
    finally:
        if flushing:
            torch.set_flush_denormal(False)
        if libc is not None:
            _mallopt(libc, _M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
            _mallopt(libc, _M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
