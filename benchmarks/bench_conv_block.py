"""CIFAR-size first LogicTreeNet block, forward + backward: lgn-nas's torch path vs unfold/gather.

Block: 6 input channels (3 colours x 2 bits) at 32x32, 32 tree kernels of depth 3 over 3x3 fields of 2
channels, padding 1, then 2x2 OR pooling; batch 64. Both implementations compute the same values and
gradients (checked first). Time is the best of several runs in one process; peak memory is measured
for each implementation in a fresh subprocess as the growth of its peak resident set (VmHWM) over the
set-up.

    python benchmarks/bench_conv_block.py [--batch 64] [--repeats 5] [--backend torch]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from lgn_nas.layers import LogicTreeConv2d, OrPool2d


def unfold_gather_block(x, layer, pool):
    """Straightforward reference: unfold patches, gather leaves, evaluate levels with autograd."""
    k = layer.kernel_size
    patches = F.unfold(x, k, padding=layer.padding)  # (B, C*k*k, P)
    leaves = patches[:, layer.leaf_index.reshape(-1), :]  # (B, O*L, P)
    batch, _, positions = leaves.shape
    v = leaves.view(batch, layer.out_channels, layer.num_leaves, positions)
    c = layer.coefficients()
    start = 0
    while v.shape[2] > 1:
        n = v.shape[2] // 2
        cc = c[:, start:start + n]
        a, b = v[:, :, 0::2], v[:, :, 1::2]
        v = (cc[None, :, :, 0, None] + cc[None, :, :, 1, None] * a + cc[None, :, :, 2, None] * b
             + cc[None, :, :, 3, None] * a * b)
        start += n
    side = int(positions ** 0.5)
    return pool(v.view(batch, layer.out_channels, side, side))


def ours_block(x, layer, pool):
    return pool(layer(x))


IMPLEMENTATIONS = {"unfold/gather": unfold_gather_block, "lgn-nas torch path": ours_block}


def _setup(batch: int, backend: str):
    torch.manual_seed(0)
    layer = LogicTreeConv2d(6, 32, 3, tree_depth=3, padding=1, init="gaussian", backend=backend).train()
    x = torch.rand(batch, 6, 32, 32, requires_grad=True)
    return layer, OrPool2d(2), x


def _step(impl, layer, pool, x):
    out = impl(x, layer, pool)
    out.sum().backward()
    return out


def _peak_memory_child(name: str, batch: int, backend: str) -> None:
    def hwm_kb() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    layer, pool, x = _setup(batch, backend)
    torch.zeros(1).sum()  # touch the allocator
    before = hwm_kb()
    _step(IMPLEMENTATIONS[name], layer, pool, x)
    print((hwm_kb() - before) / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _peak_memory_child(args.child, args.batch, args.backend)
        return

    layer, pool, x = _setup(args.batch, args.backend)
    results = {}
    grads = {}
    for name, impl in IMPLEMENTATIONS.items():
        # Compare before pooling: near-ties in the max would route gradients to different positions.
        x.grad = None
        layer.zero_grad()
        out = _step(impl, layer, lambda t: t, x)
        grads[name] = (out.detach(), x.grad.clone(), layer.weight.grad.clone())
        times = []
        for _ in range(args.repeats):
            x.grad = None
            layer.zero_grad()
            t = time.perf_counter()
            _step(impl, layer, pool, x)
            times.append(time.perf_counter() - t)
        peak = subprocess.run([sys.executable, __file__, "--child", name, "--batch", str(args.batch),
                               "--backend", args.backend], capture_output=True, text=True, check=True)
        results[name] = {"ms": min(times) * 1e3, "peak_mb": float(peak.stdout.strip())}
    (o1, gx1, gw1), (o2, gx2, gw2) = grads.values()
    diffs = [float((a - b).abs().max() / b.abs().max()) for a, b in ((o1, o2), (gx1, gx2), (gw1, gw2))]
    base = results["unfold/gather"]
    print(f"# CIFAR first block (6x32x32 -> 32 trees d=3, 3x3, pad 1, 2x2 OR pool), batch {args.batch}, "
          f"forward + backward, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{platform.machine()}")
    print("| implementation | time (ms) | speed-up | peak memory (MB) | memory ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['ms']:.1f} | {base['ms'] / r['ms']:.2f}x | {r['peak_mb']:.1f} | "
              f"{base['peak_mb'] / max(r['peak_mb'], 1e-9):.2f}x less |")
    print(f"max relative difference before pooling (output, input grad, weight grad): "
          f"{', '.join(f'{d:.1e}' for d in diffs)}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
