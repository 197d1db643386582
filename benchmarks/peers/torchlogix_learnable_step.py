"""One training step of a torchlogix dense logic layer, timed; run by ``bench_learnable_step.py``.

Runs in torchlogix's own virtual environment (``setup_peers.sh``), never in lgn-nas's. The layer is
torchlogix's ``LogicDense`` with ``connections="learnable"`` (``LearnableDenseConnections``: K
candidate wires per gate input, one weight per candidate; the forward reads the argmax candidate,
the backward gives every candidate a gradient) or ``connections="fixed"``, and its default gate
parametrization (``raw``: 16 gate logits per neuron, softmax). The step: forward, the same head
and loss as the lgn-nas side (sum of each of 10 groups of outputs, cross-entropy), backward (the
input, uniform in [0, 1], requires its gradient, as a hidden layer's does), Adam.
Prints one JSON line: parameter count, per-step seconds, resident memory before the first step and
its peak.
"""
from __future__ import annotations

import argparse
import json
import time

from step_common import memory_kb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", choices=("learnable", "fixed"), required=True)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--features", type=int, default=8000, help="inputs = gates")
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from torchlogix.layers.dense import LogicDense

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    kwargs = {"num_candidates": args.candidates} if args.connections == "learnable" else {}
    layer = LogicDense(args.features, args.features, connections=args.connections, connections_kwargs=kwargs)
    layer.train()
    x = torch.rand(args.batch, args.features).requires_grad_()  # a hidden layer's input: its gradient is needed
    y = torch.randint(0, args.classes, (args.batch,))
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.01)
    rss_before = memory_kb("VmRSS")
    seconds = []
    cpu_seconds = []  # this process's CPU time: less sensitive than wall time to other jobs on the cores
    for _ in range(args.steps + 1):  # the first step warms up and is not counted
        start = time.perf_counter()
        cpu_start = time.process_time()
        optimizer.zero_grad(set_to_none=True)
        x.grad = None
        scores = layer(x).view(args.batch, args.classes, -1).sum(-1)
        loss = torch.nn.functional.cross_entropy(scores, y)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    print(json.dumps({
        "impl": f"torchlogix {args.connections}",
        "params": sum(p.numel() for p in layer.parameters()),
        "step_seconds": seconds[1:],
        "cpu_seconds": cpu_seconds[1:],
        "rss_before_kb": rss_before,
        "peak_kb": memory_kb("VmHWM"),
    }))


if __name__ == "__main__":
    main()
