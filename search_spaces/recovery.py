"""Recovery of trials whose worker died, for storages without Optuna's heartbeats (the journal file).

PostgreSQL / SQLite / MySQL storages have Optuna's heartbeat: a killed worker's trial goes stale, is
failed and re-queued. The journal file has none, so a worker killed with SIGKILL would leave its
trial RUNNING forever. Here each trial records who runs it (system attr ``lgn_nas:worker``: host,
boot id, pid and the process start time) and a thread refreshes ``lgn_nas:heartbeat`` every
``heartbeat_interval`` seconds while the trial runs. :func:`recover_dead_trials` (called when a
worker starts and after each of its trials) fails every RUNNING trial whose worker is gone and
re-queues its parameters (``RetryHeartbeatStaleTrialCallback``, at most ``max_retry`` times, the
same system attrs ``failed_trial`` / ``retry_history`` as on PostgreSQL). A worker is gone when it
ran on this host (same boot) and its process no longer exists (or the pid now names another
process), or when its last heartbeat is older than ``grace_period`` seconds (a worker on another
host sharing the file). A RUNNING trial without these attrs (not started by lgn-nas) is left alone.
"""
from __future__ import annotations

import copy
import os
import socket
import threading
import time
import warnings
from typing import Any, Dict, List, Optional

__all__ = ["WORKER_ATTR", "HEARTBEAT_ATTR", "REASON_ATTR", "worker_identity", "worker_alive", "Heartbeat", "recover_dead_trials"]

WORKER_ATTR = "lgn_nas:worker"
HEARTBEAT_ATTR = "lgn_nas:heartbeat"
REASON_ATTR = "lgn_nas:fail_reason"


def _boot_id() -> Optional[str]:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _process_start(pid: int) -> Optional[str]:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks since boot); ``None`` where unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) "
    return fields[19] if len(fields) > 19 else None


def _process_state(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()[0]


def worker_identity() -> Dict[str, Any]:
    """This process, as recorded on the trials it runs."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot_id": _boot_id(), "pid": pid, "start": _process_start(pid)}


def worker_alive(identity: Dict[str, Any]) -> Optional[bool]:
    """``True``/``False`` for a worker of this host (same boot); ``None`` when this host cannot tell."""
    if identity.get("host") != socket.gethostname():
        return None
    boot = _boot_id()
    if boot is not None and identity.get("boot_id") is not None and identity["boot_id"] != boot:
        return False  # the host rebooted since: every process of that boot is gone
    pid = identity.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if _process_state(pid) in ("Z", "X"):
        return False  # killed, not yet reaped by its parent
    start = _process_start(pid)
    if start is not None and identity.get("start") is not None and start != identity["start"]:
        return False  # the pid was reused by a newer process
    return True


class Heartbeat:
    """Context manager: write ``HEARTBEAT_ATTR`` (wall time) on a running trial every ``interval`` seconds."""

    def __init__(self, trial: Any, *, interval: float) -> None:
        self._storage = trial.storage
        self._trial_id = trial._trial_id
        self._interval = float(interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lgn-nas-heartbeat", daemon=True)

    def _beat(self) -> None:
        self._storage.set_trial_system_attr(self._trial_id, HEARTBEAT_ATTR, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - the trial was finished (or failed by another worker): stop beating
                return

    def __enter__(self) -> "Heartbeat":
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _dead_reason(trial: Any, *, grace_period: float, now: float) -> Optional[str]:
    identity = trial.system_attrs.get(WORKER_ATTR)
    if not isinstance(identity, dict):
        return None
    alive = worker_alive(identity)
    if alive is False:
        return f"worker {identity.get('host')}:{identity.get('pid')} is gone"
    if alive is None:
        beat = trial.system_attrs.get(HEARTBEAT_ATTR)
        if isinstance(beat, (int, float)) and now - beat > grace_period:
            return (f"worker {identity.get('host')}:{identity.get('pid')} sent no heartbeat for "
                    f"{now - beat:.0f} s (grace period {grace_period:g} s)")
    return None


def recover_dead_trials(study: Any, *, max_retry: Optional[int] = 3, grace_period: float = 60.0,
                        log: Any = None) -> List[int]:
    """Fail the RUNNING trials of ``study`` whose worker is gone and re-queue them; their numbers.

    A trial already failed by a concurrent worker is skipped (the journal orders the two writes, so
    exactly one worker wins and re-queues it).
    """
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError

    now = time.time()
    storage = study._storage
    recovered: List[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        reason = _dead_reason(trial, grace_period=grace_period, now=now)
        if reason is None:
            continue
        try:
            storage.set_trial_system_attr(trial._trial_id, REASON_ATTR, reason)
            if not storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # finished meanwhile, or failed by another worker that re-queues it
        frozen = copy.copy(storage.get_trial(trial._trial_id))
        # The retry must not inherit the dead worker's identity (it would look dead once popped).
        frozen.system_attrs = {k: v for k, v in frozen.system_attrs.items() if not k.startswith("lgn_nas:")}
        runs = len(frozen.system_attrs.get("retry_history") or [])  # earlier retries of this genome
        retry(study, frozen)
        recovered.append(trial.number)
        if log is not None:
            log(f"trial {trial.number}: {reason}; marked failed"
                + (", its parameters re-queued" if max_retry is None or runs < max_retry
                   else f", not re-queued (retried {runs} times)"))
    return recovered
