"""``compile_netlist``: a discrete netlist compiled with TVM/LLVM for this CPU, bit-sliced.

The netlist is lowered to a :class:`~tvm_ops.netlist_plan.Plan` (numpy) and executed by the generic
kernel of :mod:`tvm_ops.netlist_kernel`, whose compiled module is cached per kernel shape and target
for the life of the process. ``import tvm`` happens on the first compile or load, not on import.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .atomic import atomic_write, atomic_write_bytes
from .build import resolve_target, set_num_threads
from .inputs import InputError, check_domain, check_input
from .netlist_kernel import KERNEL_NAME, KernelShape, build_kernel, encode_scratch_bytes
from .netlist_plan import NetlistSource, Plan, make_plan, netlist_arrays, uint8_cuts
from .netlist_scores import ScoredNetlist

__all__ = ["CompiledNetlist", "compile_netlist", "load_compiled_netlist", "clear_kernel_cache"]

FORMAT_VERSION = 3  # 2: the kernel reads slot * tile_words offsets; 3: encode scratch per thread grew
_INPUT_DTYPES = ("uint8", "float32")
_KERNEL_CACHE: dict[tuple, Any] = {}
_CACHE_LOCK = threading.Lock()
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def clear_kernel_cache() -> None:
    """Forget the compiled kernels kept for reuse in this process."""
    with _CACHE_LOCK:
        _KERNEL_CACHE.clear()


def _default_threads() -> int:
    from . import build

    env = None if build._WE_SET_ENV else os.environ.get("TVM_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"TVM_NUM_THREADS = {env!r}, expected a positive integer") from None
    try:
        import torch

        return max(1, int(torch.get_num_threads()))
    except ImportError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def _l2_bytes() -> int:
    try:
        text = Path("/sys/devices/system/cpu/cpu0/cache/index2/size").read_text().strip()
        return int(text[:-1]) * (1024 if text[-1] in "Kk" else 1024 * 1024) if text[-1].isalpha() else int(text)
    except (OSError, ValueError):
        return 1 << 20


def _tile_words(num_slots: int) -> int:
    """Tile (words of 64 samples): 8 when the live activations fit in about half of the L2 cache (the
    other half holds the streaming input), else 4. Measured on a 6 x 8000 net: 8 >= 16 > 4."""
    budget = _l2_bytes() // 2
    for words in (8,):
        if num_slots * words * 8 <= budget:
            return words
    return 4


def _aligned(array: np.ndarray) -> np.ndarray:
    """A 64-byte-aligned contiguous copy: the kernel assumes aligned tables, and rows of the
    activation scratch must not straddle cache lines."""
    array = np.asarray(array)
    raw = np.zeros(array.nbytes + 64, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64
    out = raw[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out


def _b64(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def _unb64(entry: dict) -> np.ndarray:
    array = np.frombuffer(base64.b64decode(entry["data"]), dtype=np.dtype(entry["dtype"]))
    return array.reshape(entry["shape"]).copy()


class CompiledNetlist(ScoredNetlist):
    """A netlist compiled for the CPU. Call it on raw inputs (B, *input_shape) to get float32 scores.

    Inputs: numpy arrays or CPU torch tensors that meet the input contract of :mod:`tvm_ops.inputs`
    (``input_domain`` "unit": uint8, scaled by 1/255 as the reference encoder does, or floats in
    [0, 1]; "real": finite floats; floats are compared in float32), else an ``InputError``.
    Outputs equal ``netlist.evaluate(x)`` bit for bit;
    :meth:`counts` equals ``netlist.evaluate_bits(netlist.encode(x))``. Calls are serialised by a
    lock (the scratch memory is shared); use ``threads`` for parallelism.
    """

    def __init__(self, *, plan: Plan, input_shape: tuple[int, ...], thresholds: np.ndarray, tau: float,
                 tile_words: int, target: dict, threads: int, modules: dict, stats: dict,
                 input_domain: str = "unit") -> None:
        self.plan = plan
        self.input_shape = tuple(int(s) for s in input_shape)
        self.input_domain = check_domain(input_domain)
        self.thresholds = np.ascontiguousarray(thresholds, dtype=np.float32)
        self.tau = float(tau)
        self.tile_words = int(tile_words)
        self.target = dict(target)
        self.threads = int(threads)
        self.stats = dict(stats)
        self._modules = dict(modules)  # input dtype -> compiled executable / module
        self._functions: dict[str, Any] = {}
        self._lock = threading.Lock()
        cuts = uint8_cuts(self.thresholds).reshape(-1)
        self._enc = {
            "uint8": (_aligned(np.minimum(cuts, 255).astype(np.uint8)),
                      _aligned(np.where(cuts < 256, 255, 0).astype(np.uint8))),
            "float32": (_aligned(self.thresholds.reshape(-1)), _aligned(np.full(cuts.size, 255, np.uint8))),
        }
        self._segments = _aligned(plan.segments.reshape(-1).astype(np.int32))
        # The kernel reads slot rows as word offsets (slot * tile_words).
        self._rows = _aligned((plan.rows.reshape(-1).astype(np.int64) * self.tile_words).astype(np.int32))
        self._hslot = _aligned((plan.head_slots.reshape(-1).astype(np.int64) * self.tile_words).astype(np.int32))
        self._hmask = _aligned(np.where(plan.head_neg.reshape(-1) == 1, _ALL_ONES, np.uint64(0)).astype(np.uint64))
        self._scratch: Optional[tuple[Any, Any]] = None
        self._encode_bytes = encode_scratch_bytes(self.kernel_shape("uint8"))
        self._tau32 = np.float32(self.tau)

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        return self.plan.num_classes

    @property
    def num_inputs(self) -> int:
        return self.plan.num_inputs

    @property
    def tile_samples(self) -> int:
        return self.tile_words * 64

    def kernel_shape(self, input_dtype: str) -> KernelShape:
        return KernelShape(
            channels=self.input_shape[0],
            thresholds_per_channel=int(self.thresholds.shape[1]),
            spatial=int(np.prod(self.input_shape[1:], dtype=np.int64)) if len(self.input_shape) > 1 else 1,
            input_dtype=input_dtype,
            output="scores",
            num_classes=self.plan.num_classes,
            group_size=int(self.plan.head_slots.shape[1]),
            num_planes=self.plan.num_planes,
            tile_words=self.tile_words,
        )

    def __repr__(self) -> str:
        return (
            f"CompiledNetlist(inputs={self.num_inputs}, gates={self.stats.get('gates_live')}, "
            f"classes={self.num_classes}, tile={self.tile_samples} samples, threads={self.threads}, "
            f"target={self.target.get('mcpu', self.target.get('kind'))})"
        )

    # ------------------------------------------------------------------ running
    def _function(self, input_dtype: str):
        function = self._functions.get(input_dtype)
        if function is None:  # looking a function up costs about 20 us: once per dtype
            if input_dtype not in self._modules:
                self._modules[input_dtype] = _get_kernel(self.kernel_shape(input_dtype), self.target)
            module = self._modules[input_dtype]
            function = module[KERNEL_NAME] if not hasattr(module, "mod") else module.mod[KERNEL_NAME]
            self._functions[input_dtype] = function
        return function

    def _prepare(self, x: Any) -> np.ndarray:
        if type(x).__module__.startswith("torch"):
            if x.device.type != "cpu":
                raise InputError(f"input is on device {x.device}, expected a CPU tensor")
            x = x.detach().contiguous().numpy()
        x = check_input(x, self.input_shape, domain=self.input_domain)
        return x.reshape(x.shape[0], -1)

    def _scratch_for(self, threads: int):
        """Per-thread scratch for ``threads`` (<= self.threads) chunks: views of one allocation."""
        slot_words, byte_words = self.plan.num_slots * self.tile_words, self._encode_bytes
        if self._scratch is None:
            n = max(self.threads, threads)
            self._scratch = (_aligned(np.zeros(n * slot_words, dtype=np.uint64)),
                             _aligned(np.zeros(n * byte_words, dtype=np.uint8)))
        act, byt = self._scratch
        return act[: threads * slot_words], byt[: threads * byte_words]

    def __call__(self, x: Any) -> np.ndarray:
        """Float32 class scores (B, num_classes) = counts / tau, as ``netlist.evaluate``."""
        x = self._prepare(x)
        dtype = "uint8" if x.dtype == np.uint8 else "float32"
        func = self._function(dtype)
        enc, en = self._enc[dtype]
        batch = x.shape[0]
        out = np.empty((batch, self.num_classes), dtype=np.float32)
        tile = self.tile_samples
        full = batch // tile * tile
        with self._lock:
            threads = max(1, min(self.threads, full // tile)) if full else 1
            act, byt = self._scratch_for(threads)
            common = (enc, en, self._segments, self._rows, self._hslot, self._hmask)
            if full:
                set_num_threads(threads)
                func(x[:full], *common, act, byt, out[:full], self._tau32)
            if full < batch:
                act1, byt1 = act[: self.plan.num_slots * self.tile_words], byt[: self._encode_bytes]
                pad = np.zeros((tile, x.shape[1]), dtype=x.dtype)
                pad[: batch - full] = x[full:]
                tail = np.empty((tile, self.num_classes), dtype=np.float32)
                func(pad, *common, act1, byt1, tail, self._tau32)
                out[full:] = tail[: batch - full]
        return out

    # ------------------------------------------------------------------ saving
    def save(self, path: Any) -> None:
        """Write ``path`` (a shared library with both input dtypes' kernels) and ``path + '.json'``.

        Both files are written atomically; :func:`load_compiled_netlist` reads them back without
        compiling (a C compiler is needed here, to link the library, not when loading).
        """
        import tvm

        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"directory {str(path.parent)!r} does not exist")
        for dtype in _INPUT_DTYPES:
            self._function(dtype)
        # One library holding both kernels (and their subroutines), under their dtype names.
        module = None
        for dtype in _INPUT_DTYPES:
            part = tvm.script.from_source(_kernel_source(self.kernel_shape(dtype), name=f"{KERNEL_NAME}_{dtype}"))
            if module is None:
                module = part
            else:
                module.update(part)
        executable = tvm.compile(module, target=self.target)
        atomic_write(path, executable.export_library, suffix=".so")  # the library's format follows the suffix
        data = path.read_bytes()
        plan = self.plan
        meta = {
            "format": "lgn-nas compiled netlist",
            "version": FORMAT_VERSION,
            "library_sha256": hashlib.sha256(data).hexdigest(),
            "input_shape": list(self.input_shape),
            "input_domain": self.input_domain,
            "tau": self.tau,
            "tile_words": self.tile_words,
            "target": self.target,
            "stats": self.stats,
            "plan": {
                "num_inputs": plan.num_inputs,
                "num_classes": plan.num_classes,
                "num_planes": plan.num_planes,
                "num_slots": plan.num_slots,
                "num_levels": plan.num_levels,
                "head": plan.head,
                "segments": _b64(plan.segments),
                "rows": _b64(plan.rows),
                "head_slots": _b64(plan.head_slots),
                "head_neg": _b64(plan.head_neg),
            },
            "thresholds": _b64(self.thresholds),
        }
        atomic_write_bytes(Path(str(path) + ".json"), json.dumps(meta).encode())


def _kernel_source(shape: KernelShape, **kwargs: Any) -> str:
    from .netlist_kernel import kernel_source

    return kernel_source(shape, **kwargs)


def _get_kernel(shape: KernelShape, target: dict):
    key = (shape.key(), json.dumps(target, sort_keys=True))
    with _CACHE_LOCK:
        if key not in _KERNEL_CACHE:
            executable = build_kernel(shape, target)
            _ = executable.mod[KERNEL_NAME]  # LLVM emits machine code lazily: do it now
            _KERNEL_CACHE[key] = executable
        return _KERNEL_CACHE[key]


def _set_tvm_threads(threads: int) -> None:
    """Size TVM's worker pool for the whole machine before its first parallel launch (it cannot grow
    later); each call then asks for the workers it needs (``build.set_num_threads``)."""
    from .build import prepare_thread_pool

    del threads
    prepare_thread_pool()


def compile_netlist(netlist: Any, *, target: Optional[dict] = None, threads: Optional[int] = None,
                    input_dtype: str = "uint8", tile_words: Optional[int] = None,
                    simplify: bool = True) -> CompiledNetlist:
    """Compile ``netlist`` for the CPU; returns a :class:`CompiledNetlist`.

    ``netlist``: an ``lgn_nas`` Netlist (validated when it was made; lowered through its plain-array
    view ``arrays()``, after ``simplify()`` unless ``simplify=False``) or such a view itself
    (:class:`~tvm_ops.netlist_plan.NetlistArrays`).
    ``target``: TVM target dict (default: LLVM for this CPU). ``threads``: parallel tiles (default
    ``TVM_NUM_THREADS`` or ``torch.get_num_threads()``). ``input_dtype``: the kernel compiled now
    ("uint8" or "float32"); the other is compiled on first use. ``tile_words``: 64-sample words per
    tile (default 8, or 4 when the activations would not fit in half the L2 cache). ``simplify=False``:
    the netlist is simplified already (the search's trials are), so its ``simplify()`` is not run again.
    """
    if input_dtype not in _INPUT_DTYPES:
        raise ValueError(f"input_dtype = {input_dtype!r}, expected one of {_INPUT_DTYPES}")
    if threads is None:
        threads = _default_threads()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads = {threads!r}, expected a positive int")
    if tile_words is not None and tile_words not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"tile_words = {tile_words!r}, expected one of 1, 2, 4, 8, 16, 32")
    if simplify and isinstance(netlist, NetlistSource):
        simplified = netlist.simplify()
        netlist = simplified[0] if isinstance(simplified, tuple) else simplified
    arrays = netlist_arrays(netlist)
    plan = make_plan(arrays, head="outputs")
    words = int(tile_words) if tile_words is not None else _tile_words(plan.num_slots)
    target = resolve_target(target)
    _set_tvm_threads(int(threads))
    compiled = CompiledNetlist(
        plan=plan, input_shape=arrays.input_shape, thresholds=arrays.thresholds, tau=arrays.tau,
        tile_words=words, target=target, threads=int(threads), modules={}, stats=dict(plan.stats),
        input_domain=arrays.input_domain,
    )
    compiled._modules[input_dtype] = _get_kernel(compiled.kernel_shape(input_dtype), target)  # compiled now
    return compiled


class _LoadedFunctions:
    """Maps an input dtype to the function of a loaded library (``__getitem__(KERNEL_NAME)``)."""

    def __init__(self, library: Any, dtype: str) -> None:
        self._function = library[f"{KERNEL_NAME}_{dtype}"]

    def __getitem__(self, name: str):
        return self._function


def load_compiled_netlist(path: Any, *, threads: Optional[int] = None) -> CompiledNetlist:
    """Load what :meth:`CompiledNetlist.save` wrote, without compiling."""
    import tvm

    path = Path(path)
    sidecar = Path(str(path) + ".json")
    for p in (path, sidecar):
        if not p.is_file():
            raise FileNotFoundError(f"compiled netlist file {str(p)!r} does not exist")
    try:
        meta = json.loads(sidecar.read_text())
    except ValueError as exc:
        raise ValueError(f"{str(sidecar)!r} is not valid JSON ({exc})") from None
    if meta.get("format") != "lgn-nas compiled netlist" or meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(sidecar)!r} has format {meta.get('format')!r} version {meta.get('version')!r}, "
            f"expected 'lgn-nas compiled netlist' version {FORMAT_VERSION}"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != meta["library_sha256"]:
        raise ValueError(f"{str(path)!r} does not match its sidecar (sha256 {digest[:12]}..., expected "
                         f"{meta['library_sha256'][:12]}...)")
    p = meta["plan"]
    plan = Plan(
        num_inputs=p["num_inputs"], num_classes=p["num_classes"], num_planes=p["num_planes"],
        num_slots=p["num_slots"], segments=_unb64(p["segments"]), rows=_unb64(p["rows"]),
        head=p["head"], head_slots=_unb64(p["head_slots"]), head_neg=_unb64(p["head_neg"]),
        num_levels=p["num_levels"], stats=meta["stats"],
    )
    # dlopen caches libraries by path: load a private copy so a file rewritten in place is seen anew.
    with tempfile.TemporaryDirectory() as tmp:
        private = Path(tmp) / f"lgn_netlist_{digest[:16]}.so"
        private.write_bytes(path.read_bytes())
        library = tvm.runtime.load_module(str(private))
    threads = _default_threads() if threads is None else int(threads)
    _set_tvm_threads(threads)
    modules = {dtype: _LoadedFunctions(library, dtype) for dtype in _INPUT_DTYPES}
    return CompiledNetlist(
        plan=plan, input_shape=tuple(meta["input_shape"]), thresholds=_unb64(meta["thresholds"]),
        tau=meta["tau"], tile_words=meta["tile_words"], target=meta["target"], threads=threads,
        modules=modules, stats=meta["stats"], input_domain=meta.get("input_domain", "unit"),
    )
