"""Training ops, forward + backward: lgn-nas's torch path vs the TVM kernels, side by side.

    python benchmarks/bench_train_ops.py [--features 16000] [--batch 256] [--repeats 7] [--sweep] [--epoch]
                                         [--conv-batch 64] [--no-conv]

* dense ``features -> features`` layer at ``batch``: torch path vs TVM (same inputs, wiring, threads;
  calls interleaved so machine noise hits both alike), median and best of ``repeats``; first-use
  compile time of the TVM kernels (cold cache: build + first function lookup) and warm load time.
* CIFAR-size first LogicTreeNet block (6 channels at 32x32, 32 trees of depth 3 over 3x3 fields,
  padding 1, 2x2 OR pool) at ``conv-batch``, forward + backward: the torch path
  (``LogicTreeConv2d`` + ``OrPool2d``, backend "torch") vs the fused TVM op (``LogicTreeConvPool2d``,
  backend "tvm"), interleaved, median and best; peak memory per implementation measured in a fresh
  subprocess as the growth of its peak resident set (VmHWM) over one step (TVM imported and its
  kernels loaded before, as in a training run); first-use compile time of the conv kernels.
* CUDA: whether the dense and tree-conv kernels' CUDA builds work here (CUDA C generated without a
  GPU, compiled to PTX by nvcc where installed) and how long that takes; reported, never fatal.
* ``--sweep``: the same at batch 128 over several widths (the data behind the ``auto`` threshold).
* ``--epoch``: one training epoch of ``timm.create_model("lgn_dense_s")`` on MNIST (Adam 0.01, batch
  128) with each backend (minutes).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import subprocess

os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "0")  # idle TVM workers must not steal the torch path's cores

import torch

from lgn_nas.layers import logic_dense as torch_logic_dense
from tvm_ops import build, training


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"TVM threads {build.desired_threads()}, python {platform.python_version()}")


def _step(op, x, in_a, in_b, c, grad):
    x.grad = None
    c.grad = None
    out = op(x, in_a, in_b, c)
    out.backward(grad)


def _compare(features_in, features, batch, repeats, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, features_in, generator=g).requires_grad_()
    in_a = torch.randint(0, features_in, (features,), generator=g)
    in_b = torch.randint(0, features_in, (features,), generator=g)
    c = torch.randn(features, 4, generator=g).requires_grad_()
    grad = torch.randn(batch, features, generator=g)
    ops = {"torch": torch_logic_dense, "tvm": training.logic_dense}
    outs = {}
    for name, op in ops.items():  # warm-up, and same values before timing
        _step(op, x, in_a, in_b, c, grad)
        outs[name] = (op(x, in_a, in_b, c).detach(), x.grad.clone(), c.grad.clone())
    diff = max(float((a - b).abs().max()) for a, b in zip(outs["torch"], outs["tvm"]))
    times = {k: [] for k in ops}
    for _ in range(repeats):
        for name, op in ops.items():
            t = time.perf_counter()
            _step(op, x, in_a, in_b, c, grad)
            times[name].append(time.perf_counter() - t)
    return times, diff


def _compile_times():
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("LGN_TVM_CACHE")
        os.environ["LGN_TVM_CACHE"] = tmp
        try:
            t = time.perf_counter()
            import tvm  # noqa: F401
            t_import = time.perf_counter() - t
            build._MEMORY.clear()
            t = time.perf_counter()
            mod = training.build_dense_kernels("float32")
            from tvm_ops import train_dense
            mod[train_dense.FWD], mod[train_dense.BWD]  # LLVM code generation happens at lookup
            t_cold = time.perf_counter() - t
            build._MEMORY.clear()
            t = time.perf_counter()
            mod = training.build_dense_kernels("float32")
            mod[train_dense.FWD], mod[train_dense.BWD]
            t_warm = time.perf_counter() - t
        finally:
            if old is None:
                os.environ.pop("LGN_TVM_CACHE", None)
            else:
                os.environ["LGN_TVM_CACHE"] = old
            training.reset()
    return t_import, t_cold, t_warm


def _conv_blocks(batch: int):
    """The first block as the torch path (conv, pool) and as the fused TVM module, same weights."""
    from torch import nn

    from lgn_nas.layers import LogicTreeConv2d, OrPool2d
    from lgn_nas.layers.conv_tree import LogicTreeConvPool2d

    torch.manual_seed(0)
    blocks = {}
    for name, backend in (("torch", "torch"), ("tvm", "tvm")):
        conv = LogicTreeConv2d(6, 32, 3, tree_depth=3, padding=1, init="gaussian", backend=backend,
                               generator=torch.Generator().manual_seed(1)).train()
        blocks[name] = nn.Sequential(conv, OrPool2d(2)) if name == "torch" else LogicTreeConvPool2d(conv, OrPool2d(2))
    blocks["tvm"].load_state_dict(blocks["torch"].state_dict())
    x = torch.rand(batch, 6, 32, 32, generator=torch.Generator().manual_seed(2)).requires_grad_()
    return blocks, x


def _conv_step(block, x, grad):
    x.grad = None
    block.zero_grad()
    out = block(x)
    out.backward(grad)
    return out


def _conv_compile_time():
    from tvm_ops import train_conv

    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("LGN_TVM_CACHE")
        os.environ["LGN_TVM_CACHE"] = tmp
        saved = dict(build._MEMORY)
        try:
            build._MEMORY.clear()
            t = time.perf_counter()
            mod = training.build_conv_kernels("float32", 3, 1)
            for name in (train_conv.FWD, train_conv.BWD, train_conv.POOL_FWD, train_conv.POOL_BWD):
                mod[name]  # LLVM code generation happens at lookup
            return time.perf_counter() - t
        finally:
            build._MEMORY.clear()
            build._MEMORY.update(saved)
            if old is None:
                os.environ.pop("LGN_TVM_CACHE", None)
            else:
                os.environ["LGN_TVM_CACHE"] = old


def _conv_peak_child(name: str, batch: int) -> None:
    def hwm_kb() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))

    blocks, x = _conv_blocks(batch)
    if name == "tvm":  # import tvm and load the kernels first: the library is not the op's memory
        from tvm_ops import train_conv
        mod = training.build_conv_kernels("float32", 3, 1)
        for fn in (train_conv.POOL_FWD, train_conv.POOL_BWD):
            mod[fn]
    grad = torch.ones(batch, 32, 16, 16)
    torch.zeros(1).sum()  # touch the allocator
    before = hwm_kb()
    _conv_step(blocks[name], x, grad)
    print((hwm_kb() - before) / 1024)


def _conv_section(batch: int, repeats: int) -> None:
    from lgn_nas.layers.tree_ops import logic_tree_conv as torch_tree_conv

    t_compile = _conv_compile_time()
    blocks, x = _conv_blocks(batch)
    grad = torch.randn(batch, 32, 16, 16, generator=torch.Generator().manual_seed(3))
    results = {}
    for name, block in blocks.items():
        out = _conv_step(block, x, grad)
        results[name] = (out.detach(), x.grad.clone(), block[0].weight.grad.clone())
    diffs = [float((a - b).abs().max()) for a, b in zip(results["torch"], results["tvm"])]
    conv = blocks["torch"][0]
    with torch.no_grad():
        pre = [float((training.logic_tree_conv(x, conv.leaf_index, conv.coefficients(), 3, 1, 1)
                      - torch_tree_conv(x, conv.leaf_index, conv.coefficients(), 3, 1, 1)).abs().max())]
    times = {k: [] for k in blocks}
    for _ in range(repeats):
        for name, block in blocks.items():
            t = time.perf_counter()
            _conv_step(block, x, grad)
            times[name].append(time.perf_counter() - t)
    peaks = {}
    for name in blocks:
        child = subprocess.run([sys.executable, __file__, "--conv-child", name, "--conv-batch", str(batch)],
                               capture_output=True, text=True, check=True)
        peaks[name] = float(child.stdout.strip().splitlines()[-1])
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    print(f"\n## CIFAR first block (6x32x32 -> 32 trees d=3, 3x3, pad 1, 2x2 OR pool), batch {batch}, "
          f"forward + backward ({repeats} interleaved runs)\n")
    print("| implementation | median (ms) | best (ms) | speed-up (median) | peak memory (MB) | memory ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    labels = {"torch": "torch path (LogicTreeConv2d + OrPool2d, backend torch)",
              "tvm": "TVM fused conv + OR pool (LogicTreeConvPool2d, backend tvm)"}
    for name in blocks:
        print(f"| {labels[name]} | {med[name] * 1e3:.1f} | {best[name] * 1e3:.1f} | {med['torch'] / med[name]:.2f}x "
              f"| {peaks[name]:.1f} | {peaks['torch'] / max(peaks[name], 1e-9):.1f}x less |")
    print(f"\nmax |difference| torch vs TVM (pooled out, grad_x, grad_weight; a window whose top two values tie within float32 rounding may route its gradient to the other position): {', '.join(f'{d:.1e}' for d in diffs)}; "
          f"unpooled tree conv output: {pre[0]:.1e}")
    print(f"TVM first use: compile the float32 depth-3 stride-1 tree-conv kernels (plain + OR-pooled, forward + "
          f"backward) {t_compile:.2f} s (cold cache, once per machine: every size shares them)")


def _cuda_section() -> None:
    print("\n## CUDA builds (no GPU here: code generation, plus an nvcc compile to PTX where nvcc exists)\n")
    for label, fn in (("dense", lambda: training.build_dense_cuda("float32")),
                      ("tree conv d=3 s=1", lambda: training.build_conv_cuda("float32", 3, 1))):
        t = time.perf_counter()
        try:
            result = fn()
        except RuntimeError as exc:
            print(f"- {label}: unavailable ({exc})")
            continue
        state = "compiled to PTX by nvcc" if result.compiled else f"not compiled ({result.reason})"
        print(f"- {label}: CUDA C generated, {state}, {time.perf_counter() - t:.2f} s")


def _epoch(backend: str, limit: int | None):
    import timm

    import lgn_nas  # noqa: F401  (registers the models)
    from lgn_nas.data import TensorLoader, load_dataset

    data = load_dataset("mnist")
    torch.manual_seed(0)
    model = timm.create_model("lgn_dense_s", backend=backend).train()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = TensorLoader(*data.train, batch_size=128, shuffle=True, seed=0)
    steps, correct, seen = 0, 0, 0
    t = time.perf_counter()
    for xb, yb in loader:
        logits = model(xb)
        loss = torch.nn.functional.cross_entropy(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        correct += int((logits.argmax(1) == yb).sum())
        seen += yb.shape[0]
        steps += 1
        if limit and steps >= limit:
            break
    return time.perf_counter() - t, steps, correct / max(seen, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=16000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sweep", action="store_true", help="batch 128 over several widths")
    parser.add_argument("--epoch", action="store_true", help="one lgn_dense_s MNIST epoch per backend")
    parser.add_argument("--epoch-steps", type=int, default=0, help="stop the epoch after this many steps")
    parser.add_argument("--conv-batch", type=int, default=64)
    parser.add_argument("--no-conv", action="store_true", help="skip the conv block rows")
    parser.add_argument("--conv-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.conv_child:
        _conv_peak_child(args.conv_child, args.conv_batch)
        return

    print("$ python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]))
    print(f"# {_machine()}")
    print(f"# load average at start: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    t_import, t_cold, t_warm = _compile_times()
    n, batch = args.features, args.batch
    times, diff = _compare(n, n, batch, args.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    print(f"\n## dense logic layer {n} -> {n}, batch {batch}, forward + backward ({args.repeats} interleaved runs)\n")
    print("| implementation | median (ms) | best (ms) | speed-up (median) |")
    print("|---|---:|---:|---:|")
    print(f"| torch path (lgn_nas.layers.logic_dense) | {med['torch'] * 1e3:.1f} | {best['torch'] * 1e3:.1f} | 1.00x |")
    print(f"| TVM kernels (tvm_ops.training.logic_dense) | {med['tvm'] * 1e3:.1f} | {best['tvm'] * 1e3:.1f} "
          f"| {med['torch'] / med['tvm']:.2f}x |")
    print(f"\nmax |difference| torch vs TVM (out, grad_x, grad_coefficients): {diff:.2e}")
    print(f"TVM first use: import tvm {t_import:.2f} s (if not yet imported), compile float32 kernels "
          f"{t_cold:.2f} s (cold cache, once per machine: every shape shares them), load from cache {t_warm * 1e3:.1f} ms")

    if not args.no_conv:
        _conv_section(args.conv_batch, args.repeats)

    _cuda_section()

    if args.sweep:
        print("\n## batch 128, width w -> w (median of interleaved runs)\n")
        print("| width | batch*width | torch (ms) | TVM (ms) | speed-up |")
        print("|---:|---:|---:|---:|---:|")
        for w in (256, 1024, 4096, 8000, 16000):
            times, _ = _compare(w, w, 128, args.repeats, seed=w)
            mt, mv = statistics.median(times["torch"]), statistics.median(times["tvm"])
            print(f"| {w} | {128 * w} | {mt * 1e3:.2f} | {mv * 1e3:.2f} | {mt / mv:.2f}x |")

    if args.epoch:
        limit = args.epoch_steps or None
        print(f"\n## lgn_dense_s (6 x 8000) on MNIST, batch 128, Adam 0.01, one epoch"
              f"{f' (first {limit} steps)' if limit else ''}\n")
        print("| backend | time (s) | steps | ms / step | train accuracy |")
        print("|---|---:|---:|---:|---:|")
        for backend in ("torch", "tvm"):
            secs, steps, acc = _epoch(backend, limit)
            print(f"| {backend} | {secs:.1f} | {steps} | {secs / steps * 1e3:.0f} | {acc:.4f} |")

    print(f"\n# load average at end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
