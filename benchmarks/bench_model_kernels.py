"""The TVM training kernels of a conv model, layer by layer: this checkout against a git revision, in one process.

    python benchmarks/bench_model_kernels.py [--baseline REV] [--model lgn_conv_mnist_s] [--batch 128]
                                             [--repeats 15] [--threads 1] [--check exact|close|none]

The kernel sources (``tvm_ops/train_conv*.py`` and ``tvm_ops/train_dense.py``) at ``--baseline`` (a git
revision, default ``HEAD``, or a directory holding those files) are built into a temporary package
beside this checkout's, and both run the same inputs: each fused tree-conv + OR-pool stage and each
dense layer of the model, with their real shapes, wiring and the activations they see in training,
relaxed coefficients (a softmax mixture of the 16 gates) and random upstream gradients. Forward (the
op) and backward (``out.backward(g)``) are timed separately, baseline and checkout interleaved so that
machine load hits both alike; the table gives medians in ms. The two results are compared first:
``exact`` (the default) wants equal outputs and gradients equal to float32 rounding of their sums.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's lgn_nas and tvm_ops, not an installed copy
FILES = ("train_conv.py", "train_conv_cpu.py", "train_conv_cuda.py", "train_dense.py")


def baseline_package(rev: str, where: Path) -> str:
    """Write the kernel sources of git revision ``rev`` (or of the directory ``rev``) as a package
    ``tvm_ops_baseline`` under ``where`` and import it; returns the package name."""
    pkg = where / "tvm_ops_baseline"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in FILES:
        if Path(rev).is_dir():
            text = (Path(rev) / name).read_text()
        else:
            text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:tvm_ops/{name}"], check=True,
                                  capture_output=True, text=True).stdout
        (pkg / name).write_text(text)
    spec = importlib.util.spec_from_file_location("tvm_ops_baseline", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["tvm_ops_baseline"] = module
    spec.loader.exec_module(module)
    return "tvm_ops_baseline"


def _mixture(shape, seed: int) -> torch.Tensor:
    from lgn_nas.gates import gate_basis

    w = torch.randn(*shape, 16, generator=torch.Generator().manual_seed(seed))
    return (w.softmax(-1) @ gate_basis()).float().contiguous()


def layers(model_name: str, batch: int):
    """``(label, kind, module, x, needs_grad)`` for every fused conv stage and dense layer: ``x`` its input
    in training and whether that input needs a gradient there (not the first stage's: the image)."""
    import timm

    import lgn_nas  # noqa: F401  (registers the models)
    from lgn_nas.layers.conv_tree import LogicTreeConvPool2d
    from lgn_nas.layers.dense import LogicDense

    torch.manual_seed(0)
    model = timm.create_model(model_name).train()
    found = []
    hooks = [m.register_forward_pre_hook(lambda m, args: found.append((m, args[0].detach().clone(),
                                                                       args[0].requires_grad)))
             for m in model.modules() if isinstance(m, (LogicTreeConvPool2d, LogicDense))]
    model(torch.rand(batch, *model.pretrained_cfg.get("input_size", (1, 28, 28))))
    for h in hooks:
        h.remove()
    out = []
    for m, x, needs_grad in found:
        if isinstance(m, LogicDense):
            out.append((f"dense {m.in_features}->{m.out_features}", "dense", m, x.flatten(1).contiguous(), needs_grad))
        else:
            conv = m[0]
            h, w = x.shape[2:]
            label = (f"conv {x.shape[1]}->{conv.out_channels} ch {h}x{w} k{conv.kernel_size} p{conv.padding} "
                     f"-> pooled {(h + 2 * conv.padding - conv.kernel_size + 1) // 2}")
            out.append((label, "conv", conv, x, needs_grad))
    return out


def runner(kind: str, module, x: torch.Tensor, needs_grad: bool, makers: dict, kernels: dict, seed: int):
    """``run(name) -> (forward ms, backward ms, (out, grad_x, grad_c))`` for one layer, with the kernels
    that ``makers[name](kind, *geometry)`` builds (cached in ``kernels``)."""
    from tvm_ops import training

    def mod(name, *key):
        if (name, *key) not in kernels:
            kernels[(name, *key)] = makers[name](*key)
        return kernels[(name, *key)]

    if kind == "dense":
        c = _mixture((module.out_features,), seed)
        ia, ib = (t.to(torch.int32).contiguous() for t in (module.in_a, module.in_b))

        def apply(name, xr, cr):
            return training._TvmLogicDense.apply(xr, ia, ib, cr, mod(name, "dense"))
    else:
        c = _mixture((module.out_channels, module.num_leaves - 1), seed)
        geometry = (module.num_leaves.bit_length() - 1, module.stride)
        padded = (x.shape[2] + 2 * module.padding, x.shape[3] + 2 * module.padding)
        off = training._leaf_offsets(module.leaf_index, module.kernel_size, padded)
        size = [(n - module.kernel_size) // module.stride + 1 for n in padded]
        pooled = (size[0] // 2, size[1] // 2)

        def apply(name, xr, cr):
            return training._TvmTreeConvOrPool.apply(xr, off, cr, mod(name, "conv", *geometry), pooled, module.padding)
    with torch.no_grad():
        shape = apply(next(iter(makers)), x, c).shape
    gout = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))

    def run(name):
        xr = x.clone().requires_grad_(needs_grad)
        cr = c.clone().requires_grad_()
        t0 = time.perf_counter()
        out = apply(name, xr, cr)
        t1 = time.perf_counter()
        out.backward(gout)
        t2 = time.perf_counter()
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (out.detach(), xr.grad, cr.grad)

    return run


class _WithoutNeedGx:
    """A baseline conv module from before the backward kernels took ``need_gx``: drops that argument."""

    def __init__(self, module, names) -> None:
        self.module, self.names = module, names

    def __getitem__(self, name):
        kernel = self.module[name]
        return (lambda *args: kernel(*args[:-1])) if name in self.names else kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD")
    parser.add_argument("--model", default="lgn_conv_mnist_s")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--check", choices=["exact", "close", "none"], default="exact",
                        help="how the two results must agree (none: for deliberately different kernels)")
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)

    import tvm

    from tvm_ops import build, training

    target = build.host_target()
    print(f"{args.model}, batch {args.batch}, {args.threads} thread(s), median of {args.repeats}; "
          f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"  {'layer':<42} {'forward ms':>18} {'backward ms':>18}")
    print(f"  {'':<42} {args.baseline[-8:]:>8} -> {'this':>6} {args.baseline[-8:]:>8} -> {'this':>6}")
    totals = {"baseline": [0.0, 0.0], "this": [0.0, 0.0]}
    with tempfile.TemporaryDirectory() as tmp:
        old = importlib.import_module(baseline_package(args.baseline, Path(tmp)))
        old_conv, old_dense = (importlib.import_module(f"{old.__name__}.{m}") for m in ("train_conv", "train_dense"))

        legacy = "need_gx" not in Path(old_conv.__file__).with_name("train_conv_cpu.py").read_text()

        def old_make(kind, *geometry):
            module = old_conv.cpu_module("float32", *geometry) if kind == "conv" else old_dense.cpu_module("float32")
            built = tvm.compile(module, target=target)
            return _WithoutNeedGx(built, (old_conv.BWD, old_conv.POOL_BWD)) if kind == "conv" and legacy else built

        def new_make(kind, *geometry):
            if kind == "conv":
                return training._conv_module(torch.float32, *geometry)
            return training._module(torch.float32)

        impls = {"baseline": old_make, "this": new_make}
        kernels: dict = {}
        for index, (label, kind, module, x, needs_grad) in enumerate(layers(args.model, args.batch)):
            run = runner(kind, module, x, needs_grad, impls, kernels, seed=index)
            ref, got = run("baseline")[2], run("this")[2]
            if args.check == "exact":
                assert torch.equal(ref[0], got[0]), f"{label}: forward differs from the baseline"
            if args.check != "none":
                for name, a, b in zip(("out", "grad_x", "grad_c"), got, ref):
                    if a is None and b is None:
                        continue
                    scale = float(b.abs().max()) or 1.0
                    err = float((a - b).abs().max()) / scale
                    assert err < 1e-5, f"{label}: {name} differs from the baseline by {err:.2e} of its largest value"
            times = {name: ([], []) for name in impls}
            for _ in range(args.repeats):
                for name in impls:
                    f, b, _ = run(name)
                    times[name][0].append(f)
                    times[name][1].append(b)
            med = {name: (statistics.median(f), statistics.median(b)) for name, (f, b) in times.items()}
            for name in impls:
                totals[name][0] += med[name][0]
                totals[name][1] += med[name][1]
            print(f"  {label:<42} {med['baseline'][0]:>8.2f} -> {med['this'][0]:>6.2f} "
                  f"{med['baseline'][1]:>8.2f} -> {med['this'][1]:>6.2f}")
    print(f"  {'total':<42} {totals['baseline'][0]:>8.2f} -> {totals['this'][0]:>6.2f} "
          f"{totals['baseline'][1]:>8.2f} -> {totals['this'][1]:>6.2f}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
