"""Many workers on one PostgreSQL study: a worker killed (SIGKILL) mid-trial has its trial retried once.

Starts a real PostgreSQL server (Debian ``postgresql`` package) on loopback in a temporary directory,
as the ``postgres`` user when the tests run as root, with password authentication; runs two
``lgn-nas search`` workers against it, SIGKILLs one while it trains a trial and checks that the
trial is failed as stale, retried exactly once with the same parameters by the surviving worker, and
that no trial is lost or counted twice. Skipped only when the PostgreSQL binaries are missing.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

PASSWORD = "s3cret-pw-XYZ"


def _pg_bin() -> str | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    initdb = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: install the Debian package 'postgresql'")
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        pytest.skip("a PostgreSQL driver is needed: pip install 'psycopg[binary]' (a dependency of lgn-nas)")
    # Not under pytest's tmp dir: that is private to root, and the server runs as 'postgres'.
    base = Path(tempfile.mkdtemp(prefix="lgn-nas-pg-"))
    data, sock, log = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    pwfile = base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        shutil.chown(base, "postgres")
        for path in (sock, pwfile):
            shutil.chown(path, "postgres")
        os.chmod(base, 0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    for command in ([f"{bindir}/initdb", "-D", str(data), "-U", "lgn", f"--pwfile={pwfile}", "-A", "scram-sha-256",
                     "--no-sync"],
                    [f"{bindir}/pg_ctl", "-D", str(data), "-l", str(log), "-w", "start",
                     "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"]):
        result = subprocess.run(prefix + command, capture_output=True, text=True)
        assert result.returncode == 0, f"{command[0]} failed: {result.stdout}{result.stderr}"
    try:
        yield f"postgresql://lgn:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(prefix + [f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _worker(url: str, out: Path, cwd: Path, trials: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "lgn_nas.cli", "search", "--space", "dense", "--dataset", "mnist",
               "--trials", str(trials), "--epochs", "2", "--storage", url, "--study", "kill-test",
               "--space-arg", "width=[200,400]", "depth=[2,3]", "--limit-train", "8000", "--val-size", "500",
               "--limit-test", "500", "--heartbeat-interval", "1", "--grace-period", "3", "--prune-margin", "-1",
               "--out", str(out), "--no-progress", "--no-export"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_worker_trial_is_retried_once(postgres_url, tmp_path):
    import optuna

    from search_spaces import open_storage

    storage = open_storage(postgres_url, heartbeat_interval=1, grace_period=3)
    trials = 4
    a = _worker(postgres_url, tmp_path / "a", tmp_path, trials)
    # Wait until worker A trains a trial, then start B (one process creates the study and tables).
    deadline, victim = time.time() + 120, None
    b = None
    try:
        while time.time() < deadline and victim is None:
            time.sleep(0.2)
            assert a.poll() is None, a.communicate()[0]
            try:
                study = optuna.load_study(study_name="kill-test", storage=storage)
            except KeyError:
                continue
            if b is None:
                b = _worker(postgres_url, tmp_path / "b", tmp_path, trials)
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                # Kill only once every parameter is suggested (the genome, then the learning rate): killing A
                # mid-suggestion leaves a trial with part of its parameters, which its retry cannot equal.
                if (t.user_attrs.get("worker", "").endswith(f":{a.pid}") and "genome" in t.user_attrs
                        and "lr" in t.params and b is not None):
                    victim = t
        assert victim is not None, "worker A never started a trial"
        os.kill(a.pid, signal.SIGKILL)  # a trial takes several seconds: A dies while training it
        a.wait()
        output, _ = b.communicate(timeout=240)
        assert b.returncode == 0, output
    finally:
        for process in (a, b):
            if process is not None and process.poll() is None:
                process.kill()
    assert PASSWORD not in output

    study = optuna.load_study(study_name="kill-test", storage=storage)
    all_trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in all_trials}
    killed = by_number[victim.number]
    assert killed.state == optuna.trial.TrialState.FAIL  # marked stale by the surviving worker
    retries = [t for t in all_trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1, [(t.number, t.state) for t in retries]
    retry = retries[0]
    assert retry.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert retry.params == killed.params
    assert retry.user_attrs["worker"].endswith(f":{b.pid}")
    # Nothing lost, nothing twice: every finished trial is one logical trial; no trial left hanging.
    finished = [t for t in all_trials if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL]
    lineage = [t.system_attrs.get("failed_trial", t.number) for t in finished]
    assert len(lineage) == len(set(lineage))
    assert len(finished) >= trials
    assert not [t for t in all_trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    failed = [t for t in all_trials if t.state == optuna.trial.TrialState.FAIL]
    assert all(any(r.system_attrs.get("failed_trial") == f.number for r in finished) for f in failed)


def test_wrong_password_is_a_clear_error_without_the_password(postgres_url, tmp_path):
    bad = postgres_url.replace(PASSWORD, "wrong-pw-123")
    result = subprocess.run([sys.executable, "-m", "lgn_nas.cli", "search", "--space", "dense", "--trials", "1",
                             "--storage", bad, "--no-progress"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "wrong-pw-123" not in result.stdout + result.stderr
    assert "cannot open storage postgresql://lgn:***@127.0.0.1" in result.stderr
