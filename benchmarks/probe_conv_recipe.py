"""One-epoch recipe probes of ``lgn_conv_mnist_s`` on MNIST (the issue-13 diagnosis table).

    python benchmarks/probe_conv_recipe.py NAME '{"lr": 0.05, "model_kwargs": {"relaxation": "hard_st"}}'

The JSON holds ``TrainConfig`` fields over a plain base (``TrainConfig`` defaults: Adam lr 0.01, no
schedule, constant temperature; *not* the model's recipe, so each probe changes one thing at a time),
plus ``residual_logit`` (the residual initialisation's logit on gate 'A', default 5), which is
patched into ``lgn_nas.layers.parametrizations`` for this process. Prints one ``RESULT`` JSON line
(discrete, relaxed and train-mode test accuracy, simplified gates, per-epoch training accuracy) and
appends it to ``--results`` (default ``probe_conv_recipe.jsonl``).
"""
from __future__ import annotations

import argparse
import json
import time

import lgn_nas.layers.parametrizations as parametrizations
from lgn_nas.train import TrainConfig, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("overrides", help="JSON dict of TrainConfig fields (and residual_logit)")
    parser.add_argument("--model", default="lgn_conv_mnist_s")
    parser.add_argument("--results", default="probe_conv_recipe.jsonl")
    args = parser.parse_args()
    overrides = json.loads(args.overrides)
    residual_logit = overrides.pop("residual_logit", None)
    if residual_logit is not None:
        parametrizations.RESIDUAL_LOGIT = float(residual_logit)
    config = TrainConfig(**{"model": args.model, "dataset": "mnist", "epochs": 1, **overrides})
    start = time.time()
    metrics = fit(config, plot=False).metrics
    row = {
        "name": args.name, "overrides": args.overrides,
        "discrete": metrics["test_acc_discrete"], "relaxed": metrics["test_acc_relaxed"],
        "train_mode": metrics["test_acc_train_mode"], "gates": metrics["gates"],
        "unused": round(metrics["unused_gate_fraction"], 3),
        "train_acc": [round(h["train_acc"], 4) for h in metrics["history"]],
        "seconds": round(time.time() - start),
    }
    print("RESULT", json.dumps(row), flush=True)
    with open(args.results, "a") as handle:
        handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
