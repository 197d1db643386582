"""timm's own tests/test_models.py, unmodified, over the lgn* models (``scripts/timm_conformance.py``).

The file comes from the sdist of the installed timm on PyPI (fetched once, then cached). The default run
takes one small model of each family (dense, LogicTreeNet, hybrid); every registered lgn* model runs under
``-m slow``.
"""
import importlib.util
import tarfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import timm

import lgn_nas  # noqa: F401

_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "timm_conformance.py"
_spec = importlib.util.spec_from_file_location("timm_conformance", _SCRIPT)
conformance = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conformance)

FAST = ["lgn_dense_s", "lgn_conv_mnist_s", "lgn_hybrid_resnet18"]  # one per family


def _run(models, tmp_path):
    report = tmp_path / "report.xml"
    select = " or ".join(f"{m}]" for m in models) + " or " + " or ".join(f"{m}.untrained]" for m in models)
    result = conformance.run_suite(select, ["-q", f"--junitxml={report}", "-W", "ignore"], capture=True)
    tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
    assert result.returncode == 0, f"timm's test_models.py failed over {models}:\n{tail}"
    cases = ElementTree.parse(report).getroot().iter("testcase")
    names = [case.get("name") for case in cases if not list(case)]  # passed: no failure/error/skipped child
    for model in models:
        assert sum(model + "]" in n or model + ".untrained]" in n for n in names) >= 8, (model, names)
    return names


def test_timm_model_suite_over_one_model_per_family(tmp_path):
    names = _run(FAST, tmp_path)
    assert {n.split("[")[0] for n in names} >= {
        "test_model_forward", "test_model_backward", "test_model_default_cfgs", "test_model_forward_features",
        "test_model_forward_torchscript", "test_model_forward_fx", "test_model_backward_fx",
        "test_model_forward_fx_torchscript"}


@pytest.mark.slow
def test_timm_model_suite_over_every_lgn_model(tmp_path):
    _run(timm.list_models("lgn*"), tmp_path)


def test_suite_is_taken_from_the_sdist_and_cached(tmp_path):
    version = "9.9.9"
    source = tmp_path / "src" / f"timm-{version}" / "tests"
    source.mkdir(parents=True)
    (source / "test_models.py").write_text("def test_placeholder():\n    pass\n")
    (source / "test_other.py").write_text("raise SystemExit\n")
    sdist = tmp_path / f"timm-{version}.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(tmp_path / "src" / f"timm-{version}", arcname=f"timm-{version}")
    target = conformance.install_suite(tmp_path / "cache" / version, version, sdist=sdist)
    assert sorted(p.name for p in target.iterdir()) == ["conftest.py", "pytest.ini", "test_models.py"]
    assert "import lgn_nas" in (target / "conftest.py").read_text()
    with pytest.raises(conformance.SuiteUnavailable, match="timm 9.9.8's sdist has no tests/test_models.py"):
        conformance.install_suite(tmp_path / "cache" / "9.9.8", "9.9.8", sdist=sdist)


def test_timm_scripts_run_through_the_wrapper(tmp_path):
    import subprocess
    import sys

    # What timm's benchmark.py does with a model: build it for 3 channels, size the input from its cfg.
    script = tmp_path / "bench_like.py"
    script.write_text(
        "import sys, torch\n"
        "from timm.models import create_model\n"
        "from timm.data import resolve_data_config\n"
        "model = create_model(sys.argv[1], in_chans=3, drop_rate=0.0, channels=[4, 8, 8], head_widths=[60, 40])\n"
        "size = resolve_data_config({}, model=model)['input_size']\n"
        "print(size, tuple(model(torch.rand(2, *size)).shape))\n")
    wrapper = Path(__file__).resolve().parent.parent / "scripts" / "run_timm_script.py"
    out = subprocess.run([sys.executable, str(wrapper), str(script), "lgn_conv_mnist_s"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "(3, 28, 28) (2, 10)"
    bad = subprocess.run([sys.executable, str(wrapper), "--model", "x"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "expected the path of a timm script (e.g. benchmark.py) first, got '--model'" in bad.stderr
