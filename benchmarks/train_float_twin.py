"""Train a plain float timm model with ``lgn-nas train``'s loop settings: the hybrids' float twin.

    python benchmarks/train_float_twin.py resnet18 --dataset cifar10 --data-root DIR --epochs 3
                                          [--batch-size 128] [--lr 0.01] [--hflip] [--seed 0]

``lgn-nas train`` only trains logic models (it reports the discrete circuit). To put a hybrid
(``lgn_hybrid_resnet18``: a float backbone feeding a logic head) beside the same backbone with its
ordinary float head, this trains ``timm.create_model(MODEL, num_classes=10)`` on the same data, the
same validation split (the last 5,000 training images), the same augmentation, Adam with the same
learning rate and a per-epoch cosine decay, and prints one JSON line: validation and test accuracy,
parameters, wall time. No weights are written.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import timm
import torch

from lgn_nas.data import TensorLoader, load_dataset
from lgn_nas.train.augment import random_crop, random_hflip


def _accuracy(model: torch.nn.Module, loader: TensorLoader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for xb, yb in loader:
            correct += int((model(xb).argmax(1) == yb).sum())
            total += len(yb)
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--random-crop-padding", type=int, default=0)
    parser.add_argument("--hflip", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    splits = load_dataset(args.dataset, root=args.data_root, dtype=torch.uint8)
    model = timm.create_model(args.model, num_classes=splits.num_classes, in_chans=splits.input_shape[0])
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loader = splits.loader("train", batch_size=args.batch_size, seed=args.seed)
    start = time.perf_counter()
    history = []
    for epoch in range(args.epochs):
        for group in optimizer.param_groups:  # cosine over epochs, as lgn-nas train's --sched cosine
            group["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * epoch / args.epochs))
        model.train()
        loader.set_epoch(epoch)
        for xb, yb in loader:
            if args.random_crop_padding:
                xb = random_crop(xb, args.random_crop_padding)
            if args.hflip:
                xb = random_hflip(xb)
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
        history.append(_accuracy(model, splits.loader("val", batch_size=500)))
        print(f"epoch {epoch + 1}: val accuracy {history[-1]:.4f}", flush=True)
    print(json.dumps({
        "model": args.model, "epochs": args.epochs, "val_acc_per_epoch": history,
        "test_acc": _accuracy(model, splits.loader("test", batch_size=500)),
        "params": sum(p.numel() for p in model.parameters()), "wall_s": round(time.perf_counter() - start, 1),
    }))


if __name__ == "__main__":
    main()
