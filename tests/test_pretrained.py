"""Tests for lgn_nas.pretrained: the compact weights, the converter, and the weights shipped in the package."""
from __future__ import annotations

import hashlib
import json
import os
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import timm

import lgn_nas
from lgn_nas import discretize
from lgn_nas import pretrained as pretrained_module
from lgn_nas.cli import build_parser, train_config
from lgn_nas.layers import LogicDense, LogicTreeConv2d
from lgn_nas.layers.parametrizations import gate_ids, logits_for_gate_ids
from lgn_nas.pretrained import (
    PRETRAINED_LOGIT, PRETRAINED_TAGS, compact_state_dict, expand_state_dict, read_record, soften_gate_logits,
    weights_path,
)
from lgn_nas.pretrained.convert import (
    ConversionError, check_train_command, convert_run, main as convert_main, train_command,
)
from lgn_nas.train.recipes import config_with_recipe
from lgn_nas.train import (TrainConfig, atomic_write_json, build_model, load_checkpoint, relaxed_mode,
                           save_checkpoint)

SMALL = {
    "lgn_dense_s": dict(depth=3, width=[120, 80, 40], input_bits=2, input_crop=20, group_tau=2.0, backend="torch"),
    "lgn_conv_mnist_s": dict(channels=[2, 4, 8], head_widths=[60, 40, 20], group_tau=2.0, backend="torch"),
}


def _drop_config_fields(path: Path, *fields: str) -> None:
    """Rewrite a run's config.json or checkpoint without ``fields``, as an older lgn-nas wrote them."""
    if path.suffix == ".json":
        config = json.loads(path.read_text())
        atomic_write_json(path, {k: v for k, v in config.items() if k not in fields})
        return
    state = load_checkpoint(path)
    meta = dict(state["meta"], config={k: v for k, v in state["meta"]["config"].items() if k not in fields})
    save_checkpoint(path, model_state=state["model"], optimizer_state=state["optimizer"], meta=meta)


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Trained-looking gate logits: a random argmax per gate."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (LogicDense, LogicTreeConv2d)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 3)
    return model


def _fake_run(run_dir: Path, model_name: str = "lgn_dense_s", *, dataset: str = "mnist", seed: int = 0,
              **config_changes) -> Path:
    """A finished `lgn-nas train` run directory holding a random model (no data or training needed)."""
    config = config_with_recipe(model_name, model_kwargs=dict(SMALL[model_name]), dataset=dataset, epochs=2,
                                batch_size=64, lr=0.02, seed=seed, **config_changes)  # as `lgn-nas train` builds it
    torch.manual_seed(seed)
    model = _randomise(build_model(config, num_classes=10, input_shape=(1, 28, 28)), seed).eval()
    netlist = discretize(model)
    save_checkpoint(run_dir / "checkpoint.safetensors", model_state=model.state_dict(), optimizer_state=None,
                    meta={"config": config.to_dict(), "epoch": 2, "global_step": 10, "history": [], "world_size": 1})
    atomic_write_json(run_dir / "config.json", config.to_dict())
    atomic_write_json(run_dir / "metrics.json", {
        "model": model_name, "dataset": dataset, "epochs": 2, "test_acc_discrete": 0.1234, "test_acc_relaxed": 0.2,
        "test_acc_netlist": 0.1234, "gates": int(netlist.simplify()[0].num_gates), "gates_raw": int(netlist.num_gates),
        "logic_depth": 4, "netlist_agrees": True, "train_seconds": 1.0, "wall_seconds": 2.0})
    return run_dir


#: The shared JPEG-q75 copy of CIFAR-10 beside the repository clone (the data lgn_conv_s.cifar10_jpeg was
#: trained on); elsewhere the test looks in $LGN_DATA_DIR and skips with the loader's reason.
SHARED_CIFAR10 = Path(os.environ.get("LGN_CIFAR10_ROOT", Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg"))


def _images(count: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- the compact form

@pytest.mark.parametrize("parametrization", ["raw16", "truth_table"])
def test_logits_for_gate_ids_inverts_gate_ids(parametrization):
    ids = torch.arange(16).repeat(3, 1)
    weight = logits_for_gate_ids(ids, parametrization, logit=PRETRAINED_LOGIT)
    assert torch.equal(gate_ids(weight, parametrization), ids)
    with pytest.raises(ValueError, match=r"gate ids must lie in 0..15, got 0..16"):
        logits_for_gate_ids(torch.tensor([0, 16]), parametrization, logit=1.0)


@pytest.mark.parametrize("parametrization", ["raw16", "truth_table"])
@pytest.mark.parametrize("relaxation", ["softmax", "gumbel_st", "hard_st"])
def test_compact_round_trip_is_the_exact_circuit_and_the_relaxed_forward_equals_it(parametrization, relaxation):
    kwargs = dict(SMALL["lgn_dense_s"], parametrization=parametrization, relaxation=relaxation)
    original = _randomise(timm.create_model("lgn_dense_s", seed=1, **kwargs), seed=2).eval()
    compact = compact_state_dict(original)
    assert compact["blocks.0.gate_ids"].dtype == torch.uint8 and compact["blocks.0.gate_ids"].shape == (120,)
    assert compact["blocks.0.in_a"].dtype == torch.uint16  # 2 bits x 784 pixels > 255
    assert compact["blocks.1.in_a"].dtype == torch.uint8 and "blocks.0.weight" not in compact
    assert compact["encoder.thresholds"].dtype == torch.float32
    fresh = timm.create_model("lgn_dense_s", seed=9, **kwargs).eval()  # other wiring, other gates
    fresh.load_state_dict(expand_state_dict(compact, fresh))
    x = _images()
    with torch.no_grad():
        expected = original(x)
        assert torch.equal(fresh(x), expected)
        with relaxed_mode(fresh, keep_relaxation=True):  # the training forward, noise included
            assert torch.equal(fresh(x), expected)
        soften_gate_logits(fresh)
        assert torch.equal(fresh.eval()(x), expected)  # softened: same circuit, live gradients
        assert float(fresh.blocks[0].weight.max()) == pytest.approx(5.0)


def test_expand_refuses_weights_of_another_shape_and_passes_full_state_dicts_through():
    model = timm.create_model("lgn_dense_s", **SMALL["lgn_dense_s"])
    full = model.state_dict()
    assert expand_state_dict(full, model) is full
    other = timm.create_model("lgn_dense_s", **dict(SMALL["lgn_dense_s"], width=[100, 80, 40]))
    with pytest.raises(ValueError, match=r"hold \(100,\) gate ids for 'blocks.0', but this model's layer has \(120,\)"):
        expand_state_dict(compact_state_dict(other), model)


# --------------------------------------------------------------------------- the converter

@pytest.mark.parametrize("model_name,tag", [("lgn_dense_s", "lgn_dense_s.mnist"),
                                            ("lgn_conv_mnist_s", "lgn_conv_mnist_s.mnist")])
def test_converter_round_trip_through_timm_pretrained(tmp_path, model_name, tag):
    run = _fake_run(tmp_path / "run", model_name)
    out = tmp_path / "weights"
    record = convert_run(run, tag, out_dir=out)
    path = weights_path(tag, out)
    data = path.read_bytes()
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["weights_bytes"] == len(data)
    assert read_record(tag, out) == json.loads(json.dumps(record))
    # the recorded command is an `lgn-nas train` command that runs the run's config
    args = build_parser().parse_args(shlex.split(record["command"])[1:])
    assert train_config(args).to_dict() == {**record["config"], "data_root": None}
    model = timm.create_model(model_name, pretrained=True, pretrained_cfg=tag.split(".")[1],
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    assert model._model_args == {k: v for k, v in SMALL[model_name].items() if k != "backend"}
    original, _ = lgn_nas.train.load_run(run)
    x = _images()
    with torch.no_grad():
        assert torch.equal(model(x), original(x))
    assert discretize(model).num_gates == record["gates_raw"]


def test_converter_keeps_a_typed_command_that_reproduces_the_run(tmp_path):
    run = _fake_run(tmp_path / "run")
    kwargs = " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in SMALL["lgn_dense_s"].items())
    command = f"lgn-nas train lgn_dense_s --epochs 2 --batch-size 64 --lr 0.02 --model-kwargs {kwargs} --out /tmp/x"
    assert convert_run(run, "lgn_dense_s.mnist", out_dir=tmp_path / "w", command=command)["command"] == command
    with pytest.raises(ConversionError, match=r"does not reproduce the run's config \(lr: command 0\.01, run 0\.02\)"):
        convert_run(run, "lgn_dense_s.mnist", out_dir=tmp_path / "w", force=True,
                    command=command.replace("--lr 0.02", "--lr 0.01"))


def test_converter_reads_a_config_json_written_before_newer_fields_existed(tmp_path):
    """A run begun by an older lgn-nas (config.json without fields added since, e.g. ``hflip``) and
    resumed by a newer one is the same run: the missing fields count as their defaults."""
    run = _fake_run(tmp_path / "run")
    old = json.loads((run / "config.json").read_text())
    del old["hflip"], old["random_crop_padding"]
    atomic_write_json(run / "config.json", old)
    assert convert_run(run, "lgn_dense_s.mnist", out_dir=tmp_path / "w")["config"]["hflip"] is False
    atomic_write_json(run / "config.json", dict(old, hflip=True))  # a field that really differs
    with pytest.raises(ConversionError, match="config.json differs from the checkpoint's config"):
        convert_run(run, "lgn_dense_s.mnist", out_dir=tmp_path / "w2")


def _unfinished(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    atomic_write_json(run / "metrics.json", dict(metrics, epochs=1))


def _disagreeing(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    atomic_write_json(run / "metrics.json", dict(metrics, netlist_agrees=False))


@pytest.mark.parametrize("change,tag,message", [
    (lambda run: (run / "metrics.json").unlink(), "lgn_dense_s.mnist", "metrics.json is missing"),
    (_unfinished, "lgn_dense_s.mnist", "metrics.json covers 1 epochs but the checkpoint is from epoch 2"),
    (_disagreeing, "lgn_dense_s.mnist", "netlists did not agree"),
    (None, "lgn_dense_m.fashion_mnist", "lgn_dense_m.fashion_mnist is a tag of lgn_dense_m, but the run trained lgn_dense_s"),
    (None, "lgn_dense_s.imagenet", "'lgn_dense_s.imagenet' is not a pretrained tag of lgn-nas"),
    (None, "lgn_dense_s", "TAG must be MODEL.TAG"),
])
def test_converter_refuses_bad_runs_and_tags(tmp_path, change, tag, message):
    run = _fake_run(tmp_path / "run")
    if change is not None:
        change(run)
    with pytest.raises(ConversionError, match=message):
        convert_run(run, tag, out_dir=tmp_path / "w")
    assert not (tmp_path / "w").exists()  # nothing written


def test_converter_refuses_partial_test_sets_other_data_and_overwriting(tmp_path, capsys):
    with pytest.raises(ConversionError, match=r"scored only the first 100 test images \(--limit-test\)"):
        convert_run(_fake_run(tmp_path / "a", limit_test=100), "lgn_dense_s.mnist", out_dir=tmp_path / "w")
    with pytest.raises(ConversionError, match="lgn_dense_s.mnist ships weights trained on mnist, but the run used 'fashion_mnist'"):
        convert_run(_fake_run(tmp_path / "b", dataset="fashion_mnist"), "lgn_dense_s.mnist", out_dir=tmp_path / "w")
    run = _fake_run(tmp_path / "c")
    assert convert_main([str(run), "lgn_dense_s.mnist", "--out-dir", str(tmp_path / "w")]) == 0
    before = weights_path("lgn_dense_s.mnist", tmp_path / "w").read_bytes()
    capsys.readouterr()
    assert convert_main([str(run), "lgn_dense_s.mnist", "--out-dir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists; pass --force" in err
    assert weights_path("lgn_dense_s.mnist", tmp_path / "w").read_bytes() == before
    assert convert_main([str(tmp_path / "nowhere"), "lgn_dense_s.mnist"]) == 2
    assert "is not a directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- tags without files

def test_a_tag_without_its_file_refuses_pretrained_only(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained_module, "weights_dir", lambda: tmp_path)  # nothing installed
    with pytest.raises(FileNotFoundError, match=r"lgn_conv_s.cifar10_jpeg: no pretrained weights in this installation "
                                                r"\(.*lgn_conv_s.cifar10_jpeg.safetensors is missing\); make them"):
        # the cfg's ``file`` is filled at import where the file is installed: as if it were not
        timm.create_model("lgn_conv_s", pretrained=True, pretrained_cfg="cifar10_jpeg",
                          pretrained_cfg_overlay={"file": None})
    model = timm.create_model("lgn_conv_s", channels=[2, 4], head_widths=[40, 20], img_size=16)
    assert model.pretrained_cfg["tag"] == "cifar10_jpeg"  # the default cfg, fine without weights
    with pytest.raises(RuntimeError, match="No pretrained weights exist"):
        timm.create_model("lgn_dense_s", pretrained=True, pretrained_cfg="untrained")


def test_each_models_first_shipped_tag_is_its_default_cfg_and_every_tag_resolves():
    first = {}
    for tag in PRETRAINED_TAGS:
        model_name, _, name = tag.partition(".")
        first.setdefault(model_name, name)
        assert timm.models.get_pretrained_cfg(tag).tag == name
    for model_name, name in first.items():  # pretrained=True without a tag loads the first one
        assert timm.models.get_pretrained_cfg(model_name).tag == name


# --------------------------------------------------------------------------- the shipped weights

def _shipped():
    return [tag for tag in PRETRAINED_TAGS if weights_path(tag).is_file()]


@pytest.mark.parametrize("tag", _shipped() or [pytest.param(None, marks=pytest.mark.skip("no weights shipped"))])
def test_shipped_weights_reproduce_their_recorded_discrete_test_accuracy(tag, load_data):
    record = read_record(tag)
    assert hashlib.sha256(weights_path(tag).read_bytes()).hexdigest() == record["sha256"]
    root = SHARED_CIFAR10 if record["dataset"] == "cifar10" and SHARED_CIFAR10.is_dir() else None
    x, y = load_data(record["dataset"], root=root, val_size=0, dtype=torch.uint8).test
    model = timm.create_model(tag, pretrained=True).eval()  # timm's "model.tag" name
    assert model.pretrained_cfg["tag"] == tag.partition(".")[2] and record["model"] == tag.partition(".")[0]
    netlist = discretize(model)
    assert netlist.num_gates == record["gates_raw"]
    images = x.float().div_(255.0)
    scores = netlist.evaluate(images.numpy())  # the discrete circuit, on the whole test set
    correct = int((scores.argmax(axis=1) == y.numpy()).sum())
    assert correct / len(y) == record["test_acc_discrete"]
    with torch.no_grad():  # and the eval model is that circuit, bit for bit (on 500 images: lgn_dense_m is slow)
        assert np.array_equal(model(images[:500]).numpy(), scores[:500])


@pytest.mark.parametrize("tag", _shipped() or [pytest.param(None, marks=pytest.mark.skip("no weights shipped"))])
def test_shipped_records_commands_still_run_their_config(tag):
    """A recipe change must not silently change what a shipped record's command trains."""
    record = read_record(tag)
    check_train_command(record["command"], record["config"])  # raises naming each field that differs
    commands = record.get("commands", [record["command"]])  # records before fine-tuning phases have one
    assert commands[-1] == record["command"]
    for command in commands:
        build_parser().parse_args(shlex.split(command)[1:])  # every phase still parses


def test_rebuilt_commands_switch_off_what_the_models_recipe_switches_on(tmp_path):
    config = config_with_recipe("lgn_conv_s", dataset="cifar10", hflip=False, select_best=False).to_dict()
    command = train_command(config, out=str(tmp_path / "run"))
    assert "--no-hflip" in command and "--no-select-best" in command and "--no-decay-gate-logits" not in command
    check_train_command(command, config)


def test_rebuilt_commands_keep_list_and_string_model_kwargs(tmp_path):
    kwargs = {"channels": [64, 128, 512, 1024], "thresholds": "learnable", "label": "1,2"}
    config = config_with_recipe("lgn_conv_s", dataset="cifar10", model_kwargs=kwargs).to_dict()
    command = train_command(config, out=str(tmp_path / "run"))
    # a string the parser would read as a list ("1,2") keeps its JSON quotes; a word goes bare
    assert "thresholds=learnable" in command and "'label=\"1,2\"'" in command
    assert build_parser().parse_args(shlex.split(command)[1:]).model_kwargs[0].startswith("channels=")
    check_train_command(command, config)


def test_converter_records_the_runs_a_fine_tuned_run_started_from(tmp_path):
    first = _fake_run(tmp_path / "phase1")
    for name in ("config.json", "checkpoint.safetensors"):  # begun before the fine-tuning fields existed
        _drop_config_fields(first / name, "initial_checkpoint", "freeze_logic_layers")
    second = _fake_run(tmp_path / "phase2", initial_checkpoint=str(first), freeze_logic_layers=1, seed=1)
    record = convert_run(second, "lgn_dense_s.mnist", out_dir=tmp_path / "w")
    assert [phase["epochs"] for phase in record["earlier_phases"]] == [2]
    first_command, second_command = record["commands"]
    assert f"--out {first}" in first_command and "--initial-checkpoint" not in first_command
    assert f"--initial-checkpoint {first}" in second_command and "--freeze-logic-layers 1" in second_command
    assert second_command == record["command"]
    (first / "metrics.json").unlink()  # the first phase is gone: the record could not say how it was made
    with pytest.raises(ConversionError, match=r"the run started from .*phase1 \(its initial_checkpoint\).*metrics.json is missing"):
        convert_run(second, "lgn_dense_s.mnist", out_dir=tmp_path / "w2")
