"""The repository's own promises: CI runs the README's test command."""
from __future__ import annotations

import ast
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


# --------------------------------------------------------------------------- import floors

# Each package may import only those below it: tvm_ops <- lgn_nas <- search_spaces.
FORBIDDEN = {"tvm_ops": {"lgn_nas", "search_spaces"}, "lgn_nas": {"search_spaces"}, "search_spaces": set()}


def _imports(path: Path, package: str):
    """(line, absolute module name) of every import in ``path``, at module level or inside functions,
    relative imports resolved, and string arguments of importlib.import_module / __import__ too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:len(parts) - node.level + (1 if path.name == "__init__.py" else 0)]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value


def test_import_floors():
    """tvm_ops imports nothing of lgn_nas or search_spaces; lgn_nas nothing of search_spaces."""
    upward = []
    for package, forbidden in FORBIDDEN.items():
        files = sorted((ROOT / package).rglob("*.py"))
        assert files, package
        for path in files:
            for line, module in _imports(path, package):
                if module.split(".")[0] in forbidden:
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not upward, "imports against the floors:\n" + "\n".join(upward)


def test_search_reaches_the_cli_through_the_entry_point_group():
    import tomllib

    from lgn_nas import cli

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][cli.COMMAND_GROUP]
    assert declared == {"search": "search_spaces.cli:add_search_subcommand"}
    assert cli.command_plugins()["search"].value == declared["search"]
    assert "search" in cli.build_parser().format_help()
