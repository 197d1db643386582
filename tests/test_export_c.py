"""to_c: the exported C99 file, compiled with the system compiler, agrees with evaluate_bits."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from lgn_nas.export import c_source, to_c

CC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (gcc/cc) on PATH")


def _compile(source_path, exe, *flags):
    subprocess.run([CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", *flags, str(source_path), "-o",
                    str(exe)], check=True, capture_output=True, text=True)


def _run(exe, bits, *, via_file=None):
    text = "\n".join("".join("1" if b else "0" for b in row) for row in bits) + "\n"
    if via_file is not None:
        via_file.write_text(text)
        proc = subprocess.run([str(exe), str(via_file)], capture_output=True, text=True, check=True)
    else:
        proc = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True)
    return np.array([[int(v) for v in line.split()] for line in proc.stdout.strip().splitlines()], dtype=np.int64)


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_c_export_matches_reference(tmp_path, skip, opt, random_netlist):
    net = random_netlist(7 + skip, skip=skip)
    bits = np.random.default_rng(1).random((150, net.num_inputs)) < 0.5  # 2 full blocks of 64 and a tail
    path = to_c(net, tmp_path / "net.c")
    _compile(path, tmp_path / "net", opt)
    assert np.array_equal(_run(tmp_path / "net", bits), net.evaluate_bits(bits))
    assert np.array_equal(_run(tmp_path / "net", bits[:5], via_file=tmp_path / "in.txt"), net.evaluate_bits(bits[:5]))


def test_c_export_unsimplified_small_groups_and_library_use(tmp_path, random_netlist):
    net = random_netlist(3, input_shape=(2, 3, 3), thresholds=3, widths=(30, 20), num_classes=4, group_size=3,
                         skip=True)
    bits = np.random.default_rng(2).random((70, net.num_inputs)) < 0.5
    to_c(net, tmp_path / "tiny.c", function_name="tiny", simplify=False)
    _compile(tmp_path / "tiny.c", tmp_path / "tiny", "-O1")
    assert np.array_equal(_run(tmp_path / "tiny", bits), net.evaluate_bits(bits))
    # As a library: NAME_NO_MAIN leaves main out; a caller uses the documented word API.
    (tmp_path / "use.c").write_text(
        '#define TINY_NO_MAIN\n#include "tiny.c"\n#include <stdio.h>\n'
        "int main(void) {\n  uint64_t in[TINY_NUM_INPUTS], scratch[TINY_SCRATCH_WORDS];\n"
        "  uint32_t counts[64 * TINY_NUM_CLASSES];\n  int i;\n"
        "  for (i = 0; i < TINY_NUM_INPUTS; i++) in[i] = (uint64_t)0x0123456789abcdefULL * (uint64_t)(i + 1);\n"
        "  tiny_eval_words(in, scratch, counts);\n"
        "  for (i = 0; i < 64 * TINY_NUM_CLASSES; i++) printf(\"%u\\n\", (unsigned)counts[i]);\n  return 0;\n}\n"
    )
    _compile(tmp_path / "use.c", tmp_path / "use", "-O2", f"-I{tmp_path}")
    out = subprocess.run([str(tmp_path / "use")], capture_output=True, text=True, check=True).stdout
    words = np.array([(0x0123456789ABCDEF * (i + 1)) % 2**64 for i in range(net.num_inputs)], dtype=np.uint64)
    bits64 = ((words[None, :] >> np.arange(64, dtype=np.uint64)[:, None]) & np.uint64(1)).astype(bool)
    assert np.array_equal(np.array(out.split(), dtype=np.int64).reshape(64, -1), net.evaluate_bits(bits64))


def test_c_main_rejects_bad_lines(tmp_path, random_netlist):
    net = random_netlist(4, input_shape=(1, 2, 2), widths=(8,), num_classes=2, group_size=2)
    to_c(net, tmp_path / "n.c")
    _compile(tmp_path / "n.c", tmp_path / "n")
    proc = subprocess.run([str(tmp_path / "n")], input="0101\n01\n", capture_output=True, text=True)
    assert proc.returncode == 1 and "line 2: 2 bits, expected 4" in proc.stderr


def test_bad_arguments(tmp_path, random_netlist):
    net = random_netlist(4, input_shape=(1, 2, 2), widths=(8,), num_classes=2, group_size=2)
    with pytest.raises(ValueError, match="function_name"):
        c_source(net, function_name="2bad")
    with pytest.raises(FileNotFoundError):
        to_c(net, tmp_path / "missing_dir" / "n.c")
    with pytest.raises(ValueError, match="expected an lgn_nas Netlist"):
        c_source(object())
