import math

import pytest
import torch

from lgn_nas.gates import TRUTH_TABLES, gate_basis
from lgn_nas.layers import GroupSum, LogicDense, Thermometer, logic_dense, logic_dense_mixture, logic_dense_plain
from lgn_nas.layers.connectivity import make_connections
from lgn_nas.layers.parametrizations import gate_coefficients, gate_ids, init_weight
from lgn_nas.layers.relaxations import RELAXATIONS, relax_bernoulli, relax_categorical

CORNER_A = torch.tensor([0.0, 0.0, 1.0, 1.0])
CORNER_B = torch.tensor([0.0, 1.0, 0.0, 1.0])


def _eval_corners(coefficients):
    c = coefficients
    return c[:, 0:1] + c[:, 1:2] * CORNER_A + c[:, 2:3] * CORNER_B + c[:, 3:4] * CORNER_A * CORNER_B


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_each_gate_relaxation_at_binary_inputs_is_its_truth_table(relaxation):
    # A confident raw16 logit vector for every gate: every relaxation's weights are ~one-hot.
    logits = torch.full((16, 16), -30.0)
    logits[torch.arange(16), torch.arange(16)] = 30.0
    for training in (True, False):
        coeffs = gate_coefficients(logits, gate_basis(), "raw16", relaxation, 1.0, training)
        torch.testing.assert_close(_eval_corners(coeffs), torch.tensor(TRUTH_TABLES, dtype=torch.float32),
                                   atol=1e-5, rtol=0)
    # The truth_table parametrisation with confident logits per entry.
    tt_logits = (torch.tensor(TRUTH_TABLES, dtype=torch.float32) * 2 - 1) * 30
    for training in (True, False):
        coeffs = gate_coefficients(tt_logits, gate_basis(), "truth_table", relaxation, 1.0, training)
        torch.testing.assert_close(_eval_corners(coeffs), torch.tensor(TRUTH_TABLES, dtype=torch.float32),
                                   atol=1e-5, rtol=0)
    assert gate_ids(tt_logits, "truth_table").tolist() == list(range(16))
    assert gate_ids(logits, "raw16").tolist() == list(range(16))


def test_eval_mode_is_the_argmax_gate_deterministically():
    torch.manual_seed(0)
    w = torch.randn(50, 16)
    for relaxation in RELAXATIONS:
        a = relax_categorical(w, relaxation, 0.5, False)
        b = relax_categorical(w, relaxation, 0.5, False)
        assert torch.equal(a, b)
        assert torch.equal(a.argmax(-1), w.argmax(-1)) and torch.equal(a.sum(-1), torch.ones(50))
        assert torch.equal(relax_bernoulli(w[:, :4], relaxation, 0.5, False), (w[:, :4] > 0).float())


def test_straight_through_forward_is_hard_and_backward_is_soft():
    torch.manual_seed(0)
    w = torch.randn(20, 16, requires_grad=True)
    for relaxation in ("gumbel_st", "hard_st"):
        p = relax_categorical(w, relaxation, 1.0, True)
        assert torch.equal(p.detach().sum(-1), torch.ones(20))
        assert set(p.detach().unique().tolist()) <= {0.0, 1.0}
        (p * torch.randn(20, 16)).sum().backward()
        assert w.grad.abs().sum() > 0
        w.grad = None
    hard = relax_categorical(w.detach(), "hard_st", 1.0, True)
    assert torch.equal(hard.argmax(-1), w.argmax(-1))
    soft = relax_categorical(w.detach(), "gumbel_soft", 1.0, True)
    assert ((soft > 0) & (soft < 1)).all()
    # Gumbel noise: the hard forward choice is not always the argmax
    draws = torch.stack([relax_categorical(w.detach(), "gumbel_st", 1.0, True).argmax(-1) for _ in range(20)])
    assert (draws != w.argmax(-1)).any()


def test_temperature_sharpens_softmax():
    w = torch.randn(10, 16)
    hot = relax_categorical(w, "softmax", 10.0, True)
    cold = relax_categorical(w, "softmax", 0.1, True)
    assert (cold.max(-1).values > hot.max(-1).values).all()


def test_four_coefficient_op_equals_sixteen_gate_mixture_in_value_and_gradient():
    torch.manual_seed(1)
    x = torch.rand(7, 12, dtype=torch.float64, requires_grad=True)
    in_a, in_b = torch.randint(0, 12, (9,)), torch.randint(0, 12, (9,))
    logits = torch.randn(9, 16, dtype=torch.float64, requires_grad=True)
    probs = logits.softmax(-1)
    ours = logic_dense(x, in_a, in_b, probs @ gate_basis(torch.float64))
    ref = logic_dense_mixture(x, in_a, in_b, probs)
    torch.testing.assert_close(ours, ref)
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, (x, logits), g, retain_graph=True)
    grads_ref = torch.autograd.grad(ref, (x, logits), g)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want)


def test_fused_op_gradcheck_float64():
    torch.manual_seed(2)
    x = torch.rand(5, 8, dtype=torch.float64, requires_grad=True)
    in_a, in_b = torch.randint(0, 8, (6,)), torch.randint(0, 8, (6,))
    c = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, c: logic_dense(x, in_a, in_b, c), (x, c))
    torch.testing.assert_close(logic_dense(x, in_a, in_b, c), logic_dense_plain(x, in_a, in_b, c))


def test_fused_op_does_not_save_gathered_inputs():
    x = torch.rand(32, 100, requires_grad=True)
    in_a, in_b = torch.randint(0, 100, (400,)), torch.randint(0, 100, (400,))
    c = torch.randn(400, 4, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logic_dense(x, in_a, in_b, c)
    # x, two index vectors and the coefficients; nothing of size batch x out_features
    assert sum(saved) == 32 * 100 + 400 + 400 + 400 * 4


@pytest.mark.parametrize("parametrization", ["raw16", "truth_table"])
@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_logic_dense_trains_and_eval_is_binary(parametrization, relaxation):
    torch.manual_seed(3)
    layer = LogicDense(30, 40, relaxation=relaxation, parametrization=parametrization, init="gaussian")
    x = (torch.rand(16, 30) > 0.5).float()
    layer.train()
    layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    layer.eval()
    y = layer(x)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    ids = layer.gate_ids()
    table = torch.tensor(TRUTH_TABLES, dtype=torch.float32)
    a, b = x[:, layer.in_a], x[:, layer.in_b]
    expected = table[ids][None].expand(16, -1, -1).gather(2, (2 * a + b).long()[..., None])[..., 0]
    assert torch.equal(y, expected)


def test_residual_init_is_mostly_pass_through():
    for parametrization in ("raw16", "truth_table"):
        layer = LogicDense(10, 20, parametrization=parametrization, init="residual").train()
        c = layer.coefficients().detach()
        # P(A) ~ 0.91: the output follows the first input with weight ca > 0.85, other terms small
        assert (c[:, 1] > 0.85).all() and (c[:, [0, 2, 3]].abs() < 0.1).all()
        assert (layer.gate_ids() == 3).all()


def test_wiring_is_persistent_state():
    layer = LogicDense(10, 20)
    state = layer.state_dict()
    assert "in_a" in state and "in_b" in state and "basis" not in state
    other = LogicDense(10, 20)
    other.load_state_dict(state)
    assert torch.equal(other.in_a, layer.in_a) and torch.equal(other.in_b, layer.in_b)


def test_connectivity_schemes():
    g = torch.Generator().manual_seed(0)
    a, b = make_connections("random", 100, 500, generator=g)
    assert (a != b).all() and a.max() < 100 and b.max() < 100
    assert torch.unique(torch.cat([a, b])).numel() == 100
    a, b = make_connections("unique", 50, 600, generator=g)
    pairs = set(zip(torch.minimum(a, b).tolist(), torch.maximum(a, b).tolist()))
    assert len(pairs) == 600 and (a != b).all()
    assert torch.unique(torch.cat([a, b])).numel() == 50
    a, b = make_connections("unique", 5, 10, generator=g)  # every pair exactly once
    assert len(set(zip(torch.minimum(a, b).tolist(), torch.maximum(a, b).tolist()))) == 10


def test_bad_layer_arguments_name_the_value():
    with pytest.raises(ValueError, match="unknown relaxation 'gumble'"):
        LogicDense(4, 4, relaxation="gumble")
    with pytest.raises(ValueError, match="unknown parametrization 'raw32'"):
        LogicDense(4, 4, parametrization="raw32")
    with pytest.raises(ValueError, match="unknown connectivity 'full'"):
        LogicDense(4, 4, connectivity="full")
    with pytest.raises(ValueError, match="unknown init 'zeros'"):
        LogicDense(4, 4, init="zeros")
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        LogicDense(4, 4, backend="cuda")
    with pytest.raises(ValueError, match="cannot wire 11 neurons to 5 inputs"):
        LogicDense(5, 11, connectivity="unique")
    with pytest.raises(ValueError, match="in_features >= 2.*got 1"):
        LogicDense(1, 4)
    layer = LogicDense(6, 4)
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 6\), got \(3, 7\)"):
        layer(torch.rand(3, 7))


def test_group_sum():
    gs = GroupSum(3, tau=2.0)
    x = torch.arange(12, dtype=torch.float32).reshape(2, 6)
    torch.testing.assert_close(gs(x), torch.tensor([[0.5, 2.5, 4.5], [6.5, 8.5, 10.5]]))
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        GroupSum(0)
    with pytest.raises(ValueError, match="tau must be > 0"):
        GroupSum(2, tau=0)


def test_thermometer_uniform_and_distributive():
    enc = Thermometer(3, in_channels=2)
    torch.testing.assert_close(enc.thresholds, torch.tensor([[0.25, 0.5, 0.75]] * 2))
    x = torch.tensor([0.1, 0.3, 0.6, 0.9]).reshape(1, 1, 2, 2).repeat(1, 2, 1, 1)
    bits = enc(x)
    assert bits.shape == (1, 6, 2, 2)
    # channel-major: channel c, threshold t -> output channel c * T + t
    assert bits[0, :3, 1, 1].tolist() == [1.0, 1.0, 1.0] and bits[0, :3, 0, 1].tolist() == [1.0, 0.0, 0.0]
    dist = Thermometer(1, in_channels=1, method="distributive").fit(torch.rand(1000, 1, 4, 4) ** 2)
    assert 0.2 < float(dist.thresholds) < 0.3  # median of u^2 is 0.25
    with pytest.raises(ValueError, match=r"input has shape \(1, 3, 2, 2\), expected \(B, 2, ...\) with B >= 1"):
        enc(torch.rand(1, 3, 2, 2))
    with pytest.raises(ValueError, match="unknown threshold method 'log'"):
        Thermometer(2, method="log")
