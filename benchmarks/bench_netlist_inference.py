"""Inference speed of discrete netlists: lgn-nas's TVM kernel against the published peers, side by side.

Nets (``--nets``, comma-separated): ``random`` (a random 6 x 8000 MNIST-shaped net: 784 input bits, 48K
gates, 10 classes x 800 outputs), ``dense_s`` (the shipped trained MNIST ``lgn_dense_s``), ``conv_s``
(the shipped trained conv MNIST ``lgn_conv_mnist_s``), or a path to a ``netlist.lgn`` file.

Rows, all in one run, one thread each (``--threads`` adds multi-thread rows for lgn-nas TVM and native):

- ``lgn-nas TVM``: ``tvm_ops.compile_netlist`` called on raw uint8 images (B, 1, 28, 28): encoding,
  gates and GroupSum all timed (it simplifies the netlist itself; compile time includes that).
- ``lgn-nas native``: ``tvm_ops.compile_netlist_native`` (net-specialised AVX-512 or AVX2 code, the
  best this CPU has, built by the system C compiler; the row names the ISA), called the same way;
  skipped with a note where it cannot run (``--no-native`` leaves it out). Its compile time is a cold
  build (a private cache directory).
  ``lgn-nas native, pre-packed bits``: the same code on input bits packed beforehand (64 samples a
  word, ``NativeNetlist.scores_packed``), not timed, as the peers get them (``--no-packed`` leaves it out).
- ``difflogic``: the real ``difflogic.CompiledLogicNet`` (its public repository, branch main-cpu),
  gcc ``-O{--peer-opt}`` (its default -O1), 64-sample words, through its own code path: C that packs
  the bits and sums the groups, called on the encoded bool input (encoding not timed, in its favour).
  difflogic reads only strictly layered nets (each layer reads the one before), so a net that is not
  layered (the conv net) is given to it with identity gates (difflogic gate 3, ``a``) that carry a value
  to the layer that reads it; gcc removes those copies.
- ``torchlogix``: ``torchlogix.Circuit`` (PyPI) of the same gates, its ``simplify()`` then
  ``compile(opt_level, pack_bits=64)``, timed through its ``circuit_bench`` on pre-packed words.
- ``lgn-nas C export`` (``--c-export``): ``lgn_nas.export.to_c`` with gcc -O2 -march=native on
  pre-packed words: lgn-nas's portable C, not a peer.

The peers run in their own venvs (``benchmarks/peers/setup_peers.sh`` makes them; CI never needs
them), each as a subprocess (``benchmarks/peers/peer_worker.py``). A peer that is not installed, fails
to build, or disagrees with ``Netlist.evaluate_bits`` gets a note instead of a row; the run goes on.
The dense nets go to the peers as they come out of training (48K gates: that is what a user of either
peer compiles); the conv net goes to them simplified (40K gates instead of 201K, in their favour:
their gcc builds of 201K gates would take hours).

Timing: the machine is shared, so every measurement is interleaved: per batch size, ``--rounds``
rounds of [lgn-nas, each peer], each a best-of over ``--seconds``. The table gives the best
images/s of each row; the ratio is the median over rounds of (lgn-nas / peer) within a round. Load
average and the busiest other processes are printed before and after.

Usage::

    bash benchmarks/peers/setup_peers.sh          # once: the peers' venvs
    python benchmarks/bench_netlist_inference.py [--nets random,dense_s,conv_s] [--max-batch 1048576]
        [--threads 1,2] [--rounds 3] [--seconds 0.3] [--peers difflogic,torchlogix] [--big-gates 1000000]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # benchmark this checkout, not an installed copy

from lgn_nas.netlist import Encoding, NetlistBuilder  # noqa: E402
PEERS = ("difflogic", "torchlogix")
NATIVE_PACKED = "lgn-nas native, pre-packed bits (1 thr)"
ISA_NAMES = {"avx512": "AVX-512", "avx2": "AVX2"}


def native_label(isa: str, threads: int) -> str:
    """Row label of the native backend (``lgn-nas native AVX-512 (1 thr)``, as in RESULTS.md)."""
    return f"lgn-nas native {ISA_NAMES.get(isa, isa)} ({threads} thr)"


# ---------------------------------------------------------------------------------------------- nets
def random_mnist_net(seed: int = 0, width: int = 8000, depth: int = 6, classes: int = 10):
    rng = np.random.default_rng(seed)
    builder = NetlistBuilder(Encoding("thermometer", (1, 28, 28), np.full((1, 1), 0.5, np.float32)))
    prev = builder.input_ids().ravel()
    for _ in range(depth):
        prev = builder.add_layer(rng.integers(0, 16, width), rng.choice(prev, width), rng.choice(prev, width))
    return builder.build(prev, num_classes=classes, tau=float(np.sqrt(width // classes)))


def load_net(name: str):
    """(netlist, the netlist the peers get, description)."""
    if name == "random":
        net = random_mnist_net()
        return net, net, "random 6 x 8000, 784 inputs, 10 x 800 outputs"
    if name in ("dense_s", "conv_s"):
        import timm

        import lgn_nas  # noqa: F401  (registers the models)

        model_name = {"dense_s": "lgn_dense_s", "conv_s": "lgn_conv_mnist_s"}[name]
        net = lgn_nas.discretize(timm.create_model(model_name, pretrained=True).eval())
        peer_net = net if name == "dense_s" else net.simplify()[0]
        return net, peer_net, f"trained {model_name} (pretrained=True)"
    from lgn_nas.netlist import load_netlist

    net = load_netlist(name)
    return net, net, f"netlist file {name}"


def layered(net) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The net as strictly layered (gate, a, b) with layer-local indices, as difflogic builds it: a
    value read by a later layer is carried there by identity gates; the last layer is the outputs."""
    n_in = net.num_inputs
    offsets = list(net.layer_offsets) + [net.num_nodes]
    level = np.zeros(net.num_nodes, dtype=np.int64)
    for i in range(net.num_layers):
        level[offsets[i]:offsets[i + 1]] = i + 1
    depth = net.num_layers + 1  # the outputs layer
    last = level.copy()  # last level at which a node must be present
    for i, layer in enumerate(net.layers):
        for src in (layer.in_a, layer.in_b):
            np.maximum.at(last, np.asarray(src, dtype=np.int64), i)
    outs = np.asarray(net.outputs, dtype=np.int64)
    np.maximum.at(last, outs, depth - 1)
    position = {}  # level -> array node -> index there (-1 absent)
    present = np.flatnonzero(level == 0)
    pos = np.full(net.num_nodes, -1, dtype=np.int64)
    pos[present] = np.arange(present.size)
    position[0] = pos
    layers = []
    for lev in range(1, depth + 1):
        prev = position[lev - 1]
        if lev <= net.num_layers:
            layer = net.layers[lev - 1]
            own = np.arange(offsets[lev - 1], offsets[lev])
            carry = np.flatnonzero((level < lev) & (last >= lev))
            gate = np.concatenate([np.asarray(layer.gate, dtype=np.int64), np.full(carry.size, 3)])
            a = np.concatenate([prev[np.asarray(layer.in_a, dtype=np.int64)], prev[carry]])
            b = np.concatenate([prev[np.asarray(layer.in_b, dtype=np.int64)], prev[carry]])
            nodes = np.concatenate([own, carry])
        else:
            if np.array_equal(outs, np.arange(offsets[-2], offsets[-1])):
                break  # the last layer already is the outputs, in order
            gate, a, b, nodes = np.full(outs.size, 3), prev[outs], prev[outs], None
        assert (a >= 0).all() and (b >= 0).all()
        layers.append((gate, a, b))
        if nodes is not None:
            pos = np.full(net.num_nodes, -1, dtype=np.int64)
            pos[nodes] = np.arange(nodes.size)
            position[lev] = pos
    return layers


def peer_npz(net, path: Path) -> None:
    arrays = {"num_inputs": net.num_inputs, "num_classes": net.num_classes}
    dl = layered(net)
    arrays["dl_num_layers"] = len(dl)
    for i, (g, a, b) in enumerate(dl):
        arrays[f"dl_gate_{i}"], arrays[f"dl_a_{i}"], arrays[f"dl_b_{i}"] = g, a, b
    arrays["tl_gate"] = np.concatenate([np.asarray(la.gate, dtype=np.int64) for la in net.layers])
    arrays["tl_a"] = np.concatenate([np.asarray(la.in_a, dtype=np.int64) for la in net.layers])
    arrays["tl_b"] = np.concatenate([np.asarray(la.in_b, dtype=np.int64) for la in net.layers])
    arrays["tl_outputs"] = np.asarray(net.outputs, dtype=np.int64)
    np.savez(path, **arrays)


# ---------------------------------------------------------------------------------------------- peers
class Peer:
    """A peer worker subprocess; ``note`` says why it is unavailable (then ``proc`` is None)."""

    def __init__(self, name: str, python: Path, npz: Path, cache: Path, opt: int, timeout: float) -> None:
        self.name, self.proc, self.note, self.info = name, None, None, {}
        if not python.is_file():
            self.note = f"{name}: not installed ({python} missing; run benchmarks/peers/setup_peers.sh)"
            return
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [str(python), str(ROOT / "peers" / "peer_worker.py"), name, str(npz), str(cache), "--opt", str(opt)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1)
        self.info = self._read(timeout) or {}
        if not self.info.get("ready"):
            self.fail("did not start")

    def _read(self, timeout: float):
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            return None
        return json.loads(line)

    def ask(self, timeout: float = 3600, **request):
        if self.proc is None:
            return None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.fail("exited")
            return None
        reply = self._read(timeout)
        if reply is None:
            self.fail(f"no answer to {request.get('cmd')}")
        return reply

    def fail(self, why: str) -> None:
        tail = ""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.log.seek(0)
            tail = " | ".join(self.log.read().strip().splitlines()[-3:])
        self.proc = None
        self.note = f"{self.name}: {why}" + (f" ({tail})" if tail else "")

    def close(self) -> None:
        if self.proc is not None:
            self.ask(timeout=30, cmd="quit")
            self.proc.wait(timeout=30)
            self.proc = None


def peer_python(name: str, peers_dir: Path) -> Path:
    for venv in sorted(peers_dir.glob(f"{name}-py*")):
        if (venv / "bin" / "python").is_file():
            return venv / "bin" / "python"
    return peers_dir / f"{name}-py3.X" / "bin" / "python"


# ---------------------------------------------------------------------------------------------- timing
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


def machine_state() -> str:
    load = os.getloadavg()
    try:
        ps = subprocess.run(["ps", "-eo", "pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True,
                            timeout=10).stdout.splitlines()[1:5]
    except (OSError, subprocess.SubprocessError):
        ps = []
    me = str(os.getpid())
    busy = [" ".join(p.split()[:2] + [" ".join(p.split()[2:])[:110]]) for p in ps if me not in p]
    return f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; busiest: " + " || ".join(busy)


def export_runner(net, work: Path):
    from lgn_nas.export import to_c

    to_c(net, work / "export.c")
    src = work / "export_run.c"
    src.write_text(
        "#define LGN_NET_NO_MAIN\n"
        f'#include "{work / "export.c"}"\n'
        "static uint64_t scratch[LGN_NET_SCRATCH_WORDS];\n"
        "void run(const uint64_t *in, size_t blocks, uint32_t *counts) {\n"
        "  for (size_t blk = 0; blk < blocks; blk++)\n"
        "    lgn_net_eval_words(in + blk * LGN_NET_NUM_INPUTS, scratch, counts + blk * 64 * LGN_NET_NUM_CLASSES);\n"
        "}\n")
    lib = work / "export_run.so"
    start = time.perf_counter()
    subprocess.run(["gcc", "-O2", "-march=native", "-std=c99", "-shared", "-fPIC", str(src), "-o", str(lib)],
                   check=True)
    seconds = time.perf_counter() - start
    handle = ctypes.CDLL(str(lib))
    handle.run.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return handle, seconds


# ---------------------------------------------------------------------------------------------- main
def bench_net(name: str, args, batches: list[int], work: Path) -> None:
    import tvm_ops

    net, peer_net, what = load_net(name)
    print(f"\n=== {name}: {what}: {net.num_inputs} inputs, {net.num_gates} gates, {net.num_layers} layers, "
          f"{net.num_classes} x {net.group_size} outputs", flush=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(batches),) + tuple(net.encoding.input_shape), dtype=np.uint8)
    reference = net.evaluate_bits(net.encode(images[:1024]))
    rows: dict[str, dict] = {}  # label -> {"compile": s, "rate": {batch: best images/s}, "note": str}
    ratios: dict[str, dict] = {}  # peer label -> {batch: [ours / peer per round]}
    notes: list[str] = []

    ours = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        label = f"lgn-nas TVM ({threads} thr)"
        tvm_ops.clear_kernel_cache()
        start = time.perf_counter()
        compiled = tvm_ops.compile_netlist(net, threads=threads)
        seconds = time.perf_counter() - start
        assert np.array_equal(compiled.counts(images[:1024]), reference), f"{label} disagrees with the reference"
        ours[threads] = compiled
        rows[label] = {"compile": seconds, "rate": {}}
    stats = ours[min(ours)].stats
    natives = {}  # threads -> NativeNetlist
    native = native_row = None  # the fewest-threads native code and its row label
    if args.native:
        why = tvm_ops.native_available()
        if why:
            notes.append(f"skipped lgn-nas native: {why}")
        else:
            for threads in ours:
                start = time.perf_counter()
                compiled = tvm_ops.compile_netlist_native(net, threads=threads)
                seconds = time.perf_counter() - start
                label = native_label(compiled.isa, threads)
                assert np.array_equal(compiled.counts(images[:1024]), reference), f"{label} disagrees with the reference"
                cached = ", library from the cache (compile: fusion only)" if natives else ""
                rows[label] = {"compile": seconds, "rate": {},
                               "note": f"{compiled.stats['roots']} stored roots, {compiled.stats['clusters']} 3-input ops{cached}"}
                natives[threads] = compiled
            native = natives[min(natives)]
            native_row = native_label(native.isa, min(natives))
            if args.packed:
                from lgn_nas.netlist.evaluate import pack_bits

                packed_all = pack_bits(net.encode(images))  # (inputs, words): as the peers, not timed
                first = np.ascontiguousarray(packed_all[:, :16])
                assert np.array_equal(native.scores_packed(first, 1024), native(images[:1024])), \
                    "lgn-nas native on packed bits disagrees with it on images"
                rows[NATIVE_PACKED] = {"compile": rows[native_row]["compile"], "rate": {}}

    peers: list[Peer] = []
    wanted = [p for p in args.peers.split(",") if p]
    if wanted:
        npz = work / f"{name}_peer.npz"
        peer_npz(peer_net, npz)
        bits_path = work / f"{name}_bits.npy"
        peer_batches = [b for b in batches if b <= args.peer_max_batch]
        np.save(bits_path, peer_net.encode(images[:max(peer_batches)]))
        for peer_name in wanted:
            print(f"starting {peer_name} (a first build of a large net takes minutes) ...", flush=True)
            peer = Peer(peer_name, peer_python(peer_name, Path(args.peers_dir)), npz, Path(args.cache),
                        args.peer_opt, args.peer_timeout)
            if peer.proc is not None and peer.ask(cmd="load", bits=str(bits_path)) is not None:
                got = peer.ask(cmd="check", n=1024)
                if got is not None and not np.array_equal(np.asarray(got["counts"]), reference):
                    peer.fail("disagrees with Netlist.evaluate_bits on the first 1,024 images")
            if peer.proc is None:
                notes.append("skipped " + peer.note)
                print("  skipped:", peer.note, flush=True)
                continue
            info = peer.info
            peer.label = f"{info['label']} (1 thr)"
            rows[peer.label] = {"compile": info["compile_s"], "rate": {},
                                "note": f"{info['gates']} gates in its C, python {info['python']}"
                                        + (", library from the cache" if info["cached"] else "")}
            print(f"  {peer.label}: compile {info['compile_s']:.1f} s{' (cached)' if info['cached'] else ''}, "
                  f"{info['gates']} gates", flush=True)
            peers.append(peer)
        bits_path.unlink()

    export = None
    if args.c_export:
        from lgn_nas.netlist.evaluate import pack_bits

        export, seconds = export_runner(net, work)
        rows["lgn-nas C export gcc -O2 (1 thr)"] = {"compile": seconds, "rate": {}}

    print(f"before timing: {machine_state()}", flush=True)
    for batch in batches:
        x = images[:batch]
        words = counts = None
        packed = np.ascontiguousarray(packed_all[:, : -(-batch // 64)]) if NATIVE_PACKED in rows else None
        if export is not None:
            words = np.ascontiguousarray(pack_bits(net.encode(x)).T)
            counts = np.zeros((batch, net.num_classes), dtype=np.uint32)
        for _ in range(args.rounds):
            base = {}
            for threads, compiled in ours.items():
                rate = batch / time_call(lambda: compiled(x), args.seconds)
                label = f"lgn-nas TVM ({threads} thr)"
                rows[label]["rate"][batch] = max(rows[label]["rate"].get(batch, 0), rate)
                base[threads] = rate
            for threads, compiled in natives.items():
                rate = batch / time_call(lambda: compiled(x), args.seconds)
                label = native_label(compiled.isa, threads)
                rows[label]["rate"][batch] = max(rows[label]["rate"].get(batch, 0), rate)
                base[label] = rate
            if packed is not None:
                rate = batch / time_call(lambda: native.scores_packed(packed, batch), args.seconds)
                rows[NATIVE_PACKED]["rate"][batch] = max(rows[NATIVE_PACKED]["rate"].get(batch, 0), rate)
                base[NATIVE_PACKED] = rate
            for peer in list(peers):
                if batch > args.peer_max_batch:
                    continue
                done = rows[peer.label]["rate"]
                if done and batch not in done and batch / max(done.values()) > args.peer_call_limit:
                    if not rows[peer.label].get("capped"):
                        rows[peer.label]["capped"] = batch
                        notes.append(f"{peer.label}: batches from {batch} not run (one call would take "
                                     f"about {batch / max(done.values()):.0f} s; --peer-call-limit)")
                    continue
                got = peer.ask(cmd="time", batch=batch, seconds=args.seconds)
                if got is None:
                    notes.append("stopped " + peer.note)
                    peers.remove(peer)
                    continue
                rate = batch / got["best"]
                rows[peer.label]["rate"][batch] = max(rows[peer.label]["rate"].get(batch, 0), rate)
                ratios.setdefault((f"lgn-nas TVM ({min(ours)} thr)", peer.label), {}).setdefault(batch, []).append(base[min(ours)] / rate)
                for mine in (native_row, NATIVE_PACKED):
                    if mine in base:
                        ratios.setdefault((mine, peer.label), {}).setdefault(batch, []).append(base[mine] / rate)
            if native_row in base:
                ratios.setdefault((native_row, f"lgn-nas TVM ({min(ours)} thr)"), {}).setdefault(batch, []).append(
                    base[native_row] / base[min(ours)])
            if export is not None:
                call = lambda: export.run(words.ctypes.data, batch // 64, counts.ctypes.data)  # noqa: E731
                rate = batch / time_call(call, args.seconds)
                label = "lgn-nas C export gcc -O2 (1 thr)"
                rows[label]["rate"][batch] = max(rows[label]["rate"].get(batch, 0), rate)
        cells = ", ".join(f"{k}: {v['rate'][batch] / 1e6:.3f}" for k, v in rows.items() if batch in v["rate"])
        print(f"  batch {batch:>8}: M images/s {cells}", flush=True)
    print(f"after timing: {machine_state()}", flush=True)
    for peer in peers:
        peer.close()

    print(f"\n{name}: lgn-nas lowered it to {stats['gates_live']} live word ops ({stats['ops']}), "
          f"{stats['levels']} levels, {stats['slots']} slots; tile {ours[min(ours)].tile_samples} samples")
    print("M images/s, best of the rounds (lgn-nas: uint8 images in, encoding and GroupSum included)")
    print(f"| {'row':<42} | {'compile s':>9} | " + " | ".join(f"{b:>9}" for b in batches) + " |")
    print("|---|---:|" + "---:|" * len(batches))
    for label, row in rows.items():
        cells = " | ".join(f"{row['rate'][b] / 1e6:9.3f}" if b in row["rate"] else f"{'-':>9}" for b in batches)
        print(f"| {label:<42} | {row['compile']:9.2f} | {cells} |")
    for (mine, label), per in ratios.items():
        cells = ", ".join(f"{b}: {np.median(v):.2f}x ({min(v):.2f}-{max(v):.2f})" for b, v in per.items())
        print(f"{mine} / {label}, median (range) over rounds: {cells}")
    scaling = [("TVM", f"lgn-nas TVM ({t} thr)", "lgn-nas TVM (1 thr)") for t in ours if t > 1 and 1 in ours]
    scaling += [(ISA_NAMES.get(c.isa, c.isa), native_label(c.isa, t), native_label(c.isa, 1))
                for t, c in natives.items() if t > 1 and 1 in natives]
    for kind, label, single in scaling:
        one, many = rows[single]["rate"], rows[label]["rate"]
        print(f"lgn-nas {kind} {label.rsplit('(', 1)[1][:-1]} / 1 thread: "
              + ", ".join(f"{b}: {many[b] / one[b]:.2f}x" for b in batches))
    for label, row in rows.items():
        if row.get("note"):
            print(f"note: {label}: {row['note']}")
    for note in notes:
        print(f"note: {note}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="random,dense_s,conv_s")
    parser.add_argument("--max-batch", type=int, default=1 << 20)
    parser.add_argument("--min-batch", type=int, default=1024)
    parser.add_argument("--threads", default="1", help="lgn-nas thread counts, e.g. 1,2")
    parser.add_argument("--seconds", type=float, default=0.3, help="minimum timing per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", default=",".join(PEERS), help="peers to run, '' for none")
    parser.add_argument("--peer-opt", type=int, default=1, help="gcc -O level of the peers' builds")
    parser.add_argument("--peer-max-batch", type=int, default=1 << 20)
    parser.add_argument("--peer-call-limit", type=float, default=4.0,
                        help="skip a peer's larger batches once one call would take longer (seconds)")
    parser.add_argument("--peer-timeout", type=float, default=7200, help="seconds a peer may take to build")
    parser.add_argument("--peers-dir", default=os.environ.get("LGN_PEERS_DIR",
                                                              str(Path.home() / ".cache/lgn_nas/peers")))
    parser.add_argument("--cache", default=str(Path.home() / ".cache/lgn_nas/peer_builds"),
                        help="the peers' compiled libraries, by hash of their C")
    parser.add_argument("--c-export", action="store_true", help="also time lgn-nas's C export")
    parser.add_argument("--no-native", dest="native", action="store_false",
                        help="leave out the native (AVX-512 or AVX2, system compiler) backend")
    parser.add_argument("--no-packed", dest="packed", action="store_false",
                        help="leave out the native backend's pre-packed-bits row")
    parser.add_argument("--big-gates", type=int, default=1_000_000,
                        help="gates of the random net whose compile time is measured (0: skip)")
    args = parser.parse_args(argv)
    print(f"start: {machine_state()}", flush=True)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, cpu: {_cpu_model()}", flush=True)
    start = time.perf_counter()
    import tvm  # noqa: F401  (timed apart from the compiles)

    import tvm_ops

    print(f"import tvm: {time.perf_counter() - start:.1f} s (not in the compile times)")
    batches = [b for b in (1024, 4096, 16384, 65536, 262144, 1 << 20) if args.min_batch <= b <= args.max_batch]
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        os.environ["LGN_NATIVE_CACHE"] = str(Path(tmp) / "native")  # cold builds: the compile times are real
        for name in [n for n in args.nets.split(",") if n]:
            bench_net(name, args, batches, Path(tmp))
    if args.big_gates:
        width = args.big_gates // 8
        big = random_mnist_net(seed=1, width=width, depth=8)
        tvm_ops.clear_kernel_cache()
        start = time.perf_counter()
        big_compiled = tvm_ops.compile_netlist(big, threads=1)
        big_s = time.perf_counter() - start
        x = np.random.default_rng(1).integers(0, 256, (4096, 1, 28, 28), dtype=np.uint8)
        assert np.array_equal(big_compiled.counts(x), big.evaluate_bits(big.encode(x)))
        seconds = time_call(lambda: big_compiled(x), 0.3)
        print(f"\n{big.num_gates} gate random net (8 x {width}): compile {big_s:.1f} s, "
              f"{big_compiled.stats['gates_live']} live gates, {x.shape[0] / seconds / 1e6:.3f} M images/s at "
              f"{x.shape[0]} per call (1 thread)")
        if args.native and tvm_ops.native_available() is None:
            with tempfile.TemporaryDirectory() as tmp:
                os.environ["LGN_NATIVE_CACHE"] = tmp  # a cold build
                start = time.perf_counter()
                big_native = tvm_ops.compile_netlist_native(big)
                big_s = time.perf_counter() - start
            assert np.array_equal(big_native.counts(x), big.evaluate_bits(big.encode(x)))
            seconds = time_call(lambda: big_native(x), 0.3)
            print(f"{native_label(big_native.isa, 1)}: compile {big_s:.1f} s, {big_native.stats['roots']} stored roots, "
                  f"{x.shape[0] / seconds / 1e6:.3f} M images/s at {x.shape[0]} per call")
    print(f"end: {machine_state()}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
