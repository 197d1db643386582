"""Wall-clock time to a fixed discrete validation accuracy, one relaxation after another (issue 16).

The same net, data, seed and constant learning-rate schedule for each relaxation (``--lr``, per
relaxation ``--lr-for NAME=LR``); after every epoch the discrete (argmax circuit) validation accuracy,
the training seconds so far and the wall seconds since the run started (data loading and per-epoch
scoring included) are recorded. A run ends at ``--epochs``, after the epoch in which it passed
``--budget`` wall seconds, or (``--stop-at-target``) after the epoch that first reaches the highest
``--target``. Prints the per-epoch table, then per relaxation: time to each target, best validation
accuracy, discrete test accuracy and the two unused-gate counts (``lgn_nas.metrics``) of the net it
ended with; writes everything to ``OUT/summary.json`` (runs under ``OUT/<relaxation>``).

    OMP_NUM_THREADS=1 TVM_NUM_THREADS=1 python benchmarks/time_to_accuracy.py --out runs/tta \\
        --model-kwargs input_crop=20 --limit-train 20000 --target 0.9 0.95 --budget 480
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from lgn_nas.cli import parse_model_kwargs
from lgn_nas.layers.relaxations import list_relaxations
from lgn_nas.train import TrainConfig, fit
from lgn_nas.train.trainer import EpochEnd, StopTraining


def _load() -> List[float]:
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


def _lr_overrides(items: Optional[Sequence[str]]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or name not in list_relaxations():
            raise ValueError(f"--lr-for expects RELAXATION=LR with a known relaxation "
                             f"({', '.join(list_relaxations())}), got {item!r}")
        out[name] = float(value)
    return out


def run_one(relaxation: str, args: argparse.Namespace, lr: float, out: Path) -> Dict[str, Any]:
    """Train with ``relaxation`` and return its per-epoch record and final metrics."""
    kwargs = dict(parse_model_kwargs(args.model_kwargs), relaxation=relaxation)
    config = TrainConfig(model=args.model, model_kwargs=kwargs, dataset=args.dataset, limit_train=args.limit_train,
                         epochs=args.epochs, batch_size=args.batch_size, lr=lr, scheduler="none", seed=args.seed)
    targets = sorted(args.target)
    record: List[Dict[str, Any]] = []
    start = time.perf_counter()

    def timer(event: EpochEnd) -> None:
        wall = time.perf_counter() - start
        m = event.metrics
        record.append({"epoch": event.epoch, "wall_seconds": wall,
                       "train_seconds": sum(h["train_seconds"] for h in event.history),
                       "val_acc_discrete": m["val_acc_discrete"], "val_acc_relaxed": m["val_acc_relaxed"],
                       "unused_gate_fraction": m["unused_gate_fraction"],
                       "unused_gate_fraction_next_layer": m["unused_gate_fraction_next_layer"]})
        if args.stop_at_target and m["val_acc_discrete"] >= targets[-1]:
            raise StopTraining(f"reached {targets[-1]:.2%}")
        if wall >= args.budget:
            raise StopTraining(f"wall budget {args.budget:g} s spent")

    load_before = _load()
    result = fit(config, callbacks=[timer], out_dir=out / relaxation, progress=False)
    to_target = {}
    for target in targets:
        hit = next((r for r in record if r["val_acc_discrete"] >= target), None)
        to_target[f"{target:g}"] = None if hit is None else {k: hit[k] for k in ("epoch", "train_seconds", "wall_seconds")}
    m = result.metrics
    return {"relaxation": relaxation, "lr": lr, "config": config.to_dict(), "epochs": record,
            "time_to_target": to_target, "best_val_acc_discrete": max(r["val_acc_discrete"] for r in record),
            "test_acc_discrete": m["test_acc_discrete"], "test_acc_relaxed": m["test_acc_relaxed"],
            "unused_gate_fraction": m["unused_gate_fraction"],
            "unused_gate_fraction_next_layer": m["unused_gate_fraction_next_layer"], "gates": m["gates"],
            "gates_raw": m["gates_raw"], "wall_seconds": time.perf_counter() - start,
            "load_before": load_before, "load_after": _load(), "stop_reason": result.stop_reason}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="lgn_dense_s")
    parser.add_argument("--model-kwargs", nargs="*", default=[])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--relaxations", nargs="+", default=["softmax", "gumbel_st", "kim_gumbel"],
                        choices=list_relaxations())
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--lr-for", nargs="*", default=[], metavar="RELAXATION=LR")
    parser.add_argument("--target", type=float, nargs="+", default=[0.95])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--budget", type=float, default=480.0, help="wall seconds per run (checked after each epoch)")
    parser.add_argument("--stop-at-target", action="store_true")
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not all(0 < t <= 1 for t in args.target):
        raise ValueError(f"--target: accuracies in (0, 1] expected, got {args.target}")
    lrs = _lr_overrides(args.lr_for)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for relaxation in args.relaxations:
        runs.append(run_one(relaxation, args, lrs.get(relaxation, args.lr), args.out))
        (args.out / "summary.json").write_text(json.dumps({"argv": list(argv) if argv else None, "runs": runs},
                                                          indent=1))
    print("relaxation  lr     epoch  train_s  wall_s  val_discrete  val_relaxed  unused(ours)  unused(next_layer)")
    for run in runs:
        for r in run["epochs"]:
            print(f"{run['relaxation']:<11} {run['lr']:<6g} {r['epoch']:>5} {r['train_seconds']:>8.0f} "
                  f"{r['wall_seconds']:>7.0f} {r['val_acc_discrete']:>12.2%} {r['val_acc_relaxed']:>12.2%} "
                  f"{r['unused_gate_fraction']:>13.1%} {r['unused_gate_fraction_next_layer']:>19.1%}")
    print()
    header = "  ".join(f"to {float(t):.0%}: train s / wall s (epoch)" for t in runs[0]["time_to_target"])
    print(f"relaxation  {header}  best val  test discrete  unused ours / next_layer  load before -> after")
    for run in runs:
        cells = []
        for hit in run["time_to_target"].values():
            cells.append("not reached" if hit is None else
                         f"{hit['train_seconds']:.0f} / {hit['wall_seconds']:.0f} ({hit['epoch']})")
        print(f"{run['relaxation']:<11} " + "  ".join(f"{c:<32}" for c in cells)
              + f"  {run['best_val_acc_discrete']:.2%}  {run['test_acc_discrete']:.2%}"
              f"  {run['unused_gate_fraction']:.1%} / {run['unused_gate_fraction_next_layer']:.1%}"
              f"  {run['load_before']} -> {run['load_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
