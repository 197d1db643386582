"""Any num_classes: GroupSum groups that differ by one output, exact in the netlist and every backend.

A head of width W with C classes gives the first W % C classes W // C + 1 outputs and the others W // C
(``lgn_nas.groups``). The netlist pads each short group with the constant-0 node, so the reference
evaluator, the C export, the Verilog export and the TVM kernel count exactly the model's groups.
"""
import numpy as np
import pytest
import torch

from lgn_nas.groups import group_sizes, group_starts
from lgn_nas.layers import GroupSum
from lgn_nas.netlist import Encoding, NetlistBuilder


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
