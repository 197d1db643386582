"""timm's model contract beyond what timm's own suite checks (``test_timm_suite.py`` runs that one).

Exactness over every registered ``lgn*`` model (TorchScript and FX give the eager scores bit for bit),
the head contract on small shapes (pre-logits bits, classifier reset that keeps the hidden layers,
uneven class groups, the unpooled map), features_only per family, the cfg that follows ``in_chans`` and
``img_size``, and the constructor arguments.
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


# Small shapes of each family, for the head contract (timm's own suite runs the registered shapes).
SMALL = {
    "lgn_dense_s": dict(depth=3, width=[60, 50, 40]),
    "lgn_conv_mnist_s": dict(channels=[4, 8, 8], head_widths=[72, 50, 40]),
    "lgn_conv_s": dict(channels=[4, 8, 8, 16], head_widths=[40]),
    "lgn_hybrid_resnet18": dict(head_widths=[60, 40]),
}


@pytest.mark.parametrize("name", SMALL)
def test_head_contract_pre_logits_reset_and_unpooled_map(name):
    model = timm.create_model(name, seed=0, init="gaussian", **SMALL[name]).eval()
    cfg = model.pretrained_cfg
    x = _input(model, 3)
    out = model(x)
    assert out.shape == (3, cfg["num_classes"])
    features = model.forward_features(x)
    assert features.shape == (3, model.num_features, *cfg["pool_size"])
    torch.testing.assert_close(model.forward_head(features), out, rtol=0, atol=0)
    pre_logits = model.forward_head(features, pre_logits=True)
    assert pre_logits.shape == (3, model.head_hidden_size)
    model.reset_classifier(0)  # the classifier goes, the layers before it stay: the pre-logits bits
    assert model.num_classes == 0 and torch.equal(model(x), pre_logits)
    assert set(model(x).unique().tolist()) <= {0.0, 1.0}
    model.reset_classifier(7)
    assert model(x).shape == (3, 7) and torch.equal(model.forward_head(features, pre_logits=True), pre_logits)
    model.reset_classifier(0, "")  # no head at all: the map
    assert torch.equal(model(x), features)
    headless = timm.create_model(name, num_classes=0, global_pool="", **SMALL[name])
    assert not any(n.startswith(("head", "classifier")) for n, _ in headless.named_parameters())
    assert headless.eval()(x).shape == features.shape


def test_global_pool_names_what_it_supports():
    for name in ("lgn_dense_s", "lgn_conv_mnist_s", "lgn_hybrid_resnet18"):
        with pytest.raises(ValueError, match=r"global_pool='avg' is not supported; expected 'flatten'"):
            timm.create_model(name, global_pool="avg", **SMALL[name])
    model = timm.create_model("lgn_dense_s", **SMALL["lgn_dense_s"])
    with pytest.raises(ValueError, match=r"LogicDenseNet: global_pool='max' is not supported"):
        model.reset_classifier(0, "max")


@pytest.mark.parametrize("name", ["lgn_dense_s", "lgn_conv_mnist_s", "lgn_hybrid_resnet18"])
def test_in_chans_and_img_size_other_than_the_cfg_are_reported_in_it(name):
    from timm.data import resolve_data_config

    kwargs = dict(SMALL[name], in_chans=2, img_size=[36, 32] if name != "lgn_hybrid_resnet18" else 64)
    model = timm.create_model(name, **kwargs).eval()
    config = resolve_data_config(model=model)
    assert config["input_size"][0] == 2 and len(config["mean"]) == len(config["std"]) == 2
    assert model(torch.rand(2, *config["input_size"])).shape == (2, 10)
    assert model.forward_features(torch.rand(1, *config["input_size"])).shape[2:] == model.pretrained_cfg["pool_size"]
    default = timm.create_model(name, **SMALL[name])
    assert default.pretrained_cfg["input_size"] == timm.models.get_pretrained_cfg_value(name, "input_size")


def test_timm_device_and_dtype_arguments():
    model = timm.create_model("lgn_conv_mnist_s", device="meta", dtype=torch.float64, seed=1,
                              **SMALL["lgn_conv_mnist_s"])
    assert {t.device.type for t in model.state_dict().values()} == {"meta"}
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    model.reset_classifier(5)
    assert {(p.device.type, p.dtype) for p in model.get_classifier().parameters()} == {("meta", torch.float64)}


def test_uneven_class_groups_score_every_output_once():
    model = timm.create_model("lgn_dense_s", depth=2, width=[50, 23], num_classes=4, seed=0, init="gaussian").eval()
    x = _input(model, 16)
    bits = model.classifier(model.forward_head(model.forward_features(x), pre_logits=True))
    groups = [bits[:, 0:6], bits[:, 6:12], bits[:, 12:18], bits[:, 18:23]]  # 23 = 6 + 6 + 6 + 5
    expected = torch.stack([g.sum(1) for g in groups], 1) / model.group_tau
    assert torch.equal(model(x), expected)


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


def test_features_only_dense_gives_each_hidden_layer_as_a_1x1_map():
    model = timm.create_model("lgn_dense_s", features_only=True, depth=4, width=[30, 20, 10, 40]).eval()
    assert model.feature_info.channels() == [30, 20, 10] and model.feature_info.reduction() == [28] * 3
    x = _input("lgn_dense_s", 2)
    outputs = model(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 30, 1, 1), (2, 20, 1, 1), (2, 10, 1, 1)]
    assert all(set(o.unique().tolist()) <= {0.0, 1.0} for o in outputs)
    assert not any(n.startswith("classifier") for n, _ in model.named_parameters())
    first = timm.create_model("lgn_dense_s", features_only=True, out_indices=(1,), depth=4, width=[30, 20, 10, 40])
    assert first.feature_info.channels() == [20] and len(first.model.blocks) == 2  # the later layers are pruned
    with pytest.raises(ValueError, match="lgn_dense_s with depth=1 has no hidden layer.*needs depth >= 2"):
        timm.create_model("lgn_dense_s", features_only=True, depth=1, width=40)


def test_features_only_hybrid_gives_the_backbone_maps_up_to_the_cut():
    model = timm.create_model("lgn_hybrid_resnet18", features_only=True, head_widths=[40, 30]).eval()
    backbone = timm.create_model("resnet18", features_only=True).eval()
    assert model.feature_info.channels() == backbone.feature_info.channels()
    assert model.feature_info.reduction() == backbone.feature_info.reduction()
    x = _input("lgn_hybrid_resnet18", 2)
    assert [o.shape for o in model(x)] == [o.shape for o in backbone(x)]
    assert not any(n.startswith("model.head") for n, _ in model.named_parameters())
    cut = timm.create_model("lgn_hybrid_resnet18", features_only=True, feature_index=2, head_widths=[40, 30])
    assert cut.feature_info.channels() == backbone.feature_info.channels()[:3]


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
    with pytest.raises(ValueError, match="num_classes=9000 exceeds the head width 8000: every class needs"):
        timm.create_model("lgn_dense_s", num_classes=9000)
    with pytest.raises(ValueError, match="width must be a positive int or a list of 3"):
        timm.create_model("lgn_dense_s", depth=3, width=[10, 10])
    with pytest.raises(ValueError, match="width must be a positive int or a list of 3 positive ints, got 5.5"):
        timm.create_model("lgn_dense_s", depth=3, width=5.5)
    with pytest.raises(ValueError, match="unknown relaxation 'softmx'"):
        timm.create_model("lgn_dense_s", relaxation="softmx")
    small = timm.create_model("lgn_dense_s", depth=2, width=100)
    with pytest.raises(ValueError, match=r"input has shape \(2, 3, 28, 28\), expected \(B, 1, 28, 28\) with B >= 1"):
        small(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"input has shape \(2, 1, 32, 32\), expected \(B, 1, 28, 28\)"):
        small(torch.rand(2, 1, 32, 32))


def test_constructor_arguments_are_json_and_round_trip_through_save_for_hf(tmp_path):
    kwargs = dict(depth=2, width=[120, 60], input_bits=2, relaxation="gumbel_st", temperature=0.5,
                  group_tau=3.0, connectivity="unique")
    model = timm.create_model("lgn_dense_s", **kwargs).eval()
    json.dumps(kwargs)
    timm.models.save_for_hf(model, str(tmp_path), model_args=kwargs, safe_serialization=True)
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


@pytest.mark.parametrize("name", SMALL)
def test_timm_optimizer_factory_decays_what_lgn_nas_train_does(name):
    from timm.optim import create_optimizer_v2
    from lgn_nas.train import make_param_groups

    model = timm.create_model(name, **SMALL[name])
    timm_decay = {id(p): g["weight_decay"] for g in create_optimizer_v2(model, "adamw", weight_decay=0.05).param_groups
                  for p in g["params"]}
    ours = {id(p): g["weight_decay"] for g in make_param_groups(model, 0.05) for p in g["params"]}
    assert timm_decay == ours and set(timm_decay) == {id(p) for p in model.parameters()}
    assert 0.0 in ours.values() and (0.05 in ours.values()) == name.startswith("lgn_hybrid")


def test_drop_path_and_drop_block_rates():
    for name in ("lgn_dense_s", "lgn_conv_mnist_s"):
        with pytest.raises(ValueError, match=r"drop_path_rate=0.1 is not supported .*expected 0 or None"):
            timm.create_model(name, drop_path_rate=0.1, **SMALL[name])
        timm.create_model(name, drop_path_rate=0.0, drop_block_rate=None, **SMALL[name])
    hybrid = timm.create_model("lgn_hybrid_resnet18", drop_path_rate=0.1, **SMALL["lgn_hybrid_resnet18"])
    assert any(type(m).__name__ == "DropPath" for m in hybrid.backbone.modules())  # the backbone's own
