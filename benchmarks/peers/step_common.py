"""Helpers shared by the training-step benchmarks and their peer scripts (stdlib only: the peer scripts
import it from their own directory inside the peer's venv)."""
from __future__ import annotations

import json
import os
import subprocess
from typing import Optional

__all__ = ["memory_kb", "run_child", "load_average"]


def memory_kb(field: str) -> int:
    """This process's ``/proc/self/status`` field ``field`` (``VmRSS``, ``VmHWM``) in kB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))


def run_child(command: list, threads: int, extra_env: Optional[dict] = None) -> Optional[dict]:
    """Run one benchmark child with ``threads`` threads (and ``extra_env``); its last stdout line is
    JSON (None on failure)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TVM_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               **(extra_env or {}))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(f"  run failed ({' '.join(map(str, command[:2]))} ...): {done.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_average() -> str:
    """The 1/5/15-minute load averages, for the report."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())
