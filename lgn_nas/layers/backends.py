"""Backends: which implementation computes a logic layer (the registry ``BACKENDS``: per name a
:class:`Backend` holding the layers' three ops).

* ``torch``: the fused 4-coefficient autograd op of ``functional.py``; always available, and the
  path TorchScript and FX tracing take.
* ``tvm``: the fused TVM kernels of ``tvm_ops.training`` (CPU; float32/float64). If TVM cannot
  build, ``tvm_ops`` warns once and raises ``TvmUnavailableError``; the ops here then compute with the
  torch path (the fallback lives here: ``tvm_ops`` knows nothing of the torch ops).
* ``auto``: decided per call, from the input (the rule is :func:`auto_uses_tvm`): the TVM op when
  ``tvm`` is importable and no TVM build has failed in this process, the input is a float32 CPU
  tensor, and the layer does at least :data:`AUTO_TVM_MIN_WORK` gate evaluations per call
  (``batch * out_features``; override with ``$LGN_AUTO_TVM_MIN_WORK``, 0 = always). Otherwise the
  torch op. The threshold keeps small layers (tests, toy models, single-sample inference) off TVM:
  its first use in a process costs about 3 s (``import tvm``) plus about 1 s to compile the kernels
  once per machine (later processes load them from the on-disk cache in milliseconds; every shape
  shares them). Above it the step time is dominated by the layer, where the TVM kernels are several
  times faster (``benchmarks/bench_train_ops.py --sweep``); batch 128 x 4,096 neurons is the
  smallest layer that qualifies, so ``lgn_dense_s`` (8,000 wide) trains on TVM at batch 128.

Logic-tree convolutions (``LogicTreeConv2d``, and a tree conv fused with the 2x2 OR pool that follows
it, ``LogicTreeConvPool2d``) follow the same policy with the TVM ops ``tvm_ops.training.logic_tree_conv``
and ``logic_tree_conv_or_pool``; their work is the gate evaluations of one call, ``batch *
out_channels * output positions * (2^depth - 1)`` (:func:`auto_uses_tvm_conv`, same threshold and
override). The CIFAR first block at batch 64 is 14.7 M gate evaluations (TVM about an order of
magnitude faster there, ``benchmarks/bench_train_ops.py``); a single 32x32 sample of it is 229 K and
stays on torch.

Learnable connectivity (``LogicDense(connectivity="learnable")``) trains through each backend's
``dense_learnable`` op ``(x, cand_a, cand_b, wa, wb, coefficients)``: torch's fused op of
``functional.py``, and for ``tvm`` the op ``tvm_ops.training.logic_dense_learnable`` (torch where TVM
cannot build, as above). A ``tvm_ops`` without that op cannot train it: an explicit ``backend="tvm"``
with learnable wiring is then refused (:func:`learnable_unavailable`), and ``auto`` uses torch. The
``auto`` rule counts gate evaluations as for the dense op (``batch * out_features``). In eval mode a
learnable layer runs the ordinary dense op on its argmax wires.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable, Dict, List

import torch

from .functional import logic_dense, logic_dense_learnable
from .tree_ops import logic_tree_conv

__all__ = ["Backend", "BACKENDS", "AUTO_TVM_MIN_WORK", "list_backends", "check_backend", "resolve_backend",
           "dense_op", "dense_learnable_op", "learnable_unavailable", "auto_uses_tvm", "logic_dense_auto",
           "logic_dense_learnable_auto", "auto_uses_tvm_conv", "tree_conv_op", "tree_conv_or_pool_op",
           "logic_tree_conv_or_pool_torch"]

AUTO_TVM_MIN_WORK = 1 << 19  # batch * out_features at or above which "auto" uses TVM


@functools.lru_cache(maxsize=None)
def _tvm_training():
    """``tvm_ops.training`` or a string saying why it is unavailable (cheap: does not import tvm)."""
    try:
        from tvm_ops import training  # type: ignore[attr-defined]
    except ImportError as exc:
        return f"tvm_ops has no training kernels in this version ({exc})"
    return training


def _with_torch_fallback(tvm_name: str, torch_op: Callable) -> Callable:
    """The TVM op ``tvm_name`` of ``tvm_ops.training``, computing with ``torch_op`` where it has no
    kernel to run (``TvmUnavailableError``: TVM missing or a build failed, warned once by tvm_ops)."""
    def op(*args):
        training = _tvm_training()
        tvm_op = None if isinstance(training, str) else getattr(training, tvm_name, None)
        if tvm_op is not None:
            try:
                return tvm_op(*args)
            except training.TvmUnavailableError:
                pass
        return torch_op(*args)

    op.__name__ = op.__qualname__ = f"{tvm_name}_tvm"
    op.__doc__ = f"The {tvm_name} op of backend ``tvm``, with the torch op where TVM cannot run."
    return op


def _auto_min_work() -> int:
    env = os.environ.get("LGN_AUTO_TVM_MIN_WORK")
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            raise ValueError(f"LGN_AUTO_TVM_MIN_WORK must be an integer, got {env!r}") from None
    return AUTO_TVM_MIN_WORK


def _tvm_usable() -> bool:
    training = _tvm_training()
    return not isinstance(training, str) and training.available()


def _tvm_learnable_missing() -> str | None:
    """Why the TVM backend cannot train learnable wiring here (``None``: it can)."""
    training = _tvm_training()
    if isinstance(training, str):
        return training
    if not callable(getattr(training, "logic_dense_learnable", None)):
        return "tvm_ops.training has no logic_dense_learnable op in this version"
    return None


def auto_uses_tvm(x: torch.Tensor, out_features: int) -> bool:
    """The ``auto`` rule: whether a dense layer of ``out_features`` on input ``x`` runs on TVM."""
    if not _tvm_usable() or x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 2:
        return False
    return x.shape[0] * out_features >= _auto_min_work()


def auto_uses_tvm_conv(x: torch.Tensor, out_channels: int, num_leaves: int, kernel_size: int, stride: int,
                       padding: int) -> bool:
    """The ``auto`` rule for a tree convolution on ``x``: TVM when it is usable, ``x`` is a float32
    CPU tensor and the call does at least the threshold's gate evaluations."""
    if not _tvm_usable() or x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4:
        return False
    out_h = (x.shape[2] + 2 * padding - kernel_size) // stride + 1
    out_w = (x.shape[3] + 2 * padding - kernel_size) // stride + 1
    return x.shape[0] * out_channels * max(out_h, 0) * max(out_w, 0) * (num_leaves - 1) >= _auto_min_work()


def logic_tree_conv_or_pool_torch(x: torch.Tensor, leaf_index: torch.Tensor, coefficients: torch.Tensor,
                                  kernel_size: int, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """The torch reference of the fused op: the tree conv, then 2x2 max (OR) pooling."""
    return torch.nn.functional.max_pool2d(logic_tree_conv(x, leaf_index, coefficients, kernel_size, stride, padding), 2)


logic_dense_tvm = _with_torch_fallback("logic_dense", logic_dense)
logic_dense_learnable_tvm = _with_torch_fallback("logic_dense_learnable", logic_dense_learnable)
logic_tree_conv_tvm = _with_torch_fallback("logic_tree_conv", logic_tree_conv)
logic_tree_conv_or_pool_tvm = _with_torch_fallback("logic_tree_conv_or_pool", logic_tree_conv_or_pool_torch)


def logic_dense_auto(x: torch.Tensor, in_a: torch.Tensor, in_b: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """The dense op of backend ``auto``: TVM where :func:`auto_uses_tvm` says so, else torch."""
    if auto_uses_tvm(x, in_a.shape[0]):
        return logic_dense_tvm(x, in_a, in_b, coefficients)
    return logic_dense(x, in_a, in_b, coefficients)


def logic_dense_learnable_auto(x: torch.Tensor, cand_a: torch.Tensor, cand_b: torch.Tensor, wa: torch.Tensor,
                               wb: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """The learnable-wiring op of backend ``auto``: TVM where its op exists and :func:`auto_uses_tvm`
    says so, else torch."""
    if auto_uses_tvm(x, cand_a.shape[0]) and _tvm_learnable_missing() is None:
        return logic_dense_learnable_tvm(x, cand_a, cand_b, wa, wb, coefficients)
    return logic_dense_learnable(x, cand_a, cand_b, wa, wb, coefficients)


def _auto_conv(tvm_op: Callable, torch_op: Callable) -> Callable:
    def op(x, leaf_index, coefficients, kernel_size: int, stride: int = 1, padding: int = 0):
        if auto_uses_tvm_conv(x, leaf_index.shape[0], leaf_index.shape[1], kernel_size, stride, padding):
            return tvm_op(x, leaf_index, coefficients, kernel_size, stride, padding)
        return torch_op(x, leaf_index, coefficients, kernel_size, stride, padding)

    name = tvm_op.__name__.removesuffix("_tvm")
    op.__name__ = op.__qualname__ = f"{name}_auto"
    op.__doc__ = f"The {name} op of backend ``auto``: TVM where :func:`auto_uses_tvm_conv` says so, else torch."
    return op


logic_tree_conv_auto = _auto_conv(logic_tree_conv_tvm, logic_tree_conv)
logic_tree_conv_or_pool_auto = _auto_conv(logic_tree_conv_or_pool_tvm, logic_tree_conv_or_pool_torch)


def _always() -> None:
    return None


def _tvm_missing() -> str | None:
    training = _tvm_training()
    return training if isinstance(training, str) else None


@dataclass(frozen=True)
class Backend:
    """The ops of one backend: ``dense(x, in_a, in_b, coefficients)``, ``tree_conv`` and the fused
    ``tree_conv_or_pool`` ``(x, leaf_index, coefficients, kernel_size, stride, padding)``,
    ``dense_learnable(x, cand_a, cand_b, wa, wb, coefficients)`` (learnable wiring in training),
    ``unavailable()``: ``None``, or why an explicit choice of it is refused here, and
    ``learnable_unavailable()``: likewise for training learnable wiring with it."""

    dense: Callable
    tree_conv: Callable
    tree_conv_or_pool: Callable
    dense_learnable: Callable
    unavailable: Callable[[], str | None] = _always
    learnable_unavailable: Callable[[], str | None] = _always


BACKENDS: Dict[str, Backend] = {
    "auto": Backend(logic_dense_auto, logic_tree_conv_auto, logic_tree_conv_or_pool_auto, logic_dense_learnable_auto),
    "torch": Backend(logic_dense, logic_tree_conv, logic_tree_conv_or_pool_torch, logic_dense_learnable),
    "tvm": Backend(logic_dense_tvm, logic_tree_conv_tvm, logic_tree_conv_or_pool_tvm, logic_dense_learnable_tvm,
                   _tvm_missing, _tvm_learnable_missing),
}


def list_backends() -> List[str]:
    """Names accepted for ``backend=``."""
    return list(BACKENDS)


def check_backend(name: str) -> str:
    """Return ``name`` if it is a known backend name, else raise ``ValueError`` listing them."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
    return name


def resolve_backend(name: str) -> str:
    """Check ``name``; refuse an unavailable explicit choice. ``auto`` stays ``auto`` (decided per call)."""
    reason = BACKENDS[check_backend(name)].unavailable()
    if reason is not None:
        raise ValueError(f"backend {name!r} is not available: {reason}; use backend='torch' or 'auto'")
    return name


def dense_op(backend: str) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The dense layer op of a resolved backend."""
    return BACKENDS[backend].dense


def dense_learnable_op(backend: str) -> Callable:
    """The learnable-wiring dense op ``(x, cand_a, cand_b, wa, wb, coefficients)`` of a resolved backend."""
    return BACKENDS[backend].dense_learnable


def learnable_unavailable(backend: str) -> str | None:
    """``None`` if ``backend`` can train learnable wiring here, else why not."""
    return BACKENDS[check_backend(backend)].learnable_unavailable()


def tree_conv_op(backend: str) -> Callable:
    """The tree-conv op ``(x, leaf_index, coefficients, kernel_size, stride, padding)`` of a resolved backend."""
    return BACKENDS[backend].tree_conv


def tree_conv_or_pool_op(backend: str) -> Callable:
    """The fused tree-conv + 2x2 OR-pool op of a resolved backend (same arguments)."""
    return BACKENDS[backend].tree_conv_or_pool
