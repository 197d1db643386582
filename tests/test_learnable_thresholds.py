"""Learnable input thresholds (``thresholds="learnable"``): the same hard bits, a straight-through
gradient into the thresholds, their own optimizer group, and a netlist that uses the trained values."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

import lgn_nas  # noqa: F401
from lgn_nas.discretize import discretize
from lgn_nas.layers import Thermometer
from lgn_nas.train import fit, make_param_groups
from lgn_nas.train.build import THRESHOLD_LR_SCALE
from train_configs import TINY_KWARGS, tiny_config


def test_learnable_thresholds_give_the_uniform_bits_and_a_ramp_gradient():
    learnable = Thermometer(3, in_channels=2, method="learnable")
    uniform = Thermometer(3, in_channels=2, method="uniform")
    assert isinstance(learnable.thresholds, torch.nn.Parameter)
    assert torch.equal(learnable.thresholds.detach(), uniform.thresholds)
    x = torch.rand(5, 2, 4, 4)
    bits = learnable.train()(x)
    assert torch.equal(bits, uniform(x))  # the forward is the hard comparison, in training too
    bits.sum().backward()
    grad = learnable.thresholds.grad
    # d/dt of clamp((x - t) / w + 1/2, 0, 1) is -1/w for every pixel within w/2 of t, else 0
    t = learnable.thresholds.detach().reshape(1, 2, 3, 1, 1)
    near = ((x.unsqueeze(2) - t).abs() < learnable.ramp_width / 2).sum(dim=(0, 3, 4)).float()
    assert torch.allclose(grad, -near / learnable.ramp_width)
    assert (grad != 0).any()
    with torch.no_grad():
        assert torch.equal(learnable.eval()(x), uniform(x))


def test_uint8_images_reach_learnable_thresholds_on_the_pixel_scale():
    encoder = Thermometer(1, in_channels=1, method="learnable").train()
    x = torch.tensor([[[[0, 127, 128, 255]]]], dtype=torch.uint8)
    out = encoder(x)
    assert out.flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    out.sum().backward()
    assert encoder.thresholds.grad.item() == pytest.approx(-2 / encoder.ramp_width)  # 127/255 and 128/255


def test_learnable_thresholds_get_their_own_group_without_decay():
    model = timm.create_model("lgn_dense_s", **dict(TINY_KWARGS, input_bits=2, thresholds="learnable"))
    groups = {g["name"]: g for g in make_param_groups(model, 0.1, decay_gate_logits=True, lr=0.03)}
    assert [p is model.encoder.thresholds for p in groups["thresholds"]["params"]] == [True]
    assert groups["thresholds"]["weight_decay"] == 0.0
    assert groups["thresholds"]["lr"] == pytest.approx(0.03 * THRESHOLD_LR_SCALE)
    assert "lr" not in groups["gate_logits"]  # the run's lr
    assert "encoder.thresholds" in model.no_weight_decay()  # timm's optimizer factory exempts them too
    fixed = timm.create_model("lgn_dense_s", **dict(TINY_KWARGS, input_bits=2))
    assert "thresholds" not in {g["name"] for g in make_param_groups(fixed, 0.1)}


def test_a_run_trains_the_thresholds_and_its_netlist_uses_them(mnist, tmp_path):
    config = tiny_config(model_kwargs=dict(TINY_KWARGS, input_bits=2, thresholds="learnable"), epochs=1,
                         optimizer="adamw")
    result = fit(config, data=mnist, out_dir=tmp_path / "run", plot=False)
    trained = result.model.encoder.thresholds.detach()
    start = Thermometer(2, in_channels=1).thresholds
    assert not torch.equal(trained, start)
    assert (trained - start).abs().max() < 0.2  # a tenth of the lr: they move, they do not jump
    assert result.metrics["netlist_agrees"]
    netlist = discretize(result.model.eval())
    assert np.array_equal(netlist.encoding.thresholds, trained.numpy())
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        assert np.array_equal(netlist.evaluate(x.numpy()), result.model(x).numpy())
