"""TVM kernels of the dense logic layer with learnable wiring (tvm_ops.training.logic_dense_learnable)."""
import pytest
import torch

pytest.importorskip("tvm")

from tvm_ops import training  # noqa: E402


def _reference(x, cand_a, cand_b, wa, wb, c):
    """The op's definition in plain torch (autograd gives the gradients)."""
    a = (wa * x[:, cand_a]).sum(-1)
    b = (wb * x[:, cand_b]).sum(-1)
    return c[:, 0] + c[:, 1] * a + c[:, 2] * b + c[:, 3] * a * b


def _case(batch, n_in, n, k, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, n_in, generator=g, dtype=dtype)
    cand_a = torch.randint(0, n_in, (n, k), generator=g)
    cand_b = torch.randint(0, n_in, (n, k), generator=g)
    wa = torch.softmax(torch.randn(n, k, generator=g, dtype=dtype), -1)
    wb = torch.softmax(torch.randn(n, k, generator=g, dtype=dtype), -1)
    c = torch.randn(n, 4, generator=g, dtype=dtype)
    grad = torch.randn(batch, n, generator=g, dtype=dtype)
    return x, cand_a, cand_b, wa, wb, c, grad


def _run(op, x, cand_a, cand_b, wa, wb, c, grad):
    """(out, grad_x, grad_wa, grad_wb, grad_c)."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, wa, wb, c)]
    xl, wal, wbl, cl = leaves
    out = op(xl, cand_a, cand_b, wal, wbl, cl)
    out.backward(grad)
    return (out.detach(),) + tuple(t.grad for t in leaves)


def _assert_matches(got, ref, atol, rtol):
    for name, a, b in zip(("out", "grad_x", "grad_wa", "grad_wb", "grad_coefficients"), got, ref):
        torch.testing.assert_close(a.double(), b.double(), atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


def _with_threads(threads, fn):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _fresh_state():
    yield
    if training._FAILED is not None:
        training.reset()


def test_gradcheck_float64():
    x, cand_a, cand_b, wa, wb, c, _ = _case(3, 7, 13, 3)  # 13 gates = one block of 8 and a tail of 5
    cand_a[:3] = 2  # repeated candidates, and cand_a == cand_b
    cand_b[:3] = 2
    args = [t.requires_grad_() for t in (x, wa, wb, c)]
    assert torch.autograd.gradcheck(
        lambda x, wa, wb, c: training.logic_dense_learnable(x, cand_a, cand_b, wa, wb, c), args)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (8, 8, 8, 1), (16, 8, 16, 2), (7, 13, 21, 2), (17, 9, 16, 3),
                                   (33, 40, 8, 5), (25, 30, 27, 16), (9, 5, 3, 4), (40, 9, 13, 2)])
def test_float64_matches_reference(shape, threads):
    """Full and partial tiles of 16 samples (and their 8-sample halves), gate blocks of 8 with tails
    of every size, inputs not a multiple of 8, candidate counts 1 to 16, more tasks than tiles."""
    case = _case(*shape, seed=sum(shape) + threads)
    got = _with_threads(threads, lambda: _run(training.logic_dense_learnable, *case))
    _assert_matches(got, _run(_reference, *case), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("shape", [(5, 3, 8, 2), (13, 100, 37, 8), (128, 512, 1024, 8), (130, 64, 64, 32)])
def test_float32_matches_float64_reference(shape):
    case = _case(*shape, dtype=torch.float32, seed=sum(shape))
    got = _run(training.logic_dense_learnable, *case)
    assert got[0].dtype == torch.float32
    ref = _run(_reference, *(t.double() if t.is_floating_point() else t for t in case))
    _assert_matches(got, ref, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_candidate_is_the_fixed_wiring_op(dtype):
    x, cand_a, cand_b, _, _, c, grad = _case(19, 30, 45, 1, dtype=dtype, seed=11)
    ones = torch.ones(45, 1, dtype=dtype)
    got = _run(training.logic_dense_learnable, x, cand_a, cand_b, ones, ones, c, grad)
    fixed = _run(lambda x, ia, ib, wa, wb, c: training.logic_dense(x, ia[:, 0], ib[:, 0], c),
                 x, cand_a, cand_b, ones, ones, c, grad)
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    for name, i in (("out", 0), ("grad_x", 1), ("grad_coefficients", 4)):
        torch.testing.assert_close(got[i], fixed[i], atol=tol, rtol=tol, msg=lambda m: f"{name}: {m}")
    assert fixed[2] is None  # the fixed op has no wire weights; ours has their gradient
    ref = _run(_reference, x, cand_a, cand_b, ones, ones, c, grad)
    torch.testing.assert_close(got[2], ref[2], atol=tol * 10, rtol=tol * 10)


def test_repeated_candidates_sum_every_use():
    """One input as every candidate of every gate, and a == b: all uses add into one gradient."""
    x, _, _, wa, wb, c, grad = _case(11, 6, 20, 4, seed=3)
    cand_a = torch.zeros(20, 4, dtype=torch.long)
    cand_b = torch.tensor([0, 0, 1, 1]).repeat(20, 1)
    got = _run(training.logic_dense_learnable, x, cand_a, cand_b, wa, wb, c, grad)
    ref = _run(_reference, x, cand_a, cand_b, wa, wb, c, grad)
    _assert_matches(got, ref, atol=1e-12, rtol=1e-12)
    assert got[1][:, 2:].abs().max() == 0  # inputs no gate reads get no gradient


def test_unnormalised_weights_and_views():
    """Weights are used as given (no softmax inside), and strided views work."""
    x, cand_a, cand_b, wa, wb, c, grad = _case(10, 12, 16, 3, seed=4)
    wa = wa * 3 - 1
    ref = _run(_reference, x, cand_a, cand_b, wa, wb, c, grad)
    got = _run(training.logic_dense_learnable, x.t().contiguous().t(), cand_a.t().contiguous().t(), cand_b,
               wa.t().contiguous().t(), wb, c, grad)
    _assert_matches(got, ref, atol=1e-12, rtol=1e-12)


def test_empty_batch():
    x, cand_a, cand_b, wa, wb, c, _ = _case(0, 4, 8, 2, seed=6)
    got = _run(training.logic_dense_learnable, x, cand_a, cand_b, wa, wb, c, torch.zeros(0, 8, dtype=x.dtype))
    assert got[0].shape == (0, 8)
    assert all(torch.equal(t, torch.zeros_like(t)) for t in got[2:])


def _bad(x, cand_a, cand_b, wa, wb, c):
    return training.logic_dense_learnable(x, cand_a, cand_b, wa, wb, c)


def test_bad_input_is_refused():
    x, cand_a, cand_b, wa, wb, c, _ = _case(4, 9, 16, 3, dtype=torch.float32, seed=7)
    rows = [
        (ValueError, "input must be 2-D", (x[0], cand_a, cand_b, wa, wb, c)),
        (ValueError, "cand_a must be 2-D", (x, cand_a[:, 0], cand_b, wa, wb, c)),
        (ValueError, "at least 1 candidate", (x, cand_a[:, :0], cand_b[:, :0], wa[:, :0], wb[:, :0], c)),
        (ValueError, r"cand_b must have the shape of cand_a \(16, 3\)", (x, cand_a, cand_b[:, :2], wa, wb, c)),
        (ValueError, r"wa must have the shape of cand_a \(16, 3\), got \(16, 4\)",
         (x, cand_a, cand_b, torch.ones(16, 4), wb, c)),
        (ValueError, "wb must have the shape", (x, cand_a, cand_b, wa, wb[:8], c)),
        (ValueError, r"coefficients must have shape \(16, 4\)", (x, cand_a, cand_b, wa, wb, c[:, :3])),
        (ValueError, r"cand_a has indices in \[.*, 17\], outside \[0, 9\)", (x, cand_a + 9, cand_b, wa, wb, c)),
        (ValueError, r"cand_b has indices in \[-?[0-9]+, -1\], outside",
         (x, cand_a, cand_b - cand_b.max() - 1, wa, wb, c)),
        (TypeError, "cand_a must be an integer tensor", (x, cand_a.float(), cand_b, wa, wb, c)),
        (TypeError, "float32/float64", (x.to(torch.int32), cand_a, cand_b, wa, wb, c)),
        (TypeError, "wa must be floating point", (x, cand_a, cand_b, wa.to(torch.int64), wb, c)),
        (ValueError, "x is on meta.*CPU tensors only", (x.to("meta"), cand_a, cand_b, wa, wb, c)),
        (ValueError, "wb is on meta.*CPU tensors only", (x, cand_a, cand_b, wa, wb.to("meta"), c)),
        (ValueError, "cand_a is on meta.*CPU tensors only", (x, cand_a.to("meta"), cand_b, wa, wb, c)),
    ]
    for error, match, args in rows:
        with pytest.raises(error, match=match):
            _bad(*args)


def test_sizes_beyond_int32_indexing_are_refused():
    x = torch.zeros(1, 1).expand(2 ** 16, 2 ** 15 + 8)
    cand = torch.zeros(4, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="int32"):
        training.logic_dense_learnable(x, cand, cand, torch.ones(4, 2), torch.ones(4, 2), torch.zeros(4, 4))


def test_build_failure_raises_unavailable(monkeypatch):
    training.reset()

    def broken(*args, **kwargs):
        raise RuntimeError("simulated LLVM failure")

    monkeypatch.setattr(training, "build_dense_learnable_kernels", broken)
    x, cand_a, cand_b, wa, wb, c, _ = _case(4, 9, 16, 3, seed=8)
    with pytest.warns(training.TvmFallbackWarning, match="simulated LLVM failure"):
        with pytest.raises(training.TvmUnavailableError, match="simulated LLVM failure"):
            training.logic_dense_learnable(x, cand_a, cand_b, wa, wb, c)
