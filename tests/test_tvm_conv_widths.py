"""The TVM tree-conv kernels on narrow and ragged maps: every output width 1..16, pooled and not, strides
1 and 2, several depths, against the torch op. These are the shapes whose vector blocks overlap, run past a
row's end into the next rows, or start in an earlier row (tvm_ops/train_conv_cpu.py)."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("tvm")

from lgn_nas.layers.tree_ops import logic_tree_conv as torch_tree_conv  # noqa: E402
from tvm_ops import training  # noqa: E402

# (kernel_size, stride, padding, depth)
GEOMETRIES = [(3, 1, 1, 3), (3, 1, 1, 2), (2, 1, 0, 1), (3, 2, 1, 2), (3, 2, 0, 1)]
IDS = ["k3s1p1d3", "k3s1p1d2", "k2s1p0d1", "k3s2p1d2", "k3s2p0d1"]


def _input_size(out: int, k: int, s: int, p: int) -> int:
    return (out - 1) * s + k - 2 * p


def _read_mask(x, leaf_index, k, s, p):
    """Which input elements some output of the convolution reads (the torch op's gradient of a sum of leaves)."""
    c = torch.zeros(leaf_index.shape[0], leaf_index.shape[1] - 1, 4, dtype=x.dtype)
    c[..., 1] = c[..., 2] = 1.0  # every gate a + b: the root is the sum of the leaves
    xr = torch.zeros_like(x, requires_grad=True)
    torch_tree_conv(xr, leaf_index, c, k, s, p).sum().backward()
    return xr.grad != 0


def _check(pooled, k, s, p, depth, out_h, out_w, dtype, seed, batch=2):
    """Our op against the torch op at one shape; the inputs no output of the convolution reads are inf,
    which only lanes computing nothing can meet (they must add exact zeros, not NaN)."""
    scale = 2 if pooled else 1
    conv_h, conv_w = scale * out_h + (out_h % 2 if pooled else 0), scale * out_w + (out_w % 2 if pooled else 0)
    height, width = _input_size(conv_h, k, s, p), _input_size(conv_w, k, s, p)
    g = torch.Generator().manual_seed(seed)
    channels, trees = 3, 4
    x = torch.rand(batch, channels, height, width, generator=g, dtype=dtype)
    leaf_index = torch.randint(0, channels * k * k, (trees, 1 << depth), generator=g)
    leaf_index[0, 1] = leaf_index[0, 0]  # one input read by two leaves of a tree
    c = torch.randn(trees, (1 << depth) - 1, 4, generator=g, dtype=dtype)
    unread = ~_read_mask(x, leaf_index, k, s, p)
    x = torch.where(unread, torch.full_like(x, float("inf")), x)
    grad = torch.randn(batch, trees, out_h, out_w, generator=g, dtype=dtype)

    def run(op):
        xr, cr = x.clone().requires_grad_(), c.clone().requires_grad_()
        out = op(xr, leaf_index, cr, k, s, p)
        out.backward(grad)
        return out.detach(), xr.grad, cr.grad

    if pooled:
        ours = run(training.logic_tree_conv_or_pool)
        ref = run(lambda *a: F.max_pool2d(torch_tree_conv(*a), 2))
    else:
        ours = run(training.logic_tree_conv)
        ref = run(torch_tree_conv)
    tol = dict(atol=1e-10, rtol=1e-10) if dtype == torch.float64 else dict(atol=1e-4, rtol=1e-4)
    where = f"{'pooled ' if pooled else ''}output {out_h}x{out_w}, input {height}x{width}, batch {batch}"
    assert ours[0].shape == (batch, trees, out_h, out_w), where
    for name, a, b in zip(("out", "grad_x", "grad_coefficients"), ours, ref):
        assert bool(torch.isfinite(a).all()), f"{name} not finite at {where}"
        torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{name} at {where}: {m}")


@pytest.mark.parametrize("pooled", [False, True], ids=["conv", "conv_or_pool"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=IDS)
def test_every_width_matches_torch(pooled, geometry):
    k, s, p, depth = geometry
    for out_h in (1, 2, 3, 5):
        for out_w in range(1, 17):
            _check(pooled, k, s, p, depth, out_h, out_w, torch.float64, seed=100 * out_h + out_w)


@pytest.mark.parametrize("pooled", [False, True], ids=["conv", "conv_or_pool"])
def test_lgn_conv_mnist_s_stage_shapes_in_float32(pooled):
    """The float32 kernels at the narrow stages of ``lgn_conv_mnist_s`` (12x12 and 6x6 maps, 3x3 trees
    of depth 3 with padding 1) and at the widths around a vector of 8."""
    for out_h, out_w in ((12, 12), (6, 6), (3, 3), (7, 9), (2, 15)):
        _check(pooled, 3, 1, 1, 3, out_h, out_w, torch.float32, seed=out_h * 17 + out_w)


@pytest.mark.parametrize("tasks", [1, 2, 3])
@pytest.mark.parametrize("pooled", [False, True], ids=["conv", "conv_or_pool"])
def test_batches_split_among_tasks(pooled, tasks, monkeypatch):
    """The backward splits the batch among tasks, and narrow maps put 8 of a task's samples in the
    lanes of a vector: whole and partial groups of 8, tasks with fewer samples than that, and a map
    wide enough for the row blocks beside it."""
    from tvm_ops import build

    monkeypatch.setenv("TVM_NUM_THREADS", str(tasks))
    monkeypatch.setattr(build, "_WE_SET_ENV", False)
    for batch in (1, 11, 19, 40):
        for out_w in (3, 9):
            _check(pooled, 3, 1, 1, 2, 3, out_w, torch.float64, seed=batch + out_w, batch=batch)


@pytest.mark.parametrize("pooled", [False, True], ids=["conv", "conv_or_pool"])
def test_coefficient_gradients_without_input_gradient(pooled):
    """An input that needs no gradient (a model's first stage): the kernels skip the input-gradient
    scatter, and the coefficient gradients stay those of the torch op."""
    op, ref = ((training.logic_tree_conv_or_pool, lambda *a: F.max_pool2d(torch_tree_conv(*a), 2)) if pooled
               else (training.logic_tree_conv, torch_tree_conv))
    g = torch.Generator().manual_seed(5)
    for width in (6, 12, 24):
        x = torch.rand(11, 2, width, width, generator=g, dtype=torch.float64)
        leaf_index = torch.randint(0, 2 * 9, (3, 8), generator=g)
        c = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
        grads = []
        for fn in (op, ref):
            cr = c.clone().requires_grad_()
            out = fn(x, leaf_index, cr, 3, 1, 1)
            out.backward(torch.ones_like(out))
            grads.append(cr.grad)
        torch.testing.assert_close(grads[0], grads[1], atol=1e-10, rtol=1e-10)
