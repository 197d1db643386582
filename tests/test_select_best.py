"""``select_best``: the test set scores the epoch of best discrete validation accuracy (the paper's
model selection), whose weights are written to ``best.safetensors`` and shipped by the converter."""
from __future__ import annotations

import pytest
import torch

from lgn_nas.pretrained.convert import ConversionError, convert_run
from lgn_nas.train import TrainConfig, evaluate, fit, load_checkpoint, load_run
from train_configs import tiny_config

# lr 2.0 overshoots on the tiny net: validation accuracy peaks at epoch 2 of 4 (0.438, then 0.434, 0.431)
_OVERSHOOTING = dict(epochs=4, lr=2.0, select_best=True)


def _first_best_epoch(history, split: str = "val") -> int:
    scores = [h[f"{split}_acc_discrete"] for h in history]
    return scores.index(max(scores)) + 1


def test_the_test_set_scores_the_best_validation_epoch_and_its_weights_are_written(mnist, tmp_path):
    result = fit(tiny_config(**_OVERSHOOTING), data=mnist, out_dir=tmp_path / "run", plot=False)
    selected = result.metrics["selected_epoch"]
    assert selected == _first_best_epoch(result.history) < 4  # not the last epoch
    best = load_checkpoint(tmp_path / "run" / "best.safetensors")
    last = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert best["meta"]["epoch"] == selected and last["meta"]["epoch"] == 4
    state = result.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in best["model"].items())  # the returned model is the best one
    assert any(not torch.equal(state[k], v) for k, v in last["model"].items())
    x_test, y_test = mnist.test
    scored = evaluate(result.model, x_test[:300], y_test[:300], relaxed=False)
    assert scored["acc"] == result.metrics["test_acc_discrete"]
    assert result.metrics["netlist_agrees"]
    # the run directory stands for the model its metrics score: load_run and --initial-checkpoint take it
    loaded, _ = load_run(tmp_path / "run")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in best["model"].items())
    last_loaded, _ = load_run(tmp_path / "run" / "checkpoint.safetensors")  # a checkpoint file: that epoch
    assert all(torch.equal(last_loaded.state_dict()[k], v) for k, v in last["model"].items())
    same = fit(tiny_config(initial_checkpoint=str(tmp_path / "run"), lr=1e-12, epochs=1), data=mnist, plot=False)
    assert same.metrics["test_acc_discrete"] == result.metrics["test_acc_discrete"]


def test_without_select_best_the_last_epoch_is_scored(mnist, tmp_path):
    result = fit(tiny_config(**dict(_OVERSHOOTING, select_best=False)), data=mnist, out_dir=tmp_path / "run",
                 plot=False)
    assert "selected_epoch" not in result.metrics and not (tmp_path / "run" / "best.safetensors").exists()


def test_a_resumed_run_keeps_the_epoch_selected_before_the_interruption(mnist, tmp_path):
    config = tiny_config(**_OVERSHOOTING)
    full = fit(config, data=mnist, out_dir=tmp_path / "full", plot=False)
    fit(config, data=mnist, out_dir=tmp_path / "split", callbacks=[lambda event: event.epoch == 3], plot=False)
    resumed = fit(config, data=mnist, out_dir=tmp_path / "split", resume=True, plot=False)
    assert resumed.metrics["selected_epoch"] == full.metrics["selected_epoch"]
    assert resumed.metrics["test_acc_discrete"] == full.metrics["test_acc_discrete"]
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_the_converter_ships_the_selected_epoch(mnist, tmp_path):
    result = fit(tiny_config(**dict(_OVERSHOOTING, limit_test=None)), data=mnist, out_dir=tmp_path / "run",
                 plot=False)  # shipped weights are scored on the whole test set
    assert result.metrics["selected_epoch"] < 4
    record = convert_run(tmp_path / "run", "lgn_dense_s.mnist", out_dir=tmp_path / "weights")
    assert "--select-best" in record["command"]
    assert record["test_acc_discrete"] == result.metrics["test_acc_discrete"]
    (tmp_path / "run" / "best.safetensors").unlink()
    with pytest.raises(ConversionError, match=r"best\.safetensors \(a --select-best run ships its selected epoch\)"):
        convert_run(tmp_path / "run", "lgn_dense_s.mnist", out_dir=tmp_path / "weights2")


def test_select_best_needs_a_validation_split():
    with pytest.raises(ValueError, match=r"select_best needs a validation split \(val_size > 0, got 0\)"):
        TrainConfig(select_best=True, val_size=0)
    with pytest.raises(ValueError, match="select_best must be True or False, got 'yes'"):
        TrainConfig(select_best="yes")
