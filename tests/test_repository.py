"""The repository's own promises: CI runs the README's test command."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Run the tests:\s*```bash\n(.*?)\n```", readme, re.S)
    assert block, "README.md has no 'Run the tests' command block"
    command = block.group(1).strip()
    assert "--durations=" in command  # the default run's slowest tests are printed
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci, f".ci/run does not run the README's test command {command!r}"
