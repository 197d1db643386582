import numpy as np
import pytest
import torch
import timm

import lgn_nas
from lgn_nas import discretize, load_netlist


def _random_model(parametrization="raw16", **kwargs):
    args = dict(depth=3, width=[300, 200, 100], init="gaussian", parametrization=parametrization, seed=0)
    args.update(kwargs)
    return timm.create_model("lgn_dense_s", **args).eval()


@pytest.mark.parametrize("parametrization", ["raw16", "truth_table"])
@pytest.mark.parametrize("input_bits,in_chans", [(1, 1), (3, 2)])
def test_eval_model_equals_netlist_bit_for_bit(parametrization, input_bits, in_chans):
    torch.manual_seed(0)
    model = _random_model(parametrization, input_bits=input_bits, in_chans=in_chans, img_size=12)
    netlist = discretize(model)
    assert netlist.num_gates == 600 and netlist.num_classes == 10 and netlist.num_inputs == 144 * in_chans * input_bits
    x = torch.rand(300, in_chans, 12, 12)
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.array_equal(netlist.evaluate(x.numpy()), expected)
    # the bit-level path gives the same counts
    bits = netlist.encode(x.numpy())
    with torch.no_grad():
        torch_bits = model.encoder(x).flatten(1).numpy().astype(bool)
    assert np.array_equal(bits, torch_bits)
    counts = netlist.evaluate_bits(bits)
    assert np.array_equal(counts.astype(np.float32) / np.float32(model.group_tau), expected)


def test_distributive_thresholds_and_uint8_inputs_carry_over():
    model = _random_model(input_bits=4, thresholds="distributive", img_size=10)
    data = torch.rand(500, 1, 10, 10) ** 3
    model.encoder.fit(data)
    netlist = discretize(model)
    x = (torch.rand(64, 1, 10, 10) ** 3)
    with torch.no_grad():
        assert np.array_equal(netlist.evaluate(x.numpy()), model(x).numpy())
    raw = np.random.default_rng(0).integers(0, 256, size=(8, 1, 10, 10), dtype=np.uint8)
    with torch.no_grad():
        expected = model(torch.from_numpy(raw.astype(np.float32) / 255)).numpy()
    assert np.array_equal(netlist.evaluate(raw), expected)


def test_simplified_netlist_keeps_outputs_and_save_load_round_trip(tmp_path):
    model = _random_model()
    netlist = discretize(model)
    simple = discretize(model, simplify=True)
    assert simple.num_gates <= netlist.num_gates
    x = np.random.default_rng(1).random((200, 1, 12 * 0 + 28, 28), dtype=np.float32)
    assert np.array_equal(simple.evaluate(x), netlist.evaluate(x))
    path = tmp_path / "net.lgn"
    netlist.save(path)
    loaded = load_netlist(path)
    assert np.array_equal(loaded.evaluate(x), netlist.evaluate(x))
    assert loaded.metadata["architecture"] == "lgn_dense_s"


def test_metrics_helpers():
    model = _random_model()
    fraction = lgn_nas.unused_gate_fraction(model)
    assert 0.0 < fraction < 1.0  # random nets leave some gates unreachable or constant
    assert fraction == discretize(model).unused_gate_fraction()
    assert lgn_nas.discretization_gap(0.9, 0.85) == pytest.approx(0.05)
    assert lgn_nas.accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 0.5


def test_discretize_refuses_non_lgn_modules_and_headless_models():
    with pytest.raises(TypeError, match="cannot discretize Linear"):
        discretize(torch.nn.Linear(2, 2))
    model = _random_model()
    model.reset_classifier(0)
    with pytest.raises(ValueError, match="num_classes=0"):
        discretize(model)
