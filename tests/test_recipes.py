import pytest
import timm

import lgn_nas  # noqa: F401  (registers the models)
from lgn_nas.cli import build_parser, train_config
from lgn_nas.train import TrainConfig
from lgn_nas.train.recipes import CIFAR_CONV_RECIPE, CONV_RECIPE, RECIPES, config_with_recipe, get_recipe


def _args(*argv):
    return build_parser().parse_args(["train", *argv, "--out", "unused"])


def test_every_recipe_names_a_registered_model_and_valid_fields():
    models = set(timm.list_models("lgn*"))
    for name in RECIPES:
        assert name in models
        config_with_recipe(name)  # TrainConfig validates every field


def test_conv_models_pick_up_their_recipe_and_dense_models_keep_the_defaults():
    conv = train_config(_args("lgn_conv_mnist_s"))
    for field, value in CONV_RECIPE.items():
        assert getattr(conv, field) == value
    dense = train_config(_args("lgn_dense_s"))
    defaults = TrainConfig()
    assert get_recipe("lgn_dense_s") == {}
    for field in CONV_RECIPE:
        assert getattr(dense, field) == getattr(defaults, field)


def test_flags_override_the_recipe_field_by_field():
    config = train_config(_args("lgn_conv_mnist_s", "--lr", "0.01", "--temperature-schedule", "constant"))
    assert config.lr == 0.01 and config.temperature_schedule == "constant"
    assert config.scheduler == CONV_RECIPE["scheduler"]


def test_cifar_conv_models_pick_up_the_cifar_recipe_and_its_switches_turn_off():
    config = train_config(_args("lgn_conv_s", "--dataset", "cifar10"))
    for field, value in CIFAR_CONV_RECIPE.items():
        assert getattr(config, field) == value
    assert config.optimizer == "adamw" and config.hflip and config.select_best and config.decay_gate_logits
    assert config.random_crop_padding == 2 and config.lr == 0.03
    off = train_config(_args("lgn_conv_s", "--no-hflip", "--no-select-best", "--no-decay-gate-logits",
                             "--random-crop-padding", "0"))
    assert not (off.hflip or off.select_best or off.decay_gate_logits) and off.random_crop_padding == 0
    assert off.lr == 0.03  # the rest of the recipe stays
    # MNIST conv models keep the plain conv recipe: no flips, no decay, Adam at lr 0.1
    mnist = train_config(_args("lgn_conv_mnist_s"))
    assert not (mnist.hflip or mnist.select_best or mnist.decay_gate_logits) and mnist.lr == CONV_RECIPE["lr"]
    # the switches also turn on for a model whose recipe leaves them off
    on = train_config(_args("lgn_dense_s", "--hflip", "--decay-gate-logits", "--select-best"))
    assert on.hflip and on.decay_gate_logits and on.select_best


def test_a_recipe_that_selects_on_validation_is_refused_without_one():
    with pytest.raises(ValueError, match="select_best needs a validation split"):
        train_config(_args("lgn_conv_s", "--val-size", "0"))
    assert not train_config(_args("lgn_conv_s", "--val-size", "0", "--no-select-best")).select_best


def test_get_recipe_returns_a_copy():
    get_recipe("lgn_conv_s")["lr"] = 1.0
    assert RECIPES["lgn_conv_s"]["lr"] == CIFAR_CONV_RECIPE["lr"] != 1.0


def test_bad_recipe_field_is_named(monkeypatch):
    monkeypatch.setitem(RECIPES, "lgn_conv_s", {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="unknown TrainConfig fields: learning_rate"):
        get_recipe("lgn_conv_s")
