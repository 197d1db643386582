import pytest
import torch
import timm

import lgn_nas  # noqa: F401  (registers the models)
from lgn_nas.train.diagnostics import discretization_report, format_report

SMALL_CONV = dict(channels=[4, 8], head_widths=[40, 20], img_size=12, kernel_size=3, padding=1, num_classes=2,
                  in_chans=1, group_tau=2.0, backend="torch", seed=0)


def _model():
    return timm.create_model("lgn_conv_mnist_s", **SMALL_CONV)


def test_report_at_residual_init_is_all_wires():
    rows = discretization_report(_model(), torch.rand(6, 1, 12, 12))
    layers = [r for r in rows if "gates" in r]
    assert [r["layer"] for r in layers] == ["stages.0", "stages.1", "head.hidden.0", "head.classifier"]
    for row in layers:
        assert row["pass_through"] == 1.0 and row["residual"] == 1.0
        assert row["margin_median"] == pytest.approx(5.0)
    assert rows[-1] == {"layer": "group_sum", "tau": 2.0, "outputs_per_class": 10.0}
    # The relaxed mixture keeps ~9% of its weight off 'A', so activations drift from the bits.
    assert layers[-1]["mean_abs_diff"] > 0.01
    assert "| stages.0 | 28 |" in format_report(rows)


def test_report_of_near_one_hot_logits_shows_no_drift():
    model = _model()
    with torch.no_grad():
        for p in model.parameters():
            ids = torch.randint(0, 16, p.shape[:-1])
            p.copy_(torch.nn.functional.one_hot(ids, 16).float() * 60.0)
    rows = [r for r in discretization_report(model, torch.rand(6, 1, 12, 12)) if "gates" in r]
    for row in rows:
        assert row["p_top_mean"] == pytest.approx(1.0)
        assert row["mean_abs_diff"] < 1e-6 and row["flip_rate"] == 0.0
        assert row["mean_relaxed"] == pytest.approx(row["mean_discrete"], abs=1e-6)


def test_gradient_reach_of_hard_straight_through_at_residual_init_is_partial():
    from lgn_nas.train.diagnostics import gradient_reach

    x, y = torch.rand(8, 1, 12, 12), torch.randint(0, 2, (8,))
    soft = gradient_reach(timm.create_model("lgn_conv_mnist_s", **SMALL_CONV), x, y)
    hard = gradient_reach(timm.create_model("lgn_conv_mnist_s", relaxation="hard_st", **SMALL_CONV), x, y)
    assert min(soft.values()) > 0.9
    # Trees: only the gates on the path of leaf 0 (3 of 7) feed 'A' at every level above them.
    assert hard["stages.0"] <= 3 / 7 + 1e-6 and hard["stages.1"] <= 3 / 7 + 1e-6


def test_gap_by_layer_finds_the_one_soft_layer():
    from lgn_nas.train.diagnostics import gap_by_layer

    model = _model().eval()
    x = torch.rand(64, 1, 12, 12)
    with torch.no_grad():  # every layer one-hot (no gap) but stage 0, which is soft
        for name, p in model.named_parameters():
            ids = torch.randint(0, 16, p.shape[:-1], generator=torch.Generator().manual_seed(1))
            p.copy_(torch.nn.functional.one_hot(ids, 16).float() * (0.5 if name.startswith("stages.0") else 60.0))
    y = model(x).argmax(dim=-1)  # labels the discrete circuit gets right, all of them
    with lgn_nas.train.relaxed_mode(model):
        relaxed_correct = float((model(x).argmax(dim=-1) == y).float().mean())
    gaps = gap_by_layer(model, x, y, batch_size=16)
    assert gaps["discrete"] == 1.0 and gaps["relaxed"] == pytest.approx(relaxed_correct)
    assert relaxed_correct < 1.0  # the soft stage changes some answers
    assert gaps["stages.0"] == pytest.approx(relaxed_correct)  # and it alone does
    for name in ("stages.1", "head.hidden.0", "head.classifier"):
        assert gaps[name] == 1.0
    assert not model.training and all(m.relaxation == "softmax" for m in lgn_nas.layers.logic.logic_layers(model))
