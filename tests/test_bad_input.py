"""The bad-input battery (issue 15): each user mistake ends in one clear line, exit code 2, nothing written.

``BATTERY`` is the table (name, command line, words the one error line must hold); add a row for
every refusal the commands learn. Each row runs ``lgn_nas.cli.main`` in an empty directory and
checks the exit code, that stderr is a single ``lgn-nas CMD: error: ...`` line and that the
directory is still empty afterwards. ``SETTINGS_BATTERY`` does the same for reruns of an existing
study with other settings, which must leave the journal file byte for byte as it was.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

import pytest

from lgn_nas.cli import main

pytest.importorskip("optuna")

TINY_SEARCH = ["search", "--space", "dense", "--trials", "1", "--epochs", "1", "--limit-train", "200",
               "--val-size", "100", "--limit-test", "100", "--no-progress", "--no-export", "--sampler-seed", "0"]
TINY_BOUNDS = ["--space-arg", "width=[40,80]", "depth=[1,2]"]
TINY_TRAIN = ["train", "lgn_dense_s", "--out", "run", "--epochs", "1", "--limit-train", "200", "--val-size", "100",
              "--limit-test", "100", "--no-progress", "--model-kwargs", "depth=1", "width=100"]

# (name, argv, substrings of the one error line). Every row: exit 2, one line, nothing written.
BATTERY = [
    ("space-arg not a range", TINY_SEARCH + ["--space-arg", "depth=abc"],
     ["depth: expected a [low, high] pair of ints", '"abc"']),
    ("space-arg one number", TINY_SEARCH + ["--space-arg", "width=50"], ["width: expected a [low, high] pair", "50"]),
    ("search --out is a file", TINY_SEARCH + TINY_BOUNDS + ["--out", "afile"],
     ["--out 'afile' exists and is not a directory"]),
    ("lr-range reversed", TINY_SEARCH + TINY_BOUNDS + ["--lr-range", "0.1", "0.01"],
     ["lr_range must be LOW HIGH with 0 < LOW <= HIGH", "0.1 0.01"]),
    ("lr-range zero", TINY_SEARCH + TINY_BOUNDS + ["--lr-range", "0", "0.1"], ["lr_range", "0.0 0.1"]),
    ("search val-size over the training set", TINY_SEARCH + TINY_BOUNDS + ["--val-size", "70000"],
     ["val_size must be an int in [0, 60000)", "70000"]),
    ("search unknown sched", TINY_SEARCH + TINY_BOUNDS + ["--sched", "nope"], ["scheduler must be one of", "'nope'"]),
    ("search max-retry negative", TINY_SEARCH + TINY_BOUNDS + ["--max-retry", "-1"], ["max_retry must be", "-1"]),
    ("search grace below heartbeat", TINY_SEARCH + TINY_BOUNDS + ["--heartbeat-interval", "10", "--grace-period", "5"],
     ["grace_period must be an int above heartbeat_interval 10", "5"]),
    ("export --synth without verilog", ["export", "lgn_dense_s", "--format", "c", "--out", "x.c", "--synth"],
     ["--synth needs --format verilog, not c"]),
    ("export into a missing directory", ["export", "lgn_dense_s", "--format", "c", "--out", "nodir/x.c"],
     ["directory 'nodir' does not exist"]),
    ("export pipeline-every negative", ["export", "lgn_dense_s", "--format", "verilog", "--out", "x.v",
                                        "--pipeline-every", "-2"], ["--pipeline-every must be an int >= 0", "-2"]),
    ("train val-size over the training set", TINY_TRAIN + ["--val-size", "70000"],
     ["val_size must be an int in [0, 60000)", "70000"]),
    ("train unknown sched", TINY_TRAIN + ["--sched", "nope"], ["scheduler must be one of", "'nope'"]),
    ("train unknown opt", TINY_TRAIN + ["--opt", "nope"], ["optimizer 'nope' is not a timm optimizer"]),
    ("train cuda without a GPU", TINY_TRAIN + ["--device", "cuda"], ["device 'cuda': CUDA is not available"]),
    ("train bad device name", TINY_TRAIN + ["--device", "gpu0"], ["device 'gpu0' is not a torch device"]),
]


def _files(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if not line.startswith("lgn-nas train: lgn_dense_s recipe")]
    assert len(err) == 1, err
    assert err[0].startswith(f"lgn-nas {command}: error: "), err[0]
    return err[0]


@pytest.mark.parametrize("name,argv,expected", BATTERY, ids=[row[0] for row in BATTERY])
def test_battery(name, argv, expected, tmp_path, monkeypatch, capsys):
    if "cuda" in argv:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    (tmp_path / "afile").write_text("x")
    before = _files(tmp_path)
    assert main(argv) == 2
    line = _one_error_line(capsys, argv[0])
    for words in expected:
        assert words in line, line
    assert _files(tmp_path) == before  # nothing written: no journal, no trial directory, no output file


def test_resume_with_a_differing_config_is_refused_untouched(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(TINY_TRAIN) == 0
    capsys.readouterr()
    run = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(TINY_TRAIN + ["--resume", "--seed", "1"]) == 2
    line = _one_error_line(capsys, "train")
    assert "the config differs" in line and "seed: checkpoint 0 vs now 1" in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(TINY_SEARCH + TINY_BOUNDS + ["--study", "s"]) == 0
    finally:
        os.chdir(cwd)
    return root


# (setting changed on rerun, extra flags, what the message must name)
SETTINGS_BATTERY = [
    ("epochs", ["--epochs", "2"], "epochs: stored 1, now 2"),
    ("limit-train", ["--limit-train", "300"], "limit_train: stored 200, now 300"),
    ("val-size", ["--val-size", "150"], "val_size: stored 100, now 150"),
    ("space-arg", ["--space-arg", "width=[40,90]", "depth=[1,2]"], "bounds.width: stored [40, 80], now [40, 90]"),
    ("sched", ["--sched", "none"], 'scheduler: stored "cosine", now "none"'),
    ("random-shift", ["--random-shift", "1"], "random_shift: stored 0, now 1"),
    ("batch-size", ["--batch-size", "64"], "batch_size: stored 128, now 64"),
    ("max-gates", ["--max-gates", "100"], "max_gates: stored null, now 100"),
    ("lr-range", ["--lr-range", "0.01", "0.2"], "lr_range: stored [0.01, 0.1], now [0.01, 0.2]"),
]


@pytest.mark.parametrize("name,extra,named", SETTINGS_BATTERY, ids=[row[0] for row in SETTINGS_BATTERY])
def test_rerun_with_other_settings_is_refused(name, extra, named, study_dir, monkeypatch, capsys):
    monkeypatch.chdir(study_dir)
    journal = study_dir / "lgn_nas_studies.log"
    before, files = journal.read_bytes(), _files(study_dir)
    bounds = [] if "--space-arg" in extra else TINY_BOUNDS
    argv = [a for a in TINY_SEARCH] + bounds + ["--study", "s"]
    for flag_at in [i for i, a in enumerate(extra) if a.startswith("--")]:
        flag = extra[flag_at]
        if flag in argv:  # replace the tiny run's value
            at = argv.index(flag)
            del argv[at:at + 2]
    assert main(argv + extra) == 2
    line = _one_error_line(capsys, "search")
    assert "study 's' in" in line and "was run with other settings" in line and named in line, line
    assert "rerun with the stored settings or choose a new --study name" in line
    assert journal.read_bytes() == before and _files(study_dir) == files


def test_rerun_with_the_same_settings_resumes(study_dir, monkeypatch, capsys):
    monkeypatch.chdir(study_dir)
    assert main(TINY_SEARCH + TINY_BOUNDS + ["--study", "s", "--timeout", "1"]) == 0
    assert "1 of 1 trials finished" in capsys.readouterr().out
