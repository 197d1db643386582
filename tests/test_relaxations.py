"""The relaxation registry's Kim 2023 scaled-Gumbel sampling (``kim_gumbel``): its statistics, its
gradients, and that every logic layer (dense, conv tree, TorchScript, the TVM conv path) and the
search space pick it up from the registry."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from lgn_nas import discretize
from lgn_nas.gates import gate_basis
from lgn_nas.layers import LogicDense, LogicTreeConv2d
from lgn_nas.layers.relaxations import (
    KIM_NOISE_SCALE, RELAXATIONS, STOCHASTIC_RELAXATIONS, Relaxation, _gumbel_like, bernoulli, categorical,
    relax_bernoulli, relax_categorical,
)

BETA = RELAXATIONS["kim_gumbel"].noise_scale
LOGITS = torch.tensor([1.5, 1.0, 0.6, 0.3, 0.0, -0.2, -0.4, -0.6, -0.8, -1.0, -1.2, -1.5, -1.8, -2.0, -2.5, -3.0])


def test_kim_gumbel_is_registered_with_its_scale_and_counts_as_stochastic():
    r = RELAXATIONS["kim_gumbel"]
    assert (r.noise, r.straight_through, r.noise_scale) == (True, False, KIM_NOISE_SCALE) and 0 < BETA < 1
    assert "kim_gumbel" in STOCHASTIC_RELAXATIONS
    assert all(RELAXATIONS[n].noise_scale == 1.0 for n in ("gumbel_soft", "gumbel_st"))
    for bad in (-0.1, float("inf"), float("nan"), "0.5"):
        with pytest.raises(ValueError, match="noise_scale must be a finite number >= 0"):
            Relaxation(True, False, noise_scale=bad)


def test_noise_scale_zero_is_the_softmax_exactly_and_one_is_gumbel_soft():
    torch.manual_seed(0)
    w = torch.randn(64, 16) * 3
    for tau in (0.3, 1.0, 2.0):
        assert torch.equal(categorical(w, True, False, tau, True, 0.0), F.softmax(w / tau, dim=-1))
        assert torch.equal(bernoulli(w[:, :4], True, False, tau, True, 0.0), torch.sigmoid(w[:, :4] / tau))
    torch.manual_seed(1)
    one = categorical(w, True, False, 0.7, True, 1.0)
    torch.manual_seed(1)
    assert torch.equal(one, relax_categorical(w, "gumbel_soft", 0.7, True))


def test_kim_draw_is_softmax_of_the_logits_over_the_noise_scale():
    """The perturbed argmax is Gumbel-max on logits / beta: gate i with probability softmax(z / beta)_i,
    at any temperature; the plain Gumbel draw (scale 1) follows softmax(z), which this must not match."""
    n = 200_000
    torch.manual_seed(2)
    w = relax_categorical(LOGITS.expand(n, 16), "kim_gumbel", 0.8, True)
    assert torch.allclose(w.sum(-1), torch.ones(n)) and ((w > 0) & (w < 1)).all()  # a soft sample
    freq = torch.bincount(w.argmax(-1), minlength=16).double() / n
    expected = F.softmax(LOGITS.double() / BETA, dim=-1)
    sigma = (expected * (1 - expected) / n).sqrt()
    assert ((freq - expected).abs() <= 5 * sigma + 1e-4).all(), (freq, expected)
    assert (freq - F.softmax(LOGITS.double(), dim=-1)).abs().max() > 0.05  # the scale is applied
    # the truth-table entries: P(z + beta * logistic > 0) = sigmoid(z / beta)
    z = torch.tensor([-1.0, -0.3, 0.2, 1.2])
    torch.manual_seed(3)
    on = (relax_bernoulli(z.expand(n, 4), "kim_gumbel", 1.0, True) > 0.5).double().mean(0)
    p = torch.sigmoid(z.double() / BETA)
    assert ((on - p).abs() <= 5 * (p * (1 - p) / n).sqrt()).all(), (on, p)


def test_gradients_flow_and_eval_is_the_deterministic_argmax():
    torch.manual_seed(4)
    for shape, relax in (((30, 16), relax_categorical), ((30, 4), relax_bernoulli)):
        w = torch.randn(*shape, requires_grad=True)
        (relax(w, "kim_gumbel", 1.0, True) * torch.randn(*shape)).sum().backward()
        assert torch.isfinite(w.grad).all() and (w.grad != 0).float().mean() > 0.9
        first = relax(w.detach(), "kim_gumbel", 1.0, False)
        assert torch.equal(first, relax(w.detach(), "kim_gumbel", 1.0, False))
    w = torch.randn(30, 16)
    assert torch.equal(relax_categorical(w, "kim_gumbel", 1.0, False).argmax(-1), w.argmax(-1))


def _scaled_gumbel_coefficients(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """What the layer's coefficients must be: the registry-free formula of the module docstring."""
    return F.softmax((weight + BETA * _gumbel_like(weight)) / tau, dim=-1) @ gate_basis()


@pytest.mark.parametrize("make", [lambda: LogicDense(20, 30, relaxation="kim_gumbel", temperature=0.7),
                                  lambda: LogicTreeConv2d(4, 6, 3, tree_depth=2, padding=1, relaxation="kim_gumbel",
                                                          temperature=0.7, backend="torch")],
                         ids=["dense", "conv_tree"])
def test_layers_take_the_noise_scale_from_the_registry(make):
    layer = make().train()
    torch.manual_seed(5)
    got = layer.coefficients()
    torch.manual_seed(5)
    torch.testing.assert_close(got, _scaled_gumbel_coefficients(layer.weight.detach(), 0.7), rtol=0, atol=1e-6)
    layer.relaxation = "gumbel_soft"  # swapping the relaxation swaps the scale
    assert layer._noise_scale == 1.0


@pytest.mark.parametrize("kind", ["dense", "conv_tree"])
def test_tvm_kernels_train_with_kim_gumbel_as_the_torch_path_does(kind):
    """The TVM dense and fused tree-conv kernels take the relaxed coefficients the layer computes, so the
    same noise draw gives the torch path's outputs and gate-logit gradients."""
    pytest.importorskip("tvm")
    torch.manual_seed(6)
    x = torch.rand(8, 40) if kind == "dense" else torch.rand(2, 4, 10, 10)
    outs, grads = [], []
    for backend in ("torch", "tvm"):
        torch.manual_seed(7)
        layer = (LogicDense(40, 64, relaxation="kim_gumbel", init="gaussian", backend=backend) if kind == "dense" else
                 LogicTreeConv2d(4, 6, 3, tree_depth=2, padding=1, relaxation="kim_gumbel", init="gaussian",
                                 backend=backend)).train()
        torch.manual_seed(8)  # the same noise draw for both backends
        y = layer(x)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append(layer.weight.grad)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)


def _train_a_few_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 6) -> list:
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model.train()
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name,kwargs,shape", [
    ("lgn_dense_s", dict(depth=2, width=200, num_classes=4, in_chans=1, img_size=[8, 8]), (1, 8, 8)),
    ("lgn_conv_s", dict(channels=[6, 12], kernel_size=[3, 3], padding=[1, 0], img_size=12, in_chans=2, input_bits=2,
                        head_widths=[60, 40], num_classes=4, group_tau=2.0, groups=[2, 3]), (2, 12, 12)),
], ids=["dense", "conv"])
def test_models_train_with_kim_gumbel_and_eval_equals_the_netlist(name, kwargs, shape):
    torch.manual_seed(9)
    model = timm.create_model(name, relaxation="kim_gumbel", init="gaussian", seed=0, **kwargs)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.rand(64, *shape), torch.randint(0, 4, (64,))
    losses = _train_a_few_steps(model, x, y)
    assert all(np.isfinite(losses)) and any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()
    with torch.no_grad():
        scores = model(x).numpy()
        assert np.array_equal(scores, model(x).numpy())  # deterministic in eval
    assert np.array_equal(discretize(model).evaluate(x.numpy()), scores)


def test_torchscript_compiles_kim_gumbel_and_matches_eager():
    from timm.layers import set_layer_config

    with set_layer_config(scriptable=True):
        model = timm.create_model("lgn_dense_s", depth=2, width=120, relaxation="kim_gumbel", seed=0)
    scripted = torch.jit.script(model)
    x = torch.rand(3, 1, 28, 28)
    for training in (True, False):
        model.train(training)
        scripted.train(training)
        torch.manual_seed(10)
        eager = model(x)
        torch.manual_seed(10)
        torch.testing.assert_close(scripted(x), eager, rtol=0, atol=1e-6)


def test_search_spaces_offer_kim_gumbel_with_a_constant_gumbel_tau():
    optuna = pytest.importorskip("optuna")
    from search_spaces import get_space
    from lgn_nas.train import TrainConfig

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = get_space("dense", relaxation=("kim_gumbel",), temperature_end=(0.05, 0.5))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    genome = space(trial)
    assert genome["relaxation"] == "kim_gumbel" and "gumbel_tau" in trial.params
    assert genome["temperature"] == trial.params["gumbel_tau"]
    template = TrainConfig(model="lgn_dense_s", temperature_schedule="cosine", temperature_start=1.0,
                           temperature_end=0.1)
    overrides = space.suggest_training(trial, genome, template)
    assert overrides["temperature_schedule"] == "constant" and "temperature_end" not in trial.params
    from search_spaces.genome import GenomeError

    with pytest.raises(GenomeError, match="gumbel_tau"):
        space.check(dict(genome, temperature=50.0))
