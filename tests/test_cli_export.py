import shutil
import subprocess

import numpy as np
import pytest
import timm
import torch

import lgn_nas
from lgn_nas.cli import main


@pytest.fixture()
def netlist_file(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("lgn_dense_s", depth=2, width=[80, 40], img_size=6, num_classes=4).eval()
    netlist = lgn_nas.discretize(model)
    path = tmp_path / "net.lgn"
    netlist.save(path)
    return path, netlist


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_export_c_from_a_netlist_file_compiles_and_agrees(tmp_path, netlist_file, capsys):
    path, netlist = netlist_file
    out = tmp_path / "net.c"
    assert main(["export", str(path), "--format", "c", "--out", str(out)]) == 0
    assert "after simplification" in capsys.readouterr().out
    exe = tmp_path / "net"
    subprocess.run(["gcc", "-O1", "-std=c99", "-o", str(exe), str(out)], check=True)
    bits = np.random.default_rng(0).integers(0, 2, size=(20, netlist.num_inputs)).astype(bool)
    text = "\n".join("".join("1" if b else "0" for b in row) for row in bits) + "\n"
    run = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True)
    got = np.array([[int(v) for v in line.split()] for line in run.stdout.strip().splitlines()])
    assert np.array_equal(got, netlist.evaluate_bits(bits))


def test_export_netlist_and_verilog_from_a_model_name(tmp_path, capsys):
    out = tmp_path / "small.lgn"
    assert main(["export", "lgn_dense_s", "--model-kwargs", "depth=2", "width=100", "--format", "netlist",
                 "--out", str(out)]) == 0
    assert lgn_nas.load_netlist(out).num_classes == 10
    verilog = tmp_path / "small.v"
    assert main(["export", str(out), "--format", "verilog", "--out", str(verilog), "--pipeline-every", "1"]) == 0
    assert "module lgn_net" in verilog.read_text()


def test_export_refuses_unknown_sources_and_synth_without_verilog(tmp_path, netlist_file, capsys):
    assert main(["export", "no_such_thing", "--format", "c", "--out", str(tmp_path / "x.c")]) == 2
    assert "neither a netlist file" in capsys.readouterr().err
    path, _ = netlist_file
    assert main(["export", str(path), "--format", "c", "--out", str(tmp_path / "y.c"), "--synth"]) == 2


def test_info_prints_the_gate_count_formula_and_published_figure(capsys):
    assert main(["info", "lgn_conv_mnist_s"]) == 0
    out = capsys.readouterr().out
    assert "trees 149184, or_pools 15984, dense 35840, total 201008" in out
    assert "published gate count for this shape: 147K" in out
