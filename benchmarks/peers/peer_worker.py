"""One published peer, run in its own venv by ``benchmarks/bench_netlist_inference.py``.

Usage (the benchmark starts it; it never imports lgn_nas)::

    PEER_VENV/bin/python benchmarks/peers/peer_worker.py {difflogic,torchlogix} NET.npz CACHE_DIR [--opt 1]

It builds the peer's own compiled network from ``NET.npz`` (written by the benchmark), then answers
JSON requests on stdin, one per line, with one JSON line on stdout:

- ``{"cmd": "load", "bits": PATH}``: encoded inputs, bool (N, num_inputs) in ``np.save`` format;
- ``{"cmd": "check", "n": N}``: class counts of the first N samples, for the benchmark to compare;
- ``{"cmd": "time", "batch": B, "seconds": S}``: best and median seconds of one call on B samples;
- ``{"cmd": "quit"}``.

The peers, each through its own code path:

- ``difflogic``: ``difflogic.CompiledLogicNet`` (Felix Petersen's difflogic, branch main-cpu) of a
  ``torch.nn.Sequential`` of ``LogicLayer`` + ``GroupSum`` whose connections and gates are set from the
  net; ``compile(opt_level)`` runs gcc on its generated C (64-sample words). Timed: its entry
  ``apply_logic_gate_net`` on the bool input (it packs the bits and sums the groups in C), called
  through ctypes directly (``forward`` would add numpy padding and a torch copy).
- ``torchlogix``: ``torchlogix.Circuit`` of the same gates (``Gate``/``SumReduction``, the IR that
  ``Circuit.from_model`` builds), ``simplify()`` then ``compile(opt_level, pack_bits=64)``. Timed:
  ``circuit_bench`` on pre-packed 64-sample words (its own benchmarking entry), counts out.

Compiled libraries are cached in CACHE_DIR by the sha256 of the generated C and the flags (difflogic's
-O1 build of a 48K-gate net takes minutes), so a second run reuses them; ``compile_s`` reports the
time of the build when one ran, else the one recorded with the cached library.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np


_PROTOCOL = sys.stdout  # replaced in main(): the peers print (and gcc may write) to stdout


def _reply(obj) -> None:
    _PROTOCOL.write(json.dumps(obj) + "\n")
    _PROTOCOL.flush()


def _cached(cache: Path, key: str, build):
    """(library path, compile seconds, cached?) for ``key``; ``build(path)`` writes the library."""
    lib = cache / f"{key}.so"
    meta = cache / f"{key}.json"
    if lib.is_file() and meta.is_file():
        return lib, json.loads(meta.read_text())["compile_s"], True
    cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    build(lib)
    seconds = time.perf_counter() - start
    meta.write_text(json.dumps({"compile_s": seconds}))
    return lib, seconds, False


class Difflogic:
    def __init__(self, net, cache: Path, opt: int) -> None:
        import torch
        import difflogic
        from difflogic import CompiledLogicNet, GroupSum, LogicLayer

        self.num_inputs = int(net["num_inputs"])
        self.num_classes = int(net["num_classes"])
        layers = []
        in_dim = self.num_inputs
        for i in range(int(net["dl_num_layers"])):
            gate, a, b = (np.asarray(net[f"dl_{k}_{i}"], dtype=np.int64) for k in ("gate", "a", "b"))
            layer = LogicLayer(in_dim, gate.size, device="cpu", implementation="python")
            layer.indices = (torch.from_numpy(a), torch.from_numpy(b))
            with torch.no_grad():
                layer.weights.copy_(torch.nn.functional.one_hot(torch.from_numpy(gate), 16).float())
            layers.append(layer)
            in_dim = gate.size
        model = torch.nn.Sequential(*layers, GroupSum(self.num_classes, tau=1.0))
        self.compiled = CompiledLogicNet(model, device="cpu", num_bits=64, cpu_compiler="gcc")
        code = self.compiled.get_c_code()
        self.gates = int(sum(len(layer[0]) for layer in self.compiled.layers))
        key = hashlib.sha256(f"difflogic gcc -O{opt} -march=native\n{code}".encode()).hexdigest()[:24]
        path, self.compile_s, self.cached = _cached(
            cache, key, lambda p: self.compiled.compile(opt_level=opt, save_lib_path=str(p)))
        self.fn = CompiledLogicNet.load(str(path), self.num_classes, 64).lib_fn
        self.version = getattr(difflogic, "__version__", "main-cpu")
        self.label = f"difflogic CompiledLogicNet gcc -O{opt}"

    def load(self, bits: np.ndarray) -> None:
        self.bits = np.ascontiguousarray(bits, dtype=np.bool_)
        self.out = np.zeros(self.bits.shape[0] * self.num_classes, dtype=np.int32)

    def run(self, batch: int) -> np.ndarray:
        self.fn(self.bits[:batch].reshape(-1), self.out, batch // 64)
        return self.out[: batch * self.num_classes].reshape(batch, self.num_classes)


class Torchlogix:
    def __init__(self, net, cache: Path, opt: int) -> None:
        import torchlogix
        from torchlogix.circuit import LUT_ID_TO_GATE, Circuit, Gate, SumReduction

        self.num_inputs = n_in = int(net["num_inputs"])
        self.num_classes = int(net["num_classes"])
        gate, a, b = (np.asarray(net[f"tl_{k}"], dtype=np.int64) for k in ("gate", "a", "b"))
        outputs = np.asarray(net["tl_outputs"], dtype=np.int64).reshape(self.num_classes, -1)
        start = time.perf_counter()
        gates = []
        for j, (g, x, y) in enumerate(zip(gate.tolist(), a.tolist(), b.tolist())):
            op, uses_a, uses_b = LUT_ID_TO_GATE[g]
            ins = [v for v, used in ((x, uses_a), (y, uses_b)) if used] + [-1, -1]
            gates.append(Gate(gate_id=n_in + j, op=op, in0=ins[0], in1=ins[1]))
        first_sum = n_in + len(gates)
        sums = [SumReduction(node_id=first_sum + c, input_ids=outputs[c].tolist(), tau=1.0, beta=0.0)
                for c in range(self.num_classes)]
        circuit = Circuit(n_inputs=n_in, input_shape=[n_in], gates=gates,
                          outputs=[s.node_id for s in sums], output_shape=[self.num_classes], sum_nodes=sums)
        circuit.simplify()
        self.simplify_s = time.perf_counter() - start
        self.gates = len(circuit.gates)
        code = circuit.get_c_code(pack_bits=64)
        key = hashlib.sha256(f"torchlogix gcc -O{opt} pack 64\n{code}".encode()).hexdigest()[:24]

        def build(path: Path) -> None:
            circuit.compile(opt_level=opt, pack_bits=64)
            shutil.copy(circuit._lib._name, path)

        path, compile_s, self.cached = _cached(cache, key, build)
        self.compile_s = compile_s + self.simplify_s
        lib = ctypes.CDLL(str(path))  # argument types as Circuit.compile sets them
        self.out_dtype = np.dtype({"uint8_t": np.uint8, "uint16_t": np.uint16, "uint32_t": np.uint32,
                                   "uint64_t": np.uint64, "float": np.float32}[_reduction_ctype(circuit)])
        lib.circuit_bench.restype = None
        lib.circuit_bench.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        self.fn = lib.circuit_bench
        self.version = getattr(torchlogix, "__version__", "0.2.2")
        self.label = f"torchlogix Circuit gcc -O{opt}"

    def load(self, bits: np.ndarray) -> None:
        n = bits.shape[0] // 64 * 64
        # Block-major 64-sample words: bit s of word (blk, k) is input k of sample blk * 64 + s.
        packed = np.packbits(np.asarray(bits[:n], dtype=np.uint8).reshape(n // 64, 64, -1), axis=1,
                             bitorder="little")  # (blocks, 8, k) bytes
        self.words = np.ascontiguousarray(packed.transpose(0, 2, 1)).view(np.uint64)[..., 0].copy()
        self.out = np.zeros(n * self.num_classes, dtype=self.out_dtype)

    def run(self, batch: int) -> np.ndarray:
        self.fn(self.words.ctypes.data, self.out.ctypes.data, batch // 64)
        return self.out[: batch * self.num_classes].reshape(batch, self.num_classes)


def _reduction_ctype(circuit) -> str:
    from torchlogix.circuit import _c_output_dtype

    return _c_output_dtype([s for s in circuit.sum_nodes if s.node_id in set(circuit.outputs)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("peer", choices=["difflogic", "torchlogix"])
    parser.add_argument("net")
    parser.add_argument("cache")
    parser.add_argument("--opt", type=int, default=1)
    args = parser.parse_args()
    global _PROTOCOL
    _PROTOCOL = os.fdopen(os.dup(1), "w")  # the replies; everything else written to fd 1 goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    net = np.load(args.net)
    cls = Difflogic if args.peer == "difflogic" else Torchlogix
    runner = cls(net, Path(args.cache) / args.peer, args.opt)
    _reply({"ready": True, "label": runner.label, "version": runner.version, "compile_s": runner.compile_s,
            "cached": runner.cached, "gates": runner.gates, "python": sys.version.split()[0]})
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req.get("cmd")
        if cmd == "load":
            runner.load(np.load(req["bits"], mmap_mode="r"))
            _reply({"ok": True})
        elif cmd == "check":
            n = int(req["n"])
            _reply({"counts": runner.run(n).astype(np.int64).tolist()})
        elif cmd == "time":
            batch, seconds = int(req["batch"]), float(req["seconds"])
            runner.run(batch)
            times: list[float] = []
            while sum(times) < seconds or len(times) < 2:
                start = time.perf_counter()
                runner.run(batch)
                times.append(time.perf_counter() - start)
            _reply({"best": min(times), "median": float(np.median(times)), "reps": len(times)})
        elif cmd == "quit":
            _reply({"ok": True})
            return
        else:
            _reply({"error": f"unknown command {cmd!r}"})


if __name__ == "__main__":
    main()
