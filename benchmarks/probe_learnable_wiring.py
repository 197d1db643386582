"""MNIST probe: the same small dense LGN randomly wired and with learnable wiring.

    python benchmarks/probe_learnable_wiring.py [--steps 1500] [--candidates 8 16] [--width 1000] [--depth 3]

Each net (``lgn_dense_s`` shape ``depth x width``, 20x20 input crop, the family's gaussian gate init,
``group_tau`` 10) trains for ``--steps`` Adam steps at lr 0.05 on batches of 128 drawn with a fixed seed
on one thread (torch backend), then prints its discrete test accuracy on the 10,000 MNIST test images
and its training seconds. A probe, not a recipe: no schedule, no validation split.
"""
from __future__ import annotations

import argparse
import time
import warnings

import timm
import torch

from lgn_nas.data import load_dataset


def run(label: str, data, *, steps: int, depth: int, width: int, **strategies) -> None:
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    torch.manual_seed(0)
    model = timm.create_model("lgn_dense_s", depth=depth, width=width, group_tau=10.0, input_crop=20, seed=0,
                              backend="torch", **strategies)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(0)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        index = torch.randint(0, x_train.shape[0], (128,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(x_train[index].float() / 255), y_train[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test.float() / 255).argmax(1) == y_test).float().mean().item()
    print(f"{label:26s} discrete test {accuracy:.4f}  training {seconds:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--candidates", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--width", type=int, default=1000)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    torch.set_num_threads(1)
    data = load_dataset("mnist", val_size=0, dtype=torch.uint8)
    shape = dict(steps=args.steps, depth=args.depth, width=args.width)
    run("random wiring", data, **shape)
    for k in args.candidates:
        run(f"learnable, {k} candidates", data, connectivity="learnable", candidates=k, **shape)


if __name__ == "__main__":
    main()
