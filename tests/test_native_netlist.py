"""compile_netlist_native: the fused, net-specialised AVX-512 code agrees with Netlist.evaluate bit for bit.

The fusion itself (pure numpy) is checked everywhere; the built code only where this machine has
AVX-512 and a C compiler (else those tests skip, naming why).
"""
from __future__ import annotations

import numpy as np
import pytest

from lgn_nas.netlist import Encoding, NetlistBuilder
from lgn_nas.netlist.evaluate import pack_bits

import tvm_ops
from tvm_ops.netlist_fuse import fuse_plan, run_fused_numpy
from tvm_ops.netlist_plan import make_plan, netlist_arrays

WHY_NOT = tvm_ops.native_available()
needs_native = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))

CASES = {
    "mnist_layered": dict(seed=0, widths=(512, 512, 512)),
    "skip_rgb_T3": dict(seed=1, input_shape=(3, 5, 6), thresholds=3, widths=(300, 200, 100, 90), skip=True),
    "small_group": dict(seed=2, input_shape=(2, 9), thresholds=2, widths=(40, 30), num_classes=3, group_size=5,
                        skip=True),
    "group_of_one": dict(seed=3, input_shape=(1, 70), widths=(64, 64), num_classes=4, group_size=1, skip=True),
    "tree_like": dict(seed=4, input_shape=(1, 10, 10), widths=(400, 200, 100, 50), num_classes=5),
}


def _chain_net(depth: int = 300):
    """A single-reader chain ``x = gate(x, input)`` deeper than any register tree: fusion must cut it."""
    rng = np.random.default_rng(11)
    builder = NetlistBuilder(Encoding("thermometer", (1, 8, 8), np.full((1, 1), 0.5, np.float32)))
    inputs = builder.input_ids().ravel()
    prev = builder.add_layer(np.array([6]), inputs[:1], inputs[1:2])
    for i in range(depth):
        gate = np.array([rng.choice([1, 6, 7, 8, 9, 14])])  # AND, XOR, OR, NOR, XNOR, NAND
        prev = builder.add_layer(gate, prev, inputs[(i + 2) % inputs.size:][:1])
    side = builder.add_layer(np.array([0, 15, 3]), inputs[:3], inputs[3:6])  # constant FALSE, TRUE, pass a
    return builder.build(np.concatenate([prev, side, inputs[:2]]), num_classes=2, tau=1.5)


@pytest.fixture(scope="module")
def native(random_netlist):
    cache: dict = {}

    def get(name):
        if name not in cache:
            net = _chain_net() if name == "chain" else random_netlist(**CASES[name])
            cache[name] = (net, tvm_ops.compile_netlist_native(net))
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(CASES) + ["chain"])
def test_fused_program_matches_plan(name, random_netlist):
    """Fusion (clusters, head-only gates, slot reuse) against the plan's row-by-row execution."""
    net = _chain_net() if name == "chain" else random_netlist(**CASES[name])
    bits = np.random.default_rng(5).random((300, net.num_inputs)) < 0.5
    plan = make_plan(netlist_arrays(net.simplify()[0]), head="outputs")
    program = fuse_plan(plan)
    words = run_fused_numpy(program, pack_bits(bits))  # (C, K, W)
    as_bytes = np.ascontiguousarray(words.astype("<u8")).view(np.uint8)
    out_bits = np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :300]
    assert np.array_equal(out_bits.sum(axis=1).T, net.evaluate_bits(bits))
    assert program.stats["roots"] + program.stats["head_only"] <= plan.stats["gates_live"]


def test_fusion_bounds_registers_and_depth():
    net = _chain_net(300)
    program = fuse_plan(make_plan(netlist_arrays(net), head="outputs"))
    assert max(c.need for c in program.clusters.values()) <= 24
    assert max(c.depth for c in program.clusters.values()) <= 48
    assert program.stats["roots"] >= 2  # the chain is cut into stored roots (a cluster holds up to 3 gates)


@needs_native
@pytest.mark.parametrize("name", list(CASES) + ["chain"])
@pytest.mark.parametrize("batch", [1, 63, 512, 1537])
def test_scores_and_counts_bit_exact(name, batch, native):
    net, cn = native(name)
    rng = np.random.default_rng(batch)
    x8 = rng.integers(0, 256, (batch,) + net.encoding.input_shape, dtype=np.uint8)
    assert np.array_equal(cn(x8), net.evaluate(x8))
    assert np.array_equal(cn.counts(x8), net.evaluate_bits(net.encode(x8)))
    xf = rng.random((batch,) + net.encoding.input_shape).astype(np.float32)
    assert np.array_equal(cn(xf), net.evaluate(xf))


@needs_native
@pytest.mark.parametrize("input_shape", [(3, 7, 9), (2, 130), (1, 17, 5), (1, 64)])
def test_encoder_tails_and_threshold_edges(input_shape, threshold_edge_netlist):
    """Channel lengths with every tail past the last 64 positions, thresholds below 0 and at or above
    1 (uint8 cut 0: always on; cut 256: never), inputs 0, 255 and at a threshold."""
    net, thr = threshold_edge_netlist(input_shape)
    rng = np.random.default_rng(input_shape[-1])
    cn = tvm_ops.compile_netlist_native(net)
    x8 = rng.integers(0, 256, (cn.tile_samples + 77,) + input_shape, dtype=np.uint8)
    x8[0], x8[1], x8[2] = 0, 255, 128
    assert np.array_equal(cn.counts(x8), net.evaluate_bits(net.encode(x8)))
    xf = x8.astype(np.float32) / 255
    xf[3] = thr[0, 1]  # exactly at a threshold: x > thr is false
    assert np.array_equal(cn(xf), net.evaluate(xf))


@needs_native
@pytest.mark.parametrize("name", ["mnist_layered", "skip_rgb_T3", "chain"])
def test_pre_packed_bits(name, native):
    net, cn = native(name)
    rng = np.random.default_rng(8)
    for batch in (1, 64, 700, 1024):
        bits = rng.random((batch, net.num_inputs)) < 0.5
        words = pack_bits(bits)
        want = net.evaluate_bits(bits)
        assert np.array_equal(np.rint(cn.scores_packed(words, batch) * np.float32(net.tau)), want)
        wide = np.concatenate([words, rng.integers(0, 2**63, (words.shape[0], 9), dtype=np.uint64)], axis=1)
        assert np.array_equal(np.rint(cn.scores_packed(wide, batch) * np.float32(net.tau)), want)  # extra words ignored
    with pytest.raises(ValueError, match="expected at least num_samples"):
        cn.scores_packed(words, batch + 64)
    with pytest.raises(ValueError, match="uint64"):
        cn.scores_packed(words.astype(np.int64), batch)


@needs_native
def test_real_domain_float_input():
    """Raw inputs in the "real" domain (any finite floats, thresholds outside [0, 1]); uint8 refused."""
    rng = np.random.default_rng(21)
    thr = np.sort(rng.normal(0, 3, (2, 4)).astype(np.float32), axis=1)
    builder = NetlistBuilder(Encoding("thermometer", (2, 40), thr, domain="real"))
    prev = builder.input_ids().ravel()
    for width in (300, 120):
        prev = builder.add_layer(rng.integers(0, 16, width), rng.choice(prev, width), rng.choice(prev, width))
    net = builder.build(prev, num_classes=3, tau=2.0)
    cn = tvm_ops.compile_netlist_native(net)
    x = rng.normal(0, 4, (700, 2, 40)).astype(np.float32)
    x[0, 0, :4] = thr[0]  # exactly at the thresholds
    assert np.array_equal(cn(x), net.evaluate(x))
    with pytest.raises(ValueError, match="dtype uint8"):
        cn(np.zeros((3, 2, 40), np.uint8))


@needs_native
@pytest.mark.parametrize("threads", [2, 3])
def test_threads_split_tiles_bit_exact(threads, random_netlist):
    net = random_netlist(**CASES["skip_rgb_T3"])
    cn = tvm_ops.compile_netlist_native(net, threads=threads)
    rng = np.random.default_rng(threads)
    for batch in (1, 3 * 512, 5 * 512 + 77):
        x = rng.integers(0, 256, (batch,) + net.encoding.input_shape, dtype=np.uint8)
        assert np.array_equal(cn(x), net.evaluate(x))
    with pytest.raises(ValueError, match="threads"):
        tvm_ops.compile_netlist_native(net, threads=0)


@needs_native
def test_build_is_cached_and_written_atomically(tmp_path, monkeypatch, random_netlist):
    monkeypatch.setenv("LGN_NATIVE_CACHE", str(tmp_path / "cache"))
    net = random_netlist(**CASES["small_group"])
    first = tvm_ops.compile_netlist_native(net)
    files = sorted((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".so" and not files[0].name.startswith(".")
    stamp = files[0].stat().st_mtime_ns
    second = tvm_ops.compile_netlist_native(net)
    assert sorted((tmp_path / "cache").iterdir()) == files and files[0].stat().st_mtime_ns == stamp
    x = np.random.default_rng(0).integers(0, 256, (100,) + net.encoding.input_shape, dtype=np.uint8)
    assert np.array_equal(first(x), second(x))


@needs_native
def test_bad_inputs_are_refused(native):
    net, cn = native("mnist_layered")
    with pytest.raises(ValueError, match=r"shape \(5, 784\)"):
        cn(np.zeros((5, 784), np.uint8))
    with pytest.raises(ValueError, match="dtype int32"):
        cn(np.zeros((5, 1, 28, 28), np.int32))
    with pytest.raises(ValueError, match="empty batch"):
        cn(np.zeros((0, 1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="input_dtype"):
        tvm_ops.compile_netlist_native(net, input_dtype="int8")


def test_no_compiler_is_one_clear_error(monkeypatch, random_netlist):
    if WHY_NOT is not None and "compiler" not in WHY_NOT:
        pytest.skip(WHY_NOT)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(tvm_ops.NativeUnavailable, match="no C compiler found"):
        tvm_ops.compile_netlist_native(random_netlist(**CASES["small_group"]))


@needs_native
@pytest.mark.parametrize("model_name,seed", [("lgn_dense_s", 3),
                                             pytest.param("lgn_conv_mnist_s", 4, marks=pytest.mark.slow)])
def test_trained_net_bit_exact(model_name, seed):
    """The shipped trained nets (their netlists as discretised from the released weights)."""
    timm = pytest.importorskip("timm")
    import lgn_nas

    net = lgn_nas.discretize(timm.create_model(model_name, pretrained=True).eval())
    cn = tvm_ops.compile_netlist_native(net)
    x = np.random.default_rng(seed).integers(0, 256, (700, 1, 28, 28), dtype=np.uint8)
    assert np.array_equal(cn(x), net.evaluate(x))
