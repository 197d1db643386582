"""A run started from another run's weights (``initial_checkpoint``) with its first logic layers frozen
(``freeze_logic_layers``): the conv recipe's last phase."""
from __future__ import annotations

import pytest
import torch

from lgn_nas.layers import LogicDense, LogicTreeConv2d
from lgn_nas.layers.logic import freeze_leading_logic_layers, logic_layers
from lgn_nas.train import TrainConfig, fit, load_run, relaxed_mode
from train_configs import TINY_KWARGS, tiny_config


def _tiny_config(**changes) -> TrainConfig:
    """The shared tiny run, one epoch unless ``changes`` say otherwise."""
    return tiny_config(**{"epochs": 1, **changes})


@pytest.mark.parametrize("relaxation", ["softmax", "gumbel_soft"])
def test_a_frozen_dense_layer_computes_its_circuit_in_training_and_takes_no_gradient(relaxation):
    torch.manual_seed(0)
    layer = LogicDense(64, 32, relaxation=relaxation, init="gaussian", backend="torch")
    x = torch.rand(16, 64, requires_grad=True)
    layer.train()
    assert not torch.equal(layer(x), layer.eval()(x))  # relaxed before freezing
    layer.freeze()
    assert layer.frozen and not layer.weight.requires_grad
    layer.train()
    hard = layer.eval()(x)
    out = layer.train()(x)
    assert torch.equal(out, hard)
    with relaxed_mode(layer):  # the "relaxed" scores of training see the circuit too
        assert torch.equal(layer(x), hard)
    out.sum().backward()
    assert layer.weight.grad is None and x.grad is not None  # gradients still reach the layer's input


def test_a_frozen_tree_conv_computes_its_circuit_in_training():
    torch.manual_seed(0)
    conv = LogicTreeConv2d(2, 4, kernel_size=3, padding=1, tree_depth=2, channels_per_tree=2, init="gaussian",
                           backend="torch")
    x = torch.rand(3, 2, 6, 6)
    conv.freeze()
    assert torch.equal(conv.train()(x), conv.eval()(x))


def test_freeze_leading_logic_layers_takes_them_in_forward_order_and_checks_the_count():
    import timm

    import lgn_nas  # noqa: F401

    model = timm.create_model("lgn_dense_s", **TINY_KWARGS)
    layers = list(logic_layers(model))
    assert freeze_leading_logic_layers(model, 1) == len(layers) == 2
    assert [layer.frozen for layer in layers] == [True, False]
    for bad in (3, -1, 1.5, True):
        with pytest.raises(ValueError, match="expected an int from 0 to 2"):
            freeze_leading_logic_layers(model, bad)


def test_a_run_from_an_initial_checkpoint_starts_from_its_weights_and_keeps_frozen_gates(mnist, tmp_path):
    first = fit(_tiny_config(), data=mnist, out_dir=tmp_path / "first", plot=False)
    trained = {k: v.clone() for k, v in first.model.state_dict().items()}

    # zero learning rate: the second run is the first run's model exactly, so it scores the same
    same = fit(_tiny_config(initial_checkpoint=str(tmp_path / "first"), lr=1e-12), data=mnist, plot=False)
    assert same.metrics["test_acc_discrete"] == first.metrics["test_acc_discrete"]

    tuned = fit(_tiny_config(initial_checkpoint=str(tmp_path / "first" / "checkpoint.safetensors"),
                             freeze_logic_layers=1, lr=0.05, seed=1),
                data=mnist, out_dir=tmp_path / "tuned", plot=False)
    state = tuned.model.state_dict()
    first_layer = next(name for name, m in tuned.model.named_modules() if m is next(logic_layers(tuned.model)))
    assert torch.equal(state[f"{first_layer}.weight"], trained[f"{first_layer}.weight"])  # frozen: untouched
    others = [k for k in state if k.endswith(".weight") and not k.startswith(first_layer + ".")]
    assert others and all(not torch.equal(state[k], trained[k]) for k in others)  # the rest trained on
    assert tuned.metrics["netlist_agrees"]
    reloaded, _ = load_run(tmp_path / "tuned")  # frozen again, so its relaxed model is the one the run scored
    assert [layer.frozen for layer in logic_layers(reloaded)] == [True, False]
    # the run records where it started, so its config (and a command rebuilt from it) says so
    assert tuned.config.initial_checkpoint.endswith("checkpoint.safetensors")
    assert tuned.config.freeze_logic_layers == 1


def test_a_resumed_frozen_run_matches_an_uninterrupted_one(mnist, tmp_path):
    fit(_tiny_config(), data=mnist, out_dir=tmp_path / "first", plot=False)
    config = _tiny_config(initial_checkpoint=str(tmp_path / "first"), freeze_logic_layers=1, epochs=2,
                          optimizer="adamw", scheduler="cosine")
    full = fit(config, data=mnist, out_dir=tmp_path / "full", plot=False)
    fit(config, data=mnist, out_dir=tmp_path / "split", callbacks=[lambda event: event.epoch == 1], plot=False)
    resumed = fit(config, data=mnist, out_dir=tmp_path / "split", resume=True, plot=False)
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_the_initial_checkpoint_must_fit_the_model(mnist, tmp_path):
    fit(_tiny_config(), data=mnist, out_dir=tmp_path / "first", plot=False)
    with pytest.raises(ValueError, match="does not fit this lgn_dense_s"):
        fit(_tiny_config(initial_checkpoint=str(tmp_path / "first"), model_kwargs=dict(TINY_KWARGS, width=120)),
            data=mnist, plot=False)
    with pytest.raises(ValueError, match="holds a 'lgn_dense_s' model, expected 'lgn_dense_m'"):
        fit(_tiny_config(model="lgn_dense_m", initial_checkpoint=str(tmp_path / "first")), data=mnist, plot=False)
    with pytest.raises(ValueError, match="freeze_logic_layers must be an int >= 0"):
        _tiny_config(freeze_logic_layers=-2)
