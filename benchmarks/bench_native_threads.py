"""Thread scaling of the native netlist backend: one against two workers on the shipped MNIST nets.

    OMP_NUM_THREADS=1 TVM_NUM_THREADS=1 python benchmarks/bench_native_threads.py

Raw uint8 images (encoding and GroupSum included), best of three rounds, the two thread counts
interleaved in each round; the two compiled nets are checked to agree on the first 4,096 images.
"""
import time, os, numpy as np, timm, torch, lgn_nas, tvm_ops
from lgn_nas import discretize
for tag in ("lgn_dense_s.mnist", "lgn_conv_mnist_s.mnist"):
    net, _ = discretize(timm.create_model(tag, pretrained=True).eval()).simplify()
    shape = net.encoding.input_shape
    rng = np.random.default_rng(0)
    nets = {t: tvm_ops.compile_netlist_native(net, threads=t) for t in (1, 2)}
    for n in (4096, 65536, 1048576):
        x = rng.integers(0, 256, (n,) + tuple(shape), dtype=np.uint8)
        assert np.array_equal(nets[1].counts(x[:4096]), nets[2].counts(x[:4096]))
        best = {1: 1e9, 2: 1e9}
        for _ in range(3):
            for t in (1, 2):
                reps = max(1, 262144 // n)
                s = time.perf_counter()
                for _ in range(reps): nets[t](x)
                best[t] = min(best[t], (time.perf_counter() - s) / reps)
        print(f"{tag} n={n}: 1 thread {n/best[1]/1e6:.2f} M img/s, 2 threads {n/best[2]/1e6:.2f} M img/s, ratio {best[1]/best[2]:.2f}x", flush=True)
print("load", os.getloadavg())
