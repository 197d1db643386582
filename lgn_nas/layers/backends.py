"""Backends: which implementation computes a logic layer.

* ``torch``: the fused 4-coefficient autograd op of ``functional.py``; always available, and the
  path TorchScript and FX tracing take.
* ``tvm``: fused TVM kernels from ``tvm_ops`` (when that package provides training kernels).
* ``auto``: the fastest available backend.
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, List

import torch

from .functional import logic_dense

__all__ = ["BACKENDS", "list_backends", "check_backend", "resolve_backend", "dense_op"]

BACKENDS = ("auto", "torch", "tvm")


def list_backends() -> List[str]:
    """Names accepted for ``backend=``."""
    return list(BACKENDS)


def check_backend(name: str) -> str:
    """Return ``name`` if it is a known backend name, else raise ``ValueError`` listing them."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
    return name


@functools.lru_cache(maxsize=None)
def _tvm_dense_op() -> Callable | str:
    """The TVM dense training op, or a string saying why it is unavailable."""
    try:
        from tvm_ops import training  # type: ignore[attr-defined]
    except ImportError as exc:
        return f"tvm_ops has no training kernels in this version ({exc})"
    return training.logic_dense


def resolve_backend(name: str) -> str:
    """Map ``auto`` to the fastest available backend; refuse an unavailable explicit choice."""
    check_backend(name)
    tvm_op = _tvm_dense_op()
    if name == "auto":
        return "tvm" if callable(tvm_op) else "torch"
    if name == "tvm" and not callable(tvm_op):
        raise ValueError(f"backend 'tvm' is not available: {tvm_op}; use backend='torch' or 'auto'")
    return name


def dense_op(backend: str) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The dense layer op of a resolved backend."""
    if backend == "tvm":
        op = _tvm_dense_op()
        if callable(op):
            return op
    return logic_dense


