"""The journal file (the default storage) survives kill -9: a dead worker's trial is failed and re-queued.

A real ``lgn-nas search`` worker is SIGKILLed while it trains a trial; the trial stays RUNNING in
the journal (Optuna has no heartbeat there) until the next worker starts, which fails it, re-queues
its parameters and completes the study including the retry.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from search_spaces import open_storage  # noqa: E402
from search_spaces.recovery import (  # noqa: E402
    HEARTBEAT_ATTR, REASON_ATTR, WORKER_ATTR, recover_dead_trials, worker_alive, worker_identity,
)

ROOT = Path(__file__).resolve().parents[1]
RUNNING, WAITING, FAIL = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING,
                          optuna.trial.TrialState.FAIL)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()  # reaped: the pid names no process now (reuse within the test is very unlikely)
    return process.pid


def test_worker_alive_tells_dead_reused_and_foreign_pids():
    me = worker_identity()
    assert worker_alive(me) is True
    assert worker_alive(dict(me, pid=_dead_pid())) is False
    assert worker_alive(dict(me, start="1")) is False  # this pid, but another process start: reused
    assert worker_alive(dict(me, boot_id="another-boot")) is False
    assert worker_alive(dict(me, host=socket.gethostname() + "-elsewhere")) is None


def _running_trial(study, **system_attrs):
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    for key, value in system_attrs.items():
        study._storage.set_trial_system_attr(trial._trial_id, key, value)
    return trial


def test_recover_fails_dead_and_stale_trials_once_and_keeps_the_living(tmp_path):
    storage = open_storage(str(tmp_path / "s.log"))
    study = optuna.create_study(study_name="r", storage=storage)
    me = worker_identity()
    dead = _running_trial(study, **{WORKER_ATTR: dict(me, pid=_dead_pid())})
    alive = _running_trial(study, **{WORKER_ATTR: me})
    far = dict(me, host="elsewhere.example")
    stale = _running_trial(study, **{WORKER_ATTR: far, HEARTBEAT_ATTR: time.time() - 100})
    fresh = _running_trial(study, **{WORKER_ATTR: far, HEARTBEAT_ATTR: time.time()})
    foreign = _running_trial(study)  # not started by lgn-nas: no identity, left alone
    exhausted = _running_trial(study, **{WORKER_ATTR: dict(me, pid=_dead_pid()), "retry_history": [0, 1]})
    messages = []
    recovered = recover_dead_trials(study, max_retry=2, grace_period=60, log=messages.append)
    assert sorted(recovered) == sorted([dead.number, stale.number, exhausted.number])
    states = {t.number: t.state for t in study.get_trials()}
    assert states[alive.number] == states[fresh.number] == states[foreign.number] == RUNNING
    assert states[dead.number] == states[stale.number] == states[exhausted.number] == FAIL
    waiting = study.get_trials(states=(WAITING,))
    assert sorted(t.system_attrs["failed_trial"] for t in waiting) == sorted([dead.number, stale.number])
    by_origin = {t.system_attrs["failed_trial"]: t for t in waiting}
    assert by_origin[dead.number].params == dead.params
    assert not any(k.startswith("lgn_nas:") for t in waiting for k in t.system_attrs)  # no dead identity inherited
    failed = study._storage.get_trial(dead._trial_id)
    assert "is gone" in failed.system_attrs[REASON_ATTR]
    assert "no heartbeat for 100 s" in study._storage.get_trial(stale._trial_id).system_attrs[REASON_ATTR]
    assert any("not re-queued (retried 2 times)" in m for m in messages), messages
    # A second worker looking now finds nothing more to do (no double re-queue).
    assert recover_dead_trials(optuna.load_study(study_name="r", storage=open_storage(str(tmp_path / "s.log"))),
                               max_retry=2, grace_period=60) == []
    assert len(study.get_trials(states=(WAITING,))) == 2


def _search(tmp_path: Path, *extra: str) -> list:
    return [sys.executable, "-m", "lgn_nas.cli", "search", "--space", "dense", "--epochs", "2",
            "--limit-train", "1000", "--val-size", "200", "--limit-test", "200", "--study", "kill9",
            "--space-arg", "width=[2000,3000]", "depth=[2,2]", "--prune-margin", "-1", "--sampler-seed", "0",
            "--no-progress", "--no-export", "--out", str(tmp_path / "out"), *extra]


def test_sigkilled_worker_trial_is_requeued_and_completed_by_the_next_run(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", TVM_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    journal = tmp_path / "lgn_nas_studies.log"
    worker = subprocess.Popen(_search(tmp_path, "--trials", "2"), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    victim = None
    try:
        deadline = time.time() + 120
        while victim is None and time.time() < deadline:
            assert worker.poll() is None, worker.communicate()[0]
            time.sleep(0.05)
            if not journal.exists():
                continue
            try:
                study = optuna.load_study(study_name="kill9", storage=open_storage(str(journal)))
            except KeyError:
                continue
            for trial in study.get_trials(deepcopy=False, states=(RUNNING,)):
                # Every parameter is suggested (the genome, then the learning rate, the last one): the worker
                # is training it now. Killed between the two, the trial would keep part of its parameters.
                if ((trial.system_attrs.get(WORKER_ATTR) or {}).get("pid") == worker.pid
                        and "genome" in trial.user_attrs and "lr" in trial.params):
                    victim = trial
        assert victim is not None, "the worker never started a trial"
        os.kill(worker.pid, signal.SIGKILL)  # a trial trains for seconds: it dies in the middle of this one
        worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == -signal.SIGKILL
    study = optuna.load_study(study_name="kill9", storage=open_storage(str(journal)))
    assert study.trials[victim.number].state == RUNNING  # what kill -9 leaves on a journal file

    rerun = subprocess.run(_search(tmp_path, "--trials", "2"), cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"trial {victim.number}: worker {socket.gethostname()}:{worker.pid} is gone" in rerun.stdout
    assert "1 waiting (re-queued)" in rerun.stdout

    trials = optuna.load_study(study_name="kill9", storage=open_storage(str(journal))).get_trials()
    assert trials[victim.number].state == FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state.is_finished() and retries[0].state != FAIL
    assert retries[0].params == trials[victim.number].params == victim.params  # the same genome, trained to the end
    assert retries[0].user_attrs["genome"] == victim.user_attrs["genome"]
    assert not retries[0].user_attrs["worker"].endswith(f":{worker.pid}")  # trained again by the rerun
    finished = [t for t in trials if t.state.is_finished() and t.state != FAIL]
    assert len(finished) == 2
    assert not [t for t in trials if t.state in (RUNNING, WAITING)]
