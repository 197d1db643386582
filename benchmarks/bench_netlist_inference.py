"""Inference speed of a discrete netlist: difflogic-style C baseline vs our TVM kernel and C export.

Side by side in one run, on a random 6 x 8000 MNIST-shaped net (784 input bits, 48K gates, 10 classes x
800 outputs), one thread unless ``--threads`` says otherwise:

- baseline: difflogic's CompiledLogicNet design, one C statement per gate on 64-sample words, compiled
  with gcc -O0 / -O1 (written below from the netlist in a few lines). It is given pre-packed input
  words (encoding not timed, in its favour); GroupSum is a per-sample bit loop in C, as difflogic
  unpacks output bits and sums them (the ``gates only`` rows leave GroupSum out).
- ``tvm``: ``tvm_ops.compile_netlist`` on raw uint8 images (B, 1, 28, 28): encoding, gates and GroupSum
  all timed.
- ``c export``: ``lgn_nas.export.to_c`` compiled with gcc -O2 -march=native, on pre-packed words.

Also: compile time of a random 1M-gate net (``--big-gates``), gate evaluations per second against the
CPU's bitwise-op peak (``--ops-per-cycle`` vector logic ops of ``--vector-bits`` bits per cycle at the
clock of /proc/cpuinfo; the defaults are AMD Zen 4's four 256-bit vector ALU pipes, AVX-512 logic ops
taking two of them), and the load average before and after (the machine is shared).

Usage::

    python benchmarks/bench_netlist_inference.py [--max-batch 1048576] [--baseline-opts O0,O1]
        [--threads 1,2] [--seconds 0.5] [--big-gates 1000000] [--float-max-batch 65536]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# TVM_NUM_THREADS is left alone: tvm_ops sizes the pool for the machine and each run asks for its count.
# TVM's workers spin between calls (its default): with TVM_THREAD_POOL_SPIN_COUNT=0 a sleeping worker
# waited for its core behind the other jobs on this shared machine and 2 threads ran no faster than 1.

import numpy as np  # noqa: E402

from lgn_nas.export import to_c  # noqa: E402
from lgn_nas.netlist import Encoding, NetlistBuilder  # noqa: E402
from lgn_nas.netlist.evaluate import pack_bits  # noqa: E402

_BASELINE_OPS = {
    0: "0", 1: "a & b", 2: "a & ~b", 3: "a", 4: "~a & b", 5: "b", 6: "a ^ b", 7: "a | b", 8: "~(a | b)",
    9: "~(a ^ b)", 10: "~b", 11: "a | ~b", 12: "~a", 13: "~a | b", 14: "~(a & b)", 15: "~(uint64_t)0",
}


def random_mnist_net(seed: int = 0, width: int = 8000, depth: int = 6, classes: int = 10):
    rng = np.random.default_rng(seed)
    builder = NetlistBuilder(Encoding("thermometer", (1, 28, 28), np.full((1, 1), 0.5, np.float32)))
    prev = builder.input_ids().ravel()
    for _ in range(depth):
        prev = builder.add_layer(rng.integers(0, 16, width), rng.choice(prev, width), rng.choice(prev, width))
    return builder.build(prev, num_classes=classes, tau=float(np.sqrt(width // classes)))


def baseline_source(net) -> str:
    """difflogic-style C: one statement per gate over 64-sample words, then a per-sample GroupSum."""
    lines = ["#include <stdint.h>", "#include <stddef.h>",
             "void net_block(const uint64_t *in, uint64_t *v) {"]
    lines.append(f"  for (int i = 0; i < {net.num_inputs}; i++) v[i] = in[i];")
    for offset, layer in zip(net.layer_offsets, net.layers):
        for j in range(len(layer)):
            op = _BASELINE_OPS[int(layer.gate[j])]
            op = op.replace("a", f"v[{int(layer.in_a[j])}]").replace("b", f"v[{int(layer.in_b[j])}]")
            lines.append(f"  v[{int(offset) + j}] = {op};")
    lines.append("}")
    outs = ", ".join(str(int(o)) for o in net.outputs)
    lines += [
        f"static const int outs[{net.num_outputs}] = {{{outs}}};",
        "void run(const uint64_t *in, size_t blocks, uint64_t *v, int32_t *counts) {",
        "  for (size_t blk = 0; blk < blocks; blk++) {",
        f"    net_block(in + blk * {net.num_inputs}, v);",
        f"    for (int c = 0; c < {net.num_classes}; c++)",
        "      for (int s = 0; s < 64; s++) {",
        "        int32_t n = 0;",
        f"        for (int k = 0; k < {net.group_size}; k++) n += (v[outs[c * {net.group_size} + k]] >> s) & 1;",
        f"        counts[(blk * 64 + s) * {net.num_classes} + c] = n;",
        "      }",
        "  }",
        "}",
        "void run_gates(const uint64_t *in, size_t blocks, uint64_t *v, int32_t *counts) {",
        "  (void)counts;",
        f"  for (size_t blk = 0; blk < blocks; blk++) net_block(in + blk * {net.num_inputs}, v);",
        "}",
    ]
    return "\n".join(lines) + "\n"


def export_harness(c_path: Path) -> str:
    return (
        "#define LGN_NET_NO_MAIN\n"
        f'#include "{c_path}"\n'
        "void run(const uint64_t *in, size_t blocks, uint64_t *v, int32_t *counts) {\n"
        "  for (size_t blk = 0; blk < blocks; blk++)\n"
        "    lgn_net_eval_words(in + blk * LGN_NET_NUM_INPUTS, v, (uint32_t *)counts + blk * 64 * LGN_NET_NUM_CLASSES);\n"
        "}\n"
    )


def build_shared(source: str, workdir: Path, name: str, flags: list[str]) -> tuple[ctypes.CDLL, float]:
    src = workdir / f"{name}.c"
    src.write_text(source)
    lib = workdir / f"{name}.so"
    start = time.perf_counter()
    subprocess.run(["gcc", *flags, "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    seconds = time.perf_counter() - start
    handle = ctypes.CDLL(str(lib))
    handle.run.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
    return handle, seconds


def packed_blocks(net, images: np.ndarray) -> np.ndarray:
    """(blocks, num_inputs) uint64 words: block-major, as both C runners read them."""
    bits = net.encode(images)
    return np.ascontiguousarray(pack_bits(bits).T)


def _cpu_mhz() -> float:
    """Clock of CPU 0 from /proc/cpuinfo (what the hypervisor reports), MHz."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    except OSError:
        pass
    return float("nan")


def time_call(fn, seconds: float) -> float:
    fn()
    best, spent, reps = float("inf"), 0.0, 0
    while spent < seconds or reps < 2:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
        reps += 1
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-batch", type=int, default=1 << 20)
    parser.add_argument("--baseline-opts", default="O0,O1", help="gcc levels for the baseline, '' for none")
    parser.add_argument("--threads", default="1", help="TVM thread counts to time, e.g. 1,2")
    parser.add_argument("--seconds", type=float, default=0.5, help="minimum timing per cell")
    parser.add_argument("--baseline-max-batch", type=int, default=16384,
                        help="largest batch for the (slow) baselines")
    parser.add_argument("--float-max-batch", type=int, default=65536,
                        help="largest batch timed with float32 input (0: none)")
    parser.add_argument("--big-gates", type=int, default=1_000_000,
                        help="gates of the random net whose compile time is measured (0: skip)")
    parser.add_argument("--ops-per-cycle", type=float, default=4, help="vector logic ops per cycle (peak)")
    parser.add_argument("--vector-bits", type=int, default=256, help="bits per vector logic op (peak)")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}", flush=True)

    start = time.perf_counter()
    import tvm  # noqa: F401  (timed apart from the compiles)

    import tvm_ops

    import_s = time.perf_counter() - start

    net = random_mnist_net()
    print(f"net: {net.num_inputs} inputs, {net.num_gates} gates, {net.num_layers} layers, "
          f"{net.num_classes} x {net.group_size} outputs", flush=True)
    batches = [b for b in (1024, 4096, 16384, 65536, 262144, 1 << 20) if b <= args.max_batch]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(batches), 1, 28, 28), dtype=np.uint8)
    reference = net.evaluate_bits(net.encode(images[:1024]))
    rows: dict[str, dict] = {}
    compile_s: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runners = {}
        for level in [o for o in args.baseline_opts.split(",") if o]:
            print(f"compiling baseline -{level} ...", flush=True)
            lib, seconds = build_shared(baseline_source(net), work, f"base_{level}", [f"-{level}"])
            runners[f"difflogic C -{level}"], compile_s[f"difflogic C -{level}"] = lib, seconds
            gates_only = ctypes.CDLL(lib._name)
            gates_only.run = gates_only.run_gates
            gates_only.run.argtypes = lib.run.argtypes
            runners[f"  gates only -{level}"], compile_s[f"  gates only -{level}"] = gates_only, seconds
        to_c(net, work / "export.c")
        runners["C export -O2"], compile_s["C export -O2"] = build_shared(
            export_harness(work / "export.c"), work, "export_run", ["-O2", "-march=native", "-std=c99"])

        for name, lib in runners.items():
            limit = args.max_batch if name.startswith("C export") else args.baseline_max_batch
            scratch = np.zeros(max(net.num_nodes, 1 << 20), dtype=np.uint64)
            for batch in [b for b in batches if b <= limit]:
                words = packed_blocks(net, images[:batch])
                counts = np.zeros((batch, net.num_classes), dtype=np.int32)
                call = lambda: lib.run(words.ctypes.data, batch // 64, scratch.ctypes.data, counts.ctypes.data)  # noqa: E731
                seconds = time_call(call, args.seconds)
                if batch == batches[0] and "gates only" not in name:
                    assert np.array_equal(counts[:1024], reference), f"{name} disagrees with the reference"
                rows.setdefault(name, {})[batch] = batch / seconds
                print(f"  {name:>16} batch {batch:>8}: {batch / seconds / 1e6:7.3f} M images/s", flush=True)

        for threads in [int(t) for t in args.threads.split(",")]:
            name = f"TVM ({threads} thr)"
            tvm_ops.clear_kernel_cache()
            start = time.perf_counter()
            compiled = tvm_ops.compile_netlist(net, threads=threads)
            compile_s[name] = time.perf_counter() - start
            assert np.array_equal(compiled.counts(images[:1024]), reference)
            for batch in batches:
                x = images[:batch]
                seconds = time_call(lambda: compiled(x), args.seconds)
                rows.setdefault(name, {})[batch] = batch / seconds
                print(f"  {name:>16} batch {batch:>8}: {batch / seconds / 1e6:7.3f} M images/s", flush=True)
            if args.float_max_batch and threads == 1:  # float32 input (4 bytes a pixel), one thread
                fname = "TVM float32 (1 thr)"
                start = time.perf_counter()
                compiled._function("float32")  # its kernel is compiled on first use
                compile_s[fname] = time.perf_counter() - start
                for batch in [b for b in batches if b <= args.float_max_batch]:
                    xf = images[:batch].astype(np.float32) / np.float32(255)
                    if batch == batches[0]:
                        assert np.array_equal(compiled.counts(xf), reference)
                    seconds = time_call(lambda: compiled(xf), args.seconds)
                    rows.setdefault(fname, {})[batch] = batch / seconds
                    print(f"  {fname:>16} batch {batch:>8}: {batch / seconds / 1e6:7.3f} M images/s", flush=True)
        stats = compiled.stats

    print()
    print(f"lowered: {stats['gates_live']} live word ops of {net.num_gates} gates "
          f"(ops {stats['ops']}), {stats['levels']} levels, {stats['slots']} slots, tile {compiled.tile_samples}")
    header = f"| {'backend':<18} | {'compile s':>9} | " + " | ".join(f"{b:>9}" for b in batches) + " |"
    print("images/s (millions), one thread unless noted; TVM includes uint8 encoding and GroupSum")
    print(header)
    print("|" + "---|" * (2 + len(batches)))
    for name, cells in rows.items():
        values = " | ".join(f"{cells[b] / 1e6:9.3f}" if b in cells else f"{'-':>9}" for b in batches)
        print(f"| {name:<18} | {compile_s[name]:9.2f} | {values} |")
    base = next((rows[k] for k in rows if k == "difflogic C -O1"), None)
    if base:
        best_base = max(base.values())
        for name in [k for k in rows if k.startswith("TVM")]:
            ratios = [f"{b}: {rows[name][b] / base.get(b, best_base):.0f}x" for b in batches if b in rows[name]]
            print(f"{name} / difflogic C -O1 (its best where it was not run): " + ", ".join(ratios))
    mhz = _cpu_mhz()
    peak = args.ops_per_cycle * args.vector_bits * mhz * 1e6
    print(f"peak: {args.ops_per_cycle:g} vector logic ops/cycle x {args.vector_bits} bits x {mhz:.0f} MHz = "
          f"{peak / 1e12:.2f} T two-input gate evaluations/s per core")
    for name in [k for k in rows if k.startswith("TVM")]:
        lo, hi = min(rows[name].values()), max(rows[name].values())
        print(f"{name}: {lo / 1e6:.2f}-{hi / 1e6:.2f} M images/s = {lo * stats['gates_live'] / 1e9:.0f}-"
              f"{hi * stats['gates_live'] / 1e9:.0f} G live gate evaluations/s "
              f"({100 * lo * stats['gates_live'] / peak:.1f}-{100 * hi * stats['gates_live'] / peak:.1f}% of one "
              f"core's peak; {lo * net.num_gates / 1e9:.0f}-{hi * net.num_gates / 1e9:.0f} G nominal gates/s)")
    print(f"import tvm: {import_s:.1f} s (not in the compile times)")
    if args.big_gates:
        width = args.big_gates // 8
        big = random_mnist_net(seed=1, width=width, depth=8)
        tvm_ops.clear_kernel_cache()
        start = time.perf_counter()
        big_compiled = tvm_ops.compile_netlist(big, threads=1)
        big_s = time.perf_counter() - start
        x = images[:4096]
        assert np.array_equal(big_compiled.counts(x), big.evaluate_bits(big.encode(x)))
        seconds = time_call(lambda: big_compiled(x), args.seconds)
        print(f"{big.num_gates} gate net (8 x {width}): compile {big_s:.1f} s, {big_compiled.stats['gates_live']} "
              f"live gates, tile {big_compiled.tile_samples}, {x.shape[0] / seconds / 1e6:.3f} M images/s at "
              f"{x.shape[0]} per call (1 thread)")
    load_end = os.getloadavg()
    print(f"load average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
