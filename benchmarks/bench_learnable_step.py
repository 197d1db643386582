"""One training step of a dense logic layer with learnable wiring: lgn-nas (TVM) vs torchlogix, side by side.

    bash benchmarks/peers/setup_peers.sh                 # once: torchlogix in its own venv
    python benchmarks/bench_learnable_step.py [--batch 128] [--features 8000] [--candidates 8 ...]
                                              [--steps 5] [--rounds 3] [--threads 1] [--peer-python PATH]

A step is forward, head, cross-entropy, backward and Adam on one batch for a ``features ->
features`` layer (16 gate logits per gate, softmax over the gates on both sides; the head sums
each of 10 equal groups of outputs). Four implementations, each in a fresh subprocess, rounds
alternating so that machine noise hits all alike; the first step of each process warms up (kernel
loading) and is not counted:

* ``lgn-nas learnable``: ``lgn_nas.layers.LogicDense(connectivity="learnable", candidates=K,
  backend="tvm")``: K uniformly random candidates per gate input, wire logits relaxed by the
  layer's softmax, trained through ``tvm_ops.training.logic_dense_learnable``;
  ``lgn-nas learnable torch`` the same layer on ``backend="torch"`` (its fused torch op).
* ``lgn-nas fixed``: ``LogicDense(backend="tvm")``, random fixed wiring: the step learnable wiring
  is measured against.
* ``torchlogix learnable``: torchlogix 0.2.2's ``LogicDense(connections="learnable",
  num_candidates=K)`` (``LearnableDenseConnections``: the forward reads the argmax candidate, the
  backward gives all K a gradient), raw parametrization; ``torchlogix fixed`` with fixed wiring.

The input (uniform in [0, 1]) requires its gradient, as a hidden layer's does. Both learnable
layers hold 16 + 2K parameters per gate. Memory is the process's peak resident set
(VmHWM) and its growth over the steps. A peer that is not installed skips its rows with a note.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
from step_common import load_average, memory_kb, run_child  # noqa: E402

HERE = Path(__file__).resolve().parent
PEER_SCRIPT = HERE / "peers" / "torchlogix_learnable_step.py"
PEERS_DIR = Path(os.environ.get("LGN_PEERS_DIR", Path.home() / ".cache" / "lgn_nas" / "peers"))
DEFAULT_PEER_PYTHON = next(iter(sorted(PEERS_DIR.glob("torchlogix-py*/bin/python"))),
                           PEERS_DIR / "torchlogix-py3.12" / "bin" / "python")
CLASSES = 10


def _ours_child(kind: str, batch: int, features: int, candidates: int, steps: int, threads: int, seed: int) -> None:
    import time
    import warnings

    import torch

    from lgn_nas.layers import LogicDense
    from tvm_ops import training

    warnings.simplefilter("error", training.TvmFallbackWarning)  # a silent torch fallback would time torch
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if kind == "fixed":
        layer = LogicDense(features, features, backend="tvm")
    else:
        layer = LogicDense(features, features, connectivity="learnable", candidates=candidates,
                           backend="torch" if kind == "learnable-torch" else "tvm")
    params = list(layer.parameters())
    layer.train()
    x = torch.rand(batch, features).requires_grad_()  # a hidden layer's input: its gradient is needed
    y = torch.randint(0, CLASSES, (batch,))
    optimizer = torch.optim.Adam(params, lr=0.01)
    rss_before = memory_kb("VmRSS")
    seconds = []
    cpu_seconds = []  # this process's CPU time: less sensitive than wall time to other jobs on the cores
    for _ in range(steps + 1):
        start = time.perf_counter()
        cpu_start = time.process_time()
        optimizer.zero_grad(set_to_none=True)
        x.grad = None
        scores = layer(x).view(batch, CLASSES, -1).sum(-1)
        loss = torch.nn.functional.cross_entropy(scores, y)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    print(json.dumps({"impl": f"lgn-nas {kind.replace('-', ' ')}", "params": sum(p.numel() for p in params),
                      "step_seconds": seconds[1:], "cpu_seconds": cpu_seconds[1:], "rss_before_kb": rss_before,
                      "peak_kb": memory_kb("VmHWM")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--features", type=int, default=8000, help="inputs = gates (a multiple of 10)")
    parser.add_argument("--candidates", type=int, nargs="+", default=[8], help="K, candidates per gate input")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fixed", action="store_true", help="skip the fixed-wiring rows")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--no-torch", action="store_true", help="skip the lgn-nas torch-backend row")
    parser.add_argument("--child", choices=("learnable", "learnable-torch", "fixed"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.features % CLASSES:
        parser.error(f"--features must be a multiple of {CLASSES} (the head sums {CLASSES} equal groups), "
                     f"got {args.features}")
    if args.child:
        _ours_child(args.child, args.batch, args.features, args.candidates[0], args.steps, args.threads, args.seed)
        return

    peer = args.peer_python if args.peer_python.exists() else None
    print(f"{args.features} -> {args.features} gates, batch {args.batch}, {args.steps} timed steps per process, "
          f"{args.rounds} rounds, {args.threads} thread(s); load average before: {load_average()}")
    if peer is None:
        print(f"  torchlogix rows skipped: no venv python at {args.peer_python} (bash benchmarks/peers/setup_peers.sh)")
    common = ["--batch", str(args.batch), "--features", str(args.features), "--steps", str(args.steps),
              "--threads", str(args.threads), "--seed", str(args.seed)]
    learnable = ("lgn-nas learnable", "torchlogix learnable") + (() if args.no_torch else ("lgn-nas learnable-torch",))
    configs = [(impl, k) for k in args.candidates for impl in learnable]
    if not args.no_fixed:
        configs += [("lgn-nas fixed", 0), ("torchlogix fixed", 0)]
    results = {config: [] for config in configs}
    for _ in range(args.rounds):
        for impl, k in configs:
            kind = impl.split()[1]
            if impl.startswith("lgn-nas"):
                command = [sys.executable, __file__, "--child", kind, "--candidates", str(max(k, 1)), *common]
            elif peer is not None:
                command = [str(peer), str(PEER_SCRIPT), "--connections", kind, "--candidates", str(max(k, 1)), *common]
            else:
                continue
            run = run_child(command, args.threads)
            if run:
                results[(impl, k)].append(run)
    print(f"\n  {'impl':<23} {'K':>3} {'params':>10} {'median ms':>10} {'best ms':>9} {'CPU ms':>8} {'peak MB':>8} "
          f"{'growth MB':>9}")
    medians, cpu = {}, {}
    for (impl, k), runs in results.items():
        if not runs:
            continue
        steps = [s for run in runs for s in run["step_seconds"]]
        medians[(impl, k)] = statistics.median(steps)
        cpu[(impl, k)] = statistics.median([s for run in runs for s in run["cpu_seconds"]])
        peak = max(run["peak_kb"] for run in runs) / 1024
        growth = max(run["peak_kb"] - run["rss_before_kb"] for run in runs) / 1024
        print(f"  {impl:<23} {k or '-':>3} {runs[0]['params']:>10,} {medians[(impl, k)] * 1e3:>10.1f} "
              f"{min(steps) * 1e3:>9.1f} {cpu[(impl, k)] * 1e3:>8.1f} {peak:>8.0f} {growth:>9.0f}")
    print("  (median and best: wall time of a step; CPU ms: median CPU time of the process per step)\n")

    def ratio(a, b):
        return f"{medians[a] / medians[b]:.1f}x by wall time, {cpu[a] / cpu[b]:.1f}x by CPU time"

    for k in args.candidates:
        ours, theirs = ("lgn-nas learnable", k), ("torchlogix learnable", k)
        torch_backend, fixed = ("lgn-nas learnable-torch", k), ("lgn-nas fixed", 0)
        if ours in medians and theirs in medians:
            print(f"  K={k}: lgn-nas learnable is faster than torchlogix learnable: {ratio(theirs, ours)}")
        if ours in medians and torch_backend in medians:
            print(f"  K={k}: lgn-nas learnable on TVM is faster than on its torch backend: "
                  f"{ratio(torch_backend, ours)}")
        if ours in medians and fixed in medians:
            print(f"  K={k}: lgn-nas learnable costs its fixed-wiring step times {ratio(ours, fixed)}")
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
