"""to_verilog: the module, simulated with iverilog by its self-checking testbench, matches evaluate_bits."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from lgn_nas.export import synthesize, to_verilog, verilog_source, write_testbench
from lgn_nas.export.verilog import count_bits, pipeline_latency

IVERILOG = shutil.which("iverilog")
VVP = shutil.which("vvp")
needs_iverilog = pytest.mark.skipif(IVERILOG is None or VVP is None,
                                    reason="iverilog is not installed (Debian package 'iverilog')")


# The nets of this file: small enough for a quick simulation (conftest's random_netlist).
SMALL = dict(input_shape=(1, 6, 6), thresholds=2, widths=(80, 60, 50, 40), num_classes=5, group_size=6)


def simulate(tmp_path, net, bits, *, every=0, expected=None, simplify=False):
    to_verilog(net, tmp_path / "net.v", pipeline_every=every, simplify=simplify)
    write_testbench(net, tmp_path / "tb.v", bits, pipeline_every=every, expected=expected, simplify=simplify)
    subprocess.run([IVERILOG, "-g2001", "-Wall", "-o", str(tmp_path / "sim"), str(tmp_path / "net.v"),
                    str(tmp_path / "tb.v")], check=True, capture_output=True, text=True)
    return subprocess.run([VVP, "-n", str(tmp_path / "sim")], check=True, capture_output=True, text=True).stdout


@needs_iverilog
@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("every", [0, 1, 3, 9])
def test_simulation_matches_reference(tmp_path, skip, every, random_netlist):
    net = random_netlist(11 + skip, skip=skip, **SMALL)
    bits = np.random.default_rng(every).random((40, net.num_inputs)) < 0.5
    out = simulate(tmp_path, net, bits, every=every)
    assert "PASS 40 vectors" in out, out


@needs_iverilog
def test_simplified_module_and_mnist_shape(tmp_path, random_netlist):
    net = random_netlist(5, input_shape=(1, 28, 28), thresholds=1, widths=(400, 400, 300), num_classes=10,
                         group_size=30)
    bits = np.random.default_rng(0).random((16, net.num_inputs)) < 0.5
    assert "PASS 16 vectors" in simulate(tmp_path, net, bits, simplify=True)


@needs_iverilog
@pytest.mark.parametrize("group_size", [1, 2, 7, 13])
def test_popcount_tree_counts_every_group_size(tmp_path, group_size, random_netlist):
    # The per-class popcount is a tree of pairwise adders: odd levels carry one sum up, a group of 1 has none.
    net = random_netlist(group_size, input_shape=(1, 4, 4), thresholds=1, widths=(60, 4 * group_size),
                         num_classes=4, group_size=group_size)
    bits = np.random.default_rng(group_size).random((64, net.num_inputs)) < 0.5
    assert "PASS 64 vectors" in simulate(tmp_path, net, bits)
    text = verilog_source(net)
    adders = text.count(" + ")
    assert adders == 4 * (group_size - 1)  # n - 1 adders per class, none of them a chain of full-width terms


@needs_iverilog
def test_testbench_detects_wrong_counts(tmp_path, random_netlist):
    net = random_netlist(2, **SMALL)
    bits = np.random.default_rng(3).random((8, net.num_inputs)) < 0.5
    wrong = net.evaluate_bits(bits)
    wrong[5, 1] = (wrong[5, 1] + 1) % (net.group_size + 1)
    out = simulate(tmp_path, net, bits, every=2, expected=wrong)
    assert "FAIL vector 5" in out and "FAIL 1 of 8 vectors" in out


def test_ports_and_layout(random_netlist):
    net = random_netlist(1, **dict(SMALL, num_classes=3, group_size=7))
    text = verilog_source(net, module_name="top_net", pipeline_every=2)
    assert count_bits(7) == 3 and count_bits(8) == 4 and count_bits(1) == 1
    assert "input wire clk" in text and f"input wire [{net.num_inputs - 1}:0] x" in text
    assert "output wire [8:0] counts" in text and "assign counts = {count2, count1, count0};" in text
    assert f"localparam LATENCY = {pipeline_latency(4, 2)};" in text and pipeline_latency(4, 2) == 2
    assert "clk" not in verilog_source(net)
    with pytest.raises(ValueError, match="pipeline_every"):
        verilog_source(net, pipeline_every=-1)
    with pytest.raises(ValueError, match="module_name"):
        verilog_source(net, module_name="my-net")
    with pytest.raises(ValueError, match=r"bits have shape"):
        write_testbench(net, "/tmp/unused_tb.v", np.zeros((3, 5), bool))


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys is not installed (Debian package 'yosys')")
def test_synthesize_reports_cells_luts_depth(tmp_path, random_netlist):
    net = random_netlist(4, **dict(SMALL, widths=(40, 30), group_size=4))
    to_verilog(net, tmp_path / "net.v")
    report = synthesize(tmp_path / "net.v")
    assert report["cells"] > 0 and report["luts"] > 0 and report["lut_depth"] >= 1
    quick = synthesize(tmp_path / "net.v", fast=True)
    assert quick["cells"] > 0 and quick["luts"] > 0 and quick["lut_depth"] >= 1
