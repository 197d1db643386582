"""Per-layer discretisation diagnostics of a trained run (``lgn-nas train ... --out RUN``).

    python benchmarks/diagnose_conv.py RUN [RUN ...] [--images 1000]

Prints, for each run, the table of ``lgn_nas.train.diagnostics.discretization_report`` on the first
``--images`` test images: pass-through fraction, logit margins, relaxed vs discrete activations
after every conv block (after its OR pool) and dense layer, and the head's tau; then the share of
each layer's gates that one training step of 128 of those images reaches with a gradient; then the
test accuracy with one logic layer at a time relaxed and the rest discrete (``--gap-images`` test
images, default all 10,000): the layer that recovers the relaxed accuracy holds the gap.
"""
from __future__ import annotations

import argparse

import torch

from lgn_nas.data import load_dataset
from lgn_nas.train import load_run
from lgn_nas.train.diagnostics import discretization_report, format_report, gap_by_layer, gradient_reach


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--gap-images", type=int, default=10_000)
    args = parser.parse_args()
    for run in args.runs:
        model, config = load_run(run)
        splits = load_dataset(config.dataset, root=config.data_root)
        x = splits.test[0][:args.images]
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x
        print(f"## {run} ({config.model}, {config.dataset})\n")
        print(format_report(discretization_report(model, x)))
        reach = gradient_reach(model, x[:128], splits.test[1][:128])
        print("\ngradient reach (" + ", ".join(sorted({m.relaxation for m in model.modules() if hasattr(m, "relaxation")}))
              + "): " + ", ".join(f"{name} {share:.3f}" for name, share in reach.items()) + "\n")
        x_gap = splits.test[0][:args.gap_images]
        x_gap = x_gap.float().div(255.0) if x_gap.dtype == torch.uint8 else x_gap
        gaps = gap_by_layer(model, x_gap, splits.test[1][:args.gap_images])
        print("test accuracy, one layer relaxed at a time: " + ", ".join(f"{name} {acc:.4f}" for name, acc in gaps.items())
              + "\n")


if __name__ == "__main__":
    main()
