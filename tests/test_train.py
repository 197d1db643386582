"""Tests for lgn_nas.train: real MNIST training, metrics, resume, NaN handling, schedules, param groups."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lgn_nas
from lgn_nas.layers import LogicDense
from lgn_nas.netlist import load_netlist
from lgn_nas.train import (
    CHECKPOINT_NAME, EpochEnd, StopTraining, TrainConfig, Trainer, TrainingDiverged, atomic_write_json, evaluate,
    evaluate_train_mode, fit, load_checkpoint, make_param_groups, relaxed_mode, temperature_at,
)
from lgn_nas.train import checkpoint as checkpoint_module
from train_configs import TINY_KWARGS, tiny_config  # tests/train_configs.py

# A small net that learns MNIST within one short epoch (measured: 65-69% discrete over 3 seeds).
GOOD_KWARGS = dict(depth=2, width=2000, init="gaussian", group_tau=3.0, backend="torch")


def state_of(model: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- schedules and config

def test_temperature_schedules():
    assert temperature_at("constant", 2.0, None, 0.7) == 2.0
    assert temperature_at("linear", 2.0, 1.0, 0.0) == 2.0
    assert temperature_at("linear", 2.0, 1.0, 0.5) == pytest.approx(1.5)
    assert temperature_at("linear", 2.0, 1.0, 1.0) == pytest.approx(1.0)
    assert temperature_at("cosine", 2.0, 1.0, 0.5) == pytest.approx(1.5)
    assert temperature_at("cosine", 2.0, 1.0, 0.25) == pytest.approx(1.0 + 0.5 * (1 + math.cos(math.pi / 4)))
    assert temperature_at("exponential", 4.0, 0.25, 0.5) == pytest.approx(1.0)
    assert temperature_at("exponential", 4.0, 0.25, 2.0) == pytest.approx(0.25)  # progress is clipped
    with pytest.raises(ValueError, match="unknown temperature schedule"):
        temperature_at("zigzag", 1.0, 0.5, 0.5)


def test_temperature_schedule_applied_per_epoch_and_step(mnist):
    seen = []
    config = tiny_config(model_kwargs=dict(TINY_KWARGS, relaxation="gumbel_soft"), epochs=3, limit_train=100,
                         temperature_schedule="linear", temperature_start=2.0, temperature_end=0.5)
    fit(config, data=mnist, callbacks=[lambda e: seen.append(e.metrics["temperature"])], plot=False)
    assert seen == pytest.approx([2.0, 1.25, 0.5])

    per_step = []

    class Recorder(Trainer):
        def compute_loss(self, scores, targets):
            per_step.append(next(m.temperature for m in self.model.modules() if isinstance(m, LogicDense)))
            return super().compute_loss(scores, targets)

    config = config.replace(epochs=2, temperature_schedule="exponential", temperature_step="step", temperature_start=4.0,
                            temperature_end=0.25)
    Recorder(config, data=mnist, plot=False).fit()
    steps = len(per_step)
    assert steps == 4  # 100 images / 50 per batch x 2 epochs
    expected = [4.0 * (0.25 / 4.0) ** (s / (steps - 1)) for s in range(steps)]
    assert per_step == pytest.approx(expected)


def test_load_run_restores_the_temperature_training_ended_with(mnist, tmp_path):
    from lgn_nas.train import load_run

    config = tiny_config(epochs=2, limit_train=100, temperature_schedule="linear", temperature_start=2.0,
                         temperature_end=0.25, temperature_step="step")
    result = fit(config, data=mnist, out_dir=tmp_path / "run", plot=False)
    model, _ = load_run(tmp_path / "run")
    temperatures = {m.temperature for m in model.modules() if isinstance(m, LogicDense)}
    assert len(temperatures) == 1 and temperatures.pop() == pytest.approx(0.25)
    x, y = mnist.test[0][:300], mnist.test[1][:300]
    assert evaluate(model, x, y, relaxed=True)["acc"] == result.metrics["test_acc_relaxed"]


def test_distributive_thresholds_are_fitted_to_the_training_images(mnist):
    x = mnist.train[0][:300].float() / 255.0
    expected = torch.quantile(x.reshape(-1), torch.arange(1, 10) / 10.0)
    assert float(expected[-1]) > 0.0  # MNIST is mostly blank: only the top deciles are above zero
    config = tiny_config(model_kwargs=dict(TINY_KWARGS, input_bits=9, thresholds="distributive"), epochs=1)
    fitted = fit(config, data=mnist, plot=False).model.encoder.thresholds[0]
    assert torch.allclose(fitted, expected)
    uniform = fit(config.replace(model_kwargs=dict(TINY_KWARGS, input_bits=9)), data=mnist, plot=False)
    assert torch.allclose(uniform.model.encoder.thresholds[0], torch.arange(1, 10) / 10.0)


def test_config_validation_and_round_trip():
    config = tiny_config()
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="epochs"):
        tiny_config(epochs=0)
    with pytest.raises(ValueError, match="temperature_end"):
        tiny_config(temperature_schedule="cosine")
    with pytest.raises(ValueError, match="unknown TrainConfig fields: bogus"):
        TrainConfig.from_dict({"bogus": 1})


def test_unknown_names_listed():
    with pytest.raises(ValueError, match="lgn_dense_s"):
        fit(tiny_config(model="resnet_nope"))
    with pytest.raises(ValueError, match="fashion_mnist"):
        fit(tiny_config(dataset="svhn"))


# --------------------------------------------------------------------------- optimizer groups

def test_gate_logits_excluded_from_weight_decay():
    hybrid = nn.Sequential(nn.Linear(4, 6), LogicDense(6, 8, init="gaussian"))
    groups = {g["name"]: g for g in make_param_groups(hybrid, 0.1)}
    assert [p is hybrid[1].weight for p in groups["gate_logits"]["params"]] == [True]
    assert groups["gate_logits"]["weight_decay"] == 0.0
    assert groups["decay"]["params"][0] is hybrid[0].weight and groups["decay"]["weight_decay"] == 0.1
    assert groups["no_decay"]["params"][0] is hybrid[0].bias and groups["no_decay"]["weight_decay"] == 0.0
    opted_in = {g["name"]: g for g in make_param_groups(hybrid, 0.1, decay_gate_logits=True)}
    assert opted_in["gate_logits"]["weight_decay"] == 0.1


def test_weight_decay_in_the_real_optimizer(mnist):
    trainer = Trainer(tiny_config(epochs=1, limit_train=50, optimizer="adamw", weight_decay=0.5), data=mnist, plot=False)
    trainer.fit()
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [0.0]
    trainer = Trainer(tiny_config(epochs=1, limit_train=50, optimizer="adamw", weight_decay=0.5, decay_gate_logits=True),
                      data=mnist, plot=False)
    trainer.fit()
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [0.5]


# --------------------------------------------------------------------------- real training

def test_real_mnist_training_learns_and_netlist_agrees(mnist, tmp_path):
    config = TrainConfig(model="lgn_dense_s", model_kwargs=dict(GOOD_KWARGS), val_size=1000, limit_train=3000,
                         limit_test=2000, epochs=1, batch_size=50, lr=0.05, seed=0)
    result = fit(config, data=mnist, out_dir=tmp_path)
    m = result.metrics
    # Chance is 10%; this net reaches about 68% discrete / 76% relaxed after these 60 steps.
    assert m["test_acc_discrete"] > 0.45
    assert m["test_acc_relaxed"] > 0.5
    assert m["discretization_gap"] == pytest.approx(m["test_acc_relaxed"] - m["test_acc_discrete"])
    # softmax is deterministic: its training forward is the relaxed model.
    assert m["test_acc_train_mode"] == m["test_acc_relaxed"]
    assert m["train_mode_gap"] == pytest.approx(m["discretization_gap"])
    assert 0.0 <= m["unused_gate_fraction"] < 1.0
    assert 0 < m["gates"] <= m["gates_raw"] == 4000
    assert m["train_seconds"] > 0 and m["images_per_second"] > 0
    assert m["netlist_agrees"] and m["test_acc_netlist"] == m["test_acc_discrete"]
    (epoch,) = result.history
    for key in ("train_loss", "train_acc", "val_acc_relaxed", "val_acc_discrete", "val_gap", "gates", "lr"):
        assert key in epoch
    x_val, y_val = mnist.val
    assert epoch["val_acc_discrete"] == evaluate(result.model, x_val, y_val, relaxed=False)["acc"]
    assert epoch["val_acc_relaxed"] == evaluate(result.model, x_val, y_val, relaxed=True)["acc"]
    for name in ("metrics.json", "netlist.lgn", CHECKPOINT_NAME, "config.json", "curves.png"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["test_acc_discrete"] == m["test_acc_discrete"] and len(on_disk["history"]) == 1
    assert TrainConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == config

    # The saved (simplified) netlist gives the eval model's scores on the test images.
    x_test, y_test = mnist.test[0][:2000], mnist.test[1][:2000]
    netlist = load_netlist(tmp_path / "netlist.lgn")
    x = x_test.float().div(255.0)
    with torch.no_grad():
        expected = result.model.eval()(x).numpy()
    np.testing.assert_allclose(netlist.evaluate(x.numpy()), expected, atol=1e-6)
    assert float((netlist.predict(x.numpy()) == y_test.numpy()).mean()) == pytest.approx(m["test_acc_discrete"])


def test_relaxed_mode_is_noise_free_softmax_and_restores(mnist):
    torch.manual_seed(0)
    model = lgn_nas.models.LogicDenseNet(depth=2, width=200, init="gaussian", relaxation="gumbel_st", drop_rate=0.5,
                                         backend="torch")
    x = mnist.test[0][:64].float().div(255.0)
    with torch.no_grad(), relaxed_mode(model):
        first, second = model(x), model(x)
        assert all(m.relaxation == "softmax" and m.training for m in model.modules() if isinstance(m, LogicDense))
        assert not model.training  # dropout off
    torch.testing.assert_close(first, second)  # no Gumbel noise, no dropout
    assert model.training and all(m.relaxation == "gumbel_st" for m in model.modules() if isinstance(m, LogicDense))
    relaxed = evaluate(model, mnist.test[0][:64], mnist.test[1][:64], relaxed=True, batch_size=20)
    assert relaxed["acc"] == pytest.approx(float((first.argmax(1) == mnist.test[1][:64]).float().mean()))


def test_train_mode_evaluation_samples_gumbel_and_equals_discrete_for_hard_st(mnist):
    x, y = mnist.test[0][:300], mnist.test[1][:300]
    torch.manual_seed(0)
    model = lgn_nas.models.LogicDenseNet(depth=2, width=200, init="gaussian", relaxation="gumbel_st", drop_rate=0.5,
                                         backend="torch")
    rng_before = torch.random.get_rng_state()
    first = evaluate_train_mode(model, x, y, draws=3, seed=5, batch_size=100)
    torch.testing.assert_close(torch.random.get_rng_state(), rng_before)  # caller's stream untouched
    assert first["draws"] == 3 and len(first["acc_per_draw"]) == 3
    assert len(set(first["acc_per_draw"])) > 1  # Gumbel noise: the draws are different networks
    assert evaluate_train_mode(model, x, y, draws=3, seed=5, batch_size=100) == first  # seeded
    assert model.training and all(m.relaxation == "gumbel_st" for m in model.modules() if isinstance(m, LogicDense))
    # hard_st's training forward is the argmax circuit itself: train mode == discrete, one pass.
    for m in model.modules():
        if isinstance(m, LogicDense):
            m.relaxation = "hard_st"
    hard = evaluate_train_mode(model, x, y, draws=3, batch_size=100)
    assert hard["draws"] == 1
    assert hard["acc"] == evaluate(model, x, y, relaxed=False, batch_size=100)["acc"]
    with pytest.raises(ValueError, match="draws must be an int >= 1, got 0"):
        evaluate_train_mode(model, x, y, draws=0)
    with pytest.raises(ValueError, match="train_mode=True needs relaxed=True"):
        evaluate(model, x, y, relaxed=False, train_mode=True)


# --------------------------------------------------------------------------- callbacks, resume, NaN

def test_callbacks_see_epochs_and_can_stop(mnist, tmp_path):
    seen = []

    def stop_after_first(event: EpochEnd):
        seen.append((event.epoch, sorted(event.metrics), event.config.epochs, len(event.history)))
        return True

    result = fit(tiny_config(epochs=3), data=mnist, callbacks=[stop_after_first], plot=False)
    assert result.stopped_early and result.epochs_completed == 1 and len(seen) == 1
    assert seen[0][0] == 1 and "val_acc_discrete" in seen[0][1]
    assert "test_acc_discrete" in result.metrics  # final metrics still computed

    def raise_stop(event):
        raise StopTraining("enough")

    result = fit(tiny_config(epochs=3), data=mnist, callbacks=[raise_stop], plot=False)
    assert result.stopped_early and result.stop_reason == "enough" and result.epochs_completed == 1

    class Pruned(Exception):
        pass

    def prune(event):
        raise Pruned()

    with pytest.raises(Pruned):
        fit(tiny_config(epochs=3), data=mnist, callbacks=[prune], out_dir=tmp_path)
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["meta"]["epoch"] == 1  # checkpoint before callbacks


@pytest.mark.parametrize("relaxation", ["softmax", "gumbel_st"])
def test_resume_matches_uninterrupted_run(mnist, tmp_path, relaxation):
    config = tiny_config(model_kwargs=dict(TINY_KWARGS, relaxation=relaxation), epochs=3, optimizer="adamw",
                         weight_decay=0.01, decay_gate_logits=True, scheduler="cosine", warmup_epochs=1,
                         temperature_schedule="cosine", temperature_start=2.0, temperature_end=0.5)
    full = fit(config, data=mnist, out_dir=tmp_path / "full", plot=False)

    stop_at = lambda event: event.epoch == 1  # noqa: E731
    first = fit(config, data=mnist, out_dir=tmp_path / "split", callbacks=[stop_at], plot=False)
    assert first.epochs_completed == 1
    resumed = fit(config, data=mnist, out_dir=tmp_path / "split", resume=True, plot=False)
    assert resumed.epochs_completed == 3
    full_state, resumed_state = state_of(full.model), state_of(resumed.model)
    assert full_state.keys() == resumed_state.keys()
    for key in full_state:
        assert torch.equal(full_state[key], resumed_state[key]), key
    strip = lambda h: [{k: v for k, v in e.items() if "seconds" not in k and "per_second" not in k} for e in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)

    with pytest.raises(ValueError, match="config differs.*lr"):
        fit(config.replace(lr=0.5), data=mnist, out_dir=tmp_path / "split", resume=True, plot=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(mnist, tmp_path):
    epoch_one = {}

    class Poisoned(Trainer):
        def compute_loss(self, scores, targets):
            loss = super().compute_loss(scores, targets)
            return loss * float("nan") if self.global_step == 8 else loss  # step 9 = epoch 2, step 3

    def remember(event):
        epoch_one.update(state_of(event.model))

    trainer = Poisoned(tiny_config(epochs=3), data=mnist, out_dir=tmp_path, callbacks=[remember], plot=False)
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    message = str(info.value)
    assert "non-finite loss" in message and "epoch 2, step 3" in message and "global step 9" in message
    assert str(tmp_path / CHECKPOINT_NAME) in message and "(epoch 1)" in message
    assert isinstance(info.value, FloatingPointError)
    saved = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert saved["meta"]["epoch"] == 1 and saved["meta"]["global_step"] == 6
    for key, value in saved["model"].items():
        assert torch.equal(value, epoch_one[key]), key
    assert not (tmp_path / "metrics.json").exists()


# --------------------------------------------------------------------------- atomic writes

def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    ckpt = tmp_path / CHECKPOINT_NAME
    checkpoint_module.save_checkpoint(ckpt, model_state={"w": torch.ones(3)}, optimizer_state=None, meta={"epoch": 1})
    before = ckpt.read_bytes()
    monkeypatch.setattr(checkpoint_module, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint_module.save_checkpoint(ckpt, model_state={"w": torch.zeros(3)}, optimizer_state=None,
                                          meta={"epoch": 2})
    assert ckpt.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME, "metrics.json"]  # no temporaries
    assert load_checkpoint(ckpt)["meta"]["epoch"] == 1
    assert json.loads(path.read_text()) == {"a": 1}


def test_load_checkpoint_rejects_foreign_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not an lgn-nas training checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_random_shift_translates_each_image_within_bounds():
    from lgn_nas.train.augment import random_shift

    torch.manual_seed(0)
    x = torch.zeros(64, 2, 9, 9)
    x[:, :, 4, 4] = torch.arange(1, 65, dtype=torch.float32)[:, None]  # one marked pixel per image
    shifted = random_shift(x, 2)
    assert shifted.shape == x.shape
    for i in range(64):
        where = (shifted[i, 0] == i + 1).nonzero()
        assert where.shape[0] == 1 and bool(((where[0] - 4).abs() <= 2).all())
        assert torch.equal(shifted[i, 0], shifted[i, 1])  # channels move together
    offsets = {tuple((shifted[i, 0] == i + 1).nonzero()[0].tolist()) for i in range(64)}
    assert len(offsets) > 10  # each image gets its own offset
    assert random_shift(x, 0) is x
    with pytest.raises(ValueError, match="random_shift pixels must be >= 0, got -1"):
        random_shift(x, -1)
    with pytest.raises(ValueError, match="random_shift must be an int >= 0"):
        tiny_config(random_shift=1.5)


def test_training_with_random_shift_sees_shifted_images(mnist, monkeypatch):
    from lgn_nas.train import trainer as trainer_module

    seen = []
    original = trainer_module.random_shift
    monkeypatch.setattr(trainer_module, "random_shift",
                        lambda x, pixels: seen.append((x, pixels, out := original(x, pixels))) or out)
    result = fit(tiny_config(random_shift=2, epochs=1, limit_train=100), data=mnist, plot=False)
    assert result.epochs_completed == 1 and len(seen) == 2  # every step, 100 images / 50
    x, pixels, out = seen[0]
    assert pixels == 2 and out.shape == x.shape and not torch.equal(out, x)
    assert float(out.sum()) == pytest.approx(float(x.sum()), rel=0.05)  # the digit moved, little of it was cut off


def _all_windows(padded: torch.Tensor, height: int, width: int) -> dict:
    """(row offset, column offset) -> the H x W window of one padded (C, H + 2p, W + 2p) image."""
    return {(r, c): padded[:, r:r + height, c:c + width]
            for r in range(padded.shape[1] - height + 1) for c in range(padded.shape[2] - width + 1)}


def test_random_crop_is_a_zero_padded_window_at_a_bounded_offset():
    from lgn_nas.train.augment import random_crop, random_shift

    x = torch.rand(200, 3, 5, 7) + 0.5  # non-square, no zeros, so each window is recognisable
    out = random_crop(x, 3, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3))
    offsets = []
    for i in range(x.shape[0]):
        found = [o for o, window in _all_windows(padded[i], 5, 7).items() if torch.equal(window, out[i])]
        assert len(found) == 1, i
        offsets.append(found[0])
    rows, cols = zip(*offsets)
    assert set(rows) == set(range(7)) and set(cols) == set(range(7))  # every offset in [0, 2 * 3], no other
    assert len(set(offsets)) > 30  # each image its own offset, rows and columns independent
    # Reproducible from a seed (the global generator, as the trainer seeds it, or an explicit one); the
    # same draws as random_shift with pixels = padding, since it is the same transform.
    torch.manual_seed(7)
    first = random_crop(x, 3)
    torch.manual_seed(7)
    assert torch.equal(random_crop(x, 3), first)
    torch.manual_seed(7)
    assert torch.equal(random_shift(x, 3), first)
    assert torch.equal(random_crop(x, 3, generator=torch.Generator().manual_seed(0)), out)
    assert random_crop(x, 0) is x
    with pytest.raises(ValueError, match="random_crop padding must be >= 0, got -2"):
        random_crop(x, -2)
    with pytest.raises(ValueError, match=r"random_crop expects \(batch, channels, height, width\)"):
        random_crop(x[0], 1)


def test_random_hflip_mirrors_about_half_the_images():
    from lgn_nas.train.augment import random_hflip

    x = torch.rand(400, 2, 4, 6)
    out = random_hflip(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(400)])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(400)])
    assert bool((flipped ^ kept).all())  # each image either mirrored left-right or untouched
    assert 150 < int(flipped.sum()) < 250  # p = 0.5 per image
    assert torch.equal(out[flipped][:, :, :, 0], x[flipped][:, :, :, -1])  # column 0 is the old last column
    assert torch.equal(random_hflip(x, generator=torch.Generator().manual_seed(0)), out)
    assert torch.equal(random_hflip(x, 1.0), x.flip(-1))
    assert random_hflip(x, 0.0) is x
    with pytest.raises(ValueError, match=r"random_hflip p must be in \[0, 1\], got 1.5"):
        random_hflip(x, 1.5)


def test_augmentation_config_values_checked():
    config = tiny_config(random_crop_padding=4, hflip=True)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig().random_crop_padding == 0 and TrainConfig().hflip is False
    with pytest.raises(ValueError, match="random_crop_padding must be an int >= 0 \\(pixels\\), got -1"):
        tiny_config(random_crop_padding=-1)
    with pytest.raises(ValueError, match="random_crop_padding must be an int >= 0 \\(pixels\\), got 2.0"):
        tiny_config(random_crop_padding=2.0)
    with pytest.raises(ValueError, match=r"random_shift \(1\) and random_crop_padding \(4\) are the same transform"):
        tiny_config(random_shift=1, random_crop_padding=4)
    with pytest.raises(ValueError, match="hflip must be True or False, got 'yes'"):
        tiny_config(hflip="yes")


def test_training_applies_crop_and_flip_every_step_and_only_when_asked(mnist, monkeypatch):
    from lgn_nas.train import trainer as trainer_module

    calls = []
    for name in ("random_shift", "random_crop", "random_hflip"):
        original = getattr(trainer_module, name)
        monkeypatch.setattr(trainer_module, name, lambda x, *args, _name=name, _original=original:
                            calls.append((_name, args, tuple(x.shape))) or _original(x, *args))
    fit(tiny_config(random_crop_padding=2, hflip=True, epochs=1, limit_train=100), data=mnist, plot=False)
    assert calls == [("random_crop", (2,), (50, 1, 28, 28)), ("random_hflip", (), (50, 1, 28, 28))] * 2
    calls.clear()
    fit(tiny_config(epochs=1, limit_train=100), data=mnist, plot=False)
    assert calls == []  # off by default: the images reach the model untouched


def test_resume_with_crop_and_flip_matches_uninterrupted_run(mnist, tmp_path):
    config = tiny_config(random_crop_padding=3, hflip=True, epochs=2, limit_train=200)
    full = fit(config, data=mnist, out_dir=tmp_path / "full", plot=False)
    fit(config, data=mnist, out_dir=tmp_path / "split", callbacks=[lambda event: event.epoch == 1], plot=False)
    resumed = fit(config, data=mnist, out_dir=tmp_path / "split", resume=True, plot=False)
    assert resumed.epochs_completed == 2
    full_state, resumed_state = state_of(full.model), state_of(resumed.model)
    for key in full_state:
        assert torch.equal(full_state[key], resumed_state[key]), key
    plain = state_of(fit(config.replace(random_crop_padding=0, hflip=False), data=mnist, plot=False).model)
    assert not all(torch.equal(full_state[key], plain[key]) for key in full_state)  # the augmentation acted


def test_a_model_built_already_trains_as_the_one_fit_builds_and_the_result_carries_both_netlists(mnist):
    """fit(config, model=...) (the search's one build per trial) trains exactly as fit(config) does."""
    from lgn_nas.train import build_model

    config = tiny_config(model_kwargs=dict(TINY_KWARGS, input_bits=2, thresholds="distributive"))
    built = fit(config, data=mnist, plot=False)
    torch.manual_seed(config.seed)
    model = build_model(config, num_classes=mnist.num_classes, input_shape=mnist.input_shape)
    given = fit(config, data=mnist, plot=False, model=model)
    assert given.model is model
    assert given.history == [dict(h, train_seconds=g["train_seconds"], images_per_second=g["images_per_second"])
                             for h, g in zip(built.history, given.history)]
    for result in (built, given):
        simplified, _ = result.netlist.simplify()
        assert result.simplified_netlist == simplified
        assert result.metrics["gates"] == simplified.num_gates


def _denormal_survives() -> bool:
    """Whether a denormal float32 (below 1.2e-38) survives an operation in this thread."""
    return bool((torch.tensor([1e-39], dtype=torch.float32) * 1.5).item() != 0.0)


def test_fit_flushes_denormals_while_it_trains_and_not_after(mnist):
    # Cold softmax mixtures over large logits make denormals, which cost x86 cores 4-5x per step.
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode (torch.set_flush_denormal returned False)")
    torch.set_flush_denormal(False)
    assert _denormal_survives()
    seen = []
    fit(tiny_config(epochs=1), data=mnist, callbacks=[lambda e: seen.append(_denormal_survives())], plot=False)
    assert seen == [False]
    assert _denormal_survives()


def test_training_host_keeps_the_heap_on_glibc_unless_the_user_chose(monkeypatch):
    from lgn_nas.train.host import _glibc, training_host

    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    with training_host() as host:
        assert host.keep_heap == (_glibc() is not None)  # glibc accepted both thresholds
        assert host.flush_denormal == (not _denormal_survives())
    assert _denormal_survives()
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    with training_host() as host:
        assert not host.keep_heap
