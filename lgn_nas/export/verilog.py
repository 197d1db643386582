"""Export a netlist as synthesisable Verilog-2001, with a self-checking testbench and yosys synthesis.

Module ports (``module_name``, default ``lgn_net``)::

    input  wire [NUM_INPUTS-1:0]             x       // encoded input bits, bit i = netlist input i
    output wire [NUM_CLASSES*COUNT_BITS-1:0] counts  // class c count in counts[c*COUNT_BITS +: COUNT_BITS]
    input  wire                              clk     // only when pipeline_every > 0

``COUNT_BITS = ceil(log2(outputs_per_class + 1))``. One ``assign`` per gate (``n<id>`` wires, netlist
node ids). With ``pipeline_every = N > 0`` every signal still needed is registered after layers N, 2N,
...: the module has ``LATENCY = num_layers // N`` clock cycles of latency (a new input can be applied
every cycle; ``counts`` shows the result for the input applied ``LATENCY`` rising edges earlier). The
per-class popcount after the last layer is combinational.
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ._common import atomic_write_text, check_identifier, prepared

__all__ = ["to_verilog", "verilog_source", "write_testbench", "synthesize", "count_bits", "pipeline_latency"]

_GATE_EXPR = {
    0: "1'b0", 1: "{a} & {b}", 2: "{a} & ~{b}", 3: "{a}", 4: "~{a} & {b}", 5: "{b}", 6: "{a} ^ {b}",
    7: "{a} | {b}", 8: "~({a} | {b})", 9: "~({a} ^ {b})", 10: "~{b}", 11: "{a} | ~{b}", 12: "~{a}",
    13: "~{a} | {b}", 14: "~({a} & {b})", 15: "1'b1",
}


def count_bits(group_size: int) -> int:
    """Bits of one class count: ceil(log2(group_size + 1))."""
    return max(1, math.ceil(math.log2(group_size + 1)))


def pipeline_latency(num_layers: int, pipeline_every: int) -> int:
    """Clock cycles from input to ``counts`` for a module written with ``pipeline_every``."""
    return num_layers // pipeline_every if pipeline_every > 0 else 0


def _check_pipeline(pipeline_every: Any) -> int:
    if isinstance(pipeline_every, bool) or not isinstance(pipeline_every, (int, np.integer)) or pipeline_every < 0:
        raise ValueError(f"pipeline_every = {pipeline_every!r}, expected an int >= 0 (0: combinational)")
    return int(pipeline_every)


def verilog_source(netlist: Any, *, module_name: str = "lgn_net", pipeline_every: int = 0,
                   simplify: bool = False) -> str:
    """The Verilog :func:`to_verilog` writes."""
    name = check_identifier(module_name, "module_name")
    every = _check_pipeline(pipeline_every)
    net = prepared(netlist, simplify)
    n_in, n_cls, k = net.num_inputs, net.num_classes, net.group_size
    cb = count_bits(k)
    offsets = net.layer_offsets
    n_layers = net.num_layers
    latency = pipeline_latency(n_layers, every)
    # Layer that produces each node (-1 for inputs) and the last layer that reads it (outputs: n_layers).
    producer = np.full(net.num_nodes, -1, dtype=np.int64)
    last_read = np.full(net.num_nodes, -1, dtype=np.int64)
    for index, (offset, layer) in enumerate(zip(offsets, net.layers)):
        producer[offset:offset + len(layer)] = index
        np.maximum.at(last_read, layer.in_a, index)
        np.maximum.at(last_read, layer.in_b, index)
    last_read[net.outputs] = n_layers

    signal = {i: f"x[{i}]" for i in range(n_in)}  # current name of each node's value
    lines = [
        f"// {name}: logic gate network exported by lgn_nas.export.to_verilog (Verilog-2001).",
        f"// {n_in} inputs, {net.num_gates} gates in {n_layers} layers, {n_cls} classes x {k} outputs, tau {net.tau:g}.",
        f"// counts[c*{cb} +: {cb}] = number of class c outputs that are 1; score = count / {net.tau:g}.",
        f"// Latency: {latency} clock cycle(s)" + (f" (registers after every {every} layers)." if every else
                                                   " (combinational)."),
        "`timescale 1ns / 1ps",
        f"module {name} (",
    ]
    ports = []
    if every:
        ports.append("    input wire clk")
    ports.append(f"    input wire [{n_in - 1}:0] x")
    ports.append(f"    output wire [{n_cls * cb - 1}:0] counts")
    lines.append(",\n".join(ports))
    lines.append(");")
    lines.append(f"    localparam NUM_INPUTS = {n_in};")
    lines.append(f"    localparam NUM_CLASSES = {n_cls};")
    lines.append(f"    localparam COUNT_BITS = {cb};")
    lines.append(f"    localparam LATENCY = {latency};")
    for index, (offset, layer) in enumerate(zip(offsets, net.layers)):
        lines.append(f"    // layer {index}")
        for j in range(len(layer)):
            node = int(offset + j)
            expr = _GATE_EXPR[int(layer.gate[j])].format(a=signal[int(layer.in_a[j])], b=signal[int(layer.in_b[j])])
            lines.append(f"    wire n{node} = {expr};")
            signal[node] = f"n{node}"
        if every and (index + 1) % every == 0:
            stage = (index + 1) // every
            alive = [node for node in signal if last_read[node] > index]
            lines.append(f"    // pipeline stage {stage}: {len(alive)} registers")
            for node in alive:
                lines.append(f"    reg p{stage}_{node};")
            lines.append("    always @(posedge clk) begin")
            for node in alive:
                lines.append(f"        p{stage}_{node} <= {signal[node]};")
            lines.append("    end")
            signal = {node: f"p{stage}_{node}" for node in alive}
    lines.append("    // GroupSum: per-class popcount, a balanced tree of adders as wide as their sums need")
    outputs = net.outputs.reshape(n_cls, k)
    for c in range(n_cls):
        lines += _popcount_tree(f"count{c}", [signal[int(node)] for node in outputs[c]], cb)
    lines.append("    assign counts = {" + ", ".join(f"count{c}" for c in reversed(range(n_cls))) + "};")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def _bits_for(count: int) -> int:
    return max(1, int(count).bit_length())


def _popcount_tree(name: str, bits: list, width: int) -> list:
    """Verilog lines declaring ``wire [width-1:0] name`` = the number of ``bits`` that are 1.

    Pairs are added level by level (depth ceil(log2 n) adders, not a chain of n); each sum is only as
    wide as the largest count it can hold, so the tree has about 2n adder bits instead of n * width.
    """
    lines = []
    level = [(b, 1) for b in bits]  # (signal, most ones it can count)
    depth = 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            (a, na), (b, nb) = level[i], level[i + 1]
            n = na + nb
            w = _bits_for(n)
            wire = f"{name}_{depth}_{i // 2}"
            lines.append(f"    wire [{w - 1}:0] {wire} = {_extend(a, _bits_for(na), w)} + {_extend(b, _bits_for(nb), w)};")
            nxt.append((wire, n))
        if len(level) % 2:
            nxt.append(level[-1])
        level, depth = nxt, depth + 1
    root, n = level[0] if level else ("1'b0", 0)
    lines.append(f"    wire [{width - 1}:0] {name} = {_extend(root, _bits_for(n), width)};")
    return lines


def _extend(signal: str, have: int, want: int) -> str:
    """``signal`` (``have`` bits) zero-extended to ``want`` bits."""
    return signal if have >= want else f"{{{{{want - have}{{1'b0}}}}, {signal}}}"


def to_verilog(netlist: Any, path: Any, *, module_name: str = "lgn_net", pipeline_every: int = 0,
               simplify: bool = False):
    """Write ``netlist`` as a Verilog-2001 module at ``path`` (atomically); returns the path.

    ``simplify=True`` writes ``netlist.simplify()`` instead (equivalent, usually far smaller; node
    names then follow the simplified netlist).
    """
    return atomic_write_text(path, verilog_source(netlist, module_name=module_name,
                                                  pipeline_every=pipeline_every, simplify=simplify))


def _bits_literal(row: np.ndarray) -> str:
    return f"{row.size}'b" + "".join("1" if b else "0" for b in row[::-1])


def write_testbench(netlist: Any, path: Any, vectors: Any, *, module_name: str = "lgn_net",
                    pipeline_every: int = 0, expected: Optional[Any] = None, simplify: bool = False):
    """Write a self-checking testbench for the module :func:`to_verilog` writes with the same arguments.

    ``vectors``: input bits (B, num_inputs), bool or 0/1. ``expected``: counts (B, num_classes), by
    default ``netlist.evaluate_bits(vectors)``. The bench applies one vector per step (per clock cycle
    when pipelined), compares ``counts`` and prints ``PASS <n> vectors`` or ``FAIL ...`` lines followed by
    ``FAIL <errors> of <n> vectors``, then calls ``$finish``.
    """
    name = check_identifier(module_name, "module_name")
    every = _check_pipeline(pipeline_every)
    net = prepared(netlist, simplify)
    from ..netlist.evaluate import check_bits

    bits = check_bits(vectors, net.num_inputs)
    if bits.shape[0] == 0:
        raise ValueError("vectors is empty, expected at least one input vector")
    counts = net.evaluate_bits(bits) if expected is None else np.asarray(expected)
    if counts.shape != (bits.shape[0], net.num_classes):
        raise ValueError(f"expected has shape {counts.shape}, expected {(bits.shape[0], net.num_classes)}")
    cb = count_bits(net.group_size)
    if (counts < 0).any() or (counts >= (1 << cb)).any():
        raise ValueError(f"expected counts must lie in 0..{(1 << cb) - 1}")
    latency = pipeline_latency(net.num_layers, every)
    n = bits.shape[0]
    width = net.num_classes * cb
    lines = [
        "`timescale 1ns / 1ps",
        f"module {name}_tb;",
        f"    reg [{net.num_inputs - 1}:0] x;",
        f"    wire [{width - 1}:0] counts;",
        f"    reg [{net.num_inputs - 1}:0] vec [0:{n - 1}];",
        f"    reg [{width - 1}:0] exp [0:{n - 1}];",
        "    integer i, j, errors;",
    ]
    if every:
        lines += ["    reg clk;", f"    {name} dut (.clk(clk), .x(x), .counts(counts));",
                  "    initial clk = 0;", "    always #5 clk = ~clk;"]
    else:
        lines.append(f"    {name} dut (.x(x), .counts(counts));")
    lines.append("    initial begin")
    for i in range(n):
        packed = 0
        for c in range(net.num_classes):
            packed |= int(counts[i, c]) << (c * cb)
        lines.append(f"        vec[{i}] = {_bits_literal(bits[i])};")
        lines.append(f"        exp[{i}] = {width}'h{packed:x};")
    lines.append("        errors = 0;")
    if every:
        lines += [
            "        x = vec[0];",
            f"        for (i = 0; i < {n + max(latency - 1, 0)}; i = i + 1) begin",
            "            @(negedge clk);",
            f"            if (i < {n}) x = vec[i];",
            "            @(posedge clk); #1;",
            f"            j = i - {max(latency - 1, 0)};",
            f"            if (j >= 0 && j < {n}) begin",
        ]
        if latency == 0:  # fewer layers than pipeline_every: combinational
            lines[-3] = "            #1;"
    else:
        lines += [
            f"        for (i = 0; i < {n}; i = i + 1) begin",
            "            x = vec[i];",
            "            #1;",
            "            j = i;",
            "            begin",
        ]
    lines += [
        "                if (counts !== exp[j]) begin",
        "                    errors = errors + 1;",
        "                    $display(\"FAIL vector %0d: counts %h, expected %h\", j, counts, exp[j]);",
        "                end",
        "            end",
        "        end",
        f"        if (errors == 0) $display(\"PASS {n} vectors\");",
        f"        else $display(\"FAIL %0d of {n} vectors\", errors);",
        "        $finish;",
        "    end",
        "endmodule",
    ]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def synthesize(path: Any, *, top: Optional[str] = None, timeout: float = 600.0, fast: bool = False) -> dict:
    """Synthesise the Verilog file ``path`` with yosys (generic gates and 6-input LUTs).

    ``fast``: skip yosys's generic ``synth`` script and ABC's strong mapping (``proc; flatten; opt -fast;
    techmap; opt -fast`` then ``abc -fast -lut 6``): minutes of CPU fewer on nets of tens of thousands of
    gates, at the price of a less optimised LUT count; the generic cell count is then taken after techmap.

    Returns ``{"cells": int, "cell_types": {type: count}, "luts": int, "lut_depth": int | None}``
    (``lut_depth``: longest LUT path, from yosys ``ltp``). Raises FileNotFoundError when yosys is absent.
    """
    yosys = shutil.which("yosys")
    if yosys is None:
        raise FileNotFoundError("yosys is not installed (Debian package 'yosys')")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Verilog file {str(path)!r} does not exist")
    if top is None:
        match = re.search(r"^\s*module\s+([A-Za-z_][A-Za-z0-9_]*)", path.read_text(), re.MULTILINE)
        if match is None:
            raise ValueError(f"{str(path)!r} declares no module")
        top = match.group(1)
    check_identifier(top, "top")
    if fast:
        script = (f"read_verilog {path}; hierarchy -top {top}; proc; flatten; opt -fast; techmap; opt -fast; stat; "
                  f"abc -fast -lut 6; opt_clean; stat; ltp -noff")
    else:
        script = (f"read_verilog {path}; synth -flatten -top {top}; stat; "
                  f"abc -lut 6; opt_clean; stat; ltp -noff")
    proc = subprocess.run([yosys, "-q", "-p", script.replace("stat;", "tee -o /dev/stdout stat;")
                           .replace("ltp -noff", "tee -o /dev/stdout ltp -noff")],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"yosys failed on {str(path)!r}: {proc.stderr.strip()[-2000:]}")
    text = proc.stdout
    stats = text.split("Number of cells:")
    cells = int(stats[1].split()[0]) if len(stats) > 1 else 0
    luts = int(stats[2].split()[0]) if len(stats) > 2 else 0
    types: dict[str, int] = {}
    if len(stats) > 1:
        for line in stats[1].split("Number of cells:")[0].splitlines()[1:]:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0].startswith("$"):
                types[parts[0]] = int(parts[1])
    depth = re.search(r"Longest topological path in \S+ \(length=(\d+)\)", text)
    return {"cells": cells, "cell_types": types, "luts": luts, "lut_depth": int(depth.group(1)) if depth else None}
