"""One training step of a trained conv LGN with and without flushing denormal floats, same process.

    python benchmarks/bench_denormal_step.py RUN_DIR [--steps 5] [--batch 128]

Loads a ``lgn-nas train`` run (at the temperature it ended with), takes real MNIST training images
and times forward + cross-entropy + backward + Adam on one thread, alternating the flush-to-zero mode
(``torch.set_flush_denormal``) between rounds so that both see the same load. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from lgn_nas.data import load_dataset
    from lgn_nas.train.build import load_run

    model, config = load_run(args.run)
    x, y = load_dataset(config.dataset, root=config.data_root).train
    x, y = x[:args.batch], y[:args.batch]
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-9)  # the step's cost, not its effect
    times = {"flush": [], "keep": []}
    if not torch.set_flush_denormal(True):
        raise SystemExit("this CPU has no flush-to-zero mode")
    for _ in range(args.rounds):
        for mode in ("keep", "flush"):
            torch.set_flush_denormal(mode == "flush")
            for step in range(args.steps + 1):
                start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                if step:  # the first step of a round warms the caches
                    times[mode].append(time.perf_counter() - start)
    torch.set_flush_denormal(False)
    print(json.dumps({"run": args.run, "temperature": config.temperature_end, "batch": args.batch,
                      "median_ms": {k: round(1e3 * statistics.median(v), 1) for k, v in times.items()},
                      "best_ms": {k: round(1e3 * min(v), 1) for k, v in times.items()},
                      "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
