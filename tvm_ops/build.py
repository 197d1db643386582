"""Shared TVM build helpers: the host target, an on-disk + in-memory module cache, thread count.

Nothing here imports ``tvm`` at module import time; the first build or load does (about 3.5 s).

* :func:`host_target`: LLVM target dict for this CPU (``mcpu`` from LLVM's host detection).
* :func:`cached_build`: compile an IRModule once per (name, key, target) and keep the shared library
  in ``$LGN_TVM_CACHE`` (default ``~/.cache/lgn_nas/tvm``); later processes ``load_module`` it in
  milliseconds. The key should name everything the code depends on (e.g. a kernel version or a hash
  of the kernel source): the TVM version and the target are added here. Files are written to a
  temporary name and renamed, so concurrent processes never load half a library. A library that
  fails to load is rebuilt.
* :func:`set_num_threads`: TVM's worker count follows ``TVM_NUM_THREADS`` when set, else
  ``torch.get_num_threads()``.
* :func:`cuda_build`: generate CUDA code (no GPU needed) and, where nvcc is installed, compile it
  to PTX as a check; the result (:class:`CudaBuild`) says whether it was compiled and why not, so
  the CUDA path is optional and its absence reported, never fatal.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Optional

from .atomic import atomic_write

__all__ = ["host_target", "resolve_target", "cache_dir", "cached_build", "source_hash", "desired_threads", "set_num_threads", "prepare_thread_pool",
           "target_key", "CudaBuild", "cuda_build"]

_LOCK = threading.RLock()
_WE_SET_ENV = False
_MEMORY: Dict[str, Any] = {}
_HOST_TARGET: Optional[dict] = None


def host_target() -> dict:
    """``{"kind": "llvm", "mtriple": <host triple>, "mcpu": <host cpu>}`` (imports tvm)."""
    global _HOST_TARGET
    if _HOST_TARGET is None:
        import tvm  # noqa: F401  (registers the codegen functions)
        from tvm_ffi import get_global_func

        cpu = str(get_global_func("tvm.codegen.llvm.GetHostCPUName")())
        triple = str(get_global_func("tvm.codegen.llvm.GetDefaultTargetTriple")())
        _HOST_TARGET = {"kind": "llvm", "mtriple": triple, "mcpu": cpu}
    return dict(_HOST_TARGET)


def resolve_target(target: Any = None) -> dict:
    """``target`` as a TVM target dict, or :func:`host_target` when None (TVM 0.27 rejects strings)."""
    if target is None:
        return host_target()
    if isinstance(target, str):
        raise ValueError(
            f"target {target!r} is a string; TVM 0.27 wants a dict such as "
            "{'kind': 'llvm', 'mtriple': 'x86_64-linux-gnu', 'mcpu': 'znver3'}")
    return dict(target)


def cache_dir() -> Path:
    """``$LGN_TVM_CACHE`` or ``~/.cache/lgn_nas/tvm``."""
    env = os.environ.get("LGN_TVM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lgn_nas" / "tvm"


def source_hash(*paths: str | os.PathLike) -> str:
    """Short sha256 of the given source files (a cache-key component that follows code edits)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def target_key(target: dict) -> str:
    return json.dumps(target, sort_keys=True, default=str)


def _digest(name: str, key: Any, target: dict) -> str:
    import tvm

    blob = json.dumps({"name": name, "key": key, "target": target, "tvm": tvm.__version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_build(name: str, key: Any, make_module: Callable[[], Any], target: dict, *, disk: bool = True):
    """The runtime module of ``make_module()`` compiled for ``target``, cached in memory and on disk.

    Returns a ``tvm.runtime.Module`` (look functions up with ``mod[name]``).
    """
    import tvm

    digest = _digest(name, key, target)
    with _LOCK:
        mod = _MEMORY.get(digest)
        if mod is not None:
            return mod
        path = cache_dir() / f"{name}-{digest}.so"
        if disk and path.exists():
            try:
                mod = tvm.runtime.load_module(str(path))
            except Exception:  # a corrupt or incompatible file: rebuild it below
                mod = None
        if mod is None:
            ex = tvm.compile(make_module(), target=target)
            if disk:
                try:
                    atomic_write(path, ex.export_library, make_parents=True, suffix=".so")
                    mod = tvm.runtime.load_module(str(path))
                except Exception:  # read-only or full cache dir, or no loader for the target here
                    mod = None  # keep the in-memory build
            if mod is None:
                mod = ex.mod
        _MEMORY[digest] = mod
        return mod


def desired_threads() -> int:
    """``TVM_NUM_THREADS`` if set, else ``torch.get_num_threads()``."""
    env = None if _WE_SET_ENV else os.environ.get("TVM_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    import torch

    return max(1, torch.get_num_threads())


_POOL_READY = False
_POOL_THREADS = -1


def prepare_thread_pool() -> None:
    """Before TVM's worker pool exists: size it for the whole machine (it cannot grow later).

    TVM sizes its pool once, at the first parallel launch, from ``TVM_NUM_THREADS`` (default: half
    the cores). When that variable is unset we set it to the core count here so that
    :func:`set_num_threads` can later choose any count up to it; if another TVM user in the process
    already launched parallel work, its pool size stays the upper bound.

    It also sets ``TVM_BIND_THREADS=0`` unless the user set it: TVM otherwise pins its threads to
    cores counted from core 0, and with one thread that pins the calling process to core 0, so two
    single-threaded jobs on one machine share one core and leave the others idle (measured: two
    ``TVM_NUM_THREADS=1`` trainings at 50% CPU each on a 2-core machine).
    """
    global _POOL_READY, _WE_SET_ENV
    if not _POOL_READY:
        os.environ.setdefault("TVM_BIND_THREADS", "0")
        if not os.environ.get("TVM_NUM_THREADS"):
            os.environ["TVM_NUM_THREADS"] = str(max(1, os.cpu_count() or 1))
            _WE_SET_ENV = True
        _POOL_READY = True


def set_num_threads(n: int) -> None:
    """Make TVM's parallel loops use ``n`` workers (no-op when already so)."""
    global _POOL_THREADS
    if n == _POOL_THREADS:
        return
    from tvm_ffi import get_global_func

    get_global_func("runtime.config_threadpool")(1, int(n))
    _POOL_THREADS = n


class CudaBuild(NamedTuple):
    """A CUDA build: ``module`` (host module; its import holds the generated CUDA C, which TVM turns
    into GPU code when the module is loaded where a GPU is), ``compiled`` (True when nvcc compiled
    that CUDA C to PTX here: a real compile check) and ``reason`` (why not, or None); ``ptx`` is
    nvcc's output when compiled."""

    module: Any
    compiled: bool
    reason: Optional[str]
    ptx: Optional[str] = None

    @property
    def source(self) -> str:
        """The generated CUDA C of the kernels."""
        return self.module.imports[0].inspect_source()


_PTX: Dict[str, tuple] = {}


def _nvcc_ptx(source: str, arch: str) -> tuple:
    """``(ptx, None)`` or ``(None, reason)``: compile CUDA C to PTX with nvcc (no GPU needed)."""
    import shutil
    import subprocess

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None, "nvcc not found: CUDA C generated but not compiled"
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "kernels.cu"), os.path.join(tmp, "kernels.ptx")
        with open(src, "w") as f:
            f.write(source)
        try:
            proc = subprocess.run([nvcc, "-ptx", f"-arch={arch}", "-o", out, src], capture_output=True, text=True,
                                  timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"nvcc could not run: {type(exc).__name__}: {exc}"
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if "error" in line][:5] or proc.stderr.splitlines()[-5:]
            return None, f"nvcc rejected the generated CUDA C (exit {proc.returncode}): " + " | ".join(errors)
        with open(out) as f:
            return f.read(), None


def cuda_build(name: str, key: Any, make_module: Callable[[], Any], arch: str = "sm_90") -> CudaBuild:
    """Generate CUDA code for ``make_module()`` (target ``{"kind": "cuda", "arch": arch}``) and, where
    nvcc is installed, compile it to PTX as a check. No GPU is needed for either.

    TVM 0.27's ``tvm.compile`` only generates the CUDA C (the GPU binary is made when the module is
    loaded on a GPU machine), so the nvcc step is what catches code that would not compile. Without
    nvcc, or if it fails, the result says so (``compiled=False``, ``reason``); nothing is raised.
    Raises ``RuntimeError`` only if TVM cannot generate CUDA code at all (e.g. a TVM built without
    the CUDA backend). Cached in memory per (name, key, arch).
    """
    target = {"kind": "cuda", "arch": arch}
    try:
        module = cached_build(name, key, make_module, target, disk=False)
    except Exception as exc:
        raise RuntimeError(f"TVM cannot generate CUDA code here: {type(exc).__name__}: {exc}") from exc
    digest = _digest(name, key, target) + ":" + (_which_nvcc() or "")
    with _LOCK:
        if digest not in _PTX:
            _PTX[digest] = _nvcc_ptx(module.imports[0].inspect_source(), arch)
        ptx, reason = _PTX[digest]
    return CudaBuild(module, ptx is not None, reason, ptx)


def _which_nvcc() -> Optional[str]:
    """Path of nvcc on ``PATH``, or None."""
    import shutil

    return shutil.which("nvcc")
