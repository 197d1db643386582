"""The conv recipe's promise (issue 13): one MNIST epoch of lgn_conv_mnist_s with no extra flags gives a
discrete circuit of at least 95% whose relaxed network agrees within a point. About a minute on two idle
cores (ten on a loaded one), so it is marked slow."""
import json

import pytest

from lgn_nas.cli import main


@pytest.mark.slow
def test_one_default_epoch_of_lgn_conv_mnist_s_discretises(tmp_path, mnist_available):
    out = tmp_path / "run"
    assert main(["train", "lgn_conv_mnist_s", "--dataset", "mnist", "--epochs", "1", "--out", str(out),
                 "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_acc_discrete"] >= 0.95
    assert abs(metrics["discretization_gap"]) <= 0.01
    assert metrics["netlist_agrees"]
