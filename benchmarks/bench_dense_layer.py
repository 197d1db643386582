"""Dense logic layer, forward + backward: the 16-gate mixture vs lgn-nas's fused 4-coefficient op.

Side by side in one process (same inputs, wiring and threads), plus the peak memory of training
``lgn_dense_s`` at batch 128 (measured in a fresh subprocess as its maximum resident set size).

    python benchmarks/bench_dense_layer.py [--features 16000] [--batch 256] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import torch

from lgn_nas.gates import gate_basis
from lgn_nas.layers import logic_dense, logic_dense_mixture

_TRAIN_STEP = r"""
import sys, time, torch, timm, lgn_nas
torch.manual_seed(0)
model = timm.create_model("lgn_dense_s").train()
opt = torch.optim.Adam(model.parameters(), lr=0.01)
x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
for _ in range(3):
    t = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    step = time.perf_counter() - t
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(peak_kb / 1024, step)
"""


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=16000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    n, batch = args.features, args.batch
    x = torch.rand(batch, n, requires_grad=True)
    in_a, in_b = torch.randint(0, n, (n,)), torch.randint(0, n, (n,))
    logits = torch.randn(n, 16, requires_grad=True)
    basis = gate_basis()
    grad = torch.randn(batch, n)

    def mixture():
        out = logic_dense_mixture(x, in_a, in_b, logits.softmax(-1))
        out.backward(grad)

    def fused():
        out = logic_dense(x, in_a, in_b, logits.softmax(-1) @ basis)
        out.backward(grad)

    # Same values and gradients before timing anything.
    out_m = logic_dense_mixture(x, in_a, in_b, logits.softmax(-1))
    out_f = logic_dense(x, in_a, in_b, logits.softmax(-1) @ basis)
    max_diff = float((out_m - out_f).abs().max().detach())

    t_mix = _time(mixture, args.repeats)
    t_fused = _time(fused, args.repeats)
    print(f"# dense logic layer {n} -> {n}, batch {batch}, forward + backward, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(f"| implementation | time (ms) | speed-up |")
    print(f"|---|---:|---:|")
    print(f"| 16-gate mixture (Petersen et al. 2022) | {t_mix * 1e3:.1f} | 1.00x |")
    print(f"| lgn-nas fused 4-coefficient op | {t_fused * 1e3:.1f} | {t_mix / t_fused:.2f}x |")
    print(f"max |difference| of outputs: {max_diff:.2e}")
    if not args.skip_memory:
        out = subprocess.run([sys.executable, "-c", _TRAIN_STEP], capture_output=True, text=True, check=True)
        peak_mb, step_s = (float(v) for v in out.stdout.split())
        print(f"lgn_dense_s training step at batch 128: peak resident memory {peak_mb:.0f} MB "
              f"(whole process), {step_s * 1e3:.0f} ms per step")
    print(json.dumps({"mixture_ms": t_mix * 1e3, "fused_ms": t_fused * 1e3, "speedup": t_mix / t_fused}))


if __name__ == "__main__":
    main()
