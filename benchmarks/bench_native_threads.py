"""Thread scaling of the native netlist backend: one against two workers on the shipped MNIST nets.

    OMP_NUM_THREADS=1 TVM_NUM_THREADS=1 python benchmarks/bench_native_threads.py

Raw uint8 images (encoding and GroupSum included), best of three rounds, the two thread counts
interleaved in each round (a round times ``max(1, 262144 // n)`` calls and takes their mean); the two
compiled nets are checked to agree on the first 4,096 images; the ISA is the best this CPU has
(AVX-512, else AVX2), printed per net. ``bench_netlist_inference.py --threads 1,2`` gives the same
comparison beside the TVM kernel and the peers.
"""
from __future__ import annotations

import os
import time

import numpy as np
import timm

import lgn_nas  # noqa: F401  (registers the models)
import tvm_ops
from lgn_nas import discretize

TAGS = ("lgn_dense_s.mnist", "lgn_conv_mnist_s.mnist")
BATCHES = (4096, 65536, 1048576)
THREADS = (1, 2)


def seconds_per_call(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main() -> None:
    for tag in TAGS:
        net, _ = discretize(timm.create_model(tag, pretrained=True).eval()).simplify()
        rng = np.random.default_rng(0)
        nets = {t: tvm_ops.compile_netlist_native(net, threads=t) for t in THREADS}
        print(f"{tag}: native {nets[1].isa}", flush=True)
        for n in BATCHES:
            x = rng.integers(0, 256, (n,) + tuple(net.encoding.input_shape), dtype=np.uint8)
            assert np.array_equal(nets[1].counts(x[:4096]), nets[2].counts(x[:4096]))
            best = {t: float("inf") for t in THREADS}
            for _ in range(3):
                for t in THREADS:
                    best[t] = min(best[t], seconds_per_call(lambda: nets[t](x), max(1, 262144 // n)))
            print(f"{tag} n={n}: 1 thread {n / best[1] / 1e6:.2f} M img/s, 2 threads {n / best[2] / 1e6:.2f} "
                  f"M img/s, ratio {best[1] / best[2]:.2f}x", flush=True)
    print("load", os.getloadavg())


if __name__ == "__main__":
    main()
