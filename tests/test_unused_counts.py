"""The two unused-gate counts (lgn_nas.metrics.UNUSED_GATE_COUNTS) on hand-built nets and a model."""
from __future__ import annotations

import numpy as np
import pytest
import timm

import lgn_nas
from lgn_nas.gates import FALSE, GATE_IDS, PASS_A
from lgn_nas.metrics import UNUSED_GATE_COUNTS, unused_gate_fraction, unused_gate_mask_next_layer
from lgn_nas.netlist import Encoding, Netlist, NetlistLayer

AND, OR, XOR = GATE_IDS["AND"], GATE_IDS["OR"], GATE_IDS["XOR"]


def _net(layers, outputs, num_inputs=2):
    encoding = Encoding("thermometer", (1, num_inputs), np.array([[0.5]], dtype=np.float32))
    return Netlist(encoding,
                   [NetlistLayer(np.array(g, np.uint8), np.array(a, np.int64), np.array(b, np.int64)) for g, a, b in layers],
                   np.array(outputs, np.int64), num_classes=len(outputs), tau=1.0)


def test_next_layer_count_is_one_hop_and_keeps_read_constants():
    # 2 = AND(0, 1), 3 = FALSE, 4 = OR(0, 1) read only on the ignored input of 5 = PASS_A(2, 4); outputs 5, 3
    net = _net([([AND, FALSE, OR], [0, 0, 0], [1, 0, 1]), ([PASS_A], [2], [4])], [5, 3])
    assert unused_gate_mask_next_layer(net).tolist() == [False, False, True, False]
    assert unused_gate_fraction(net, "next_layer") == 0.25
    assert unused_gate_fraction(net) == 0.5 == net.unused_gate_fraction()  # ours: the constant 3 is unused too
    # 2 = AND(0, 1) is read by 3 = XOR(2, 0), which only the ignored input of the output 4 = PASS_A(0, 3) reads
    chain = _net([([AND], [0], [1]), ([XOR], [2], [0]), ([PASS_A], [0], [3])], [4])
    assert unused_gate_mask_next_layer(chain).tolist() == [False, True, False]  # 2 is read (by the unused 3)
    assert lgn_nas.netlist.unused_gate_mask(chain).tolist() == [True, True, False]  # transitively dead


def test_both_counts_on_a_model_and_in_the_registry():
    model = timm.create_model("lgn_dense_s", depth=3, width=300, init="gaussian", seed=0).eval()
    netlist = lgn_nas.discretize(model)
    ours, one_hop = (unused_gate_fraction(model, name) for name in ("netlist", "next_layer"))
    assert set(UNUSED_GATE_COUNTS) == {"netlist", "next_layer"}
    assert 0.0 < one_hop <= ours < 1.0  # one hop, no folding: never more than ours
    assert (unused_gate_mask_next_layer(netlist) <= lgn_nas.netlist.unused_gate_mask(netlist)).all()
    with pytest.raises(ValueError, match="unknown unused-gate count 'paper': expected one of netlist, next_layer"):
        unused_gate_fraction(netlist, "paper")
    assert unused_gate_fraction(_net([], [0, 1]), "next_layer") == 0.0
