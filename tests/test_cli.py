"""Tests for the lgn-nas command line: train, info, data, argument parsing and refusals."""
from __future__ import annotations

import json

import pytest

from lgn_nas.cli import UsageError, main, parse_model_kwargs
from lgn_nas.netlist import load_netlist

TINY = ["--model-kwargs", "depth=2", "width=200", "init=gaussian", "group_tau=3", "backend=torch",
        "--limit-train", "200", "--limit-test", "200", "--val-size", "1000", "--batch-size", "50", "--lr", "0.05",
        "--no-progress"]


def test_parse_model_kwargs():
    parsed = parse_model_kwargs(["depth=2", "width=[100, 200]", "temperature=0.5", "relaxation=gumbel_st",
                                 "seed=null", "flag=true", "name=\"quoted\"", "thresholds=a=b"])
    assert parsed == {"depth": 2, "width": [100, 200], "temperature": 0.5, "relaxation": "gumbel_st", "seed": None,
                      "flag": True, "name": "quoted", "thresholds": "a=b"}
    assert type(parsed["depth"]) is int and type(parsed["temperature"]) is float
    # comma-separated values are a list, as timm's --model-kwargs makes them a tuple; words stay a string
    assert parse_model_kwargs(["channels=64,128,512", "names=a,b", "mixed=1,b"]) == {
        "channels": [64, 128, 512], "names": "a,b", "mixed": "1,b"}
    for bad in ("depth", "=3", "not a name=1"):
        with pytest.raises(UsageError, match="key=value"):
            parse_model_kwargs([bad])


def test_unknown_model_and_dataset_exit_2(tmp_path, capsys):
    assert main(["train", "lgn_nope", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'lgn_nope'" in err and "lgn_dense_s" in err
    assert main(["train", "lgn_dense_s", "--dataset", "svhn", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'svhn'" in err and "mnist" in err and "cifar10" in err
    assert main(["info", "resnet50"]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_refuses_non_empty_out_dir(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["train", "lgn_dense_s", "--out", str(tmp_path), *TINY]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["train", "lgn_dense_s", "--out", str(tmp_path), "--resume", "--force", *TINY]) == 2
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bad_config_value_exit_2(tmp_path, capsys):
    assert main(["train", "lgn_dense_s", "--out", str(tmp_path / "x"), "--epochs", "0"]) == 2
    assert "epochs must be a positive int" in capsys.readouterr().err


def test_augmentation_options_reach_the_config(tmp_path, capsys, monkeypatch):
    import lgn_nas.train

    class Captured(Exception):
        pass

    def capture(config, **kwargs):
        raise Captured(config)

    monkeypatch.setattr(lgn_nas.train, "fit", capture)
    with pytest.raises(Captured) as info:
        main(["train", "lgn_dense_s", "--out", str(tmp_path / "a"), "--random-crop-padding", "4", "--hflip"])
    config = info.value.args[0]
    assert config.random_crop_padding == 4 and config.hflip is True and config.random_shift == 0
    with pytest.raises(Captured) as info:
        main(["train", "lgn_dense_s", "--out", str(tmp_path / "a")])
    assert info.value.args[0].random_crop_padding == 0 and info.value.args[0].hflip is False
    assert main(["train", "lgn_dense_s", "--out", str(tmp_path / "b"), "--random-crop-padding", "-3"]) == 2
    assert "random_crop_padding must be an int >= 0 (pixels), got -3" in capsys.readouterr().err
    assert main(["train", "lgn_dense_s", "--out", str(tmp_path / "c"), "--random-crop-padding", "4",
                 "--random-shift", "1"]) == 2
    assert "are the same transform" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_train_writes_outputs_then_resume_and_force(tmp_path, capsys, mnist_available):
    out = tmp_path / "run"
    assert main(["train", "lgn_dense_s", "--out", str(out), "--epochs", "1", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "discrete test accuracy" in printed and "gates" in printed
    for name in ("metrics.json", "netlist.lgn", "checkpoint.safetensors", "config.json", "curves.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_acc_relaxed", "test_acc_discrete", "discretization_gap", "unused_gate_fraction",
                "unused_gate_fraction_next_layer", "gates", "gates_raw", "train_seconds", "images_per_second",
                "history"):
        assert key in metrics, key
    assert 0.0 <= metrics["unused_gate_fraction_next_layer"] <= metrics["unused_gate_fraction"] < 1.0
    assert f"{metrics['test_acc_discrete'] * 100:.2f}%" in printed and f"gates {metrics['gates']}" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["model_kwargs"] == {"depth": 2, "width": 200, "init": "gaussian", "group_tau": 3, "backend": "torch"}
    assert load_netlist(out / "netlist.lgn").num_gates == metrics["gates"]

    # --resume with more epochs continues from epoch 1.
    assert main(["train", "lgn_dense_s", "--out", str(out), "--epochs", "2", "--resume", *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]

    # --force starts over and keeps unrelated files.
    (out / "notes.txt").write_text("mine")
    assert main(["train", "lgn_dense_s", "--out", str(out), "--epochs", "1", "--force", *TINY]) == 0
    assert [h["epoch"] for h in json.loads((out / "metrics.json").read_text())["history"]] == [1]
    assert (out / "notes.txt").read_text() == "mine"

    # info on the run directory describes the trained model: its simplified netlist is the saved one.
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"gates after simplification: {metrics['gates']} (of the trained model's discretisation)" in printed
    assert "published gate count" not in printed  # depth=2 width=200 is not the paper's shape
    assert main(["info", str(out), "--model-kwargs", "depth=3"]) == 2
    assert main(["info", str(tmp_path)]) == 2
    assert "checkpoint.safetensors is missing" in capsys.readouterr().err


def test_info(capsys):
    assert main(["info", "lgn_dense_s", "--model-kwargs", "depth=3", "width=[100,200,300]"]) == 0
    out = capsys.readouterr().out
    assert "layers: 3 (100, 200, 300)" in out
    assert "gates: 600 (as built)" in out
    assert "gates after simplification:" in out and "untrained" in out
    assert "logic depth: 3 (as built)" in out
    assert "parameters: 9600" in out  # 600 neurons x 16 gate logits


def test_data_subcommand_registered(capsys):
    assert main(["data", "list"]) == 0
    assert capsys.readouterr().out.split() == ["cifar10", "fashion_mnist", "mnist"]


def test_missing_subcommand_is_usage_error():
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
