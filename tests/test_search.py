"""search_spaces: spaces, genomes, storages, objectives and the ``lgn-nas search`` command (tiny runs)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

import search_spaces  # noqa: E402
from search_spaces import (  # noqa: E402
    GenomeError, Objective, StorageError, build_model, get_space, list_spaces, make_pruner, mask_url, open_storage,
    open_study, raw_gate_count, validate_genome,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _genomes(name, n=6, **bounds):
    space = get_space(name, **bounds)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((trial, space(trial)))
        study.tell(trial, 0.0)
    return out


def test_registry_and_bad_names():
    assert list_spaces() == ["conv", "dense", "hybrid"]
    with pytest.raises(ValueError, match="unknown search space 'nope'.*conv, dense, hybrid"):
        get_space("nope")
    with pytest.raises(ValueError, match="bounds for search space 'dense'.*width"):
        get_space("dense", widht=(1, 2))
    with pytest.raises(ValueError, match="relaxation: unknown choice"):
        get_space("dense", relaxation=("softmax", "magic"))
    with pytest.raises(ValueError, match=r"crop_border: \[14\] leave no pixel of a \[28, 28\] image"):
        get_space("dense", crop_border=(0, 14))


@pytest.mark.parametrize("name", ["dense", "conv"])
def test_genomes_are_valid_and_raw_gates_exact(name):
    from lgn_nas import discretize

    for trial, genome in _genomes(name, 5):
        assert genome == json.loads(json.dumps(genome))  # plain JSON data
        assert validate_genome(genome) == genome
        model = build_model(genome)
        netlist = discretize(model)
        # The conv net's zero padding reads one constant gate that gate_count() leaves out.
        assert raw_gate_count(genome) in (netlist.num_gates, netlist.num_gates - 1)
        params = trial.params
        if name == "dense":
            assert params["depth"] == genome["depth"]
            assert ("gumbel_tau" in params) == genome["relaxation"].startswith("gumbel")
            assert ("thresholds" in params) == (genome["input_bits"] > 1)
            border = params.get("crop_border", 0)
            assert genome.get("input_crop") == ([28 - 2 * border] * 2 if border else None)
        else:
            assert len(genome["channels"]) == params["stages"]
            assert all(f"tree_depth_{i}" in params for i in range(params["stages"]))
        assert (genome["width"] if name == "dense" and isinstance(genome["width"], int)
                else (genome["width"][-1] if name == "dense" else genome["head_widths"][-1])) % 10 == 0


def test_hybrid_space_builds():
    (_, genome), = _genomes("hybrid", 1, backbone=("resnet18",), head_width=(20, 60))
    assert genome["model"].startswith("lgn_hybrid") and genome["backbone"] == "resnet18"
    assert raw_gate_count(genome) == sum(genome["head_widths"])


def test_validate_genome_names_the_problem():
    good = {"model": "lgn_dense_s", "depth": 2, "width": 50, "num_classes": 10}
    assert validate_genome(good)["width"] == 50
    with pytest.raises(GenomeError, match="unknown model 'lgn_nope'"):
        validate_genome({"model": "lgn_nope"})
    with pytest.raises(GenomeError, match="'widht' is not an argument"):
        validate_genome(dict(good, widht=3))
    with pytest.raises(GenomeError, match="'depth': expected int"):
        validate_genome(dict(good, depth="2"))
    with pytest.raises(GenomeError, match="'group_tau': expected a finite positive"):
        validate_genome(dict(good, group_tau=-1.0))
    with pytest.raises(GenomeError, match="cannot be built.*num_classes=10 exceeds the head width 5"):
        validate_genome(dict(good, width=[40, 5]))
    with pytest.raises(GenomeError, match="too small"):
        validate_genome({"model": "lgn_conv_mnist_s", "channels": [4, 4, 4, 4], "kernel_size": 5, "padding": 0,
                         "head_widths": [10], "in_chans": 1, "img_size": 28})


def test_urls_are_masked_and_bad_storages_refused(tmp_path):
    url = "postgresql://alice:hunter2@db.example:5432/optuna"
    assert mask_url(url) == "postgresql://alice:***@db.example:5432/optuna"
    assert "hunter2" not in search_spaces.storage.scrub(f"failed for {url} with hunter2", url)
    with pytest.raises(StorageError, match="unknown storage 'redis://u:\\*\\*\\*@h/0'"):
        open_storage("redis://u:pw@h/0")
    port = _closed_port()
    with pytest.raises(StorageError) as info:
        open_storage(f"postgresql://bob:topsecret@127.0.0.1:{port}/db")
    assert "topsecret" not in str(info.value) and "bob:***@127.0.0.1" in str(info.value)
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(str(tmp_path / "missing" / "x.log"))


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_study_resume_and_objective_mismatch(tmp_path):
    log = str(tmp_path / "s.log")
    study = open_study(study_name="s", storage=log, objectives=("acc", "gates"), metadata={"space": "dense"})
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    again = open_study(study_name="s", storage=log, objectives="acc,gates", metadata={"space": "dense"})
    assert again._study_id == study._study_id
    with pytest.raises(ValueError, match="exists with objectives acc,gates.*not acc \\(maximize\\)"):
        open_study(study_name="s", storage=log, objectives=("acc",))
    with pytest.raises(ValueError, match="searches space 'dense', not 'conv'"):
        open_study(study_name="s", storage=log, objectives=("acc", "gates"), metadata={"space": "conv"})


def test_stored_settings_refuse_a_mismatch_before_writing(tmp_path):
    from search_spaces.study import setting_differences

    log = tmp_path / "s.log"
    settings = {"space": "dense", "bounds": {"depth": (1, 2)}, "train": {"epochs": 1, "data_root": "/a", "lr": 0.01}}
    open_study(study_name="s", storage=str(log), metadata=settings)
    size = log.stat().st_size
    open_study(study_name="s", storage=str(log), metadata=dict(settings, train=dict(settings["train"], data_root="/b")))
    with pytest.raises(ValueError, match=r"other settings \(bounds.depth: stored \[1, 2\], now \[1, 3\]; epochs: "
                                         r"stored 1, now 3\).*the stored settings or choose a new --study name"):
        open_study(study_name="s", storage=str(log),
                   metadata=dict(settings, bounds={"depth": [1, 3]}, train=dict(settings["train"], epochs=3)))
    assert log.stat().st_size == size  # refused without a write
    # A setting an older study did not store is not compared.
    assert setting_differences({"train": {"epochs": 1}}, {"train": {"epochs": 1, "hflip": True}}) == []


@pytest.fixture(scope="module")
def tiny_data(load_data):
    import torch

    return load_data("mnist", val_size=300, dtype=torch.uint8)


def _config(**kw):
    from lgn_nas.train import TrainConfig

    args = dict(dataset="mnist", epochs=2, limit_train=600, limit_test=300, val_size=300, device="cpu")
    return TrainConfig(**dict(args, **kw))


def test_single_objective_reports_epochs_and_sets_the_gate_constraint(tiny_data):
    space = get_space("dense", depth=(1, 2), width=(40, 80))
    objective = Objective(space=space, data=tiny_data, train_config=_config(), objectives=("acc",), max_gates=5)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    study.optimize(objective, n_trials=2)
    first = study.trials[0]
    assert first.state == optuna.trial.TrialState.COMPLETE
    assert sorted(first.intermediate_values) == [1, 2]
    assert first.value == pytest.approx(first.intermediate_values[2])
    a = first.user_attrs
    assert 0 <= a["gates"] <= a["gates_raw"] == a["gates_raw_estimate"] == raw_gate_count(a["genome"])
    assert first.constraints == {"gates": pytest.approx(a["gates"] - 5)}


def test_multi_objective_prunes_hopeless_and_raw_budget(tiny_data):
    space = get_space("dense", depth=(1, 1), width=(40, 80))
    objective = Objective(space=space, data=tiny_data, train_config=_config(), objectives=("acc", "gates", "depth"),
                          max_raw_gates=60, prune_below=1.01)  # every trial is hopeless after epoch 2...
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(objective, n_trials=4)
    states = {t.state for t in study.trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    for t in study.trials:
        if t.user_attrs["gates_raw_estimate"] > 60:
            assert t.state == optuna.trial.TrialState.PRUNED and "max_raw_gates" in t.user_attrs["pruned_reason"]
        else:  # ... but the last epoch is never pruned: the trial is complete
            assert t.state == optuna.trial.TrialState.COMPLETE and len(t.values) == 3


def test_margin_pruning_waits_for_the_warmup(tiny_data):
    space = get_space("dense", depth=(1, 1), width=(40, 80))
    study = optuna.create_study(directions=["maximize", "minimize"])
    leader_curve = [0.90] * 10
    study.add_trial(optuna.trial.create_trial(
        values=[0.9, 50], user_attrs={"val_acc_discrete_curve": leader_curve, "gates_raw_estimate": 60}))
    trial = study.ask()
    config = _config(epochs=30)
    objective = Objective(space=space, data=tiny_data, train_config=config, objectives=("acc", "gates"))
    assert objective.prune_warmup == 3  # a tenth of 30 epochs
    # 10 points behind a no-bigger completed trial: kept during the warmup, hopeless after it.
    assert objective._hopeless(trial, 3, 0.80, 60) is None
    reason = objective._hopeless(trial, 4, 0.80, 60)
    assert reason is not None and "behind trial 0" in reason
    assert objective._hopeless(trial, 4, 0.80, 59) is None  # the leader is bigger: no verdict
    assert objective._hopeless(trial, 4, 0.86, 60) is None  # within the 0.05 margin
    eager = Objective(space=space, data=tiny_data, train_config=config, objectives=("acc", "gates"), prune_warmup=0)
    assert eager._hopeless(trial, 1, 0.80, 60) is not None
    with pytest.raises(ValueError, match="prune_warmup must be an int >= 0 .*got -1"):
        Objective(space=space, data=tiny_data, train_config=config, prune_warmup=-1)
    assert make_pruner("median", epochs=30)._n_warmup_steps == 3
    assert make_pruner("median", epochs=5)._n_warmup_steps == 0


def test_a_trial_builds_its_model_once_and_simplifies_its_netlist_once_per_epoch(tiny_data, monkeypatch):
    """The space checks the genome as data; the objective builds the model once (which checks the rest),
    counts its raw gates on it and trains it; the final metrics and the trial reuse the last epoch's
    simplified netlist."""
    import timm

    from lgn_nas.netlist import Netlist

    built, simplified = [], []
    create, simplify = timm.create_model, Netlist.simplify
    monkeypatch.setattr(timm, "create_model", lambda name, *a, **k: (built.append(name) if str(name).startswith(
        "lgn") else None) or create(name, *a, **k))
    monkeypatch.setattr(Netlist, "simplify", lambda self: simplified.append(1) or simplify(self))
    space = get_space("conv", stages=(1, 1), channels=(2, 4), tree_depth=(1, 2), head_depth=(1, 1),
                      head_width=(20, 40))
    objective = Objective(space=space, data=tiny_data, train_config=_config(epochs=2, limit_train=200),
                          objectives=("acc", "gates"))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs
    assert built == [trial.user_attrs["genome"]["model"]]
    assert len(simplified) == 2  # one per epoch
    assert trial.user_attrs["gates_raw_estimate"] in (trial.user_attrs["gates_raw"], trial.user_attrs["gates_raw"] - 1)


def test_hybrid_objective_scores_the_head_netlist(tiny_data):
    space = get_space("hybrid", backbone=("resnet18",), feature_index=(1, 1), head_depth=(1, 1),
                      head_width=(20, 40), input_bits=(1,), relaxation=("softmax",))
    objective = Objective(space=space, data=tiny_data, train_config=_config(limit_train=128, batch_size=64, epochs=1),
                          objectives=("acc", "gates"))
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs
    assert trial.user_attrs["gates_raw"] == sum(trial.user_attrs["genome"]["head_widths"])


def test_latency_profiler_matches_reference():
    pytest.importorskip("tvm")
    from lgn_nas import discretize
    from search_spaces.objectives import measure_latency

    model = build_model({"model": "lgn_dense_s", "depth": 2, "width": 100, "num_classes": 10})
    x = np.random.default_rng(0).integers(0, 256, (100, 1, 28, 28), dtype=np.uint8)
    result = measure_latency(discretize(model, simplify=True), x, batch=1024, repeats=1)
    assert result["latency_ns"] > 0 and result["throughput"] > 0


def _cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "lgn_nas.cli", "search", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))


def _cli_here(args, capsys):
    """``lgn-nas search ARGS`` in this process (for refusals: no interpreter to start); (code, stdout, stderr)."""
    from lgn_nas.cli import main

    capsys.readouterr()
    code = main(["search", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_search_exports_resumes_and_refuses(tmp_path, monkeypatch, capsys):
    base = ["--space", "dense", "--epochs", "1", "--limit-train", "500", "--val-size", "300", "--limit-test", "300",
            "--space-arg", "width=[40,80]", "depth=[1,2]", "--sampler-seed", "0", "--random-shift", "1"]
    run = _cli(base + ["--trials", "2"], tmp_path)
    assert run.returncode == 0, run.stderr
    # stderr is a pipe, not a terminal: the progress is one line per finished trial, no carriage returns
    assert "\r" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("search dense-mnist-acc-gates: ")]
    assert [line.split(": ")[1].split(",")[0] for line in lines] == ["1/2 trials", "2/2 trials"], run.stderr
    base.append("--no-progress")
    assert "0 of 2 trials finished" in run.stdout and "Pareto front of study 'dense-mnist-acc-gates'" in run.stdout
    assert (tmp_path / "lgn_nas_studies.log").exists()
    import optuna

    from search_spaces.storage import open_storage

    stored = optuna.load_study(study_name="dense-mnist-acc-gates",
                               storage=open_storage(str(tmp_path / "lgn_nas_studies.log")))
    assert stored.user_attrs["train"]["scheduler"] == "cosine"  # each trial's lr follows --sched
    assert stored.user_attrs["train"]["random_shift"] == 1  # and every trial trains with the shifts
    out = tmp_path / "search_out"
    assert (out / "pareto.png").stat().st_size > 0 and (out / "pareto.txt").exists()
    import timm

    import lgn_nas  # noqa: F401
    from lgn_nas.netlist import load_netlist

    model = timm.create_model(f"local-dir:{out / 'best'}", pretrained=True).eval()
    netlist = load_netlist(out / "best" / "netlist.lgn")
    x = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    import torch

    with torch.no_grad():
        assert np.allclose(netlist.evaluate(x), model(torch.from_numpy(x)).numpy(), atol=1e-5)
    # The same command again resumes (nothing left to do); more trials continue the same study.
    again = _cli(base + ["--trials", "2"], tmp_path)
    assert again.returncode == 0 and "2 of 2 trials finished" in again.stdout
    more = _cli(base + ["--trials", "3", "--no-export"], tmp_path)
    assert more.returncode == 0 and "2 of 3 trials finished" in more.stdout and "3 trial(s) finished" in more.stdout
    # Refusals: other objectives under the same study name, a negative shift or warmup, unknown space, unknown storage scheme.
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli_here(base + ["--trials", "1", "--study", "dense-mnist-acc-gates", "--objectives", "acc"], capsys)
    assert code == 2 and "exists with objectives acc,gates" in err
    code, _, err = _cli_here(["--space", "dense", "--trials", "1", "--random-shift", "-1", "--storage",
                              str(tmp_path / "shift.log")], capsys)
    assert code == 2 and "random_shift must be an int >= 0" in err and "-1" in err
    assert not (tmp_path / "shift.log").exists()  # refused before any storage is written
    code, _, err = _cli_here(["--space", "dense", "--trials", "1", "--prune-warmup", "-1", "--storage",
                              str(tmp_path / "warm.log")], capsys)
    assert code == 2 and "prune_warmup must be an int >= 0 (epochs), got -1" in err
    assert not (tmp_path / "warm.log").exists()
    code, _, err = _cli_here(["--space", "nope", "--trials", "1"], capsys)
    assert code == 2 and "unknown search space 'nope'" in err
    code, _, err = _cli_here(["--space", "dense", "--trials", "1", "--storage", "mongodb://me:pw123@h/db"], capsys)
    assert code == 2 and "unknown storage" in err and "pw123" not in err
