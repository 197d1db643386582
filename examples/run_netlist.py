"""Run a discrete logic gate network at full CPU speed with TVM (nothing is trained here).

    python examples/run_netlist.py [NETLIST_FILE] [--batch 65536] [--threads N] [--save PATH]

NETLIST_FILE is a netlist written by ``Netlist.save`` (e.g. by ``lgn-nas`` after training); without it
a random 6 x 8000 MNIST-shaped net is built. The net is compiled with ``tvm_ops.compile_netlist``,
checked against the reference evaluator on a few inputs, then timed on random uint8 inputs of the
net's input shape. ``--save`` writes the compiled library (+ .json) for ``tvm_ops.load_compiled_netlist``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from lgn_nas.netlist import Encoding, NetlistBuilder, load_netlist


def random_net(seed: int = 0):
    rng = np.random.default_rng(seed)
    builder = NetlistBuilder(Encoding("thermometer", (1, 28, 28), np.full((1, 1), 0.5, np.float32)))
    prev = builder.input_ids().ravel()
    for _ in range(6):
        prev = builder.add_layer(rng.integers(0, 16, 8000), rng.choice(prev, 8000), rng.choice(prev, 8000))
    return builder.build(prev, num_classes=10, tau=float(np.sqrt(800)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("netlist", nargs="?", help="netlist file (default: a random MNIST-shaped net)")
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=None, help="default: TVM_NUM_THREADS or torch's")
    parser.add_argument("--save", help="also save the compiled library here")
    args = parser.parse_args()

    import tvm_ops

    net = load_netlist(args.netlist) if args.netlist else random_net()
    print(net.summary())
    start = time.perf_counter()
    compiled = tvm_ops.compile_netlist(net, threads=args.threads)
    print(f"compiled in {time.perf_counter() - start:.2f} s: {compiled}")
    x = np.random.default_rng(1).integers(0, 256, (args.batch,) + net.encoding.input_shape, dtype=np.uint8)
    assert np.array_equal(compiled(x[:256]), net.evaluate(x[:256])), "compiled net disagrees with the reference"
    compiled(x)  # warm up
    start = time.perf_counter()
    scores = compiled(x)
    seconds = time.perf_counter() - start
    print(f"{args.batch} images in {seconds * 1e3:.1f} ms: {args.batch / seconds / 1e6:.2f} M images/s "
          f"({compiled.threads} thread(s)); predicted class counts {np.bincount(scores.argmax(1), minlength=net.num_classes)}")
    if args.save:
        compiled.save(args.save)
        print(f"saved {args.save} and {args.save}.json")


if __name__ == "__main__":
    main()
