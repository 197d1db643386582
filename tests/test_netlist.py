"""Tests for the discrete netlist IR: evaluation, simplification, save/load and the builder."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from lgn_nas.gates import FALSE, GATE_IDS, PASS_A, PASS_B, TRUE, TRUTH_TABLES
from lgn_nas.netlist import (
    Encoding,
    Netlist,
    NetlistBuilder,
    NetlistLayer,
    load_netlist,
    pack_bits,
    unpack_bits,
)

AND, OR, XOR, NAND = GATE_IDS["AND"], GATE_IDS["OR"], GATE_IDS["XOR"], GATE_IDS["NAND"]
NOT_A, NOT_B = GATE_IDS["NOT_A"], GATE_IDS["NOT_B"]
A_AND_NOT_B, NOT_A_AND_B = GATE_IDS["A_AND_NOT_B"], GATE_IDS["NOT_A_AND_B"]


# ---------------------------------------------------------------------------------------------- helpers
def make_encoding(rng: np.random.Generator, channels: int = 2, bits: int = 3, spatial=(2, 2)) -> Encoding:
    thresholds = np.sort(rng.random((channels, bits)), axis=1).astype(np.float32)
    return Encoding("thermometer", (channels,) + tuple(spatial), thresholds)


def random_gates(rng: np.random.Generator, n: int) -> np.ndarray:
    """Gate ids with constants, pass-throughs and NOTs over-represented (all 16 ids occur)."""
    special = np.array([FALSE, TRUE, PASS_A, PASS_B, NOT_A, NOT_B])
    uniform = rng.integers(0, 16, n)
    return np.where(rng.random(n) < 0.35, rng.choice(special, n), uniform).astype(np.uint8)


def random_netlist(
    rng: np.random.Generator,
    *,
    layered: bool,
    num_layers: int = 4,
    width: int = 20,
    num_classes: int = 3,
    group_size: int = 4,
    encoding: Encoding | None = None,
) -> Netlist:
    """A random levelised DAG (gates read any earlier node) or a strictly layered net."""
    encoding = encoding or make_encoding(rng)
    builder = NetlistBuilder(encoding)
    previous = builder.input_ids().ravel()
    for _ in range(num_layers):
        pool = previous if layered else np.arange(builder.num_nodes)
        if rng.random() < 0.3:  # a narrow pool makes duplicate gates likely
            pool = rng.choice(pool, size=min(3, pool.size), replace=False)
        in_a, in_b = rng.choice(pool, width), rng.choice(pool, width)
        previous = builder.add_layer(random_gates(rng, width), in_a, in_b)
    candidates = previous if layered else np.arange(builder.num_nodes)
    outputs = rng.choice(candidates, num_classes * group_size)
    if not layered:
        outputs[0] = 1  # an input node as an output
    return builder.build(outputs, num_classes=num_classes, tau=float(rng.uniform(0.5, 7.0)), metadata={"seed": 1})


def slow_node_values(net: Netlist, sample: np.ndarray) -> list[int]:
    """Plain-Python evaluation of one sample, straight from the truth tables."""
    values = [int(v) for v in sample]
    for layer in net.layers:
        for g, a, b in zip(layer.gate.tolist(), layer.in_a.tolist(), layer.in_b.tolist()):
            values.append(int(TRUTH_TABLES[g][2 * values[a] + values[b]]))
    return values


def slow_counts(net: Netlist, bits: np.ndarray) -> np.ndarray:
    counts = np.zeros((bits.shape[0], net.num_classes), dtype=np.int64)
    k = net.group_size
    for i, sample in enumerate(bits):
        values = slow_node_values(net, sample)
        for c in range(net.num_classes):
            counts[i, c] = sum(values[o] for o in net.outputs[c * k:(c + 1) * k].tolist())
    return counts


def random_bits(rng: np.random.Generator, net: Netlist, batch: int) -> np.ndarray:
    return rng.random((batch, net.num_inputs)) < 0.5


def two_input_encoding(num_inputs: int = 2) -> Encoding:
    return Encoding("thermometer", (1, num_inputs), np.array([[0.5]], dtype=np.float32))


def all_pairs(num_inputs: int = 2) -> np.ndarray:
    """Every assignment of ``num_inputs`` bits, (2**n, n) bool."""
    grid = np.arange(2 ** num_inputs)[:, None] >> np.arange(num_inputs)[::-1]
    return (grid & 1).astype(bool)


def small_net(layers, outputs, *, num_inputs: int = 2, num_classes: int | None = None, tau: float = 1.0) -> Netlist:
    """Net from ``[(gates, in_a, in_b), ...]`` on ``num_inputs`` input bits."""
    outputs = list(outputs)
    return Netlist(
        two_input_encoding(num_inputs),
        [NetlistLayer(np.array(g, np.uint8), np.array(a, np.int64), np.array(b, np.int64)) for g, a, b in layers],
        np.array(outputs, np.int64),
        num_classes=num_classes or len(outputs),
        tau=tau,
    )


# ---------------------------------------------------------------------------------------------- evaluation
@pytest.mark.parametrize("layered", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_evaluate_bits_matches_slow_evaluator(layered: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    net = random_netlist(rng, layered=layered)
    bits = random_bits(rng, net, 131)  # not a multiple of 64
    expected = slow_counts(net, bits)
    np.testing.assert_array_equal(net.evaluate_bits(bits), expected)
    np.testing.assert_array_equal(net.evaluate_bits(bits, chunk_size=64), expected)  # several chunks
    np.testing.assert_array_equal(net.evaluate_bits(bits.astype(np.int32)), expected)
    values = net.node_values(bits[:5])
    np.testing.assert_array_equal(values.astype(int), [slow_node_values(net, s) for s in bits[:5]])


def test_every_gate_matches_its_truth_table() -> None:
    net = small_net([(list(range(16)), [0] * 16, [1] * 16)], range(2, 18))
    counts = net.evaluate_bits(all_pairs())  # rows: (a, b) = 00, 01, 10, 11
    np.testing.assert_array_equal(counts.T, TRUTH_TABLES)


def test_evaluate_is_counts_over_tau_in_float32_like_torch_groupsum() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    net = random_netlist(rng, layered=True, group_size=7)
    x = rng.random((50,) + net.encoding.input_shape).astype(np.float32)
    scores = net.evaluate(x)
    counts = net.evaluate_bits(net.encode(x))
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores, counts.astype(np.float32) / np.float32(net.tau))
    # Eval-mode GroupSum: sum of 0/1 float32 output bits, divided by tau (CPU float32).
    out_bits = torch.from_numpy(net.node_values(net.encode(x))[:, net.outputs].astype(np.float32))
    group_sum = out_bits.reshape(50, net.num_classes, net.group_size).sum(-1) / net.tau
    np.testing.assert_array_equal(scores, group_sum.numpy())


def test_evaluate_large_batch_equals_per_chunk_results() -> None:
    rng = np.random.default_rng(4)
    net = random_netlist(rng, layered=False, width=50)
    bits = random_bits(rng, net, 5000)
    full = net.evaluate_bits(bits)
    np.testing.assert_array_equal(full[:100], slow_counts(net, bits[:100]))
    np.testing.assert_array_equal(full[4900:], slow_counts(net, bits[4900:]))
    assert net.evaluate_bits(bits[:0]).shape == (0, net.num_classes)


def test_pack_unpack_round_trip() -> None:
    rng = np.random.default_rng(5)
    bits = rng.random((130, 7)) < 0.5
    packed = pack_bits(bits)
    assert packed.shape == (7, 3) and packed.dtype == np.uint64
    assert int(packed[2, 1]) >> 3 & 1 == bits[64 + 3, 2]  # sample j -> bit j % 64 of word j // 64
    np.testing.assert_array_equal(unpack_bits(packed, 130), bits)


@pytest.mark.parametrize(
    "bits, match",
    [
        (np.array([[0, 2]]), r"found 2 at sample 0, input 1, expected 0 or 1"),
        (np.array([[0.5, 1.0]]), r"found 0\.5"),
        (np.array([[-1, 0]]), r"found -1"),
        (np.zeros((2, 3), bool), r"shape \(2, 3\), expected \(B, 2\)"),
        (np.zeros(2, bool), r"shape \(2,\), expected \(B, 2\)"),
    ],
)
def test_evaluate_bits_refuses_bad_bits(bits, match) -> None:
    net = small_net([([AND], [0], [1])], [2])
    with pytest.raises(ValueError, match=match):
        net.evaluate_bits(bits)


def test_evaluate_bits_accepts_float_zero_one() -> None:
    net = small_net([([AND], [0], [1])], [2])
    np.testing.assert_array_equal(net.evaluate_bits(np.array([[1.0, 1.0], [1.0, 0.0]])), [[1], [0]])


# ---------------------------------------------------------------------------------------------- encoding
def test_thermometer_bit_order_follows_the_documented_formula() -> None:
    rng = np.random.default_rng(6)
    channels, levels, height, width = 3, 4, 5, 6
    enc = Encoding("thermometer", (channels, height, width), rng.random((channels, levels)))
    x = rng.random((2, channels, height, width)).astype(np.float32)
    bits = enc.encode(x)
    assert bits.shape == (2, enc.num_bits) and enc.num_bits == channels * levels * height * width
    assert bits.dtype == np.bool_
    for c in range(channels):
        for t in range(levels):
            for h in range(height):
                for w in range(width):
                    index = ((c * levels + t) * height + h) * width + w
                    assert bits[1, index] == (x[1, c, h, w] > enc.thresholds[c, t])


def test_encode_compares_in_float32_and_scales_uint8() -> None:
    threshold = np.float32(0.1)
    enc = Encoding("thermometer", (1, 1), np.array([[threshold]]))
    above_in_float64 = np.array([[[float(threshold) + 1e-10]]], dtype=np.float64)
    assert not enc.encode(above_in_float64)[0, 0]  # rounds to the threshold in float32
    enc2 = Encoding("thermometer", (1, 2), np.array([[0.5]], np.float32))
    np.testing.assert_array_equal(enc2.encode(np.array([[[127, 128]]], np.uint8)), [[False, True]])


@pytest.mark.parametrize("shape", [(2, 1, 28), (2, 2, 2, 2), (1, 2)])
def test_encode_refuses_wrong_shape(shape) -> None:
    enc = Encoding("thermometer", (2, 2), np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match=r"input has shape .*expected \(B, 2, 2\)"):
        enc.encode(np.zeros(shape, np.float32))


@pytest.mark.parametrize(
    "kind, shape, thresholds, match",
    [
        ("binary", (1, 2), np.zeros((1, 1)), r"encoding kind 'binary'"),
        ("thermometer", (2, 2), np.zeros((1, 3)), r"thresholds have shape \(1, 3\), expected \(C, T\) = \(2, T\)"),
        ("thermometer", (1, 0), np.zeros((1, 1)), r"input_shape \(1, 0\)"),
        ("thermometer", (1, 2), np.full((1, 1), np.nan), r"NaN"),
    ],
)
def test_encoding_validation(kind, shape, thresholds, match) -> None:
    with pytest.raises(ValueError, match=match):
        Encoding(kind, shape, thresholds)


# ---------------------------------------------------------------------------------------------- structure
def test_structure_properties_on_a_dag() -> None:
    # inputs 0, 1; layer 0: node 2; layer 1: nodes 3, 4 (4 reads an input and layer 0)
    net = small_net(
        [([AND], [0], [1]), ([OR, XOR], [2, 0], [1, 2]), ([NAND], [3], [0])],
        [4, 5, 1, 2],
        num_classes=2,
        tau=2.0,
    )
    assert (net.num_inputs, net.num_gates, net.num_nodes, net.group_size) == (2, 4, 6, 2)
    np.testing.assert_array_equal(net.layer_offsets, [2, 3, 5])
    assert net.logic_depth == 3
    np.testing.assert_array_equal(net.node_depths(), [0, 0, 1, 2, 2, 3])
    assert "layer 1: 2 gates" in net.summary() and "logic depth 3" in net.summary()
    assert small_net([([AND], [0], [1])], [0, 1]).logic_depth == 0  # outputs are inputs


@pytest.mark.parametrize(
    "layers, outputs, kwargs, match",
    [
        ([([16], [0], [1])], [2], {}, r"layer 0: gate id 16 at position 0 is out of range, expected 0\.\.15"),
        ([([AND], [0], [1]), ([AND, OR], [2, 9], [1, 0])], [3], {},
         r"layer 1: in_a\[1\] = 9 is out of range.*expected a node id in 0\.\.2"),
        ([([AND], [0], [1]), ([AND, OR], [2, 3], [1, 0])], [3], {},
         r"layer 1: in_a\[1\] = 3 refers to layer 1 \(its own layer or a later one\)"),
        ([([AND], [0], [2])], [2], {}, r"layer 0: in_b\[0\] = 2 refers to layer 0"),
        ([([AND], [-1], [0])], [2], {}, r"in_a\[0\] = -1 is out of range"),
        ([([AND, OR], [0], [1])], [2], {}, r"layer 0: gate, in_a, in_b have lengths 2, 1, 1"),
        ([([AND], [0], [1])], [3], {}, r"outputs\[0\] = 3 is out of range, expected a node id in 0\.\.2"),
        ([([AND], [0], [1])], [0, 1, 2], {"num_classes": 2}, r"outputs has length 3, expected .*multiple of 2"),
        ([([AND], [0], [1])], [2], {"num_classes": 0}, r"num_classes = 0"),
        ([([AND], [0], [1])], [2], {"tau": 0.0}, r"tau = 0\.0, expected a finite number > 0"),
        ([([AND], [0], [1])], [2], {"tau": float("nan")}, r"tau = nan"),
        ([([AND], [0], [1])], [2], {"metadata": {"x": object()}}, r"metadata is not JSON-serialisable"),
    ],
)
def test_netlist_validation(layers, outputs, kwargs, match) -> None:
    args = {"num_classes": len(outputs), "tau": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        Netlist(
            two_input_encoding(),
            [NetlistLayer(np.array(g), np.array(a), np.array(b)) for g, a, b in layers],
            np.array(outputs),
            **args,
        )


def test_validation_refuses_float_indices_instead_of_truncating() -> None:
    with pytest.raises(ValueError, match=r"layer 0: in_a has dtype float64, expected an integer array"):
        Netlist(two_input_encoding(), [NetlistLayer(np.array([1]), np.array([0.7]), np.array([1]))], [2],
                num_classes=1, tau=1.0)


# ---------------------------------------------------------------------------------------------- simplify
def check_simplified(net: Netlist, rng: np.random.Generator, batch: int = 200) -> tuple[Netlist, dict]:
    simple, stats = net.simplify()
    bits = random_bits(rng, net, batch)
    np.testing.assert_array_equal(simple.evaluate_bits(bits), net.evaluate_bits(bits))
    assert stats["gates_before"] == net.num_gates and stats["gates_after"] == simple.num_gates
    assert simple.num_gates <= net.num_gates
    removed = ("constant_folded", "wires_collapsed", "duplicates_merged", "dead_removed", "gates_kept")
    assert sum(stats[k] for k in removed) == net.num_gates
    assert stats["gates_kept"] + stats["drivers_added"] == simple.num_gates
    assert simple.logic_depth <= net.logic_depth
    assert all(len(layer) > 0 for layer in simple.layers)
    assert simple.tau == net.tau and simple.num_classes == net.num_classes
    return simple, stats


@pytest.mark.parametrize("layered", [True, False])
def test_simplify_preserves_results_on_random_nets(layered: bool) -> None:
    rng = np.random.default_rng(10 + layered)
    reduced = 0
    for _ in range(40):
        net = random_netlist(rng, layered=layered, num_layers=int(rng.integers(1, 7)), width=int(rng.integers(1, 30)))
        simple, stats = check_simplified(net, rng)
        reduced += simple.num_gates < net.num_gates
        again, _ = check_simplified(simple, rng)
        assert again.num_gates == simple.num_gates  # fixed point
    assert reduced >= 30  # constants and pass-throughs are frequent in these nets


def test_simplify_on_all_inputs_exhaustively() -> None:
    rng = np.random.default_rng(12)
    for _ in range(20):
        enc = Encoding("thermometer", (1, 4), np.array([[0.5]], np.float32))
        net = random_netlist(rng, layered=False, num_layers=5, width=12, encoding=enc)
        simple, _ = net.simplify()
        np.testing.assert_array_equal(simple.evaluate_bits(all_pairs(4)), net.evaluate_bits(all_pairs(4)))


def test_chain_of_pass_throughs_collapses_to_zero_gates() -> None:
    net = small_net([([PASS_A], [0], [1]), ([PASS_B], [1], [2]), ([PASS_A], [3], [0]), ([AND], [4], [4])], [5, 1])
    simple, stats = net.simplify()
    assert simple.num_gates == 0 and simple.num_layers == 0
    np.testing.assert_array_equal(simple.outputs, [0, 1])  # rewired to the source input, order kept
    assert stats["wires_collapsed"] == 4


def test_double_negation_collapses() -> None:
    net = small_net([([NOT_A], [0], [1]), ([NOT_B], [1], [2])], [3])
    simple, _ = net.simplify()
    assert simple.num_gates == 0 and simple.outputs.tolist() == [0]
    single = small_net([([NOT_A], [0], [1]), ([PASS_A], [2], [2])], [3])
    simple, _ = single.simplify()
    assert simple.num_gates == 1 and simple.layers[0].gate.tolist() == [NOT_A]
    np.testing.assert_array_equal(simple.evaluate_bits(all_pairs()), single.evaluate_bits(all_pairs()))


def test_negated_inputs_are_absorbed_into_the_reading_gate() -> None:
    # AND(NOT x0, x1) needs one gate: NOT_A_AND_B(x0, x1).
    net = small_net([([NOT_A], [0], [0]), ([AND], [2], [1])], [3])
    simple, _ = check_simplified(net, np.random.default_rng(0))
    assert simple.num_gates == 1 and simple.layers[0].gate.tolist() == [NOT_A_AND_B]


def test_constants_fold_and_constant_outputs_keep_a_driver() -> None:
    # x0 AND TRUE -> x0; x0 OR TRUE -> TRUE; XOR(x1, x1) -> FALSE; FALSE is shared by two outputs.
    net = small_net(
        [([TRUE, FALSE], [0, 0], [0, 0]), ([AND, OR, XOR, AND], [0, 0, 1, 1], [2, 2, 1, 3])],
        [4, 5, 6, 7],
    )
    simple, stats = check_simplified(net, np.random.default_rng(0))
    assert simple.num_gates == 2  # one TRUE, one FALSE driver
    assert sorted(simple.layers[0].gate.tolist()) == [FALSE, TRUE]
    assert simple.layers[0].in_a.tolist() == [0, 0] and simple.layers[0].in_b.tolist() == [0, 0]
    assert simple.outputs[0] == 0
    assert stats["constant_folded"] == 5 and stats["wires_collapsed"] == 1


def test_duplicates_merge_including_commuted_and_mirrored_gates() -> None:
    net = small_net(
        [([AND, AND, A_AND_NOT_B, NOT_A_AND_B, XOR, XOR], [0, 1, 0, 1, 0, 1], [1, 0, 1, 0, 1, 0])],
        [2, 3, 4, 5, 6, 7],
    )
    simple, stats = check_simplified(net, np.random.default_rng(0))
    assert simple.num_gates == 3 and stats["duplicates_merged"] == 3
    assert simple.outputs[0] == simple.outputs[1] and simple.outputs[2] == simple.outputs[3]


def test_complement_pairs_never_grow_the_net() -> None:
    # AND and NAND of the same inputs, both as outputs: still two gates; NAND alone: one gate.
    both = small_net([([AND, NAND], [0, 0], [1, 1])], [2, 3])
    simple, _ = check_simplified(both, np.random.default_rng(0))
    assert simple.num_gates == 2
    alone = small_net([([AND, NAND], [0, 0], [1, 1]), ([OR], [3], [3])], [4])
    simple, _ = check_simplified(alone, np.random.default_rng(0))
    assert simple.num_gates == 1 and simple.layers[0].gate.tolist() == [NAND]


def test_dead_gates_are_removed_and_layers_relevelised() -> None:
    # inputs 0..2; 3 = AND(0, 1); 4 = OR(0, 1) only feeds the ignored input of 5 = PASS_A(3, 4);
    # 6 = OR(5, 3) = AND again; 7 = XOR(6, 2) sits in layer 3 but needs only depth 2.
    net = small_net(
        [([AND, OR], [0, 0], [1, 1]), ([PASS_A], [3], [4]), ([OR], [5], [3]), ([XOR], [6], [2])],
        [7], num_inputs=3, num_classes=1,
    )
    simple, stats = check_simplified(net, np.random.default_rng(0))
    assert simple.num_gates == 2 and simple.layer_sizes == [1, 1]
    assert [layer.gate.tolist() for layer in simple.layers] == [[AND], [XOR]]
    assert stats["dead_removed"] == 1 and stats["wires_collapsed"] == 2 and stats["gates_kept"] == 2
    assert stats["depth_before"] == 4 and stats["depth_after"] == 2
    assert stats["layers_before"] == 4 and stats["layers_after"] == 2


def test_simplify_leaves_the_original_unchanged_and_keeps_metadata() -> None:
    rng = np.random.default_rng(13)
    net = random_netlist(rng, layered=False)
    before = [layer.gate.copy() for layer in net.layers]
    simple, _ = net.simplify()
    assert all(np.array_equal(a, layer.gate) for a, layer in zip(before, net.layers))
    assert simple.metadata == net.metadata and simple.encoding == net.encoding


def test_unused_gate_fraction() -> None:
    # gates: 2 AND (used), 3 FALSE (constant, used by an output), 4 OR (dead), 5 PASS_A(2, 4) (used; 4 is ignored)
    net = small_net([([AND, FALSE, OR], [0, 0, 0], [1, 0, 1]), ([PASS_A], [2], [4])], [5, 3])
    assert net.unused_gate_fraction() == pytest.approx(0.5)
    assert small_net([], [0, 1]).unused_gate_fraction() == 0.0
    xor_self = small_net([([AND], [0], [1]), ([XOR], [2], [2])], [3])  # constant after folding
    assert xor_self.unused_gate_fraction() == 1.0


# ---------------------------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(20)
    net = random_netlist(rng, layered=False)
    net.metadata = {"model": "lgn_dense_s", "kwargs": {"depth": 4, "widths": [20, 20]}}
    path = tmp_path / "net.safetensors"
    net.save(path)
    loaded = load_netlist(path)
    assert loaded == net
    assert loaded.metadata == net.metadata and loaded.tau == net.tau
    assert loaded.layers[0].gate.dtype == np.uint8 and loaded.outputs.dtype == np.int64
    bits = random_bits(rng, net, 100)
    np.testing.assert_array_equal(loaded.evaluate_bits(bits), net.evaluate_bits(bits))
    # The documented layout, readable without lgn-nas.
    with safe_open(str(path), framework="np") as handle:
        header = json.loads(handle.metadata()["lgn_netlist"])
        assert set(handle.keys()) == {"thresholds", "outputs"} | {
            f"layer.{i}.{p}" for i in range(net.num_layers) for p in ("gate", "in_a", "in_b")
        }
    assert header["format"] == "lgn-netlist" and header["version"] == 1
    assert header["num_inputs"] == net.num_inputs and header["input_shape"] == list(net.encoding.input_shape)
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]  # no temporary file left


def test_save_load_net_without_gates(tmp_path) -> None:
    net = small_net([], [1, 0], num_classes=2, tau=3.5)
    net.save(tmp_path / "empty.safetensors")
    assert load_netlist(tmp_path / "empty.safetensors") == net


def write_raw(path, net: Netlist, *, tensors=None, header=None) -> None:
    """Write ``net`` in the file format with some tensors or header entries replaced (no validation)."""
    data = {"thresholds": net.encoding.thresholds, "outputs": net.outputs}
    for i, layer in enumerate(net.layers):
        data.update({f"layer.{i}.gate": layer.gate, f"layer.{i}.in_a": layer.in_a, f"layer.{i}.in_b": layer.in_b})
    data.update(tensors or {})
    head = {
        "format": "lgn-netlist", "version": 1, "input_shape": list(net.encoding.input_shape),
        "encoding_kind": "thermometer", "num_inputs": net.num_inputs, "num_classes": net.num_classes,
        "tau": net.tau, "num_layers": net.num_layers, "metadata": {},
    }
    head.update(header or {})
    save_file({k: np.ascontiguousarray(v) for k, v in data.items()}, str(path), metadata={"lgn_netlist": json.dumps(head)})


def two_layer_net() -> Netlist:
    return small_net([([AND, OR], [0, 0], [1, 1]), ([XOR], [2], [3])], [4, 2], num_classes=2)


@pytest.mark.parametrize(
    "tensors, header, match",
    [
        ({}, {"format": "onnx"}, r"has format 'onnx', expected 'lgn-netlist'"),
        ({}, {"version": 2}, r"written by a newer lgn-nas \(version 2\); this one reads up to 1"),
        ({}, {"version": "1"}, r"header entry 'version' = '1', expected int"),
        ({"layer.1.in_a": np.array([7], np.int64)}, {}, r"layer 1: in_a\[0\] = 7 is out of range"),
        ({"layer.0.gate": np.array([1, 16], np.uint8)}, {}, r"layer 0: gate id 16 at position 1"),
        ({"layer.1.in_b": np.array([4], np.int64)}, {}, r"layer 1: in_b\[0\] = 4 refers to layer 1"),
        ({"layer.0.in_b": np.array([1, 3], np.int64)}, {}, r"layer 0: in_b\[1\] = 3 refers to layer 0"),
        ({"outputs": np.array([4, 2, 3], np.int64)}, {}, r"outputs has length 3, expected .*multiple of 2"),
        ({"layer.0.gate": np.array([1.0, 7.0], np.float32)}, {}, r"layer 0: gate has dtype float32"),
        ({}, {"num_layers": 3}, r"lacks tensor 'layer\.2\.gate'"),
        ({}, {"num_inputs": 5}, r"header says num_inputs = 5"),
        ({}, {"tau": -1.0}, r"tau = -1\.0"),
        ({"thresholds": np.zeros((2, 1), np.float32)}, {}, r"thresholds have shape \(2, 1\)"),
    ],
)
def test_load_refuses_bad_files(tmp_path, tensors, header, match) -> None:
    path = tmp_path / "bad.safetensors"
    write_raw(path, two_layer_net(), tensors=tensors, header=header)
    with pytest.raises(ValueError, match=match) as info:
        load_netlist(path)
    assert "bad.safetensors" in str(info.value)  # names the file


def test_load_refuses_missing_corrupt_truncated_and_foreign_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors"):
        load_netlist(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(ValueError, match=r"garbage\.safetensors' is not a readable safetensors file"):
        load_netlist(garbage)
    good = tmp_path / "good.safetensors"
    two_layer_net().save(good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"truncated\.safetensors' is not a readable safetensors file"):
        load_netlist(truncated)
    foreign = tmp_path / "weights.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(foreign))
    with pytest.raises(ValueError, match=r"not an lgn-netlist file.*no 'lgn_netlist' entry"):
        load_netlist(foreign)
    json_broken = tmp_path / "json.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(json_broken), metadata={"lgn_netlist": "{not json"})
    with pytest.raises(ValueError, match=r"header is not valid JSON"):
        load_netlist(json_broken)


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    net = two_layer_net()
    with pytest.raises(FileNotFoundError, match=r"directory .*no_such_dir.* does not exist"):
        net.save(tmp_path / "no_such_dir" / "net.safetensors")
    assert list(tmp_path.iterdir()) == []
    # A write that fails midway keeps the previous file intact and removes the temporary one.
    path = tmp_path / "net.safetensors"
    net.save(path)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    other = small_net([([OR], [0], [1])], [2])
    with pytest.raises(OSError, match="disk full"):
        other.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]


# ---------------------------------------------------------------------------------------------- builder
def test_builder_ids_shapes_and_result() -> None:
    enc = Encoding("thermometer", (2, 3, 4), np.zeros((2, 5), np.float32))
    builder = NetlistBuilder(enc)
    ids = builder.input_ids()
    assert ids.shape == (10, 3, 4) and ids.dtype == np.int64
    np.testing.assert_array_equal(ids.ravel(), np.arange(120))
    first = builder.add_layer(AND, ids[0], ids[1])  # a scalar gate id for every gate, shaped ids back
    assert first.shape == (3, 4) and first.min() == 120 and first.max() == 131
    second = builder.add_layer(np.full(6, XOR), first.ravel()[:6], ids.ravel()[:6])
    np.testing.assert_array_equal(second, np.arange(132, 138))
    net = builder.build(second, num_classes=3, tau=2.0, metadata={"model": "test"})
    assert net.layer_sizes == [12, 6] and net.metadata == {"model": "test"}
    bits = np.random.default_rng(0).random((10, 120)) < 0.5
    np.testing.assert_array_equal(net.evaluate_bits(bits), slow_counts(net, bits))


@pytest.mark.parametrize(
    "gate, in_a, in_b, match",
    [
        (AND, [0, 5], [1, 0], r"layer 1: in_a node id 5 does not exist yet, expected 0\.\.4"),
        (AND, [0, 1], [2, 6], r"layer 1: in_b node id 6 does not exist yet"),
        (16, [0], [1], r"layer 1: gate id 16 is out of range"),
        ([AND, OR], [0], [1], r"gate has shape \(2,\), expected \(1,\)"),
        (AND, [0, 1], [1], r"in_a has shape \(2,\) but in_b has shape \(1,\)"),
        (AND, [0.0], [1], r"in_a has dtype float64"),
    ],
)
def test_builder_refuses_bad_layers(gate, in_a, in_b, match) -> None:
    builder = NetlistBuilder(two_input_encoding(3))
    builder.add_layer(AND, [0, 1], [1, 2])  # nodes 3, 4 (layer 0)
    with pytest.raises(ValueError, match=match):
        builder.add_layer(gate, in_a, in_b)
    assert builder.num_layers == 1 and builder.num_nodes == 5


def _rewrite(path, *, tensors=None, header=None) -> None:
    """Rewrite a saved netlist file with some tensors or header entries changed, keeping its stored digests."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        head = json.loads(handle.metadata()["lgn_netlist"])
        data = {name: handle.get_tensor(name) for name in handle.keys()}
    data.update(tensors or {})
    head.update(header or {})
    save_file({k: np.ascontiguousarray(v) for k, v in data.items()}, str(path), metadata={"lgn_netlist": json.dumps(head)})


def test_checksum_refuses_an_edited_gate_wire_or_input_shape(tmp_path) -> None:
    net = two_layer_net()
    path = tmp_path / "net.lgn"
    net.save(path)
    assert load_netlist(path) == net
    gate = net.layers[0].gate.copy()
    gate[1] ^= 1  # OR -> another valid gate: without the digest this loads as a different circuit
    _rewrite(path, tensors={"layer.0.gate": gate})
    with pytest.raises(ValueError, match=r"net\.lgn' does not match its checksum: tensor 'layer\.0\.gate' changed"):
        load_netlist(path)
    net.save(path)
    wires = net.layers[1].in_a.copy()
    wires[0] ^= 1  # node 2 -> node 3: still valid wiring
    _rewrite(path, tensors={"layer.1.in_a": wires})
    with pytest.raises(ValueError, match=r"tensor 'layer\.1\.in_a' changed"):
        load_netlist(path)
    net.save(path)
    _rewrite(path, header={"input_shape": [2, 1]})
    with pytest.raises(ValueError, match=r"header entry 'input_shape' = \[2, 1\] changed since it was written"):
        load_netlist(path)


def test_edited_input_shape_without_digests_is_named_as_such(tmp_path) -> None:
    path = tmp_path / "old.lgn"
    write_raw(path, two_layer_net(), header={"input_shape": [1, 1]})  # an old file (no digests), shape edited
    with pytest.raises(ValueError, match=r"old\.lgn': header says num_inputs = 2, but header entry 'input_shape' = "
                                         r"\[1, 1\] gives 1 input bits"):
        load_netlist(path)


def test_every_flipped_bit_of_a_saved_netlist_is_refused_or_harmless(tmp_path) -> None:
    net = two_layer_net()
    path = tmp_path / "net.lgn"
    net.save(path)
    clean = path.read_bytes()
    loaded_as_other = []
    for position in range(len(clean)):
        for bit in (0, 6):
            data = bytearray(clean)
            data[position] ^= 1 << bit
            path.write_bytes(bytes(data))
            try:
                other = load_netlist(path)
            except ValueError:
                continue
            if other != net:
                loaded_as_other.append((position, bit))
    assert loaded_as_other == []
