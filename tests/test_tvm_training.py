"""TVM training kernels for the dense logic layer (tvm_ops.training / train_dense) and the backend policy."""
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

pytest.importorskip("tvm")

from lgn_nas.layers import LogicDense, logic_dense as torch_logic_dense  # noqa: E402
from lgn_nas.layers import backends  # noqa: E402
from tvm_ops import build, training  # noqa: E402


def _case(batch, n_in, n, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, n_in, generator=g, dtype=dtype)
    in_a = torch.randint(0, n_in, (n,), generator=g)
    in_b = torch.randint(0, n_in, (n,), generator=g)
    c = torch.randn(n, 4, generator=g, dtype=dtype)
    grad = torch.randn(batch, n, generator=g, dtype=dtype)
    return x, in_a, in_b, c, grad


def _run(op, x, in_a, in_b, c, grad):
    x = x.detach().clone().requires_grad_()
    c = c.detach().clone().requires_grad_()
    out = op(x, in_a, in_b, c)
    out.backward(grad)
    return out.detach(), x.grad, c.grad


def _reference(x, in_a, in_b, c, grad):
    """The torch op in float64."""
    return _run(torch_logic_dense, x.double(), in_a, in_b, c.double(), grad.double())


def _assert_matches(got, ref, atol=1e-5, rtol=1e-5):
    for name, a, b in zip(("out", "grad_x", "grad_coefficients"), got, ref):
        torch.testing.assert_close(a.double(), b, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


@pytest.fixture(autouse=True)
def _fresh_state():
    yield
    if training._FAILED is not None:  # a test forced a failure: let the next one build again
        training.reset()


def test_import_is_cheap():
    code = "import sys, tvm_ops.training; print('tvm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gradcheck_float64_kernels():
    x, in_a, in_b, c, _ = _case(3, 7, 13, torch.float64)  # 13 = one vector of 8 plus a tail of 5
    in_a[:3] = in_b[:3] = 2  # duplicates, and ia == ib
    x.requires_grad_()
    c.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, c: training.logic_dense(x, in_a, in_b, c), (x, c))
    assert training.kernels_ready(torch.float64)


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 3, 8), (7, 13, 21), (9, 30, 64), (2, 100, 3)])
def test_float32_matches_float64_reference_small(shape):
    case = _case(*shape, seed=sum(shape))
    _assert_matches(_run(training.logic_dense, *case), _reference(*case))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(8, 8, 8), (16, 9, 17), (17, 8, 16), (25, 40, 8), (33, 7, 9)])
def test_tile_edges_float64(shape, threads):
    """The kernels work on tiles of 8 samples and blocks of 8 features / neurons: full and partial
    tiles, remainders of every size, repeated wiring, and more tasks than tiles."""
    x, in_a, in_b, c, grad = _case(*shape, torch.float64, seed=sum(shape) + threads)
    in_a[:3] = in_b[:3] = 0
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = _run(training.logic_dense, x, in_a, in_b, c, grad)
    finally:
        torch.set_num_threads(old)
    _assert_matches(got, _reference(x, in_a, in_b, c, grad), atol=1e-12, rtol=1e-12)


def test_large_shape_matches_torch_path():
    case = _case(128, 2048, 4096, seed=1)
    got = _run(training.logic_dense, *case)
    ref = _run(torch_logic_dense, *case)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_duplicated_wiring_sums_every_use():
    x, _, _, c, grad = _case(6, 5, 40, seed=2)
    in_a = torch.zeros(40, dtype=torch.long)  # every neuron reads input 0 as a...
    in_b = torch.arange(40) % 2  # ...and input 0 or 1 as b: 20 neurons with ia == ib
    _assert_matches(_run(training.logic_dense, x, in_a, in_b, c, grad), _reference(x, in_a, in_b, c, grad))


def test_noncontiguous_and_misaligned_inputs():
    x, in_a, in_b, c, grad = _case(6, 30, 24, seed=3)
    ref = _reference(x, in_a, in_b, c, grad)
    # x as a transposed view, coefficients as a strided view, indices strided
    x_t = x.t().contiguous().t()
    c_wide = torch.zeros(24, 8)
    c_wide[:, ::2] = c
    ia_wide = torch.stack([in_a, in_a], 1)
    out = _run(training.logic_dense, x_t, ia_wide[:, 0], in_b, c_wide[:, ::2], grad)
    _assert_matches(out, ref)
    # misaligned: views starting 1 element (4 bytes) into a buffer
    buf = torch.empty(x.numel() + 1)
    x_mis = buf[1:].view_as(x).copy_(x)
    assert x_mis.data_ptr() % 64 != 0
    cbuf = torch.empty(c.numel() + 1)
    c_mis = cbuf[1:].view_as(c).copy_(c)
    _assert_matches(_run(training.logic_dense, x_mis, in_a, in_b, c_mis, grad), ref)


def test_dtypes_are_converted_or_refused():
    x, in_a, in_b, c, grad = _case(4, 9, 16, seed=4)
    # bfloat16 input: computed in float32 and cast back
    out = training.logic_dense(x.bfloat16(), in_a, in_b, c)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), torch_logic_dense(x.bfloat16().float(), in_a, in_b, c),
                               atol=1e-2, rtol=1e-2)
    # float64 coefficients with float32 x follow x's dtype, like the torch op
    out = training.logic_dense(x, in_a, in_b, c.double())
    assert out.dtype == torch.float32
    # int32 indices are fine
    torch.testing.assert_close(training.logic_dense(x, in_a.int(), in_b.int(), c), torch_logic_dense(x, in_a, in_b, c))
    with pytest.raises(TypeError, match="float32/float64"):
        training.logic_dense(x.to(torch.int32), in_a, in_b, c)
    with pytest.raises(TypeError, match="integer"):
        training.logic_dense(x, in_a.float(), in_b, c)
    with pytest.raises(ValueError, match="outside"):
        training.logic_dense(x, in_a + 9, in_b, c)
    with pytest.raises(ValueError, match="outside"):
        training.logic_dense(x, in_a - 100, in_b, c)
    with pytest.raises(ValueError, match="coefficients must have shape"):
        training.logic_dense(x, in_a, in_b, c[:, :3])


def test_wrong_device_is_refused():
    x, in_a, in_b, c, _ = _case(2, 4, 8, seed=5)
    with pytest.raises(ValueError, match="CPU tensors only"):
        training.logic_dense(x.to("meta"), in_a, in_b, c)
    with pytest.raises(ValueError, match="CPU tensors only"):
        training.logic_dense(x, in_a.to("meta"), in_b, c)


def test_sizes_beyond_int32_indexing_are_refused():
    """The kernels index with int32: sizes that would overflow are refused before anything is
    allocated or computed (an expanded view stands in for a 2**31-element input)."""
    x = torch.zeros(1, 1).expand(2 ** 16, 2 ** 15 + 8)
    in_a = in_b = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="int32"):
        training.logic_dense(x, in_a, in_b, torch.zeros(4, 4))


def test_empty_batch():
    x, in_a, in_b, c, _ = _case(0, 4, 8, seed=6)
    x.requires_grad_()
    c.requires_grad_()
    out = training.logic_dense(x, in_a, in_b, c)
    assert out.shape == (0, 8)
    out.sum().backward()
    assert torch.equal(c.grad, torch.zeros_like(c))


def test_build_failure_falls_back_with_one_warning(monkeypatch):
    """tvm_ops warns once and raises TvmUnavailableError; the tvm backend's op computes with torch."""
    training.reset()

    def broken(*args, **kwargs):
        raise RuntimeError("simulated LLVM failure")

    monkeypatch.setattr(training, "build_dense_kernels", broken)
    case = _case(4, 9, 16, seed=7)
    op = backends.dense_op("tvm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _run(op, *case)
        got2 = _run(op, *case)
        with pytest.raises(training.TvmUnavailableError, match="simulated LLVM failure"):
            training.logic_dense(*case[:4])  # the op itself computes nothing without its kernels
    msgs = [w for w in caught if issubclass(w.category, training.TvmFallbackWarning)]
    assert len(msgs) == 1
    assert "simulated LLVM failure" in str(msgs[0].message)
    for a, b in zip(got, _run(torch_logic_dense, *case)):
        torch.testing.assert_close(a, b)
    assert torch.equal(got[0], got2[0])
    assert not training.available()  # and so "auto" stays on torch
    assert not backends.auto_uses_tvm(torch.zeros(1, 64).expand(1 << 14, 64), 1 << 14)


def test_disk_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("LGN_TVM_CACHE", str(tmp_path))
    monkeypatch.setattr(build, "_MEMORY", {})
    calls = []

    def make():
        calls.append(1)
        from tvm_ops import train_dense
        return train_dense.cpu_module("float32")

    target = build.host_target()
    build.cached_build("test_dense", ["k"], make, target)
    assert len(list(tmp_path.glob("test_dense-*.so"))) == 1
    monkeypatch.setattr(build, "_MEMORY", {})  # a new process: load from disk, no compile
    mod = build.cached_build("test_dense", ["k"], make, target)
    assert len(calls) == 1
    from tvm_ops import train_dense
    assert mod[train_dense.FWD] is not None


def test_threads_follow_torch_and_env(monkeypatch):
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    monkeypatch.setattr(build, "_WE_SET_ENV", False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert build.desired_threads() == 3
    monkeypatch.setenv("TVM_NUM_THREADS", "1")
    assert build.desired_threads() == 1


def test_logic_dense_layer_trains_like_torch_backend():
    torch.manual_seed(0)
    layers = {}
    for backend in ("torch", "tvm"):
        gen = torch.Generator().manual_seed(11)
        layers[backend] = LogicDense(300, 200, backend=backend, generator=gen)
    layers["tvm"].load_state_dict(layers["torch"].state_dict())
    opts = {k: torch.optim.Adam(m.parameters(), lr=0.05) for k, m in layers.items()}
    g = torch.Generator().manual_seed(12)
    for _ in range(3):
        x = torch.rand(32, 300, generator=g)
        target = torch.rand(32, 200, generator=g)
        grads = {}
        for k, m in layers.items():
            loss = ((m(x) - target) ** 2).mean()
            opts[k].zero_grad()
            loss.backward()
            grads[k] = m.weight.grad.clone()
            opts[k].step()
        torch.testing.assert_close(grads["tvm"], grads["torch"], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(layers["tvm"].weight, layers["torch"].weight, atol=1e-5, rtol=1e-4)


def test_auto_policy(monkeypatch):
    layer = LogicDense(64, 32, backend="auto")
    assert layer._resolved_backend == "auto"
    small = torch.rand(2, 64)
    assert not backends.auto_uses_tvm(small, 32)
    big = torch.rand(1 << 19 >> 5, 64)
    assert backends.auto_uses_tvm(big, 32) == training.available()
    assert not backends.auto_uses_tvm(big.double(), 32)
    monkeypatch.setenv("LGN_AUTO_TVM_MIN_WORK", "0")
    assert backends.auto_uses_tvm(small, 32)
    reference = LogicDense(64, 32, backend="torch")
    reference.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer(small), reference(small))


def test_consumer_index_gather_equals_scatter():
    x, in_a, in_b, c, grad = _case(5, 11, 40, torch.float64, seed=8)
    in_a[:5] = in_b[:5] = 3
    ptr, neuron, partner, role = (t.long() for t in training.consumer_index(in_a, in_b, 11))
    gx = torch.zeros(5, 11, dtype=torch.float64)
    for i in range(11):
        for e in range(int(ptr[i]), int(ptr[i + 1])):
            j = int(neuron[e])
            gx[:, i] += grad[:, j] * (c[j, int(role[e])] + c[j, 3] * x[:, int(partner[e])])
    _, ref_gx, _ = _reference(x, in_a, in_b, c, grad)
    torch.testing.assert_close(gx, ref_gx)


def test_cuda_build():
    try:
        result = training.build_dense_cuda("float32")
    except RuntimeError as exc:  # only when TVM has no CUDA code generation at all
        pytest.skip(f"CUDA code generation unavailable in this TVM: {exc}")
    src = result.source
    from tvm_ops import train_dense
    for name in (train_dense.CUDA_FWD, train_dense.CUDA_COEF, train_dense.CUDA_GX):
        assert f"{name}_kernel(" in src
    assert "threadIdx.x" in src
    if shutil.which("nvcc"):  # then the generated CUDA C must compile
        assert result.compiled, result.reason
    else:
        assert "nvcc not found" in result.reason


def test_cuda_kernels_compute_the_same_on_cpu():
    """The CUDA kernels with their thread loops made serial, compiled for the CPU: the values of the
    formulas and index maths that the CUDA build compiles (forward, coefficient sums, gradient gather)."""
    import tvm

    from tvm_ops import train_dense

    x, in_a, in_b, c, grad = _case(5, 11, 40, torch.float64, seed=9)
    in_a[:5] = in_b[:5] = 3  # one input feeding many neurons, and ia == ib
    ref_out, ref_gx, ref_gc = _reference(x, in_a, in_b, c, grad)
    mod = tvm.compile(train_dense.cuda_module("float64", threads=16, serial=True), target=build.host_target())
    dl = tvm.runtime.from_dlpack
    ia, ib = in_a.int(), in_b.int()
    out = torch.empty(5, 40, dtype=torch.float64)
    gc = torch.empty(40, 4, dtype=torch.float64)
    gx = torch.full((5, 11), 7.0, dtype=torch.float64)
    mod[train_dense.CUDA_FWD](dl(x), dl(ia), dl(ib), dl(c), dl(out))
    mod[train_dense.CUDA_COEF](dl(x), dl(ia), dl(ib), dl(grad), dl(gc))
    ptr, neuron, partner, role = training.consumer_index(in_a, in_b, 11)
    mod[train_dense.CUDA_GX](dl(x), dl(c), dl(grad), dl(ptr), dl(neuron), dl(partner), dl(role), dl(gx))
    for name, got, ref in (("out", out, ref_out), ("grad_x", gx, ref_gx), ("grad_c", gc, ref_gc)):
        torch.testing.assert_close(got, ref, atol=1e-12, rtol=1e-12, msg=lambda m: f"{name}: {m}")


def test_resolve_target_refuses_strings_and_defaults_to_the_host():
    from tvm_ops import build

    with pytest.raises(ValueError, match="target 'llvm -mcpu=znver3' is a string; TVM 0.27 wants a dict"):
        build.resolve_target("llvm -mcpu=znver3")
    assert build.resolve_target(None) == build.host_target()
    given = {"kind": "llvm", "mcpu": "x86-64"}
    assert build.resolve_target(given) == given and build.resolve_target(given) is not given


def test_single_threaded_tvm_training_leaves_the_process_on_every_core():
    """TVM pins its threads from core 0 unless TVM_BIND_THREADS=0; with one thread that pinned the whole
    process to core 0, so parallel one-thread jobs shared a core. tvm_ops turns the binding off."""
    import os

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs at least two usable cores to see a pin")
    script = (
        "import os, torch\n"
        "from lgn_nas.layers import LogicDense\n"
        "before = sorted(os.sched_getaffinity(0))\n"
        "LogicDense(64, 256, backend='tvm')(torch.rand(128, 64)).sum().backward()\n"
        "print(before == sorted(os.sched_getaffinity(0)))\n")
    env = {k: v for k, v in os.environ.items() if k != "TVM_BIND_THREADS"}
    env.update(TVM_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"
