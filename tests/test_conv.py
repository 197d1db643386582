import numpy as np
import pytest
import torch
import timm

import lgn_nas
from lgn_nas import discretize
from lgn_nas.gates import TRUTH_TABLES
from lgn_nas.layers import LogicTreeConv2d, OrPool2d, logic_tree_conv, logic_tree_conv_plain
import lgn_nas.layers.tree_ops as tree_ops


def _reference_tree_conv(x, leaf_index, gates, k, stride, padding):
    """Per-position, per-gate evaluation with truth tables (independent of the coefficient basis)."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    batch, _, hp, wp = xp.shape
    out_h, out_w = (hp - k) // stride + 1, (wp - k) // stride + 1
    num_out, num_leaves = leaf_index.shape
    out = np.zeros((batch, num_out, out_h, out_w), dtype=np.int64)
    for o in range(num_out):
        for i in range(out_h):
            for j in range(out_w):
                vals = []
                for leaf in leaf_index[o]:
                    c, dy, dx = leaf // (k * k), (leaf // k) % k, leaf % k
                    vals.append(xp[:, c, i * stride + dy, j * stride + dx].astype(np.int64))
                g = 0
                while len(vals) > 1:
                    vals = [TRUTH_TABLES[gates[o, g + t]][2 * vals[2 * t] + vals[2 * t + 1]] for t in range(len(vals) // 2)]
                    g += len(vals)
                out[:, o, i, j] = vals[0]
    return out


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1)])
def test_fused_tree_conv_gradcheck_and_plain_equality(stride, padding, monkeypatch):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    leaf = torch.randint(0, 3 * 9, (4, 8))
    c = torch.randn(4, 7, 4, dtype=torch.float64, requires_grad=True)
    fn = lambda x, c: logic_tree_conv(x, leaf, c, 3, stride, padding)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, c))
    torch.testing.assert_close(fn(x, c), logic_tree_conv_plain(x, leaf, c, 3, stride, padding))
    monkeypatch.setattr(tree_ops, "_CHUNK_ELEMENTS", 40)  # many output-channel chunks
    assert torch.autograd.gradcheck(fn, (x, c))


def test_fused_tree_conv_saves_only_its_inputs():
    x = torch.rand(4, 6, 16, 16, requires_grad=True)
    layer = LogicTreeConv2d(6, 8, 3, padding=1)
    coefficients = layer.coefficients().detach().requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        logic_tree_conv(x, layer.leaf_index, coefficients, 3, 1, 1)
    assert sum(saved) == x.numel() + layer.leaf_index.numel() + 8 * 7 * 4


@pytest.mark.parametrize("parametrization", ["raw16", "truth_table"])
def test_eval_tree_conv_matches_truth_table_reference(parametrization):
    torch.manual_seed(1)
    layer = LogicTreeConv2d(4, 5, 3, tree_depth=2, padding=1, stride=2, groups=1, init="gaussian",
                            parametrization=parametrization).eval()
    x = (torch.rand(3, 4, 7, 6) > 0.5).float()
    got = layer(x).numpy()
    want = _reference_tree_conv(x.numpy().astype(np.int64), layer.leaf_index.numpy(), layer.gate_ids().numpy(), 3, 2, 1)
    assert np.array_equal(got, want)


def test_leaves_respect_groups_and_channels_per_tree():
    layer = LogicTreeConv2d(12, 6, 3, groups=3, channels_per_tree=2, tree_depth=4)
    channels = layer.leaf_index // 9
    for o in range(6):
        used = set(channels[o].tolist())
        assert len(used) <= 2
        group = o // 2
        assert all(group * 4 <= c < group * 4 + 4 for c in used)
    # 16 leaves over 2 x 9 = 18 slots: all distinct
    assert all(len(set(row.tolist())) == 16 for row in layer.leaf_index)


def test_or_pool_is_max_relaxed_or_discrete_and_routes_gradient_to_the_max():
    pool = OrPool2d(2)
    x = torch.tensor([[[[0.1, 0.7], [0.3, 0.2]]]], requires_grad=True)
    y = pool(x)
    assert y.item() == pytest.approx(0.7)
    y.backward()
    assert x.grad.tolist() == [[[[0.0, 1.0], [0.0, 0.0]]]]
    bits = (torch.rand(2, 3, 6, 6) > 0.7).float()
    expected = bits.unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2).any(-1).float()
    assert torch.equal(pool(bits), expected)


def _small_net(**kwargs):
    args = dict(channels=[6, 12], kernel_size=[3, 3], padding=[1, 0], img_size=12, in_chans=2, input_bits=2,
                head_widths=[60, 40], num_classes=4, group_tau=2.0, init="gaussian", seed=0, groups=[2, 3])
    args.update(kwargs)
    return timm.create_model("lgn_conv_s", **args).eval()


@pytest.mark.parametrize("parametrization", ["raw16", "truth_table"])
def test_conv_model_equals_its_netlist_bit_for_bit(parametrization):
    model = _small_net(parametrization=parametrization)
    netlist = discretize(model)
    x = torch.rand(200, 2, 12, 12)
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.array_equal(netlist.evaluate(x.numpy()), expected)
    simple, _ = netlist.simplify()
    assert np.array_equal(simple.evaluate(x.numpy()), expected)
    counts = model.gate_count()
    assert counts["total"] + 1 == netlist.num_gates  # + the constant that zero padding reads
    physical = {k: counts[k] for k in ("trees", "or_pools", "dense", "total")}
    assert physical == {"trees": 6 * 7 * 144 + 12 * 7 * 16, "or_pools": 6 * 3 * 36 + 12 * 3 * 4,
                        "dense": 100, "total": counts["trees"] + counts["or_pools"] + 100}


def test_mnist_shape_netlist_and_gate_count_formula():
    model = timm.create_model("lgn_conv_mnist_s", channels=[2, 4, 6], head_widths=[30, 20], init="gaussian",
                              seed=1).eval()
    netlist = discretize(model)
    x = torch.rand(50, 1, 28, 28)
    with torch.no_grad():
        assert np.array_equal(netlist.evaluate(x.numpy()), model(x).numpy())
    assert model.gate_count()["total"] + 1 == netlist.num_gates
    # the published MNIST-S shape (k=16): trees 24*24*16*7 + 12*12*48*7 + 6*6*144*7, OR pools, dense 35,840
    full = timm.create_model("lgn_conv_mnist_s").gate_count()
    assert full["trees"] == 24 * 24 * 16 * 7 + 12 * 12 * 48 * 7 + 6 * 6 * 144 * 7
    assert full["dense"] == 1280 * 16 + 640 * 16 + 320 * 16


def test_conv_model_round_trips_through_save_for_hf(tmp_path):
    kwargs = dict(channels=[4, 8], img_size=16, in_chans=3, head_widths=[40, 20], num_classes=10, seed=3)
    model = timm.create_model("lgn_conv_s", **kwargs).eval()
    timm.models.save_for_hf(model, str(tmp_path), model_args=kwargs, safe_serialization=True)
    loaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(loaded.stages[0][0].leaf_index, model.stages[0][0].leaf_index)
    with pytest.raises(ValueError, match=r"in_chans=1.*create the model with in_chans=3"):
        timm.create_model(f"local-dir:{tmp_path}", pretrained=True, in_chans=1)


def test_bad_conv_arguments_name_the_values():
    with pytest.raises(ValueError, match="tree_depth must be an int in 1..6, got 7"):
        LogicTreeConv2d(4, 4, tree_depth=7)
    with pytest.raises(ValueError, match="tree_depth must be an int in 1..6, got 0"):
        LogicTreeConv2d(4, 4, tree_depth=0)
    with pytest.raises(ValueError, match="channels_per_tree=3 is larger than the group.*2 channels per group"):
        LogicTreeConv2d(4, 4, channels_per_tree=3, groups=2)
    with pytest.raises(ValueError, match="groups=3 must divide in_channels=4"):
        LogicTreeConv2d(4, 6, groups=3)
    layer = LogicTreeConv2d(4, 4, 5)
    with pytest.raises(ValueError, match=r"kernel_size=5 is larger than the input \(3, 8\)"):
        layer(torch.rand(1, 4, 3, 8))
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 4, H, W\)"):
        layer(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="num_classes=10241 exceeds the last head width 10240"):
        timm.create_model("lgn_conv_s", num_classes=10241)
    with pytest.raises(ValueError, match="img_size=\\[4, 4\\] is too small"):
        timm.create_model("lgn_conv_s", img_size=4)
    # a string (what a shell hands over unparsed) is named, never split into characters
    with pytest.raises(ValueError, match=r"channels must be a non-empty list of positive ints, got '64,128' \(a string"):
        timm.create_model("lgn_conv_s", channels="64,128")
    with pytest.raises(ValueError, match=r"head_widths must be a non-empty list of positive ints, got 40\.5"):
        timm.create_model("lgn_conv_s", head_widths=40.5)
    with pytest.raises(ValueError, match=r"tree_depth must be an int or a list of 4 ints, got 2\.0"):
        timm.create_model("lgn_conv_s", tree_depth=2.0)


def test_head_init_starts_only_the_dense_head_from_its_own_init():
    kwargs = dict(channels=[2, 4, 6], head_widths=[30, 20], seed=1)
    model = timm.create_model("lgn_conv_mnist_s", head_init="gaussian", **kwargs)
    residual = timm.create_model("lgn_conv_mnist_s", **kwargs)
    # residual init: logit 5 on 'A' (gate 3), 0 elsewhere; Gaussian: no such margin anywhere in the head
    tree = model.stages[0][0].weight.detach()
    assert torch.equal(tree, residual.stages[0][0].weight.detach())
    for layer in (model.head.hidden[0], model.head.classifier):
        weight = layer.weight.detach()
        assert weight.std() > 0.5 and (weight.argmax(-1) != 3).any()
    assert (residual.head.classifier.weight.detach().argmax(-1) == 3).all()
    netlist = discretize(model.eval())
    x = torch.rand(20, 1, 28, 28)
    with torch.no_grad():
        assert np.array_equal(netlist.evaluate(x.numpy()), model(x).numpy())
    with pytest.raises(ValueError, match="head_init must be None or one of residual, gaussian, got 'normal'"):
        timm.create_model("lgn_conv_mnist_s", head_init="normal", **kwargs)
