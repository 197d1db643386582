"""One training step of the whole convolutional LGN: lgn-nas vs torchlogix (PyPI), side by side.

    bash benchmarks/peers/setup_peers.sh                 # once: torchlogix (and difflogic) in their own venvs
    python benchmarks/bench_conv_model_step.py [--model mnist cifar] [--batch 128] [--steps 5]
                                               [--rounds 3] [--threads 1] [--peer-python PATH]
                                               [--flush-denormal] [--as-trained]

A step is forward, cross-entropy, backward and Adam on one batch of binary images:
``lgn_conv_mnist_s`` against torchlogix's ``ClgnMnistSmall`` (596,736 parameters each) and
``lgn_conv_s`` against ``ClgnCifar10Small`` (1,336,832). Each implementation runs in a fresh
subprocess (torchlogix in its venv), rounds alternate between them so that machine noise hits both
alike; the first step of each process warms up (kernel loading) and is not counted. Memory is the
process's peak resident set (VmHWM) and its growth over the steps. ``--flush-denormal`` makes both
flush denormal floats to zero, as ``lgn-nas train`` does (the gradients of a conv LGN reach them).
``--as-trained`` runs both as ``lgn-nas train`` runs a step: denormals flushed and glibc's heap
thresholds of ``lgn_nas.train.host`` (given to both children as ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_``), which spare a step most of its page faults.
The children import this checkout's ``lgn_nas``, not an installed copy. A peer that is not installed
skips its rows with a note.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lgn_nas, not an installed copy
from step_common import load_average, memory_kb, run_child  # noqa: E402

HERE = Path(__file__).resolve().parent
PEER_SCRIPT = HERE / "peers" / "torchlogix_conv_step.py"
PEERS_DIR = Path(os.environ.get("LGN_PEERS_DIR", Path.home() / ".cache" / "lgn_nas" / "peers"))
DEFAULT_PEER_PYTHON = next(iter(sorted(PEERS_DIR.glob("torchlogix-py*/bin/python"))), PEERS_DIR / "torchlogix-py3.12" / "bin" / "python")
MODELS = {"mnist": "lgn_conv_mnist_s", "cifar": "lgn_conv_s"}
PEER_MODELS = {"mnist": "ClgnMnistSmall", "cifar": "ClgnCifar10Small"}


def _ours_child(model_key: str, batch: int, steps: int, threads: int, seed: int, flush_denormal: bool) -> None:
    import timm
    import torch

    import lgn_nas  # noqa: F401  (registers the models)

    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush_denormal)
    torch.manual_seed(seed)
    model = timm.create_model(MODELS[model_key])
    channels, size = (1, 28) if model_key == "mnist" else (3, 32)
    x = torch.rand(batch, channels, size, size)  # the model's own thermometer encodes it to bits
    y = torch.randint(0, 10, (batch,))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    rss_before = memory_kb("VmRSS")
    seconds = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"impl": "lgn-nas", "params": sum(p.numel() for p in model.parameters()),
                      "step_seconds": seconds[1:], "rss_before_kb": rss_before,
                      "peak_kb": memory_kb("VmHWM")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", choices=sorted(MODELS), default=["mnist", "cifar"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--flush-denormal", action="store_true",
                        help="both implementations flush denormal floats to zero (as lgn-nas train does)")
    parser.add_argument("--as-trained", action="store_true",
                        help="both sides flush denormals and use the heap thresholds lgn-nas train sets")
    parser.add_argument("--child", choices=sorted(MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _ours_child(args.child, args.batch, args.steps, args.threads, args.seed, args.flush_denormal)
        return
    args.flush_denormal = args.flush_denormal or args.as_trained
    extra_env = None  # the children's heap thresholds: what lgn-nas train sets (--as-trained)
    if args.as_trained:
        from lgn_nas.train import host

        extra_env = {"MALLOC_MMAP_THRESHOLD_": str(host.KEEP_MMAP_THRESHOLD),
                     "MALLOC_TRIM_THRESHOLD_": str(host.KEEP_TRIM_THRESHOLD)}

    peer = args.peer_python if args.peer_python.exists() else None
    print(f"batch {args.batch}, {args.steps} timed steps per process, {args.rounds} rounds, {args.threads} thread(s)"
          f"{', denormals flushed' if args.flush_denormal else ''}{', heap kept' if args.as_trained else ''}; "
          f"load average before: {load_average()}")
    if peer is None:
        print(f"  torchlogix rows skipped: no venv python at {args.peer_python} (bash benchmarks/peers/setup_peers.sh)")
    common = ["--batch", str(args.batch), "--steps", str(args.steps), "--threads", str(args.threads), "--seed", str(args.seed)]
    if args.flush_denormal:
        common.append("--flush-denormal")
    for key in args.model:
        results = {"lgn-nas": [], "torchlogix": []}
        for _ in range(args.rounds):
            ours = run_child([sys.executable, __file__, "--child", key, *common], args.threads, extra_env)
            if ours:
                results["lgn-nas"].append(ours)
            if peer is not None:
                theirs = run_child([str(peer), str(PEER_SCRIPT), "--model", key, *common], args.threads, extra_env)
                if theirs:
                    results["torchlogix"].append(theirs)
        print(f"\n{MODELS[key]} vs torchlogix {PEER_MODELS[key]}:")
        print(f"  {'impl':<11} {'params':>10} {'median ms':>10} {'best ms':>9} {'peak MB':>8} {'growth MB':>9}")
        medians = {}
        for impl, runs in results.items():
            if not runs:
                continue
            steps = [s for run in runs for s in run["step_seconds"]]
            medians[impl] = statistics.median(steps)
            peak = max(run["peak_kb"] for run in runs) / 1024
            growth = max(run["peak_kb"] - run["rss_before_kb"] for run in runs) / 1024
            print(f"  {impl:<11} {runs[0]['params']:>10,} {medians[impl] * 1e3:>10.1f} {min(steps) * 1e3:>9.1f} "
                  f"{peak:>8.0f} {growth:>9.0f}")
        if len(medians) == 2:
            print(f"  lgn-nas is {medians['torchlogix'] / medians['lgn-nas']:.1f}x faster (median step)")
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
