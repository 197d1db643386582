"""One training step of torchlogix's convolutional LGNs, timed; run by ``bench_conv_model_step.py``.

Runs in torchlogix's own virtual environment (``setup_peers.sh``), never in lgn-nas's. Prints one
JSON line: parameter count, per-step seconds, resident memory before the first step and its peak.

torchlogix 0.2.2's package ``__init__`` imports its circuit compiler, whose f-strings need Python
3.12; the models and layers do not, so on older Pythons the package is entered without running that
``__init__`` (its layers and models modules are imported directly).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types

from step_common import memory_kb


def _import_models():
    try:
        from torchlogix.models import conv  # noqa: F401  (Python >= 3.12: the normal import works)
    except SyntaxError:
        for name in [n for n in sys.modules if n == "torchlogix" or n.startswith("torchlogix.")]:
            del sys.modules[name]
        spec = importlib.util.find_spec("torchlogix")
        package = types.ModuleType("torchlogix")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["torchlogix"] = package
    from torchlogix.models import conv
    return conv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("mnist", "cifar"), required=True)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flush-denormal", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(args.flush_denormal)
    torch.manual_seed(args.seed)
    conv = _import_models()
    if args.model == "mnist":
        model = conv.ClgnMnistSmall(thresholds=torch.tensor([0.5]), binarization="dummy", binarization_kwargs={})
        x = (torch.rand(args.batch, 1, 28, 28) > 0.5).float()
    else:
        thresholds = torch.tensor([0.25, 0.5, 0.75]).repeat(3, 1)
        model = conv.ClgnCifar10Small(thresholds=thresholds, binarization="dummy", binarization_kwargs={},
                                      connections_kwargs={})
        x = (torch.rand(args.batch, 9, 32, 32) > 0.5).float()  # 3 channels x 3 thresholds, already binary
    y = torch.randint(0, 10, (args.batch,))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    rss_before = memory_kb("VmRSS")
    seconds = []
    for _ in range(args.steps + 1):  # the first step warms up and is not counted
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({
        "impl": "torchlogix",
        "params": sum(p.numel() for p in model.parameters()),
        "step_seconds": seconds[1:],
        "rss_before_kb": rss_before,
        "peak_kb": memory_kb("VmHWM"),
    }))


if __name__ == "__main__":
    main()
