"""Any num_classes: GroupSum groups that differ by one output, exact in the netlist and every backend.

A head of width W with C classes gives the first W % C classes W // C + 1 outputs and the others W // C
(``lgn_nas.groups``). The netlist pads each short group with the constant-0 node, so the reference
evaluator, the C export, the Verilog export and the TVM kernel count exactly the model's groups.
"""
import shutil
import subprocess

import numpy as np
import pytest
import timm
import torch

import lgn_nas
from lgn_nas.groups import group_sizes, group_starts
from lgn_nas.layers import GroupSum
from lgn_nas.netlist import Encoding, NetlistBuilder

UNEVEN = {
    "lgn_dense_s": dict(depth=3, width=[60, 50, 23], num_classes=4),  # groups 6, 6, 6, 5
    "lgn_conv_mnist_s": dict(channels=[4, 8, 8], head_widths=[64, 47], num_classes=10),  # 5 x 7 groups of 5, 3 of 4
    "lgn_hybrid_resnet18": dict(backbone="resnet10t", head_widths=[60, 29], num_classes=3),  # 10, 10, 9
}


def _model(name):
    return timm.create_model(name, seed=0, init="gaussian", **UNEVEN[name]).eval()


def _input(model, batch, seed=0):
    x = torch.rand(batch, *model.pretrained_cfg["input_size"], generator=torch.Generator().manual_seed(seed))
    # brightness varies, so do the features; clamped to the [0, 1] input range
    return (x * torch.linspace(0.0, 3.0, batch)[:, None, None, None]).clamp(max=1.0)


def test_group_sizes_differ_by_at_most_one():
    assert group_sizes(23, 4) == [6, 6, 6, 5] and group_starts(23, 4) == [0, 6, 12, 18, 23]
    assert group_sizes(40, 10) == [4] * 10 and group_sizes(3, 3) == [1, 1, 1]
    for width in range(1, 40):
        for classes in range(1, width + 1):
            sizes = group_sizes(width, classes)
            assert sum(sizes) == width and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError, match="num_classes=5 exceeds the number of outputs 4"):
        group_sizes(4, 5)


def test_group_sum_uneven_and_equal_groups():
    x = torch.arange(14, dtype=torch.float32).reshape(2, 7)
    torch.testing.assert_close(GroupSum(3, tau=2.0, in_features=7)(x),
                               torch.tensor([[0 + 1 + 2, 3 + 4, 5 + 6], [7 + 8 + 9, 10 + 11, 12 + 13]]) / 2.0)
    torch.testing.assert_close(GroupSum(7, in_features=7)(x), x)
    with pytest.raises(ValueError, match="num_classes=8 exceeds the GroupSum input width 7"):
        GroupSum(8, in_features=7)
    scripted = torch.jit.script(GroupSum(3, tau=2.0, in_features=7))
    assert torch.equal(scripted(x), GroupSum(3, tau=2.0, in_features=7)(x))


def test_builder_pads_short_groups_with_the_constant_zero():
    builder = NetlistBuilder(Encoding("thermometer", (1, 2, 2), np.array([[0.5]], np.float32)))
    inputs = builder.input_ids().ravel()
    ids = builder.add_layer(np.array([6, 8, 14, 1, 7]), inputs[[0, 1, 2, 3, 0]], inputs[[1, 2, 3, 0, 2]])
    net = builder.build(ids, num_classes=2, tau=1.0)  # groups of 3 and 2
    zero = net.num_nodes - 1
    assert net.layers[-1].gate.tolist() == [0]  # the FALSE gate, added once
    assert net.group_size == 3 and net.outputs.tolist() == [*ids[:3], *ids[3:], zero]
    bits = np.random.default_rng(0).random((50, 4)) < 0.5
    values = net.node_values(bits)[:, ids]
    assert np.array_equal(net.evaluate_bits(bits), np.stack([values[:, :3].sum(1), values[:, 3:].sum(1)], 1))
    even = builder.build(ids[:4], num_classes=2, tau=1.0)
    assert even.group_size == 2 and zero not in even.outputs


@pytest.mark.parametrize("name", list(UNEVEN))
def test_discrete_netlist_equals_eval_mode_bit_for_bit(name):
    model = _model(name)
    x = _input(model, 200)
    netlist = lgn_nas.discretize(model)
    assert netlist.num_classes == UNEVEN[name]["num_classes"]
    with torch.no_grad():
        if name.startswith("lgn_hybrid"):  # the netlist is the head's: its input is the normalised features
            assert np.array_equal(netlist.evaluate(model.head_input(x).numpy()), model(x).numpy())
            raw = torch.randn(200, model.flat_features, generator=torch.Generator().manual_seed(1))
            scores = model.head.block(raw).numpy()  # varied features, not a random backbone's
        else:
            raw, scores = x, model(x).numpy()
    assert np.array_equal(netlist.evaluate(raw.numpy()), scores)
    assert np.array_equal(netlist.simplify()[0].evaluate(raw.numpy()), scores)
    assert len(np.unique(scores)) > 3  # the scores vary, so the groups are really compared


def test_gate_count_counts_the_shared_constant_once():
    from lgn_nas.models.lgn_conv import VARIANT_ARGS, shape_gate_count

    model = _model("lgn_conv_mnist_s")  # stages 2 and 3 pad with the same constant the short groups read
    assert model.gate_count()["total"] + 1 == lgn_nas.discretize(model).num_gates
    args = dict(VARIANT_ARGS["lgn_conv_mnist_s"], **UNEVEN["lgn_conv_mnist_s"])
    assert shape_gate_count(**args)["total"] == model.gate_count()["total"]
    dense = _dense_netlist()  # no padding: the short group adds the one constant gate
    assert dense.num_gates == sum(UNEVEN["lgn_dense_s"]["width"]) + 1


def _dense_netlist():
    return lgn_nas.discretize(_model("lgn_dense_s"))


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="no C compiler")
def test_c_export_counts_uneven_groups(tmp_path):
    from lgn_nas.export import to_c

    net = _dense_netlist()
    bits = np.random.default_rng(1).random((100, net.num_inputs)) < 0.5
    to_c(net, tmp_path / "net.c")
    cc = shutil.which("gcc") or shutil.which("cc")
    subprocess.run([cc, "-std=c99", "-O1", str(tmp_path / "net.c"), "-o", str(tmp_path / "net")], check=True)
    text = "\n".join("".join("1" if b else "0" for b in row) for row in bits) + "\n"
    out = subprocess.run([str(tmp_path / "net")], input=text, capture_output=True, text=True, check=True).stdout
    counts = np.array([[int(v) for v in line.split()] for line in out.strip().splitlines()], dtype=np.int64)
    assert np.array_equal(counts, net.evaluate_bits(bits))


@pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None, reason="no iverilog")
def test_verilog_export_counts_uneven_groups(tmp_path):
    from lgn_nas.export import to_verilog, write_testbench

    net = _dense_netlist()
    bits = np.random.default_rng(2).random((40, net.num_inputs)) < 0.5
    to_verilog(net, tmp_path / "net.v", pipeline_every=2)
    write_testbench(net, tmp_path / "tb.v", bits, pipeline_every=2)  # expects net.evaluate_bits
    subprocess.run(["iverilog", "-g2001", "-o", str(tmp_path / "sim"), str(tmp_path / "net.v"),
                    str(tmp_path / "tb.v")], check=True, capture_output=True)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "sim")], check=True, capture_output=True, text=True).stdout
    assert "PASS 40 vectors" in out, out


def test_tvm_compiled_netlist_counts_uneven_groups():
    tvm_ops = pytest.importorskip("tvm_ops")
    pytest.importorskip("tvm")
    model = _model("lgn_dense_s")
    net = lgn_nas.discretize(model)
    compiled = tvm_ops.compile_netlist(net, threads=1)
    x = _input(model, 130, seed=3)
    with torch.no_grad():
        assert np.array_equal(compiled(x.numpy()), model(x).numpy())
    x8 = np.random.default_rng(4).integers(0, 256, (70, *net.encoding.input_shape), dtype=np.uint8)
    assert np.array_equal(compiled.counts(x8), net.evaluate_bits(net.encode(x8)))
