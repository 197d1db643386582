"""timm's model contract, checked over every registered ``lgn*`` model.

Adapted from the checks timm runs on its own models (forward, backward with a gradient for every
parameter, default cfgs, classifier reset, TorchScript, FX) over every registered model, the
largest (66M-gate lgn_conv_g) included: about 3 minutes on 2 cores.
"""
import json

import numpy as np
import pytest
import torch
import timm
from timm.layers import set_layer_config
from timm.models import get_pretrained_cfg_value

import lgn_nas  # noqa: F401  (registers the models)

MODELS = timm.list_models("lgn*")

NUM_CLASSES_DIVIDING_ALL = 20  # divides every registered head width


def _input(model_or_name, batch=2):
    if isinstance(model_or_name, str):
        size = get_pretrained_cfg_value(model_or_name, "input_size")
    else:
        size = model_or_name.pretrained_cfg["input_size"]
    return torch.rand(batch, *size)


CONV_MODELS = [m for m in MODELS if m.startswith("lgn_conv")]


def test_registry_lists_every_family():
    assert {"lgn_dense_s", "lgn_dense_m", "lgn_dense_l"} <= set(MODELS)
    assert {"lgn_conv_s", "lgn_conv_m", "lgn_conv_b", "lgn_conv_l", "lgn_conv_g",
            "lgn_conv_mnist_s", "lgn_conv_mnist_m", "lgn_conv_mnist_l"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_forward_and_default_cfg(name):
    model = timm.create_model(name).eval()
    cfg = model.pretrained_cfg
    x = _input(model, 1)
    out = model(x)
    assert out.shape == (1, cfg["num_classes"]) and not torch.isnan(out).any()
    state = model.state_dict()
    assert cfg["classifier"] + ".weight" in state
    assert cfg["first_conv"] + ".weight" in state
    features = model.forward_features(x)
    if cfg["pool_size"]:  # spatial models: unpooled map of pool_size, channels = num_features
        assert features.shape == (1, model.num_features, *cfg["pool_size"])
    else:
        assert features.shape == (1, model.num_features)
    torch.testing.assert_close(model.forward_head(features), out)
    assert model.forward_head(features, pre_logits=True).shape == (1, model.head_hidden_size)
    model.reset_classifier(0)
    assert model(x).shape == (1, model.num_features)
    model.reset_classifier(0, "")
    unpooled = model(x)
    if cfg["pool_size"]:
        assert unpooled.shape == (1, model.num_features, *cfg["pool_size"])
    else:
        assert unpooled.shape == (1, model.num_features)
    model.reset_classifier(5)
    assert model(x).shape == (1, 5)


@pytest.mark.parametrize("name", CONV_MODELS)
def test_features_only(name):
    model = timm.create_model(name, features_only=True).eval()
    channels = model.feature_info.channels()
    reductions = model.feature_info.reduction()
    x = _input(name, 1)
    outputs = model(x)
    assert len(outputs) == len(channels) >= 3
    sizes = [x.shape[-1]] + [o.shape[-1] for o in outputs]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    for c, r, o in zip(channels, reductions, outputs):
        assert o.shape[1] == c and r == x.shape[-1] // o.shape[-1]
        assert set(o.unique().tolist()) <= {0.0, 1.0}  # eval-mode feature maps are bits


@pytest.mark.parametrize("name", MODELS)
def test_backward_every_parameter_gets_a_gradient(name):
    model = timm.create_model(name, num_classes=NUM_CLASSES_DIVIDING_ALL).train()
    out = model(_input(name))
    out.mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {pname}"
    assert out.shape == (2, NUM_CLASSES_DIVIDING_ALL) and not torch.isnan(out).any()


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_matches_eager(name):
    with set_layer_config(scriptable=True):
        model = timm.create_model(name).eval()
    scripted = torch.jit.script(model)
    x = _input(name)
    torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS)
def test_fx_forward(name):
    model = timm.create_model(name).eval()
    traced = torch.fx.symbolic_trace(model)
    x = _input(name)
    torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS)
def test_fx_backward(name):
    model = timm.create_model(name, num_classes=NUM_CLASSES_DIVIDING_ALL).train()
    traced = torch.fx.symbolic_trace(model)
    out = traced(_input(name))
    out.mean().backward()
    for pname, p in traced.named_parameters():
        assert p.grad is not None, f"no gradient for {pname} through FX"


def test_timm_feature_extractor_through_fx():
    from timm.models._features_fx import create_feature_extractor, get_graph_node_names

    model = timm.create_model("lgn_dense_s", depth=3, width=400).eval()
    _, eval_nodes = get_graph_node_names(model)
    assert any("blocks" in n for n in eval_nodes)
    extractor = create_feature_extractor(model, return_nodes={"blocks.1": "hidden"})
    assert extractor(_input(model))["hidden"].shape == (2, 400)


def test_constructor_arguments_and_errors():
    model = timm.create_model("lgn_dense_s", depth=3, width=[300, 200, 100], input_bits=2, in_chans=3,
                              img_size=[8, 8], num_classes=5, relaxation="gumbel_st",
                              parametrization="truth_table", connectivity="unique", seed=7)
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 5)
    assert model.blocks[0].in_features == 3 * 2 * 64
    again = timm.create_model("lgn_dense_s", depth=3, width=[300, 200, 100], input_bits=2, in_chans=3,
                              img_size=[8, 8], num_classes=5, relaxation="gumbel_st",
                              parametrization="truth_table", connectivity="unique", seed=7)
    assert torch.equal(model.blocks[0].in_a, again.blocks[0].in_a)  # seed fixes the wiring
    with pytest.raises(ValueError, match="num_classes=42 does not divide the head width 8000"):
        timm.create_model("lgn_dense_s", num_classes=42)
    with pytest.raises(ValueError, match="width must be a positive int or a list of 3"):
        timm.create_model("lgn_dense_s", depth=3, width=[10, 10])
    with pytest.raises(ValueError, match="unknown relaxation 'softmx'"):
        timm.create_model("lgn_dense_s", relaxation="softmx")
    small = timm.create_model("lgn_dense_s", depth=2, width=100)
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 1, ...\), got \[2, 3, 28, 28\]"):
        small(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 784\), got \(2, 1024\)"):
        small(torch.rand(2, 1, 32, 32))


def test_constructor_arguments_are_json_and_round_trip_through_save_for_hf(tmp_path):
    kwargs = dict(depth=2, width=[120, 60], input_bits=2, relaxation="gumbel_st", temperature=0.5,
                  group_tau=3.0, connectivity="unique")
    model = timm.create_model("lgn_dense_s", **kwargs).eval()
    json.dumps(kwargs)
    timm.models.save_for_hf(model, str(tmp_path), model_args=kwargs)
    loaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    x = _input(model)
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(loaded.blocks[0].in_a, model.blocks[0].in_a)
    assert loaded.blocks[0].relaxation == "gumbel_st" and loaded.blocks[0].temperature == 0.5


@pytest.mark.parametrize("depth", [1, 3])
def test_input_crop_wires_the_first_layer_to_the_centre_only(depth):
    from lgn_nas.discretize import discretize

    model = timm.create_model("lgn_dense_s", depth=depth, width=200, input_bits=2, input_crop=[4, 6],
                              img_size=[8, 10], seed=3).eval()
    first = model.blocks[0] if depth > 1 else model.classifier
    assert first.in_features == 2 * 8 * 10  # the model still takes the full image
    for index in (first.in_a, first.in_b):
        pixel = index % 80
        rows, cols = pixel // 10, pixel % 10
        assert bool(((rows >= 2) & (rows < 6) & (cols >= 2) & (cols < 8)).all())
    assert len(set(torch.cat([first.in_a, first.in_b]).tolist())) == 2 * 4 * 6  # every crop bit is read
    x = torch.rand(64, 1, 8, 10)
    border = x.clone()
    border[:, :, :2] = torch.rand(64, 1, 2, 10)
    border[:, :, :, 8:] = torch.rand(64, 1, 8, 2)
    assert torch.equal(model(x), model(border))  # the border is never read
    netlist = discretize(model)
    assert np.array_equal(netlist.evaluate(x.numpy()), model(x).numpy())
    scripted = torch.jit.script(model)
    assert torch.equal(scripted(x), model(x))


def test_input_crop_errors_name_the_value():
    with pytest.raises(ValueError, match=r"input_crop=\[30, 30\] must fit inside img_size=\[28, 28\]"):
        timm.create_model("lgn_dense_s", depth=2, width=100, input_crop=30)
    with pytest.raises(ValueError, match="in_subset must hold at least 2 input indices"):
        from lgn_nas.layers import LogicDense
        LogicDense(10, 4, in_subset=[3, 12])
