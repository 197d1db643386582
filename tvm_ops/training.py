"""Autograd-aware PyTorch ops backed by the TVM training kernels (``train_dense``,
``train_dense_learnable``, ``train_conv``).

``logic_dense(x, in_a, in_b, coefficients)`` has the signature and semantics of
``lgn_nas.layers.functional.logic_dense``: ``x`` (B, in), ``in_a``/``in_b`` integer (n,),
``coefficients`` (n, 4) = (c1, ca, cb, cab); returns (B, n) and back-propagates into ``x`` and
``coefficients``. ``logic_dense_learnable(x, cand_a, cand_b, wa, wb, coefficients)`` is the same
layer with learnable wiring: each gate input is a weighted sum over K candidate inputs
(``cand_a``/``cand_b`` integer (n, K), relaxed weights ``wa``/``wb`` (n, K)); it back-propagates
into ``x``, ``wa``, ``wb`` and ``coefficients``.

* Importing this module is cheap: ``tvm`` is imported, and the kernels are compiled (or loaded from
  the on-disk cache, see ``tvm_ops.build``), on the first call. All shapes are symbolic in the
  kernels, so one build per dtype serves every layer and batch size.
* Tensors go to TVM zero-copy through DLPack; outputs are allocated by torch. The kernels assume
  element alignment only, so views at any offset are safe; non-contiguous inputs are made
  contiguous first.
* dtypes: float32 and float64 have kernels (float64 for ``gradcheck``); float16/bfloat16 are
  computed in float32 and cast back (differentiably). Other dtypes, non-CPU tensors, out-of-range
  or non-integer indices raise ``ValueError``/``TypeError`` with the reason: nothing is silently
  computed wrong.
* If ``tvm`` is missing or a build fails, the first op to see it warns once (``TvmFallbackWarning``,
  naming the cause) and every op raises :class:`TvmUnavailableError` from then on (also a tree deeper
  than the kernels unroll). The caller decides what computes instead: ``lgn_nas.layers.backends``
  falls back to its torch ops. This module imports nothing of ``lgn_nas``.
* Threads: ``TVM_NUM_THREADS`` if set, else ``torch.get_num_threads()``, re-read on every call.
"""
from __future__ import annotations

import importlib.util
import threading
import warnings
from typing import Any, Dict, Optional

import torch

__all__ = ["logic_dense", "logic_dense_learnable", "build_dense_learnable_kernels", "logic_tree_conv",
           "logic_tree_conv_or_pool", "build_conv_kernels", "available",
           "kernels_ready", "TvmFallbackWarning", "TvmUnavailableError", "build_dense_kernels", "consumer_index",
           "build_dense_cuda", "build_conv_cuda", "leaf_consumer_index", "reset"]


class TvmFallbackWarning(RuntimeWarning):
    """The TVM kernels could not be built or loaded; their callers compute without them."""


class TvmUnavailableError(RuntimeError):
    """An op has no TVM kernel to run (TVM missing, a build failed, or no kernel for the shape); the
    message names the reason. Raised before anything is computed, so the caller can fall back."""


_LOCK = threading.Lock()
_MODULES: Dict[str, Any] = {}
_FAILED: Optional[str] = None  # reason, once a build failed
_WARNED = False
_KERNEL_DTYPES = (torch.float32, torch.float64)
_CAST_DTYPES = (torch.float16, torch.bfloat16)


def available() -> bool:
    """Whether TVM is importable and no build has failed in this process (does not import tvm)."""
    return _FAILED is None and importlib.util.find_spec("tvm") is not None


def kernels_ready(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the kernels for ``dtype`` are already loaded in this process."""
    return str(dtype).replace("torch.", "") in _MODULES


def reset() -> None:
    """Forget loaded modules and a recorded failure (tests)."""
    global _FAILED, _WARNED
    with _LOCK:
        _MODULES.clear()
        _FAILED = None
        _WARNED = False


def _source_key() -> list:
    from . import build, train_dense

    return [train_dense.KERNEL_VERSION, build.source_hash(train_dense.__file__)]


def build_dense_kernels(dtype: str = "float32", target: Optional[dict] = None):
    """Compile (or load from the cache) the CPU dense kernels for ``dtype``: a ``tvm.runtime.Module``."""
    from . import build, train_dense

    build.prepare_thread_pool()
    target = build.resolve_target(target)
    return build.cached_build(
        f"lgn_dense_{dtype}", _source_key() + [dtype], lambda: train_dense.cpu_module(dtype), target)


def build_dense_cuda(dtype: str = "float32", arch: str = "sm_90"):
    """Build the CUDA dense kernels (forward, coefficient sums, input-gradient gather): a
    :class:`tvm_ops.build.CudaBuild`. No GPU needed: the CUDA C is generated (``.source``) and, where
    nvcc is installed, compiled to PTX as a check (``.compiled``; ``.reason`` says why not). Raises
    ``RuntimeError`` only when TVM cannot generate CUDA code at all. Nothing runs; not cached on disk
    (a TVM runtime without CUDA cannot load the library back).
    """
    from . import build, train_dense

    return build.cuda_build(f"lgn_dense_cuda_{dtype}_{arch}", _source_key() + [dtype],
                            lambda: train_dense.cuda_module(dtype), arch)


def build_conv_cuda(dtype: str = "float32", depth: int = 3, stride: int = 1, arch: str = "sm_90"):
    """Build the CUDA tree-conv kernels (plain and OR-pooled; forward, leaf gradients, input-gradient
    gather) for one (dtype, depth, stride): a :class:`tvm_ops.build.CudaBuild`, as
    :func:`build_dense_cuda`."""
    from . import build, train_conv

    return build.cuda_build(f"lgn_tree_conv_cuda_{dtype}_d{depth}_s{stride}_{arch}",
                            _conv_source_key() + [dtype, depth, stride],
                            lambda: train_conv.cuda_module(dtype, depth, stride), arch)


def leaf_consumer_index(leaf_index: torch.Tensor, kernel_size: int, channels: int, padded_width: int):
    """Inverse leaf index of a tree conv for the gather form of its input gradient (the CUDA
    kernels ``train_conv.CUDA_GX`` / ``CUDA_POOL_GX``): int32 ``(ptr, tree, leaf, rel)`` where channel
    ``ch`` is read by the entries ``ptr[ch]:ptr[ch+1]``, each naming the output channel (``tree``),
    the ``leaf`` and its field offset ``rel = dy * padded_width + dx``. Compute once per wiring."""
    k = kernel_size
    li = leaf_index.to(torch.int64).cpu()
    num_out, leaves = li.shape
    ch = (li // (k * k)).flatten()
    if li.numel() and (int(ch.min()) < 0 or int(ch.max()) >= channels):
        raise ValueError(f"leaf_index reads channels outside [0, {channels})")
    rel = (((li // k) % k) * padded_width + li % k).flatten()
    tree = torch.arange(num_out).repeat_interleave(leaves)
    leaf = torch.arange(leaves).repeat(num_out)
    order = torch.argsort(ch, stable=True)
    ptr = torch.zeros(channels + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(torch.bincount(ch, minlength=channels), 0)
    return tuple(t.to(torch.int32).contiguous() for t in (ptr, tree[order], leaf[order], rel[order]))


def _cached_kernels(key: str, build_fn, label: str):
    """The module under ``key`` (built once by ``build_fn``); :class:`TvmUnavailableError` once TVM is
    unusable, after one warning. One failure, dense or conv, makes every op unavailable, with one
    warning in all."""
    global _FAILED, _WARNED
    mod = _MODULES.get(key)
    if mod is not None:
        return mod
    with _LOCK:
        mod = _MODULES.get(key)
        if mod is None and _FAILED is None:
            try:
                mod = build_fn()
                _MODULES[key] = mod
            except Exception as exc:  # ImportError (no tvm) or any build error
                _FAILED = f"{type(exc).__name__}: {exc}"
        if mod is None and not _WARNED:
            _WARNED = True
            warnings.warn(f"TVM {label} kernels unavailable ({_FAILED}); computing without TVM from now on",
                          TvmFallbackWarning, stacklevel=6)
    if mod is None:
        raise TvmUnavailableError(f"TVM {label} kernels unavailable: {_FAILED}")
    return mod


def _module(dtype: torch.dtype):
    """The dense kernels for ``dtype`` (:class:`TvmUnavailableError` when TVM is unusable)."""
    name = str(dtype).replace("torch.", "")
    return _cached_kernels(name, lambda: build_dense_kernels(name), "dense")


def _check_cpu_float(op: str, x: torch.Tensor, coefficients: torch.Tensor, tensors) -> None:
    """Refuse non-CPU tensors, an input dtype without a kernel, and non-float coefficients."""
    for name, t in tensors:
        if t.device.type != "cpu":
            raise ValueError(f"{name} is on {t.device}; the TVM {op} op runs on CPU tensors only "
                             "(use backend='torch' or 'auto' for other devices)")
    if x.dtype not in _KERNEL_DTYPES + _CAST_DTYPES:
        raise TypeError(f"the TVM {op} op supports float32/float64 (float16/bfloat16 via float32), got {x.dtype}")
    if not coefficients.dtype.is_floating_point:
        raise TypeError(f"coefficients must be floating point, got {coefficients.dtype}")


def _dl(t: torch.Tensor):
    import tvm

    return tvm.runtime.from_dlpack(t)


def _threads(batch: int) -> int:
    from . import build

    n = build.desired_threads()
    build.set_num_threads(n)
    return max(1, min(n, batch))


class _TvmLogicDense(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, ia32, ib32, coefficients, mod):
        from . import train_dense

        out = torch.empty(x.shape[0], ia32.shape[0], dtype=x.dtype)
        if out.numel():
            _threads(x.shape[0])  # the forward is parallel over tiles of 8 samples
            mod[train_dense.FWD](_dl(x), _dl(ia32), _dl(ib32), _dl(coefficients), _dl(out))
        ctx.save_for_backward(x, ia32, ib32, coefficients)
        ctx.mod = mod
        return out

    @staticmethod
    def backward(ctx, grad_out):
        from . import train_dense

        x, ia32, ib32, coefficients = ctx.saved_tensors
        g = grad_out.to(x.dtype).contiguous()
        batch, n = g.shape
        p = max(1, min(_threads(batch), (batch + train_dense.TILE - 1) // train_dense.TILE))  # tasks own whole tiles
        grad_x = torch.empty_like(x)
        grad_c = torch.empty(n, 4, dtype=x.dtype)  # (n, 4), like the coefficients
        if batch == 0:
            grad_x.zero_()
            grad_c.zero_()
        elif x.shape[1] or n:
            part = torch.empty(p, 4, n, dtype=x.dtype)  # per-task partial sums (scratch)
            ctx.mod[train_dense.BWD](_dl(x), _dl(ia32), _dl(ib32), _dl(coefficients), _dl(g), _dl(grad_x),
                                     _dl(part), _dl(grad_c))
        return ((grad_x if ctx.needs_input_grad[0] else None), None, None,
                (grad_c if ctx.needs_input_grad[3] else None), None)


def _check_index(idx: torch.Tensor, name: str, in_features: int, n: int) -> torch.Tensor:
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {idx.dtype}")
    if idx.dim() != 1 or idx.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(idx.shape)}")
    if idx.device.type != "cpu":
        raise ValueError(f"{name} is on {idx.device}; the TVM dense op runs on CPU tensors only")
    if n:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= in_features:
            raise ValueError(f"{name} has indices in [{lo}, {hi}], outside [0, {in_features}) of the input")
    return idx.to(torch.int32).contiguous()


def logic_dense(x: torch.Tensor, in_a: torch.Tensor, in_b: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Fused 4-coefficient logic layer ``(batch, in) -> (batch, n)`` on TVM kernels (CPU)."""
    if x.dim() != 2:
        raise ValueError(f"logic layer input must be 2-D (batch, features), got shape {tuple(x.shape)}")
    n = in_a.shape[0] if in_a.dim() == 1 else -1
    if coefficients.dim() != 2 or coefficients.shape[1] != 4 or coefficients.shape[0] != n:
        raise ValueError(f"coefficients must have shape ({n}, 4), got {tuple(coefficients.shape)}")
    _check_cpu_float("dense", x, coefficients, (("x", x), ("coefficients", coefficients)))
    in_features = x.shape[1]
    batch = x.shape[0]
    from . import train_dense  # no tvm import

    if max(batch * in_features, batch * n, 2 * train_dense.VEC * in_features) >= 2 ** 31:
        raise ValueError("the TVM dense op indexes with int32: batch * inputs, batch * neurons and 16 * inputs "
                         f"must stay below 2**31 (batch {batch}, {in_features} inputs, {n} neurons)")
    ia32 = _check_index(in_a, "in_a", in_features, n)
    ib32 = _check_index(in_b, "in_b", in_features, n)

    compute_dtype = x.dtype if x.dtype in _KERNEL_DTYPES else torch.float32
    mod = _module(compute_dtype)
    xc = x.to(compute_dtype).contiguous()
    cc = coefficients.to(compute_dtype).contiguous()  # (n, 4): one neuron's four coefficients together
    out = _TvmLogicDense.apply(xc, ia32, ib32, cc, mod)
    return out if out.dtype == x.dtype else out.to(x.dtype)


# ------------------------------------------------------------------------- learnable dense wiring

def _learnable_source_key() -> list:
    from . import build, train_dense_learnable

    return [train_dense_learnable.KERNEL_VERSION, build.source_hash(*train_dense_learnable.SOURCES)]


def build_dense_learnable_kernels(dtype: str = "float32", target: Optional[dict] = None):
    """Compile (or load from the cache) the CPU kernels of :func:`logic_dense_learnable` for ``dtype``:
    a ``tvm.runtime.Module``. Sizes, the candidate count included, are symbolic."""
    from . import build, train_dense_learnable

    build.prepare_thread_pool()
    target = build.resolve_target(target)
    return build.cached_build(f"lgn_dense_learnable_{dtype}", _learnable_source_key() + [dtype],
                              lambda: train_dense_learnable.cpu_module(dtype), target)


def _learnable_module(dtype: torch.dtype):
    """The learnable-wiring kernels for ``dtype`` (state shared with the other ops, as ``_conv_module``)."""
    name = str(dtype).replace("torch.", "")
    return _cached_kernels(f"learnable:{name}", lambda: build_dense_learnable_kernels(name), "learnable dense")


class _TvmLogicDenseLearnable(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, ca32, cb32, wa, wb, coefficients, mod):
        from . import train_dense_learnable as tdl

        out = torch.empty(x.shape[0], ca32.shape[0], dtype=x.dtype)
        if out.numel():
            _threads(x.shape[0])  # parallel over tiles of samples
            mod[tdl.FWD](_dl(x), _dl(ca32), _dl(cb32), _dl(wa), _dl(wb), _dl(coefficients), _dl(out))
        ctx.save_for_backward(x, ca32, cb32, wa, wb, coefficients)
        ctx.mod = mod
        return out

    @staticmethod
    def backward(ctx, grad_out):
        from . import train_dense_learnable as tdl

        x, ca32, cb32, wa, wb, coefficients = ctx.saved_tensors
        g = grad_out.to(x.dtype).contiguous()
        batch, n = g.shape
        k = ca32.shape[1]
        p = min(_threads(batch), (batch + tdl.TILE - 1) // tdl.TILE)  # tasks own whole tiles
        p = max(1, min(p, (2 ** 31 - 1) // max(1, 2 * k * n)))  # partw (p, 2, k, n) stays int32-indexable
        grad_x = torch.empty_like(x)
        grad_c = torch.empty(n, 4, dtype=x.dtype)
        grad_wa = torch.empty(n, k, dtype=x.dtype)
        grad_wb = torch.empty(n, k, dtype=x.dtype)
        if batch == 0:
            for t in (grad_x, grad_c, grad_wa, grad_wb):
                t.zero_()
        elif x.shape[1] or n:
            partc = torch.empty(p, 4, n, dtype=x.dtype)  # per-task partial sums (scratch)
            partw = torch.empty(p, 2, k, n, dtype=x.dtype)
            ctx.mod[tdl.BWD](_dl(x), _dl(ca32), _dl(cb32), _dl(wa), _dl(wb), _dl(coefficients), _dl(g), _dl(grad_x),
                             _dl(partc), _dl(partw), _dl(grad_c), _dl(grad_wa), _dl(grad_wb))
        need = ctx.needs_input_grad
        return ((grad_x if need[0] else None), None, None, (grad_wa if need[3] else None),
                (grad_wb if need[4] else None), (grad_c if need[5] else None), None)


def _check_candidates(idx: torch.Tensor, name: str, in_features: int) -> torch.Tensor:
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {idx.dtype}")
    if idx.device.type != "cpu":
        raise ValueError(f"{name} is on {idx.device}; the TVM learnable dense op runs on CPU tensors only")
    if idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= in_features:
            raise ValueError(f"{name} has indices in [{lo}, {hi}], outside [0, {in_features}) of the input")
    return idx.to(torch.int32).contiguous()


def logic_dense_learnable(x: torch.Tensor, cand_a: torch.Tensor, cand_b: torch.Tensor, wa: torch.Tensor,
                          wb: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """4-coefficient logic layer with learnable wiring, ``(batch, in) -> (batch, n)``, on TVM kernels (CPU).

    ``a[:, j] = sum_k wa[j, k] * x[:, cand_a[j, k]]`` (``b`` likewise with ``cand_b``, ``wb``) and
    ``out = c1 + ca*a + cb*b + cab*a*b``. ``cand_a``/``cand_b``: integer (n, K) candidate inputs
    (repeats allowed); ``wa``/``wb``: float (n, K) weights, already relaxed by the caller (e.g. a
    softmax over K; they are not normalised here). Differentiable in ``x``, ``wa``, ``wb`` and
    ``coefficients``; ``wa``, ``wb`` and the coefficients are computed in ``x``'s dtype. With K = 1
    and weights 1 it equals :func:`logic_dense` with wires ``cand_a[:, 0]``, ``cand_b[:, 0]``.
    """
    if x.dim() != 2:
        raise ValueError(f"logic layer input must be 2-D (batch, features), got shape {tuple(x.shape)}")
    if cand_a.dim() != 2:
        raise ValueError(f"cand_a must be 2-D (gates, candidates), got shape {tuple(cand_a.shape)}")
    n, k = cand_a.shape
    if k < 1:
        raise ValueError(f"cand_a must have at least 1 candidate per gate input, got shape {tuple(cand_a.shape)}")
    for name, t in (("cand_b", cand_b), ("wa", wa), ("wb", wb)):
        if tuple(t.shape) != (n, k):
            raise ValueError(f"{name} must have the shape of cand_a ({n}, {k}), got {tuple(t.shape)}")
    if coefficients.dim() != 2 or tuple(coefficients.shape) != (n, 4):
        raise ValueError(f"coefficients must have shape ({n}, 4), got {tuple(coefficients.shape)}")
    _check_cpu_float("learnable dense", x, coefficients,
                     (("x", x), ("wa", wa), ("wb", wb), ("coefficients", coefficients)))
    for name, t in (("wa", wa), ("wb", wb)):
        if not t.dtype.is_floating_point:
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
    batch, in_features = x.shape
    from . import train_dense  # no tvm import

    if max(batch * in_features, batch * n, 2 * train_dense.VEC * in_features, 2 * k * n) >= 2 ** 31:
        raise ValueError("the TVM learnable dense op indexes with int32: batch * inputs, batch * neurons, 16 * inputs "
                         f"and 2 * candidates * neurons must stay below 2**31 (batch {batch}, {in_features} inputs, "
                         f"{n} neurons, {k} candidates)")
    ca32 = _check_candidates(cand_a, "cand_a", in_features)
    cb32 = _check_candidates(cand_b, "cand_b", in_features)

    compute_dtype = x.dtype if x.dtype in _KERNEL_DTYPES else torch.float32
    mod = _learnable_module(compute_dtype)
    xc = x.to(compute_dtype).contiguous()
    wac = wa.to(compute_dtype).contiguous()
    wbc = wb.to(compute_dtype).contiguous()
    cc = coefficients.to(compute_dtype).contiguous()
    out = _TvmLogicDenseLearnable.apply(xc, ca32, cb32, wac, wbc, cc, mod)
    return out if out.dtype == x.dtype else out.to(x.dtype)


def consumer_index(in_a: torch.Tensor, in_b: torch.Tensor, in_features: int):
    """Inverse wiring (CSR of each input's consumers) for the gather form of the input gradient.

    Returns int32 ``(ptr, neuron, partner, role)``: input ``i`` feeds the entries
    ``ptr[i]:ptr[i+1]``, each naming the consuming ``neuron``, the ``partner`` input of that neuron
    and ``role`` 1 (``i`` is its ``a``) or 2 (its ``b``), so
    ``grad_x[:, i] = sum_e g[:, neuron[e]] * (c[neuron[e], role[e]] + c[neuron[e], 3] * x[:, partner[e]])`` over the
    entries: race-free, one writer per input (the CUDA kernel :data:`train_dense.CUDA_GX`).
    Compute it once per wiring.
    """
    n = in_a.shape[0]
    idx = torch.cat([in_a, in_b]).to(torch.int64).cpu()
    if n and (int(idx.min()) < 0 or int(idx.max()) >= in_features):
        raise ValueError(f"wiring indices outside [0, {in_features})")
    neuron = torch.arange(n, dtype=torch.int64).repeat(2)
    partner = torch.cat([in_b, in_a]).to(torch.int64).cpu()
    role = torch.cat([torch.ones(n, dtype=torch.int64), torch.full((n,), 2, dtype=torch.int64)])
    order = torch.argsort(idx, stable=True)
    ptr = torch.zeros(in_features + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(torch.bincount(idx, minlength=in_features), 0)
    return tuple(t.to(torch.int32) for t in (ptr, neuron[order], partner[order], role[order]))


# ------------------------------------------------------------------------------ logic-tree convolutions

_MAX_KERNEL_DEPTH = 8  # deeper trees (not used by LogicTreeConv2d, max 6) take the torch path


def _conv_source_key() -> list:
    from . import build, train_conv

    return [train_conv.KERNEL_VERSION, build.source_hash(*train_conv.SOURCES)]


def build_conv_kernels(dtype: str = "float32", depth: int = 3, stride: int = 1, target: Optional[dict] = None):
    """Compile (or load from the cache) the CPU tree-conv kernels (plain and OR-pooled, forward and
    backward) for one (dtype, tree depth, stride): a ``tvm.runtime.Module``. Sizes are symbolic."""
    from . import build, train_conv

    build.prepare_thread_pool()
    target = build.resolve_target(target)
    return build.cached_build(
        f"lgn_tree_conv_{dtype}_d{depth}_s{stride}", _conv_source_key() + [dtype, depth, stride],
        lambda: train_conv.cpu_module(dtype, depth, stride), target)


def _conv_module(dtype: torch.dtype, depth: int, stride: int):
    """The tree-conv kernels (:class:`TvmUnavailableError` when TVM is unusable; the state is shared
    with the dense op: one failure makes both unavailable, with one warning in all)."""
    name = str(dtype).replace("torch.", "")
    return _cached_kernels(f"conv:{name}:{depth}:{stride}", lambda: build_conv_kernels(name, depth, stride),
                           "tree-conv")


def _leaf_offsets(leaf_index: torch.Tensor, kernel_size: int, padded_hw) -> torch.Tensor:
    """int32 ``(O, L)`` offsets of the leaves within one padded sample: ``c*Hp*Wp + dy*Wp + dx``."""
    k = kernel_size
    hp, wp = padded_hw
    li = leaf_index.to(torch.int64)
    return ((li // (k * k)) * (hp * wp) + ((li // k) % k) * wp + li % k).to(torch.int32).contiguous()


def _pad(x: torch.Tensor, padding: int) -> torch.Tensor:
    if padding:
        return torch.nn.functional.pad(x, (padding, padding, padding, padding))
    return x


def _conv_backward(ctx, name, extra, grad_out, xp, off, coefficients, height, width):
    """Run a tree-conv backward kernel: ``(grad_x, grad_coefficients)``, each ``None`` when not needed.
    The kernel zeroes its scratch, crops the padding and sums the per-task partial sums itself, so
    no torch op runs between the kernels (each would wake torch's thread pool against TVM's)."""
    g = grad_out.to(xp.dtype).contiguous()
    batch, channels = xp.shape[:2]
    grad_x = torch.empty(batch, channels, height, width, dtype=xp.dtype)
    grad_c = torch.empty(coefficients.shape, dtype=xp.dtype)
    if g.numel() and grad_x.numel():
        p = _threads(batch)
        gxp = torch.empty_like(xp)  # scratch: the padded input gradient
        part = torch.empty(p, *coefficients.shape, dtype=xp.dtype)  # scratch: per-task partial sums
        ctx.mod[name](_dl(xp), _dl(off), _dl(coefficients), *(_dl(t) for t in extra), _dl(g), _dl(gxp), _dl(grad_x),
                      _dl(part), _dl(grad_c), int(ctx.needs_input_grad[0]))  # no input gradient: no scatter
    else:
        grad_x.zero_()
        grad_c.zero_()
    return (grad_x if ctx.needs_input_grad[0] else None), (grad_c if ctx.needs_input_grad[2] else None)


class _TvmTreeConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, off, coefficients, mod, out_hw, padding):
        from . import train_conv

        xp = _pad(x, padding)
        out = torch.empty(x.shape[0], off.shape[0], *out_hw, dtype=x.dtype)
        if out.numel():
            _threads(x.shape[0] * off.shape[0])
            mod[train_conv.FWD](_dl(xp), _dl(off), _dl(coefficients), _dl(out))
        ctx.save_for_backward(xp, off, coefficients)
        ctx.mod = mod
        ctx.geometry = (padding, x.shape[2], x.shape[3])
        return out

    @staticmethod
    def backward(ctx, grad_out):
        from . import train_conv

        xp, off, coefficients = ctx.saved_tensors
        _, height, width = ctx.geometry
        grad_x, grad_c = _conv_backward(ctx, train_conv.BWD, (), grad_out, xp, off, coefficients, height, width)
        return grad_x, None, grad_c, None, None, None


class _TvmTreeConvOrPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, off, coefficients, mod, pooled_hw, padding):
        from . import train_conv

        xp = _pad(x, padding)
        out = torch.empty(x.shape[0], off.shape[0], *pooled_hw, dtype=x.dtype)
        arg = torch.empty(out.shape, dtype=torch.uint8)
        if out.numel():
            _threads(x.shape[0] * off.shape[0])
            mod[train_conv.POOL_FWD](_dl(xp), _dl(off), _dl(coefficients), _dl(out), _dl(arg))
        ctx.save_for_backward(xp, off, coefficients, arg)
        ctx.mod = mod
        ctx.geometry = (padding, x.shape[2], x.shape[3])
        return out

    @staticmethod
    def backward(ctx, grad_out):
        from . import train_conv

        xp, off, coefficients, arg = ctx.saved_tensors
        _, height, width = ctx.geometry
        grad_x, grad_c = _conv_backward(ctx, train_conv.POOL_BWD, (arg,), grad_out, xp, off, coefficients, height,
                                        width)
        return grad_x, None, grad_c, None, None, None


def _conv_args(x, leaf_index, coefficients, kernel_size, stride, padding, op: str):
    """Validate the tree-conv arguments; returns the output size ``(Ho, Wo)`` and the tree depth."""
    for name, value, minimum in (("kernel_size", kernel_size, 1), ("stride", stride, 1), ("padding", padding, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if x.dim() != 4:
        raise ValueError(f"{op} input must be 4-D (batch, channels, height, width), got shape {tuple(x.shape)}")
    _check_cpu_float(op, x, coefficients, (("x", x), ("leaf_index", leaf_index), ("coefficients", coefficients)))
    if leaf_index.dtype.is_floating_point or leaf_index.dtype.is_complex or leaf_index.dtype == torch.bool:
        raise TypeError(f"leaf_index must be an integer tensor, got {leaf_index.dtype}")
    if leaf_index.dim() != 2:
        raise ValueError(f"leaf_index must be 2-D (out_channels, leaves), got shape {tuple(leaf_index.shape)}")
    num_out, leaves = leaf_index.shape
    if leaves < 2 or leaves & (leaves - 1):
        raise ValueError(f"trees must have a power-of-two number >= 2 of leaves, got {leaves}")
    if tuple(coefficients.shape) != (num_out, leaves - 1, 4):
        raise ValueError(f"coefficients must have shape ({num_out}, {leaves - 1}, 4), got {tuple(coefficients.shape)}")
    batch, channels, height, width = x.shape
    fields = channels * kernel_size * kernel_size
    if leaf_index.numel():
        lo, hi = int(leaf_index.min()), int(leaf_index.max())
        if lo < 0 or hi >= fields:
            raise ValueError(f"leaf_index has values in [{lo}, {hi}], outside [0, {fields}) = channels * kernel_size**2")
    if min(height, width) + 2 * padding < kernel_size:
        raise ValueError(f"kernel_size={kernel_size} is larger than the input {(height, width)} padded by {padding}")
    out_h = (height + 2 * padding - kernel_size) // stride + 1
    out_w = (width + 2 * padding - kernel_size) // stride + 1
    padded = batch * channels * (height + 2 * padding) * (width + 2 * padding)
    if max(padded, batch * num_out * out_h * out_w) >= 2 ** 31:
        raise ValueError(f"the TVM {op} op indexes with int32: input and output must have < 2**31 elements")
    return (out_h, out_w), leaves.bit_length() - 1


def _run_conv(fn, x, leaf_index, coefficients, kernel_size, stride, padding, out_hw, depth):
    if depth > _MAX_KERNEL_DEPTH:
        raise TvmUnavailableError(f"no TVM tree-conv kernel for trees of depth {depth} (at most {_MAX_KERNEL_DEPTH})")
    compute_dtype = x.dtype if x.dtype in _KERNEL_DTYPES else torch.float32
    mod = _conv_module(compute_dtype, depth, stride)
    off = _leaf_offsets(leaf_index, kernel_size, (x.shape[2] + 2 * padding, x.shape[3] + 2 * padding))
    xc = x.to(compute_dtype).contiguous()
    cc = coefficients.to(compute_dtype).contiguous()
    out = fn.apply(xc, off, cc, mod, out_hw, padding)
    return out if out.dtype == x.dtype else out.to(x.dtype)


def logic_tree_conv(x: torch.Tensor, leaf_index: torch.Tensor, coefficients: torch.Tensor,
                    kernel_size: int, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """Logic-tree convolution ``(B, C, H, W) -> (B, O, H', W')`` on TVM kernels (CPU).

    Same signature and values as ``lgn_nas.layers.tree_ops.logic_tree_conv``; back-propagates into
    ``x`` and ``coefficients``. Trees deeper than 8 levels have no kernel (:class:`TvmUnavailableError`).
    """
    out_hw, depth = _conv_args(x, leaf_index, coefficients, kernel_size, stride, padding, "tree-conv")
    return _run_conv(_TvmTreeConv, x, leaf_index, coefficients, kernel_size, stride, padding, out_hw, depth)


def logic_tree_conv_or_pool(x: torch.Tensor, leaf_index: torch.Tensor, coefficients: torch.Tensor,
                            kernel_size: int, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """Logic-tree convolution fused with 2x2 OR (max) pooling, stride 2: ``(B, C, H, W) -> (B, O, H'//2, W'//2)``.

    Equal to ``max_pool2d(logic_tree_conv(...), 2)`` in values and gradients (ties in a window go to
    the first maximum in row-major order, as torch's max pooling does), but evaluates the tree at
    the window's four positions in one kernel, stores only the maximum and its position (uint8),
    and recomputes the tree at the winning position in the backward pass.
    """
    out_hw, depth = _conv_args(x, leaf_index, coefficients, kernel_size, stride, padding, "tree-conv OR-pool")
    if min(out_hw) < 2:
        raise ValueError(f"the 2x2 OR pool needs a convolution output of at least 2x2, got {out_hw[0]}x{out_hw[1]}")
    pooled_hw = (out_hw[0] // 2, out_hw[1] // 2)
    return _run_conv(_TvmTreeConvOrPool, x, leaf_index, coefficients, kernel_size, stride, padding, pooled_hw,
                     depth)
