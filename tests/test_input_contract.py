"""One input contract for every evaluator (issue 15, item 1): the torch model in eval and train mode,
``Netlist.evaluate``, the TVM-compiled netlist and the C export's raw-input entry points.

All four agree bit for bit on uint8 and on float32 in [0, 1] (thresholds and their float32 neighbours
included), and every refused batch gets the same ``InputError`` message from each Python-side evaluator
and the matching error code from the C library (built with gcc, called through ctypes).
"""
from __future__ import annotations

import ctypes
import json
import shutil
import subprocess

import numpy as np
import pytest
import timm
import torch

import lgn_nas
from lgn_nas.export import to_c
from lgn_nas.inputs import InputError, check_input, set_range_check
from lgn_nas.layers import LogicBlock

CC = shutil.which("gcc") or shutil.which("cc")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = timm.create_model("lgn_dense_s", depth=2, width=300, input_bits=3, relaxation="hard_st",
                            thresholds="distributive", seed=0)
    net.encoder.fit(torch.rand(200, 1, 28, 28) ** 2)  # thresholds that are not round numbers
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 3)
    return net.eval()


@pytest.fixture(scope="module")
def netlist(model):
    return lgn_nas.discretize(model)


@pytest.fixture(scope="module")
def compiled(netlist):
    pytest.importorskip("tvm")
    import tvm_ops

    return tvm_ops.compile_netlist(netlist, threads=1)


class CNet:
    """The exported C file as a shared library: ``eval_u8`` / ``eval_f32`` -> (return code, scores, bad)."""

    def __init__(self, lib: ctypes.CDLL, netlist, name: str) -> None:
        self.lib, self.netlist, self.name = lib, netlist, name

    def __call__(self, x: np.ndarray):
        n = x.shape[0]
        counts = np.zeros((n, self.netlist.num_classes), np.uint32)
        bad = ctypes.c_size_t(123456789)
        x = np.ascontiguousarray(x)
        ptr = ctypes.c_void_p(x.ctypes.data)
        if x.dtype == np.uint8:
            rc = getattr(self.lib, f"{self.name}_eval_u8")(ptr, ctypes.c_size_t(n), ctypes.c_void_p(counts.ctypes.data))
        else:
            assert x.dtype == np.float32
            rc = getattr(self.lib, f"{self.name}_eval_f32")(ptr, ctypes.c_size_t(n), ctypes.c_void_p(counts.ctypes.data),
                                                            ctypes.byref(bad))
        return rc, counts.astype(np.float32) / np.float32(self.netlist.tau), bad.value


def _build_c(netlist, directory, name="lgn_net") -> CNet:
    if CC is None:
        pytest.skip("no C compiler (gcc/cc) on PATH")
    source = to_c(netlist, directory / f"{name}.c", function_name=name)
    lib = directory / f"{name}.so"
    subprocess.run([CC, "-std=c99", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-pedantic",
                    f"-D{name.upper()}_NO_MAIN", str(source), "-o", str(lib)], check=True, capture_output=True, text=True)
    return CNet(ctypes.CDLL(str(lib)), netlist, name)


@pytest.fixture(scope="module")
def c_net(netlist, tmp_path_factory):
    return _build_c(netlist, tmp_path_factory.mktemp("c"))


def _batches(netlist):
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (150, 1, 28, 28), dtype=np.uint8)  # two blocks of 64 and a tail
    u8[0], u8[1] = 0, 255
    f32 = rng.random((150, 1, 28, 28), dtype=np.float32) ** 2
    thr = netlist.encoding.thresholds.reshape(-1)
    flat = f32.reshape(-1)
    flat[:thr.size] = thr  # equal to a threshold: not above it
    flat[thr.size:2 * thr.size] = np.nextafter(thr, np.float32(2))  # the next float32: above it
    flat[2 * thr.size:3 * thr.size] = np.nextafter(thr, np.float32(-1))
    f32[5], f32[6] = 0.0, 1.0
    return {"uint8": u8, "float32": f32}


def _torch(model, x, *, train=False):
    model.train(train)
    try:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    finally:
        model.eval()


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_all_four_evaluators_agree_bit_for_bit(dtype, model, netlist, compiled, c_net):
    x = _batches(netlist)[dtype]
    reference = netlist.evaluate(x)
    assert len(np.unique(reference.argmax(axis=1))) > 1  # a circuit that tells images apart
    assert np.array_equal(_torch(model, x), reference)
    assert np.array_equal(_torch(model, x, train=True), reference)  # hard_st: the train forward is the circuit
    assert np.array_equal(compiled(x), reference)
    rc, scores, _ = c_net(x)
    assert rc == 0 and np.array_equal(scores, reference)


def test_uint8_means_value_over_255_everywhere(model, netlist, compiled, c_net):
    x8 = _batches(netlist)["uint8"][:70]
    scaled = x8.astype(np.float32) / np.float32(255.0)
    expected = netlist.evaluate(scaled)
    for scores in (_torch(model, x8), netlist.evaluate(x8), compiled(x8), c_net(x8)[1]):
        assert np.array_equal(scores, expected)


def _refused(netlist):
    good = _batches(netlist)["float32"][:70]
    nan = good.copy()
    nan[3, 0, 4, 5] = np.nan
    inf = good.copy()
    inf[0, 0, 0, 1] = np.inf
    negative = good.copy()
    negative[2, 0, 1, 1] = -0.25
    # (name, batch, words of the error, C return code or None where C's types rule the case out, C bad index)
    return [
        ("0..255 floats", good * 255, "expected uint8 (0..255, read as value / 255) or floats in [0, 1]", 2, 0),
        ("NaN", nan, "input holds nan at sample 3, position (0, 4, 5)", 2, 3 * 784 + 4 * 28 + 5),
        ("infinity", inf, "input holds inf at sample 0, position (0, 0, 1)", 2, 1),
        ("negative", negative, "input holds -0.25 at sample 2, position (0, 1, 1)", 2, 2 * 784 + 29),
        ("int64", (good * 255).astype(np.int64), "input has dtype int64, expected uint8", None, None),
        ("bool", good > 0.5, "input has dtype bool", None, None),
        ("empty batch", good[:0], "input is an empty batch (shape (0, 1, 28, 28)), expected at least one sample", 1, None),
        ("no channel axis", good[:, 0], "input has shape (70, 28, 28), expected (B, 1, 28, 28) with B >= 1", None, None),
        ("wrong size", good[:, :, :27], "input has shape (70, 1, 27, 28), expected (B, 1, 28, 28)", None, None),
    ]


def test_refused_batches_get_the_same_error_from_every_evaluator(model, netlist, compiled, c_net):
    for name, x, words, c_code, c_bad in _refused(netlist):
        messages = []
        for evaluate in (lambda a: _torch(model, a), lambda a: _torch(model, a, train=True), netlist.evaluate,
                         compiled):
            with pytest.raises(InputError) as info:
                evaluate(x)
            messages.append(str(info.value))
        assert len(set(messages)) == 1, (name, messages)
        assert words in messages[0], (name, messages[0])
        if c_code is not None:
            rc, scores, bad = c_net(x)
            assert rc == c_code, name
            assert not scores.any(), name  # nothing written on an error
            if c_bad is not None:
                assert bad == c_bad, name


def test_torch_tensors_and_torch_dtypes_are_read_as_numpy_would(model, netlist):
    x = torch.from_numpy(_batches(netlist)["float32"][:10])
    assert np.array_equal(netlist.evaluate(x), netlist.evaluate(x.numpy()))
    brighter = torch.full((2, 1, 28, 28), 1.5, dtype=torch.bfloat16)  # numpy has no bfloat16
    for evaluate in (netlist.evaluate, model):
        with pytest.raises(InputError, match=r"input holds 1\.5 at sample 0, position \(0, 0, 0\)"):
            evaluate(brighter)


def test_range_check_switch_is_for_torch_models_only(model, netlist):
    x = torch.randn(4, 1, 28, 28)
    previous = set_range_check(False)
    try:
        assert model(x).shape == (4, 10)  # timm's tests feed randn
        with pytest.raises(InputError, match="input holds nan at sample 0, position .*expected finite floats"):
            model(torch.full((1, 1, 28, 28), float("nan")))
        with pytest.raises(InputError, match="expected uint8"):
            netlist.evaluate(x.numpy())
    finally:
        set_range_check(previous)
    with pytest.raises(InputError, match="floats in \\[0, 1\\]"):
        model(x)
    with pytest.raises(ValueError, match="expected True or False"):
        set_range_check("no")


def test_torchscript_model_checks_shape_and_dtype(model):
    scripted = torch.jit.script(model)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(scripted(x), model(x))
        assert torch.equal(scripted((x * 255).to(torch.uint8)), model((x * 255).to(torch.uint8)))
    for bad in (torch.zeros(0, 1, 28, 28), torch.zeros(3, 28, 28), torch.zeros(3, 1, 28, 28, dtype=torch.int64)):
        with pytest.raises(Exception, match="is refused: expected \\(B, 1, \\[28, 28\\]\\) with B >= 1"):
            scripted(bad)


def test_conv_model_and_features_only_follow_the_contract():
    model = timm.create_model("lgn_conv_mnist_s", channels=(4, 8, 8), head_widths=(80,), seed=0).eval()
    x = torch.rand(5, 1, 28, 28)
    x8 = (x * 255).to(torch.uint8)
    netlist = lgn_nas.discretize(model)
    with torch.no_grad():
        assert np.array_equal(model(x8).numpy(), netlist.evaluate(x8.numpy()))
    features = timm.create_model("lgn_conv_mnist_s", channels=(4, 8, 8), features_only=True)
    for m in (model, features):
        with pytest.raises(InputError, match="input holds 255.0"):
            m(torch.full((1, 1, 28, 28), 255.0))
        with pytest.raises(InputError, match=r"expected \(B, 1, 28, 28\)"):
            m(torch.rand(1, 1, 32, 32))


def test_logic_block_netlists_read_real_features(tmp_path):
    block = LogicBlock(12, [40, 20], num_classes=4, input_bits=3).eval()
    netlist = block.to_netlist()
    assert netlist.encoding.domain == "real"
    x = (np.random.default_rng(0).standard_normal((100, 12)) * 2).astype(np.float32)
    with torch.no_grad():
        assert np.array_equal(netlist.evaluate(x), block(torch.from_numpy(x)).numpy())
    with pytest.raises(InputError, match="input has dtype uint8, expected finite floats"):
        netlist.evaluate(x.astype(np.uint8))
    bad = x.copy()
    bad[1, 2] = np.inf
    with pytest.raises(InputError, match=r"input holds inf at sample 1, position \(2,\), expected finite floats"):
        netlist.evaluate(bad)
    path = tmp_path / "block.lgn"
    netlist.save(path)
    assert lgn_nas.load_netlist(path).encoding.domain == "real"
    c_net = _build_c(netlist, tmp_path, name="blk")
    rc, scores, _ = c_net(x)
    assert rc == 0 and np.array_equal(scores, netlist.evaluate(x))
    rc, _, index = c_net(bad)
    assert rc == 2 and index == 14
    assert not hasattr(c_net.lib, "blk_eval_u8")  # uint8 has no meaning for features
    header = (tmp_path / "blk.c").read_text().split("*/")[0]
    assert "finite floats (NaN and infinity refused)" in header and "blk_eval_u8" not in header


def test_c_header_documents_the_contract(netlist, tmp_path):
    header = to_c(netlist, tmp_path / "net.c").read_text().split("*/")[0]
    for words in ("int lgn_net_eval_u8(const uint8_t *x, size_t n, uint32_t *counts);",
                  "uint8 images: value v means v / 255", "floats, each in [0, 1] (NaN and infinity refused)",
                  "LGN_NET_ERR_EMPTY (1) when n == 0", "LGN_NET_ERR_VALUE (2)", "nothing is written to counts",
                  "(1, 28, 28)"):
        assert words in header, words


def test_netlists_saved_before_the_domain_existed_read_by_their_metadata(tmp_path):
    from safetensors.numpy import load_file, save_file

    from lgn_nas.netlist import io

    block = LogicBlock(6, [20, 10], num_classes=2).eval().to_netlist()
    image = lgn_nas.discretize(timm.create_model("lgn_dense_s", depth=1, width=100, seed=0).eval())
    for net, domain in ((block, "real"), (image, "unit")):
        path = tmp_path / "net.lgn"
        net.save(path)
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as handle:
            header = json.loads(handle.metadata()[io.METADATA_KEY])
        del header["input_domain"], header["sha256"]
        header["sha256"] = io._digests(header, tensors)
        save_file(tensors, str(path), metadata={io.METADATA_KEY: json.dumps(header)})
        assert lgn_nas.load_netlist(path).encoding.domain == domain


def test_check_input_refuses_an_unknown_domain():
    with pytest.raises(ValueError, match="input domain 'pixels' is not supported"):
        check_input(np.zeros((1, 1)), (1,), domain="pixels")
