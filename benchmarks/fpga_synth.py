"""FPGA figures of the trained MNIST nets: yosys cell and 6-LUT counts and logic depth of the Verilog export.

For each net (``--nets``: ``dense_s`` = shipped ``lgn_dense_s``, ``conv_s`` = shipped ``lgn_conv_mnist_s``,
or a ``netlist.lgn`` path) the simplified netlist is exported with ``lgn_nas.export.to_verilog``,
combinational (``pipeline_every=0``) and with registers after every layer (``--pipeline-every``, default
1), and synthesised with ``lgn_nas.export.verilog.synthesize`` (yosys ``synth -flatten``, ``abc -lut
6``, ``ltp -noff``: with registers, the longest LUT path between them; by default the fast script, ``abc
-fast`` after techmap, ``--full`` for ``synth``). Printed beside the netlist's
own gate count and logic depth. Needs yosys (Debian package ``yosys``).

Usage::

    python benchmarks/fpga_synth.py [--nets dense_s,conv_s] [--pipeline-every 1] [--full]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from lgn_nas.export import to_verilog  # noqa: E402
from lgn_nas.export.verilog import pipeline_latency, synthesize  # noqa: E402


def load(name: str):
    if name in ("dense_s", "conv_s"):
        import timm

        import lgn_nas

        model = {"dense_s": "lgn_dense_s", "conv_s": "lgn_conv_mnist_s"}[name]
        return lgn_nas.discretize(timm.create_model(model, pretrained=True).eval()), f"trained {model}"
    from lgn_nas.netlist import load_netlist

    return load_netlist(name), name


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="dense_s,conv_s")
    parser.add_argument("--pipeline-every", type=int, default=1)
    parser.add_argument("--full", action="store_true",
                        help="yosys's generic synth and ABC's strong LUT mapping (tens of CPU-minutes per net "
                             "here); default: the fast script of synthesize(fast=True)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [n for n in args.nets.split(",") if n]:
            net, what = load(name)
            simple = net.simplify()[0]
            for every in (0, args.pipeline_every):
                path = Path(tmp) / f"net{len(rows)}_{every}.v"  # a net may be a path
                to_verilog(simple, path, pipeline_every=every)
                start = time.perf_counter()
                result = synthesize(path, timeout=3600, fast=not args.full)
                seconds = time.perf_counter() - start
                ffs = sum(v for k, v in result["cell_types"].items() if "DFF" in k.upper())
                rows.append((what, net.num_gates, simple.num_gates, simple.logic_depth, every,
                             pipeline_latency(simple.num_layers, every) if every else 0, result, ffs, seconds))
                print(f"{what}, pipeline_every={every}: {result['cells']} cells ({ffs} flip-flops), "
                      f"{result['luts']} LUT6 cells, LUT depth {result['lut_depth']}, yosys {seconds:.0f} s",
                      flush=True)
    print("\n| net | gates (simplified) | gate depth | registers | latency (cycles) | yosys cells | flip-flops "
          "| 6-LUTs | LUT depth |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for what, gates, simple_gates, depth, every, latency, result, ffs, _ in rows:
        regs = f"every {every} layer{'s' if every > 1 else ''}" if every else "none"
        print(f"| {what} | {gates:,} ({simple_gates:,}) | {depth} | {regs} | {latency} | {result['cells']:,} "
              f"| {ffs:,} | {result['luts']:,} | {result['lut_depth']} |")


if __name__ == "__main__":
    main()
