"""``compile_netlist_native``: a netlist as net-specialised AVX-512 or AVX2 code, built at run time
by the system C compiler (no TVM).

The plan of :mod:`tvm_ops.netlist_plan` is fused into 3-input ops (:mod:`tvm_ops.netlist_fuse`) and
written out as straight-line assembly (:mod:`tvm_ops.netlist_asm`), linked with a small C driver
(:mod:`tvm_ops.netlist_cdriver`). Where the TVM kernel interprets a table of rows, each costing two
loads and a store of a 512-sample row, this code keeps single-reader values in registers. Needs an
x86-64 CPU with AVX-512 F and BW (``isa="avx512"``: one ``vpternlogq`` per 3-input op, 32 registers)
or AVX2 (``isa="avx2"``: each op a short formula of two-input ops, 16 registers, 12 of them for the
gates), and a C compiler (``$CC``, ``cc`` or ``gcc``); by default the first of the two this CPU has.
Builds are cached by the hash of their ISA and sources in ``$LGN_NATIVE_CACHE`` (default
``~/.cache/lgn_nas/native``), written atomically.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .atomic import atomic_write
from .inputs import InputError, check_domain, check_input
from .netlist_asm import GATE_REGISTERS, ISAS, gates_assembly
from .netlist_cdriver import TILE_SAMPLES, driver_source, num_planes, scratch_words
from .netlist_fuse import FusedProgram, fuse_plan
from .netlist_plan import NetlistSource, make_plan, netlist_arrays, uint8_cuts
from .netlist_scores import ScoredNetlist

__all__ = ["NativeNetlist", "NativeUnavailable", "compile_netlist_native", "native_available", "native_isas"]

_ISA_FLAGS = {"avx512": ("-O2", "-mavx512f", "-mavx512bw", "-std=gnu11", "-shared", "-fPIC"),
              "avx2": ("-O2", "-mavx2", "-std=gnu11", "-shared", "-fPIC")}
_ISA_CPU_FLAGS = {"avx512": ("avx512f", "avx512bw"), "avx2": ("avx2",)}  # /proc/cpuinfo flags each needs
_ISA_NAMES = {"avx512": "AVX-512 F and BW", "avx2": "AVX2"}
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


class NativeUnavailable(RuntimeError):
    """This machine cannot build or run the native backend (no compiler, neither AVX-512 nor AVX2, or
    not the ISA asked for)."""


def _cpu_flags() -> set:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _compiler() -> str:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise NativeUnavailable("no C compiler found (looked for $CC, cc, gcc): the native netlist backend "
                            "builds its code at run time; install gcc or use compile_netlist (TVM)")


def _check_isa(isa: Optional[str]) -> None:
    if isa is not None and isa not in ISAS:
        raise ValueError(f"isa = {isa!r}, expected None (the best this CPU has) or one of {', '.join(map(repr, ISAS))}")


def native_isas() -> tuple:
    """The ISAs of the native backend this CPU has, best first (empty off x86-64)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return ()
    flags = _cpu_flags()
    return tuple(isa for isa in ISAS if set(_ISA_CPU_FLAGS[isa]) <= flags)


def native_available(*, isa: Optional[str] = None) -> Optional[str]:
    """None when the native backend can run here (with ``isa``: that ISA; else either), else why not
    (one line)."""
    _check_isa(isa)
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the native netlist backend needs x86-64, this machine is {platform.machine()}"
    have = native_isas()
    if isa is not None and isa not in have:
        missing = sorted(set(_ISA_CPU_FLAGS[isa]) - _cpu_flags())
        return (f"isa = {isa!r} needs {_ISA_NAMES[isa]} ({', '.join(missing)} missing on this CPU, which has "
                f"{' and '.join(_ISA_NAMES[i] for i in have) or 'neither AVX-512 nor AVX2'})")
    if not have:
        missing = sorted(set().union(*_ISA_CPU_FLAGS.values()) - _cpu_flags())
        return f"the native netlist backend needs AVX-512 or AVX2 ({', '.join(missing)} missing on this CPU)"
    try:
        _compiler()
    except NativeUnavailable as exc:
        return str(exc)
    return None


def cache_dir() -> Path:
    env = os.environ.get("LGN_NATIVE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lgn_nas" / "native"


def _compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def _build(c_source: str, asm_source: str, *, isa: str) -> Path:
    """The shared library of the two sources for ``isa``, from the cache or built now (atomically)."""
    cc = _compiler()
    flags = _ISA_FLAGS[isa]
    key = hashlib.sha256("\0".join([isa, c_source, asm_source, " ".join(flags), _compiler_version(cc)]).encode())
    path = cache_dir() / f"netlist_{key.hexdigest()[:32]}.so"
    if path.is_file():
        return path
    with tempfile.TemporaryDirectory() as tmp:
        c_file, asm_file = Path(tmp) / "driver.c", Path(tmp) / "gates.s"
        c_file.write_text(c_source)
        asm_file.write_text(asm_source)

        def compile_to(out: str) -> None:
            done = subprocess.run([cc, *flags, str(c_file), str(asm_file), "-o", out], capture_output=True, text=True)
            if done.returncode != 0:
                lines = (done.stderr or done.stdout).strip().splitlines()
                errors = [line for line in lines if "error" in line] or lines or [f"exit {done.returncode}"]
                raise NativeUnavailable(f"{cc} failed to build the native netlist code: {errors[0].strip()}")

        atomic_write(path, compile_to, make_parents=True, suffix=".so")
    return path


def _aligned_zeros(words: int) -> np.ndarray:
    raw = np.zeros(words + 8, dtype=np.uint64)
    start = (-raw.ctypes.data % 64) // 8
    return raw[start:start + words]


class NativeNetlist(ScoredNetlist):
    """A netlist compiled to native code. Call it on raw inputs (B, *input_shape) for float32 scores.

    Inputs as for :class:`~tvm_ops.CompiledNetlist` (uint8 or floats in the input domain); outputs equal
    ``netlist.evaluate(x)`` bit for bit, :meth:`counts` equals ``netlist.evaluate_bits(netlist.encode(x))``.
    Calls are serialised by a lock; ``threads`` workers split a call's tiles (each has its own scratch).
    ``isa``: "avx512" or "avx2", the instructions of the code (``program`` fused for it).
    """

    def __init__(self, *, program: FusedProgram, input_shape: tuple, thresholds: np.ndarray, tau: float,
                 input_domain: str, num_classes: int, group_size: int, stats: dict, threads: int = 1,
                 isa: str = "avx512") -> None:
        _check_isa(isa)
        self.isa = isa
        self.program = program
        self.input_shape = tuple(int(s) for s in input_shape)
        self.input_domain = check_domain(input_domain)
        self.thresholds = np.ascontiguousarray(thresholds, dtype=np.float32)
        self.tau = float(tau)
        self.num_classes = int(num_classes)
        self.group_size = int(group_size)
        self.stats = dict(stats)
        self._lock = threading.Lock()
        self._libraries: dict = {}
        cuts = uint8_cuts(self.thresholds).reshape(-1)
        self._cut = {"uint8": np.minimum(cuts, 255).astype(np.uint8),
                     "float32": self.thresholds.reshape(-1).copy()}
        self._enable = {"uint8": np.where(cuts < 256, _ALL_ONES, np.uint64(0)).astype(np.uint64),
                        "float32": np.full(cuts.size, _ALL_ONES, dtype=np.uint64)}
        self._scratch: dict = {}  # input dtype -> one scratch per worker
        self.threads = int(threads)
        self._pool = None
        self._tau32 = ctypes.c_float(np.float32(self.tau))

    @property
    def tile_samples(self) -> int:
        return TILE_SAMPLES

    def _shape(self) -> dict:
        channels, per_channel = self.thresholds.shape
        spatial = int(np.prod(self.input_shape[1:], dtype=np.int64)) if len(self.input_shape) > 1 else 1
        return {"channels": int(channels), "thresholds_per_channel": int(per_channel), "spatial": spatial}

    def library(self, input_dtype: str):
        """The built library for ``input_dtype`` ("uint8" or "float32"), built on first use."""
        lib = self._libraries.get(input_dtype)
        if lib is None:
            shape = self._shape()
            c_source = driver_source(num_slots=self.program.num_slots, input_dtype=input_dtype,
                                     num_classes=self.num_classes, group_size=self.group_size, isa=self.isa, **shape)
            # No prefetch of the next tile's input from the gates: measured 10-15% slower on the trained
            # dense net at 1,024-4,096 images per call (it competes with the code for L2); the encoder
            # prefetches its rows itself.
            asm = gates_assembly(self.program, name="lgn_gates", num_planes=num_planes(self.group_size), isa=self.isa)
            lib = ctypes.CDLL(str(_build(c_source, asm, isa=self.isa)))
            lib.lgn_run.restype = None
            lib.lgn_run.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float]
            lib.lgn_run_packed.restype = None
            lib.lgn_run_packed.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                                           ctypes.c_void_p, ctypes.c_float]
            self._libraries[input_dtype] = lib
            words = scratch_words(num_slots=self.program.num_slots, input_bytes=4 if input_dtype == "float32" else 1,
                                  num_classes=self.num_classes, group_size=self.group_size, **shape)
            self._scratch[input_dtype] = [_aligned_zeros(words) for _ in range(self.threads)]
        return lib

    def _prepare(self, x: Any) -> np.ndarray:
        if type(x).__module__.startswith("torch"):
            if x.device.type != "cpu":
                raise InputError(f"input is on device {x.device}, expected a CPU tensor")
            x = x.detach().contiguous().numpy()
        return check_input(x, self.input_shape, domain=self.input_domain)

    def _run(self, dtype: str, x: np.ndarray, out: np.ndarray, worker: int) -> None:
        scratch = self._scratch[dtype][worker]
        self._libraries[dtype].lgn_run(x.ctypes.data, x.shape[0], out.ctypes.data, scratch.ctypes.data,
                                       self._cut[dtype].ctypes.data, self._enable[dtype].ctypes.data, self._tau32)

    def __call__(self, x: Any) -> np.ndarray:
        """Float32 class scores (B, num_classes) = counts / tau, as ``netlist.evaluate``."""
        x = self._prepare(x)
        dtype = "uint8" if x.dtype == np.uint8 else "float32"
        batch = x.shape[0]
        out = np.empty((batch, self.num_classes), dtype=np.float32)
        with self._lock:
            self.library(dtype)
            tiles = -(-batch // TILE_SAMPLES)
            workers = max(1, min(self.threads, tiles // 2))  # a worker gets two tiles at least
            if workers == 1:
                self._run(dtype, x, out, 0)
                return out
            # Whole tiles per worker; ctypes releases the GIL during each call, so the calls run at once.
            per = -(-tiles // workers) * TILE_SAMPLES
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=self.threads - 1, thread_name_prefix="lgn-native")
            # The calling thread runs the first share itself: one hand-off fewer per call.
            jobs = [self._pool.submit(self._run, dtype, x[start:start + per], out[start:start + per], worker)
                    for worker, start in enumerate(range(0, batch, per)) if worker > 0]
            try:
                self._run(dtype, x[:per], out[:per], 0)
            finally:
                for job in jobs:
                    job.result()
        return out

    def scores_packed(self, bits: Any, num_samples: int) -> np.ndarray:
        """Float32 scores (num_samples, num_classes) from pre-packed input bits: uint64 (num_inputs, W)
        with sample ``j`` in bit ``j % 64`` of word ``j // 64`` (``lgn_nas.netlist.evaluate.pack_bits``),
        ``W >= ceil(num_samples / 64)``; equals ``netlist.evaluate_bits(bits) / tau``. One thread."""
        bits = np.asarray(bits)
        n_in = self.program.num_inputs
        if bits.dtype != np.uint64 or bits.ndim != 2 or bits.shape[0] != n_in:
            raise InputError(f"packed bits have shape {bits.shape} and dtype {bits.dtype}, expected ({n_in}, W) uint64")
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise InputError(f"num_samples = {num_samples!r}, expected a positive int")
        if bits.shape[1] * 64 < num_samples:
            raise InputError(f"packed bits hold {bits.shape[1] * 64} samples ({bits.shape[1]} words), "
                             f"expected at least num_samples = {num_samples}")
        bits = np.ascontiguousarray(bits)
        out = np.empty((int(num_samples), self.num_classes), dtype=np.float32)
        with self._lock:
            lib = self.library("uint8")
            lib.lgn_run_packed(bits.ctypes.data, bits.shape[1], int(num_samples), out.ctypes.data,
                               self._scratch["uint8"][0].ctypes.data, self._tau32)
        return out

    def __repr__(self) -> str:
        return (f"NativeNetlist(isa={self.isa}, inputs={self.program.num_inputs}, "
                f"gates={self.stats.get('gates_live')}, stored={self.stats.get('roots')}, classes={self.num_classes}, "
                f"tile={TILE_SAMPLES} samples)")


def compile_netlist_native(netlist: Any, *, input_dtype: str = "uint8", simplify: bool = True,
                           threads: int = 1, isa: Optional[str] = None) -> NativeNetlist:
    """Compile ``netlist`` (an lgn_nas Netlist or its ``arrays()`` view, as for
    :func:`~tvm_ops.compile_netlist`) to native code; ``input_dtype``: the library built now (the
    other on first use); ``threads``: workers that split a call's tiles; ``isa``: "avx512", "avx2" or
    None (AVX-512 where this CPU has it, else AVX2). Raises :class:`NativeUnavailable` (one line)
    where this cannot run, an ``isa`` this CPU lacks included."""
    if input_dtype not in ("uint8", "float32"):
        raise ValueError(f"input_dtype = {input_dtype!r}, expected 'uint8' or 'float32'")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads = {threads!r}, expected a positive int")
    why = native_available(isa=isa)
    if why:
        raise NativeUnavailable(why)
    isa = isa or native_isas()[0]
    if simplify and isinstance(netlist, NetlistSource):
        simplified = netlist.simplify()
        netlist = simplified[0] if isinstance(simplified, tuple) else simplified
    arrays = netlist_arrays(netlist)
    if arrays.group_size > 65535:
        raise ValueError(f"group size {arrays.group_size} is over 65,535 outputs per class, the most the native "
                         "backend counts; use compile_netlist (TVM)")
    plan = make_plan(arrays, head="outputs")
    program = fuse_plan(plan, max_registers=GATE_REGISTERS[isa])
    stats = dict(plan.stats)
    stats.update({key: program.stats[key] for key in ("roots", "clusters")})
    stats["native_slots"] = program.num_slots
    stats["native_isa"] = isa
    compiled = NativeNetlist(program=program, input_shape=arrays.input_shape, thresholds=arrays.thresholds,
                             tau=arrays.tau, input_domain=arrays.input_domain, num_classes=arrays.num_classes,
                             group_size=arrays.group_size, stats=stats, threads=int(threads), isa=isa)
    compiled.library(input_dtype)
    return compiled
