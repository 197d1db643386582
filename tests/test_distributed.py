"""Data-parallel training under torchrun: 2 CPU processes on gloo end with identical weights."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

WORKER = textwrap.dedent('''
    import hashlib, json, os, sys
    import torch
    import lgn_nas.train.trainer as trainer_module
    from lgn_nas.train import TrainConfig, fit

    out_dir, report_dir = sys.argv[1], sys.argv[2]
    rank = int(os.environ["RANK"])
    writes = []
    for name in ("save_checkpoint", "atomic_write_json"):
        original = getattr(trainer_module, name)
        def recording(*args, _original=original, _name=name, **kwargs):
            writes.append(_name)
            return _original(*args, **kwargs)
        setattr(trainer_module, name, recording)

    config = TrainConfig(model="lgn_dense_s",
                         model_kwargs=dict(depth=2, width=1000, init="gaussian", group_tau=3.0, relaxation="gumbel_soft",
                                           backend="torch"),
                         val_size=1000, limit_train=2000, limit_test=500, epochs=2, batch_size=50, lr=0.05, seed=3,
                         optimizer="adamw")
    seen = []
    result = fit(config, out_dir=out_dir, callbacks=[lambda e: seen.append(e.metrics["val_acc_discrete"])], plot=False)
    digest = hashlib.sha256()
    for key, value in sorted(result.model.state_dict().items()):
        digest.update(key.encode()); digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    report = dict(rank=rank, world_size=result.metrics["world_size"], digest=digest.hexdigest(), writes=writes,
                  val_acc=seen, test_acc=result.metrics["test_acc_discrete"], steps=result.metrics["history"][-1]["train_images"])
    with open(os.path.join(report_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(report, handle)
''')


def test_torchrun_two_gloo_processes_identical_weights(tmp_path, mnist_available):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out_dir, report_dir = tmp_path / "out", tmp_path / "reports"
    report_dir.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(script), str(out_dir), str(report_dir)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    reports = [json.loads((report_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert reports[0]["digest"] == reports[1]["digest"]  # gradients were all-reduced every step
    assert reports[0]["val_acc"] == reports[1]["val_acc"]  # sharded evaluation, summed counts
    assert reports[0]["test_acc"] == reports[1]["test_acc"] > 0.25  # it learned (chance 0.1; one process reaches 0.44)
    assert reports[0]["steps"] == 2000  # global count of training images in the last epoch
    # Only rank 0 writes: config.json + 2 checkpoints + metrics.json.
    assert sorted(reports[0]["writes"]) == ["atomic_write_json", "atomic_write_json", "save_checkpoint",
                                            "save_checkpoint"]
    assert reports[1]["writes"] == []
    assert {p.name for p in out_dir.iterdir()} == {"checkpoint.safetensors", "config.json", "metrics.json",
                                                   "netlist.lgn"}
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["netlist_agrees"]


def test_cli_under_torchrun(tmp_path, mnist_available):
    out_dir = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lgn_nas.cli",
               "train", "lgn_dense_s", "--out", str(out_dir), "--no-progress", "--epochs", "1", "--batch-size", "50",
               "--limit-train", "500", "--limit-test", "200", "--val-size", "1000",
               "--model-kwargs", "depth=2", "width=200", "init=gaussian", "group_tau=3", "backend=torch"]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert completed.stdout.count("discrete test accuracy") == 1  # only rank 0 reports
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert {p.name for p in out_dir.iterdir()} == {"checkpoint.safetensors", "config.json", "metrics.json",
                                                   "netlist.lgn", "curves.png"}
