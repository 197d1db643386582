"""Run timm's own model tests (``tests/test_models.py`` of the installed timm) over the lgn* models.

timm ships that file in its source distribution on PyPI, not in the wheel. The first run downloads the
sdist of the installed version with pip (``pip download --no-deps --no-binary :all: timm==VERSION``),
keeps only ``tests/test_models.py`` in the cache (``$LGN_DATA_DIR/timm-tests/VERSION``, default
``~/.cache/lgn_nas``) and writes beside it a ``conftest.py`` that imports lgn_nas, so the models are
registered before timm's file lists them, and a ``pytest.ini`` of its own. The file is run unmodified,
with ``LGN_INPUT_RANGE_CHECK=0``: timm feeds ``torch.randn`` to every model, and the models otherwise
refuse floats outside [0, 1] (``lgn_nas.inputs``).

    python scripts/timm_conformance.py                        # every lgn* model
    python scripts/timm_conformance.py --select lgn_dense_s -x  # a -k expression; the rest goes to pytest
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lgn_nas.data.fetch import data_root, extract_members, install_dir_atomically  # noqa: E402

__all__ = ["SuiteUnavailable", "suite_dir", "install_suite", "run_suite"]

CONFTEST = '''"""Written by lgn-nas' scripts/timm_conformance.py: register the lgn* models before timm lists them."""
import lgn_nas  # noqa: F401
'''
PYTEST_INI = """[pytest]
# timm's markers (base, cfg, ...) and pytest-timeout's mark are timm's CI matters, not registered here.
filterwarnings =
    ignore::pytest.PytestUnknownMarkWarning
    ignore:`torch.jit.script` is deprecated:FutureWarning
"""


class SuiteUnavailable(RuntimeError):
    """timm's test file could not be fetched (pip or PyPI unreachable, or the sdist lacks it)."""


def _timm_version() -> str:
    import timm

    return timm.__version__


def install_suite(target: Path, version: str, *, sdist: Optional[Path] = None) -> Path:
    """Fill ``target`` with timm ``version``'s test_models.py (from ``sdist``, else PyPI) and the harness."""

    def fill(tmp: Path) -> None:
        archive = sdist
        if archive is None:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                       "--disable-pip-version-check", "--quiet", f"timm=={version}", "-d", str(tmp)]
            result = subprocess.run(command, capture_output=True, text=True, timeout=900)
            if result.returncode != 0:
                detail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
                raise SuiteUnavailable(f"`{' '.join(command)}` failed (is PyPI reachable?): {detail}")
            found = sorted(tmp.glob("timm-*.tar.gz"))
            if len(found) != 1:
                raise SuiteUnavailable(f"pip download left {[p.name for p in tmp.iterdir()]}, expected one timm sdist")
            archive = found[0]
        try:
            extract_members(archive, {f"timm-{version}/tests/test_models.py": "test_models.py"}, tmp)
        except ValueError as error:
            raise SuiteUnavailable(f"timm {version}'s sdist has no tests/test_models.py: {error}") from error
        if sdist is None:
            archive.unlink()
        (tmp / "conftest.py").write_text(CONFTEST)
        (tmp / "pytest.ini").write_text(PYTEST_INI)

    return install_dir_atomically(target, fill)


def suite_dir(root: Optional[Path] = None) -> Path:
    """The cached directory holding the installed timm's test_models.py; fetched on first use."""
    version = _timm_version()
    target = data_root(root) / "timm-tests" / version
    if not (target / "test_models.py").is_file() or not (target / "conftest.py").is_file():
        install_suite(target, version)
    return target


def run_suite(select: str = "lgn", pytest_args: Sequence[str] = (), *, root: Optional[Path] = None,
              capture: bool = False) -> subprocess.CompletedProcess:
    """Run timm's test_models.py with ``-k select`` in a fresh interpreter that imports this checkout."""
    directory = suite_dir(root)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["LGN_INPUT_RANGE_CHECK"] = "0"  # timm feeds torch.randn, outside the models' [0, 1] input range
    command = [sys.executable, "-m", "pytest", str(directory / "test_models.py"), "-c", str(directory / "pytest.ini"),
               "--rootdir", str(directory), "-p", "no:cacheprovider", "-k", select, *pytest_args]
    return subprocess.run(command, cwd=directory, env=env, capture_output=capture, text=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--select", default="lgn", help="pytest -k expression over the test ids (default: lgn)")
    args, pytest_args = parser.parse_known_args(argv)
    try:
        return run_suite(args.select, pytest_args).returncode
    except SuiteUnavailable as error:
        print(f"timm_conformance: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
