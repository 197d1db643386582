"""compile_netlist: the TVM/LLVM bit-sliced kernel agrees with Netlist.evaluate bit for bit."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lgn_nas.netlist import Encoding, NetlistBuilder, NetlistLayer, Netlist
from lgn_nas.netlist.evaluate import pack_bits

pytest.importorskip("tvm")

import tvm_ops  # noqa: E402
from tvm_ops.netlist_plan import NetlistArrays, make_plan, netlist_arrays, run_plan_numpy, uint8_cuts  # noqa: E402


CASES = {
    "mnist_layered": dict(seed=0, widths=(512, 512, 512)),
    "skip_rgb_T3": dict(seed=1, input_shape=(3, 5, 6), thresholds=3, widths=(300, 200, 100, 90), skip=True),
    "small_group": dict(seed=2, input_shape=(2, 9), thresholds=2, widths=(40, 30), num_classes=3, group_size=5,
                        skip=True),
}


@pytest.fixture(scope="module")
def compiled(random_netlist):
    """``compiled(case)``: the case's net and its compiled form, one compile per case (kernels are also
    cached by shape inside tvm_ops)."""
    cache: dict = {}

    def get(name):
        if name not in cache:
            net = random_netlist(**CASES[name])
            cache[name] = (net, tvm_ops.compile_netlist(net, threads=2))
        return cache[name]

    return get


def test_import_is_cheap_and_independent():
    code = "import sys, tvm_ops; print('tvm' in sys.modules, 'lgn_nas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("name", list(CASES))
def test_plan_matches_reference(name, random_netlist):
    net = random_netlist(**CASES[name])
    bits = np.random.default_rng(5).random((200, net.num_inputs)) < 0.5
    ref = net.evaluate_bits(bits)
    for head in ("outputs", "adder"):
        plan = make_plan(netlist_arrays(net), head=head)
        assert np.array_equal(run_plan_numpy(plan, pack_bits(bits))[:200], ref)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("batch", [1, 63, 1024, 2500])
def test_scores_and_counts_bit_exact(name, batch, compiled):
    net, cn = compiled(name)
    rng = np.random.default_rng(batch)
    x8 = rng.integers(0, 256, (batch,) + net.encoding.input_shape, dtype=np.uint8)
    assert np.array_equal(cn(x8), net.evaluate(x8))
    xf = rng.random((batch,) + net.encoding.input_shape).astype(np.float32)
    assert np.array_equal(cn(xf), net.evaluate(xf))
    assert np.array_equal(cn.counts(x8), net.evaluate_bits(net.encode(x8)))


def test_torch_float64_and_threshold_edges(compiled):
    torch = pytest.importorskip("torch")
    net, cn = compiled("mnist_layered")
    # Inputs exactly at the thresholds, and uint8 levels around them.
    thr = net.encoding.thresholds[0, 0]
    x = np.full((64, 1, 28, 28), thr, dtype=np.float64)
    x[::2] = np.nextafter(np.float32(thr), np.float32(2))
    assert np.array_equal(cn(torch.from_numpy(x)), net.evaluate(x))
    x8 = torch.arange(256, dtype=torch.uint8).repeat(4 * 784).reshape(-1, 1, 28, 28)[:1024]
    assert np.array_equal(cn(x8), net.evaluate(x8.numpy()))


def test_uint8_cuts_match_float_division():
    thr = np.array([[-1.0, 0.0, 0.5, 127.5 / 255, 1.0, 2.0, np.float32(3) / np.float32(255)]], dtype=np.float32)
    cuts = uint8_cuts(thr)[0]
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    for cut, t in zip(cuts, thr[0]):
        assert np.array_equal(levels >= (levels[cut] if cut < 256 else np.inf), levels > t)


def test_simplified_net_is_smaller_and_equal(compiled):
    net, cn = compiled("mnist_layered")
    assert cn.stats["gates_live"] < net.num_gates  # pass-through, constant and dead gates cost nothing


def test_save_and_load_without_compiling(tmp_path, compiled):
    for name in ("mnist_layered", "skip_rgb_T3"):
        net, cn = compiled(name)
        path = tmp_path / "net.so"  # the same path twice: the loader must not reuse the old library
        cn.save(path)
        loaded = tvm_ops.load_compiled_netlist(path, threads=1)
        x = np.random.default_rng(0).integers(0, 256, (300,) + net.encoding.input_shape, dtype=np.uint8)
        assert np.array_equal(loaded(x), net.evaluate(x))
        assert np.array_equal(loaded(x.astype(np.float32) / 255), net.evaluate(x.astype(np.float32) / 255))
    (tmp_path / "net.so.json").write_text("{}")
    with pytest.raises(ValueError, match="format"):
        tvm_ops.load_compiled_netlist(path)
    with pytest.raises(FileNotFoundError):
        tvm_ops.load_compiled_netlist(tmp_path / "missing.so")


def test_bad_inputs_are_refused(compiled):
    net, cn = compiled("mnist_layered")
    with pytest.raises(ValueError, match=r"shape \(5, 784\)"):
        cn(np.zeros((5, 784), np.uint8))
    with pytest.raises(ValueError, match="dtype int32"):
        cn(np.zeros((5, 1, 28, 28), np.int32))
    with pytest.raises(ValueError, match="threads"):
        tvm_ops.compile_netlist(net, threads=0)


def test_bad_netlists_are_refused_before_compiling(random_netlist):
    """The format is checked once, by lgn_nas when a Netlist is made; tvm_ops lowers its read-only view."""
    net = random_netlist(3, input_shape=(1, 4, 4), widths=(20, 20))
    view = net.arrays()
    assert isinstance(view, NetlistArrays) and netlist_arrays(net).num_gates == net.num_gates == 40
    assert not view.layers[1][1].flags.writeable and not view.thresholds.flags.writeable
    gate, in_a, in_b = (np.array(a) for a in view.layers[1])

    def rebuilt(layer, **head):
        return Netlist(net.encoding, [net.layers[0], NetlistLayer(*layer)], head.get("outputs", net.outputs),
                       num_classes=head.get("num_classes", net.num_classes), tau=net.tau)

    bad_index = in_a.copy()
    bad_index[3] = 10_000
    with pytest.raises(ValueError, match="in_a\\[3\\] = 10000"):
        rebuilt((gate, bad_index, in_b))
    cyclic = in_b.copy()
    cyclic[0] = 16 + 20 + 5  # a gate of its own layer
    with pytest.raises(ValueError, match="in_b\\[0\\] = 41"):
        rebuilt((gate, in_a, cyclic))
    unknown = gate.astype(np.int64)
    unknown[2] = 16
    with pytest.raises(ValueError, match="gate id 16"):
        rebuilt((unknown, in_a, in_b))
    with pytest.raises(ValueError, match="num_classes \\* group_size = 3"):
        rebuilt((gate, in_a, in_b), num_classes=3, outputs=np.arange(20, 30))
    with pytest.raises(ValueError, match="not a netlist"):
        tvm_ops.compile_netlist(object())
    with pytest.raises(ValueError, match="target"):
        tvm_ops.compile_netlist(net, target="llvm -mcpu=native")


@pytest.mark.parametrize("threads", [1, 2])
def test_tile_boundaries_and_threads(threads, compiled):
    """Batches around the tile (512 samples): the padded tail, several tiles per thread (the gate
    loop prefetches the next tile's rows), uneven splits over threads; uint8 and float input."""
    net, _ = compiled("mnist_layered")
    cn = tvm_ops.compile_netlist(net, threads=threads)
    assert cn.tile_samples == 512
    rng = np.random.default_rng(threads)
    x8 = rng.integers(0, 256, (4097,) + net.encoding.input_shape, dtype=np.uint8)
    for batch in (1, 511, 512, 513, 1536, 2559, 4097):
        assert np.array_equal(cn(x8[:batch]), net.evaluate(x8[:batch])), batch
    xf = x8[:2600].astype(np.float32) / 256 + np.float32(1e-3)  # off the uint8 levels, inside [0, 1]
    assert np.array_equal(cn(xf), net.evaluate(xf))


def test_few_gates_many_tiles(compiled):
    """A net with fewer gate rows than input cache lines per tile (the encode prefetches instead)."""
    net, _ = compiled("small_group")
    cn = tvm_ops.compile_netlist(net, threads=1)
    x8 = np.random.default_rng(9).integers(0, 256, (3 * cn.tile_samples + 7,) + net.encoding.input_shape,
                                           dtype=np.uint8)
    assert np.array_equal(cn(x8), net.evaluate(x8))


@pytest.mark.parametrize("tile_words", [4, 8, 16])
def test_encode_without_tails_and_other_tiles(tile_words, random_netlist):
    """64 positions per channel (no tail in the 64-wide encode), 384 inputs (no tail when packing),
    a class group of 16 (no ripple tail in the head), tiles of 256, 512 and 1024 samples."""
    net = random_netlist(4, input_shape=(2, 8, 8), thresholds=3, widths=(300, 160), num_classes=10,
                         group_size=16)
    cn = tvm_ops.compile_netlist(net, threads=2, tile_words=tile_words)
    assert cn.tile_samples == 64 * tile_words
    x8 = np.random.default_rng(tile_words).integers(0, 256, (2 * cn.tile_samples + 300, 2, 8, 8), dtype=np.uint8)
    assert np.array_equal(cn(x8), net.evaluate(x8))
    assert np.array_equal(cn.counts(x8[:1]), net.evaluate_bits(net.encode(x8[:1])))


def test_many_gates_few_inputs_many_tiles(random_netlist):
    """More gate rows than input cache lines per tile: the gate loop prefetches the next tile."""
    net = random_netlist(6, input_shape=(1, 4, 4), widths=(400, 400, 300), num_classes=3, group_size=100)
    cn = tvm_ops.compile_netlist(net, threads=1)
    assert cn.stats["gates_live"] > cn.tile_samples * 16 // 64  # rows > cache lines of a tile's input
    x8 = np.random.default_rng(6).integers(0, 256, (4 * cn.tile_samples + 5, 1, 4, 4), dtype=np.uint8)
    assert np.array_equal(cn(x8), net.evaluate(x8))
    xf = x8.astype(np.float32) / 255
    assert np.array_equal(cn(xf), net.evaluate(xf))


@pytest.mark.parametrize("input_shape", [(3, 7, 9), (2, 130), (1, 17, 5)])
def test_mask_encoder_tails_and_threshold_edges(input_shape, threshold_edge_netlist):
    """The uint8 encoder (compare masks + bit transpose): channel lengths whose tail past the last
    64 positions takes every piece (32/16/8 lanes and single ones), thresholds below 0 and at or
    above 1 (uint8 cut 0: always on; cut 256: never), bit for bit against the reference and the
    byte-stage encoder (``mask_encode=False``)."""
    import tvm

    from tvm_ops.netlist_kernel import KERNEL_NAME, kernel_source

    net, thr = threshold_edge_netlist(input_shape)
    rng = np.random.default_rng(input_shape[-1])
    cn = tvm_ops.compile_netlist(net, threads=1)
    x8 = rng.integers(0, 256, (cn.tile_samples + 77,) + input_shape, dtype=np.uint8)
    x8[0], x8[1], x8[2] = 0, 255, 128
    want = net.evaluate_bits(net.encode(x8))
    assert np.array_equal(cn.counts(x8), want)
    byte_stage = tvm.compile(tvm.script.from_source(kernel_source(cn.kernel_shape("uint8"), mask_encode=False)),
                             target=cn.target)
    cn._functions["uint8"] = byte_stage.mod[KERNEL_NAME]
    assert np.array_equal(cn.counts(x8), want)
