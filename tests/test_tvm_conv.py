"""TVM training kernels for logic-tree convolutions (tvm_ops.training / train_conv), alone and fused with 2x2 OR pooling."""
import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("tvm")

from lgn_nas.gates import gate_basis  # noqa: E402
from lgn_nas.layers import LogicTreeConv2d, OrPool2d, backends  # noqa: E402
from lgn_nas.layers.conv_tree import LogicTreeConvPool2d  # noqa: E402
from lgn_nas.layers.tree_ops import logic_tree_conv as torch_tree_conv  # noqa: E402
from tvm_ops import training  # noqa: E402


def torch_pooled(x, leaf_index, c, k, s, p):
    """The reference of the fused op: the unfused torch op, then max_pool2d."""
    return F.max_pool2d(torch_tree_conv(x, leaf_index, c, k, s, p), 2)


def _case(batch, channels, height, width, out, depth, k, dtype=torch.float32, seed=0, relaxed=False):
    """Random inputs in [0, 1); coefficients either Gaussian or, with ``relaxed``, softmax mixtures of
    the 16 gates as in training (tree values then stay in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, channels, height, width, generator=g, dtype=dtype)
    leaf_index = torch.randint(0, channels * k * k, (out, 1 << depth), generator=g)
    if relaxed:
        weights = torch.randn(out, (1 << depth) - 1, 16, generator=g, dtype=torch.float64)
        c = (weights.softmax(-1) @ gate_basis().double()).to(dtype)
    else:
        c = torch.randn(out, (1 << depth) - 1, 4, generator=g, dtype=dtype)
    return x, leaf_index, c


def _run(op, x, leaf_index, c, k, s, p, seed=1, grad_mask=None, integer_grad=False):
    x = x.detach().clone().requires_grad_()
    c = c.detach().clone().requires_grad_()
    out = op(x, leaf_index, c, k, s, p)
    g = torch.Generator().manual_seed(seed)
    grad = (torch.randint(-3, 4, out.shape, generator=g) if integer_grad else torch.randn(out.shape, generator=g)).to(out.dtype)
    if grad_mask is not None:
        grad = grad * grad_mask
    out.backward(grad)
    return out.detach(), x.grad, c.grad


@pytest.fixture(autouse=True)
def _fresh_state():
    yield
    if training._FAILED is not None:  # a test forced a failure: let the next one build again
        training.reset()


OPS = [(training.logic_tree_conv, torch_tree_conv), (training.logic_tree_conv_or_pool, torch_pooled)]


@pytest.mark.parametrize("op", [training.logic_tree_conv, training.logic_tree_conv_or_pool], ids=["conv", "conv_or_pool"])
@pytest.mark.parametrize("shape", [
    (2, 3, 6, 7, 3, 2, 3, 1, 1),    # narrow rows: scalar paths, a repeated leaf likely
    (2, 2, 9, 21, 2, 2, 3, 1, 0),   # a full vector plus the overlapping last vector / scalar tail
    (2, 3, 11, 12, 2, 1, 2, 2, 1),  # stride 2, depth 1
])
def test_gradcheck_float64(op, shape):
    *case_shape, s, p = shape
    x, leaf_index, c = _case(*case_shape, dtype=torch.float64, seed=sum(shape))
    leaf_index[0, 1] = leaf_index[0, 0]  # one input read by two leaves of a tree
    x.requires_grad_()
    c.requires_grad_()
    k = case_shape[-1]
    assert torch.autograd.gradcheck(lambda x, c: op(x, leaf_index, c, k, s, p), (x, c))


@pytest.mark.parametrize("ops", OPS, ids=["conv", "conv_or_pool"])
@pytest.mark.parametrize("geometry", [(3, 1, 1, 3), (3, 2, 1, 3), (5, 1, 2, 5)], ids=["k3s1p1d3", "k3s2p1d3", "k5s1p2d5"])
def test_large_shape_matches_torch_path(ops, geometry):
    k, s, p, depth = geometry
    x, leaf_index, c = _case(8, 6, 37, 35, 16, depth, k, seed=k + s + p, relaxed=True)
    ours, reference = ops
    mask = None
    if reference is torch_pooled:
        # Windows whose two largest values are within float32 rounding may pick either position;
        # no gradient flows from those, so the comparison does not depend on the rounding.
        conv = torch_tree_conv(x.double(), leaf_index, c.double(), k, s, p)
        conv = conv[:, :, :conv.shape[2] // 2 * 2, :conv.shape[3] // 2 * 2]
        windows = F.unfold(conv.flatten(0, 1)[:, None], 2, stride=2).topk(2, dim=1).values
        mask = ((windows[:, 0] - windows[:, 1]) > 1e-6).view(*conv.shape[:2], conv.shape[2] // 2, -1).float()
        assert mask.mean() > 0.5
    got = _run(ours, x, leaf_index, c, k, s, p, grad_mask=mask)
    ref = _run(reference, x, leaf_index, c, k, s, p, grad_mask=mask)
    exact = _run(reference, x.double(), leaf_index, c.double(), k, s, p, grad_mask=mask)
    for name, a, b, e in zip(("out", "grad_x", "grad_coefficients"), got, ref, exact):
        if name == "grad_coefficients":  # batch sums over 10^4 positions: float32 rounding grows with them
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")
            scale = float(e.abs().max())  # about as accurate as the torch path, relative to the sums
            assert (a.double() - e).abs().max() <= 4 * (b.double() - e).abs().max() + 1e-6 * scale
        else:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


def test_binary_inputs_in_eval_mode_are_exact():
    """One-hot gates on bits: every value is an integer (and so are the upstream gradients here), so
    outputs and gradients equal exactly, and the many ties in the pool go to the same (first)
    position as torch's max_pool2d."""
    torch.manual_seed(3)
    conv = LogicTreeConv2d(6, 16, 3, tree_depth=3, padding=1, init="gaussian", backend="torch").eval()
    x = (torch.rand(4, 6, 18, 18) > 0.5).float()
    c = conv.coefficients().detach()
    assert torch.equal(c, c.round())
    for ours, reference in OPS:
        got = _run(ours, x, conv.leaf_index, c, 3, 1, 1, integer_grad=True)
        ref = _run(reference, x, conv.leaf_index, c, 3, 1, 1, integer_grad=True)
        for a, b in zip(got, ref):
            assert torch.equal(a, b)


def test_pool_ties_and_nan_follow_max_pool2d():
    x, leaf_index, c = _case(2, 2, 8, 20, 3, 2, 3, seed=5)
    c.zero_()  # every tree outputs c1 of its root: constant maps, all ties
    c[:, -1, 0] = torch.tensor([0.0, 1.0, -1.0])
    got = _run(training.logic_tree_conv_or_pool, x, leaf_index, c, 3, 1, 1, integer_grad=True)
    ref = _run(torch_pooled, x, leaf_index, c, 3, 1, 1, integer_grad=True)
    for a, b in zip(got, ref):
        assert torch.equal(a, b)
    x, leaf_index, c = _case(1, 2, 8, 20, 3, 1, 3, seed=6)
    x[0, 0, 3, 4] = float("nan")
    x[0, 1, 2, 17] = float("nan")
    got = training.logic_tree_conv_or_pool(x, leaf_index, c, 3, 1, 1)
    torch.testing.assert_close(got, torch_pooled(x, leaf_index, c, 3, 1, 1), equal_nan=True)


def test_inputs_converted_or_refused():
    x, leaf_index, c = _case(2, 3, 9, 10, 4, 2, 3, seed=7)
    ref = torch_pooled(x, leaf_index, c, 3, 1, 1)
    op = training.logic_tree_conv_or_pool
    # non-contiguous and misaligned views, int32 indices, float64 coefficients (follow x's dtype)
    x_nc = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not x_nc.is_contiguous()
    torch.testing.assert_close(op(x_nc, leaf_index, c, 3, 1, 1), ref)
    buf = torch.empty(x.numel() + 1)
    x_mis = buf[1:].view_as(x).copy_(x)
    torch.testing.assert_close(op(x_mis, leaf_index.int(), c.double(), 3, 1, 1), ref)
    assert op(x, leaf_index, c.double(), 3, 1, 1).dtype == torch.float32
    out = op(x.bfloat16(), leaf_index, c, 3, 1, 1)  # computed in float32, cast back
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), torch_pooled(x.bfloat16().float(), leaf_index, c, 3, 1, 1),
                               atol=1e-2, rtol=1e-2)
    for fn in (training.logic_tree_conv, op):
        with pytest.raises(TypeError, match="float32/float64"):
            fn(x.to(torch.int32), leaf_index, c, 3, 1, 1)
        with pytest.raises(TypeError, match="integer"):
            fn(x, leaf_index.float(), c, 3, 1, 1)
        with pytest.raises(TypeError, match="floating"):
            fn(x, leaf_index, c.long(), 3, 1, 1)
        with pytest.raises(ValueError, match="CPU tensors only"):
            fn(x.to("meta"), leaf_index, c, 3, 1, 1)
        with pytest.raises(ValueError, match="CPU tensors only"):
            fn(x, leaf_index, c.to("meta"), 3, 1, 1)
        with pytest.raises(ValueError, match="outside"):
            fn(x, leaf_index + 27, c, 3, 1, 1)
        with pytest.raises(ValueError, match="outside"):
            fn(x, leaf_index - 100, c, 3, 1, 1)
        with pytest.raises(ValueError, match="coefficients must have shape"):
            fn(x, leaf_index, c[:, :2], 3, 1, 1)
        with pytest.raises(ValueError, match="power-of-two"):
            fn(x, leaf_index[:, :3], c[:, :2], 3, 1, 1)
        with pytest.raises(ValueError, match="4-D"):
            fn(x[0], leaf_index, c, 3, 1, 1)
        with pytest.raises(ValueError, match="stride"):
            fn(x, leaf_index, c, 3, 0, 1)
        with pytest.raises(ValueError, match="larger than the input"):
            fn(x[:, :, :1, :1], leaf_index, c, 3, 1, 0)
    with pytest.raises(ValueError, match="at least 2x2"):
        op(x[:, :, :3], leaf_index, c, 3, 1, 0)


def test_empty_batch():
    x, leaf_index, c = _case(0, 3, 8, 8, 4, 2, 3, seed=8)
    for op in (training.logic_tree_conv, training.logic_tree_conv_or_pool):
        xg = x.clone().requires_grad_()
        cg = c.clone().requires_grad_()
        out = op(xg, leaf_index, cg, 3, 1, 1)
        assert out.shape[:2] == (0, 4)
        out.sum().backward()
        assert torch.equal(cg.grad, torch.zeros_like(c))


def test_build_failure_falls_back_with_one_warning(monkeypatch):
    training.reset()

    def broken(*args, **kwargs):
        raise RuntimeError("simulated LLVM failure")

    monkeypatch.setattr(training, "build_conv_kernels", broken)
    x, leaf_index, c = _case(2, 3, 9, 10, 4, 2, 3, seed=9)
    fallback = [backends.tree_conv_op("tvm"), backends.tree_conv_or_pool_op("tvm")]  # the layers' ops
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [_run(ours, x, leaf_index, c, 3, 1, 1) for ours in fallback]
        got2 = _run(fallback[1], x, leaf_index, c, 3, 1, 1)
        for ours, _ in OPS:  # the tvm_ops ops themselves compute nothing without their kernels
            with pytest.raises(training.TvmUnavailableError, match="simulated LLVM failure"):
                ours(x, leaf_index, c, 3, 1, 1)
    msgs = [w for w in caught if issubclass(w.category, training.TvmFallbackWarning)]
    assert len(msgs) == 1
    assert "simulated LLVM failure" in str(msgs[0].message) and "tree-conv" in str(msgs[0].message)
    for result, (_, reference) in zip(got, OPS):
        for a, b in zip(result, _run(reference, x, leaf_index, c, 3, 1, 1)):
            torch.testing.assert_close(a, b)
    assert torch.equal(got[1][0], got2[0])
    assert not training.available()  # so "auto" stays on torch
    assert not backends.auto_uses_tvm_conv(torch.zeros(64, 6, 32, 32), 32, 8, 3, 1, 1)


def _layers(backend, fused):
    torch.manual_seed(0)
    conv = LogicTreeConv2d(6, 8, 3, tree_depth=3, padding=1, init="gaussian", backend=backend,
                           generator=torch.Generator().manual_seed(4))
    return LogicTreeConvPool2d(conv, OrPool2d(2)) if fused else nn.Sequential(conv, OrPool2d(2))


@pytest.mark.parametrize("backend", ["tvm", "auto"])
def test_layers_train_like_torch_backend(backend, monkeypatch):
    monkeypatch.setenv("LGN_AUTO_TVM_MIN_WORK", "0")
    reference = _layers("torch", fused=False)
    models = {"conv": _layers(backend, fused=False), "fused": _layers(backend, fused=True)}
    for m in models.values():
        m.load_state_dict(reference.state_dict())  # same keys: fused and unfused checkpoints interchange
    x = torch.rand(4, 6, 12, 13)
    ref_out = reference(x)
    ref_out.square().sum().backward()
    for name, m in models.items():
        out = m(x)
        torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
        out.square().sum().backward()
        torch.testing.assert_close(m[0].weight.grad, reference[0].weight.grad, atol=1e-5, rtol=1e-4)


def test_fused_module_dispatch_script_and_fx(monkeypatch):
    calls = []
    real = training.logic_tree_conv_or_pool
    monkeypatch.setattr(training, "logic_tree_conv_or_pool", lambda *a: calls.append(1) or real(*a))
    m = _layers("tvm", fused=True).eval()
    x = torch.rand(2, 6, 10, 10)
    out = m(x)
    assert calls  # the fused TVM op ran
    assert out.shape == (2, 8, 5, 5) and m.output_size(10, 10) == (5, 5)
    plain = _layers("torch", fused=True).eval()
    assert torch.equal(plain(x), F.max_pool2d(plain[0](x), 2))
    scripted = torch.jit.script(m)  # TorchScript takes the unfused torch path
    torch.testing.assert_close(scripted(x), out, atol=1e-6, rtol=1e-6)
    traced = torch.fx.symbolic_trace(m)  # FX keeps the fused op as one leaf call
    torch.testing.assert_close(traced(x), out)
    with pytest.raises(TypeError, match="LogicTreeConvPool2d"):
        LogicTreeConvPool2d(OrPool2d(2), OrPool2d(2))
    odd = LogicTreeConvPool2d(LogicTreeConv2d(6, 8, 3, padding=1, backend="tvm"), OrPool2d(3))
    assert not odd.fusable
    torch.testing.assert_close(odd(x), F.max_pool2d(odd[0](x), 3))


def test_auto_policy_for_conv(monkeypatch):
    monkeypatch.delenv("LGN_AUTO_TVM_MIN_WORK", raising=False)
    big = torch.rand(64, 6, 32, 32)  # CIFAR first block: 64 * 32 * 1024 * 7 gate evaluations
    assert backends.auto_uses_tvm_conv(big, 32, 8, 3, 1, 1) == training.available()
    assert not backends.auto_uses_tvm_conv(big[:1], 32, 8, 3, 1, 1)
    assert not backends.auto_uses_tvm_conv(big.double(), 32, 8, 3, 1, 1)
    monkeypatch.setenv("LGN_AUTO_TVM_MIN_WORK", "0")
    assert backends.auto_uses_tvm_conv(big[:1], 32, 8, 3, 1, 1) == training.available()
    assert backends.tree_conv_op("torch") is torch_tree_conv
    assert backends.tree_conv_op("tvm") is backends.logic_tree_conv_tvm  # TVM's op, torch where TVM cannot run


# ------------------------------------------------------------------------------------------- CUDA

@pytest.mark.parametrize("pooled", [False, True], ids=["conv", "conv_or_pool"])
@pytest.mark.parametrize("geometry", [(3, 1, 1, 3), (3, 2, 1, 2), (2, 1, 0, 1)], ids=["k3s1p1d3", "k3s2p1d2", "k2s1p0d1"])
def test_cuda_kernels_compute_the_same_on_cpu(pooled, geometry):
    """The CUDA kernels with their thread loops made serial (``serial=True``), compiled for the CPU:
    the values and gradients of the formulas and index maths that the CUDA build compiles."""
    import tvm

    from tvm_ops import build, train_conv

    k, s, p, depth = geometry
    x, leaf_index, c = _case(2, 3, 9, 11, 5, depth, k, dtype=torch.float64, seed=k + s + depth)
    leaf_index[0, 1] = leaf_index[0, 0]  # one input read by two leaves of a tree
    reference = torch_pooled if pooled else torch_tree_conv
    ref_out, ref_gx, ref_gc = _run(reference, x, leaf_index, c, k, s, p)
    g = torch.randn(ref_out.shape, generator=torch.Generator().manual_seed(1)).double()  # as _run draws it

    mod = tvm.compile(train_conv.cuda_module("float64", depth, s, threads=16, serial=True), target=build.host_target())
    dl = tvm.runtime.from_dlpack
    xp = F.pad(x, (p, p, p, p)).contiguous()
    hp, wp = xp.shape[2:]
    off = training._leaf_offsets(leaf_index, k, (hp, wp))
    ptr, tree, leaf, rel = training.leaf_consumer_index(leaf_index, k, x.shape[1], wp)
    out = torch.empty(ref_out.shape, dtype=torch.float64)
    lg = torch.empty(*out.shape, 1 << depth, dtype=torch.float64)
    cpart = torch.empty(x.shape[0], *c.shape, dtype=torch.float64)
    gxp = torch.full_like(xp, 7.0)  # fully written by the gather
    if pooled:
        arg = torch.empty(out.shape, dtype=torch.uint8)
        mod[train_conv.CUDA_POOL_FWD](dl(xp), dl(off), dl(c), dl(out), dl(arg))
        mod[train_conv.CUDA_POOL_LEAF](dl(xp), dl(off), dl(c), dl(arg), dl(g), dl(lg), dl(cpart))
        mod[train_conv.CUDA_POOL_GX](dl(lg), dl(arg), dl(ptr), dl(tree), dl(leaf), dl(rel), dl(gxp))
    else:
        mod[train_conv.CUDA_FWD](dl(xp), dl(off), dl(c), dl(out))
        mod[train_conv.CUDA_LEAF](dl(xp), dl(off), dl(c), dl(g), dl(lg), dl(cpart))
        mod[train_conv.CUDA_GX](dl(lg), dl(ptr), dl(tree), dl(leaf), dl(rel), dl(gxp))
    grad_x = gxp[:, :, p:p + x.shape[2], p:p + x.shape[3]]
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(grad_x, ref_gx, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(cpart.sum(0), ref_gc, atol=1e-12, rtol=1e-12)
    if p:  # the padding ring only collects gradients of zeros: nothing flows back from it
        assert torch.isfinite(gxp).all()


def _conv_cuda_or_skip(**kw):
    try:
        return training.build_conv_cuda("float32", **kw)
    except RuntimeError as exc:  # only when TVM has no CUDA code generation at all
        pytest.skip(f"CUDA code generation unavailable in this TVM: {exc}")


def test_cuda_build_of_conv_kernels():
    from tvm_ops import train_conv

    result = _conv_cuda_or_skip(depth=3, stride=1)
    src = result.source
    for name in (train_conv.CUDA_FWD, train_conv.CUDA_POOL_FWD, train_conv.CUDA_LEAF, train_conv.CUDA_POOL_LEAF,
                 train_conv.CUDA_GX, train_conv.CUDA_POOL_GX):
        assert f"{name}_kernel(" in src
    assert "threadIdx.x" in src and "blockIdx.x" in src
    assert result.compiled == (result.reason is None)
    if shutil.which("nvcc"):  # then the generated CUDA C must compile
        assert result.compiled, result.reason
        assert ".visible .entry lgn_tree_conv_pool_gx_cuda_kernel(" in result.ptx


def test_cuda_build_without_nvcc_reports_codegen_only(monkeypatch, tmp_path):
    """No nvcc on PATH: the CUDA C is still generated, the result says it was not compiled and why,
    and nothing is raised."""
    monkeypatch.setenv("PATH", str(tmp_path))
    result = _conv_cuda_or_skip(depth=2, stride=2)
    assert not result.compiled and result.ptx is None
    assert "nvcc not found" in result.reason
    assert "lgn_tree_conv_pool_fwd_cuda_kernel(" in result.source
