"""Export a netlist as one self-contained, portable C99 file (no TVM, no headers beyond libc).

The generated file evaluates 64 samples per ``uint64_t`` word. Gates are executed from constant
tables, one tight loop per run of gates with the same operation (AND, AND-NOT, OR, XOR: negations and
constants are folded into those by :func:`tvm_ops.netlist_plan.make_plan`), so there are no branches
per gate and the file compiles in about a second at any optimisation level, unlike one C statement
per gate. The GroupSum head is a carry-save adder tree in the same tables; its outputs are the binary
digits of each class count.

API of the generated file (``NAME`` = ``function_name``)::

    #define NAME_NUM_INPUTS, NAME_NUM_CLASSES, NAME_GROUP_SIZE, NAME_SCRATCH_WORDS, NAME_TAU
    /* 64 samples: in[i] = word of input bit i (bit s = sample s); scratch: NAME_SCRATCH_WORDS words;
       counts[s * NAME_NUM_CLASSES + c] = number of class c outputs that are 1 for sample s. */
    void NAME_eval_words(const uint64_t *in, uint64_t *scratch, uint32_t *counts);
    /* n samples of raw bits: bits[s * NAME_NUM_INPUTS + i] is 0 or 1; counts as above (n rows).
       Uses a static scratch buffer: not re-entrant. */
    void NAME_eval_bits(const uint8_t *bits, size_t n, uint32_t *counts);
    /* n raw samples, NAME_NUM_VALUES values each ((C, *spatial) flattened), under the input contract of
       lgn_nas.inputs; the thermometer encoding is done here. Return NAME_OK, or NAME_ERR_EMPTY (n == 0
       or a NULL pointer) or NAME_ERR_VALUE (*bad = index of the first bad value) with counts untouched. */
    int NAME_eval_u8(const uint8_t *x, size_t n, uint32_t *counts);       /* "unit" domain only */
    int NAME_eval_f32(const float *x, size_t n, uint32_t *counts, size_t *bad);

With ``with_main=True`` a ``main`` reads one sample per line (NAME_NUM_INPUTS characters '0'/'1',
input 0 first) from the file named by ``argv[1]`` or from stdin, and prints each sample's counts
separated by spaces. Compile with e.g. ``cc -O2 -std=c99 net.c -o net``; define ``NAME_NO_MAIN`` to
leave the main out.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._common import atomic_write_text, check_identifier, prepared

__all__ = ["to_c", "c_source"]

_C_OPS = {0: "&", 1: "& ~", 2: "|", 3: "^"}


def _c_float(value: float) -> str:
    """``value`` (a float32) as an exact C99 hexadecimal float literal."""
    return float(np.float32(value)).hex() + "f"


def _raw_input_api(net: Any, name: str) -> list[str]:
    """``NAME_eval_u8`` / ``NAME_eval_f32``: the input contract checked, thermometer-encoded, evaluated."""
    from tvm_ops.netlist_plan import uint8_cuts

    up = name.upper()
    enc = net.encoding
    thresholds = np.asarray(enc.thresholds, dtype=np.float32)
    if not np.isfinite(thresholds).all():
        raise ValueError("the encoding has an infinite threshold; the C export needs finite thresholds")
    channels, per_channel = thresholds.shape
    spatial = int(np.prod(enc.input_shape[1:], dtype=np.int64))
    unit = enc.domain == "unit"

    def encode(kind: str, test: str) -> list[str]:
        return [
            f"static void {name}_encode_{kind}(const {'uint8_t' if kind == 'u8' else 'float'} *x, size_t m, uint64_t *in)",
            "{",
            "    size_t s, c, t, p;",
            "    memset(in, 0, sizeof(uint64_t) * " + f"{up}_NUM_INPUTS);",
            "    for (s = 0; s < m; s++)",
            f"        for (c = 0; c < {up}_CHANNELS; c++)",
            f"            for (t = 0; t < {up}_THRESHOLDS_PER_CHANNEL; t++) {{",
            f"                uint64_t *w = in + (c * {up}_THRESHOLDS_PER_CHANNEL + t) * {up}_SPATIAL;",
            f"                const {'uint8_t' if kind == 'u8' else 'float'} *v = x + s * {up}_NUM_VALUES + c * {up}_SPATIAL;",
            f"                for (p = 0; p < {up}_SPATIAL; p++)",
            f"                    w[p] |= (uint64_t)({test}) << s;",
            "            }",
            "}",
            "",
        ]

    def evaluate(kind: str) -> list[str]:
        return [
            "    for (start = 0; start < n; start += 64) {",
            "        m = n - start < 64 ? n - start : 64;",
            f"        {name}_encode_{kind}(x + start * {up}_NUM_VALUES, m, in);",
            f"        {name}_eval_words(in, scratch, block);",
            f"        memcpy(counts + start * {up}_NUM_CLASSES, block, sizeof(uint32_t) * m * {up}_NUM_CLASSES);",
            "    }",
            f"    return {up}_OK;",
            "}",
        ]

    statics = [
        f"    static uint64_t scratch[{up}_SCRATCH_WORDS];",
        f"    static uint64_t in[{up}_NUM_INPUTS];",
        f"    static uint32_t block[64 * {up}_NUM_CLASSES];",
        "    size_t start, m;",
    ]
    ok_value = "x[i] >= 0.0f && x[i] <= 1.0f" if unit else "x[i] == x[i] && x[i] <= FLT_MAX && x[i] >= -FLT_MAX"
    lines = [
        "",
        f"#define {up}_CHANNELS {channels}",
        f"#define {up}_THRESHOLDS_PER_CHANNEL {per_channel}",
        f"#define {up}_SPATIAL {spatial}",
        f"#define {up}_NUM_VALUES {channels * spatial}",
        f"#define {up}_OK 0",
        f"#define {up}_ERR_EMPTY 1",
        f"#define {up}_ERR_VALUE 2",
        "",
        f"static const float {name}_thresholds[{channels * per_channel}] = {{\n"
        + ",\n".join("    " + ", ".join(_c_float(v) for v in thresholds.reshape(-1)[i:i + 8])
                     for i in range(0, thresholds.size, 8)) + "\n};",
    ]
    if unit:
        lines += [
            "/* uint8 value v is above threshold k when v / 255 > it in float32: v >= cut[k] (256: never) */",
            f"static const uint16_t {name}_cuts[{channels * per_channel}] = {{\n{_c_array(uint8_cuts(thresholds))}\n}};",
            "",
            *encode("u8", f"v[p] >= {name}_cuts[c * {up}_THRESHOLDS_PER_CHANNEL + t]"),
            f"int {name}_eval_u8(const uint8_t *x, size_t n, uint32_t *counts)",
            "{",
            *statics,
            f"    if (n == 0 || x == NULL || counts == NULL) return {up}_ERR_EMPTY;",
            *evaluate("u8"),
        ]
    lines += [
        "",
        *encode("f32", f"v[p] > {name}_thresholds[c * {up}_THRESHOLDS_PER_CHANNEL + t]"),
        f"int {name}_eval_f32(const float *x, size_t n, uint32_t *counts, size_t *bad)",
        "{",
        *statics,
        "    size_t i;",
        f"    if (n == 0 || x == NULL || counts == NULL) return {up}_ERR_EMPTY;",
        f"    for (i = 0; i < n * {up}_NUM_VALUES; i++)",
        f"        if (!({ok_value})) {{",
        "            if (bad != NULL) *bad = i;",
        f"            return {up}_ERR_VALUE;",
        "        }",
        *evaluate("f32"),
    ]
    return lines


def _c_array(values: np.ndarray, per_line: int = 24) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)] or ["0"]
    return ",\n".join("    " + ", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line))


def c_source(netlist: Any, *, function_name: str = "lgn_net", with_main: bool = True, simplify: bool = True) -> str:
    """The C source :func:`to_c` writes."""
    from tvm_ops.netlist_plan import make_plan

    name = check_identifier(function_name, "function_name")
    up = name.upper()
    net = prepared(netlist, simplify)
    plan = make_plan(net.arrays(), head="adder")
    n_seg = int(plan.segments.shape[0])
    n_rows = int(plan.rows.shape[0])
    nb = plan.num_planes
    lines = [
        f"/* {name}: logic gate network exported by lgn_nas.export.to_c (C99, no dependencies).",
        f" * {net.num_inputs} inputs, {net.num_gates} gates in {net.num_layers} layers, {net.num_classes} classes x "
        f"{net.group_size} outputs, tau {net.tau:g}.",
        f" * Lowered to {n_rows} word operations (GroupSum adder tree included) in {plan.num_levels} levels.",
        " *",
        f" * void {name}_eval_words(const uint64_t *in, uint64_t *scratch, uint32_t *counts);",
        f" *   64 samples: in[i] = word of input bit i (bit s = sample s), i < {up}_NUM_INPUTS;",
        f" *   scratch: {up}_SCRATCH_WORDS words; counts[s * {up}_NUM_CLASSES + c] = class c count of sample s.",
        f" * void {name}_eval_bits(const uint8_t *bits, size_t n, uint32_t *counts);",
        f" *   n samples, bits[s * {up}_NUM_INPUTS + i] in {{0, 1}}; counts as above. Not re-entrant.",
        " *",
        " * Raw inputs (the input contract of lgn_nas.inputs, as the model, Netlist.evaluate and TVM):",
        *([f" * int {name}_eval_u8(const uint8_t *x, size_t n, uint32_t *counts);",
           " *   uint8 images: value v means v / 255 (in float32)."] if net.encoding.domain == "unit" else []),
        f" * int {name}_eval_f32(const float *x, size_t n, uint32_t *counts, size_t *bad);",
        (" *   floats, each in [0, 1] (NaN and infinity refused); compared with the thresholds in float32."
         if net.encoding.domain == "unit" else
         " *   finite floats (NaN and infinity refused); compared with the thresholds in float32."),
        f" *   x holds n samples of {up}_NUM_VALUES values, sample-major, each sample the array of shape",
        f" *   {tuple(net.encoding.input_shape)} (channel, then spatial positions) flattened; counts gets n rows as above.",
        f" *   Returns {up}_OK (0); {up}_ERR_EMPTY (1) when n == 0 or a pointer is NULL; {up}_ERR_VALUE (2)",
        f" *   when a value breaks the contract, with *bad (if bad is not NULL) its index in x. On an error",
        " *   nothing is written to counts. Not re-entrant. Do not compile with -ffast-math (NaN checks).",
        f" * Class scores of the model are counts / {up}_TAU.",
        " */",
        "#include <float.h>",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "#include <string.h>",
        "",
        f"#define {up}_NUM_INPUTS {net.num_inputs}",
        f"#define {up}_NUM_CLASSES {net.num_classes}",
        f"#define {up}_GROUP_SIZE {net.group_size}",
        f"#define {up}_SCRATCH_WORDS {plan.num_slots}",
        f"#define {up}_TAU {float(np.float32(net.tau))!r}f",
        f"#define {up}_NUM_PLANES {nb}",
        "",
        f"static const int32_t {name}_segments[{max(3, 3 * n_seg)}] = {{\n{_c_array(plan.segments)}\n}};",
        f"static const int32_t {name}_rows[{max(3, 3 * n_rows)}] = {{\n{_c_array(plan.rows)}\n}};",
        f"static const int32_t {name}_plane_slot[{up}_NUM_CLASSES * {nb}] = {{\n{_c_array(plan.head_slots)}\n}};",
        f"static const uint8_t {name}_plane_neg[{up}_NUM_CLASSES * {nb}] = {{\n{_c_array(plan.head_neg)}\n}};",
        "",
        f"void {name}_eval_words(const uint64_t *in, uint64_t *scratch, uint32_t *counts)",
        "{",
        "    size_t s, j;",
        "    int c, p;",
        "    scratch[0] = 0;  /* slot 0 is constant FALSE */",
        f"    memcpy(scratch + 1, in, sizeof(uint64_t) * {up}_NUM_INPUTS);",
        f"    for (s = 0; s < {n_seg}; s++) {{",
        f"        const int32_t lo = {name}_segments[3 * s + 1], hi = {name}_segments[3 * s + 2];",
        f"        switch ({name}_segments[3 * s]) {{",
    ]
    for op, sym in _C_OPS.items():
        lines += [
            f"        case {op}:",
            "            for (j = (size_t)lo; j < (size_t)hi; j++)",
            f"                scratch[{name}_rows[3 * j]] = scratch[{name}_rows[3 * j + 1]] {sym} scratch[{name}_rows[3 * j + 2]];",
            "            break;",
        ]
    lines += [
        "        }",
        "    }",
        f"    for (c = 0; c < {up}_NUM_CLASSES; c++) {{",
        "        uint64_t plane[" + str(nb) + "];",
        f"        for (p = 0; p < {nb}; p++)",
        f"            plane[p] = scratch[{name}_plane_slot[c * {nb} + p]] ^ (0 - (uint64_t){name}_plane_neg[c * {nb} + p]);",
        "        for (s = 0; s < 64; s++) {",
        "            uint32_t count = 0;",
        f"            for (p = 0; p < {nb}; p++)",
        "                count |= (uint32_t)((plane[p] >> s) & 1u) << p;",
        f"            counts[s * {up}_NUM_CLASSES + c] = count;",
        "        }",
        "    }",
        "}",
        "",
        f"void {name}_eval_bits(const uint8_t *bits, size_t n, uint32_t *counts)",
        "{",
        f"    static uint64_t scratch[{up}_SCRATCH_WORDS];",
        f"    static uint64_t in[{up}_NUM_INPUTS];",
        f"    static uint32_t block[64 * {up}_NUM_CLASSES];",
        "    size_t start, s, i, m;",
        "    for (start = 0; start < n; start += 64) {",
        "        m = n - start < 64 ? n - start : 64;",
        "        memset(in, 0, sizeof in);",
        "        for (s = 0; s < m; s++)",
        f"            for (i = 0; i < {up}_NUM_INPUTS; i++)",
        f"                in[i] |= (uint64_t)(bits[(start + s) * {up}_NUM_INPUTS + i] & 1u) << s;",
        f"        {name}_eval_words(in, scratch, block);",
        f"        memcpy(counts + start * {up}_NUM_CLASSES, block, sizeof(uint32_t) * m * {up}_NUM_CLASSES);",
        "    }",
        "}",
        *_raw_input_api(net, name),
    ]
    if with_main:
        lines += [
            "",
            f"#ifndef {up}_NO_MAIN",
            "#include <stdio.h>",
            "#include <stdlib.h>",
            "",
            f"static void {name}_flush(const uint8_t *bits, size_t m)",
            "{",
            f"    static uint32_t counts[64 * {up}_NUM_CLASSES];",
            "    size_t s;",
            "    int c;",
            f"    {name}_eval_bits(bits, m, counts);",
            "    for (s = 0; s < m; s++) {",
            f"        for (c = 0; c < {up}_NUM_CLASSES; c++)",
            f"            printf(c ? \" %u\" : \"%u\", (unsigned)counts[s * {up}_NUM_CLASSES + c]);",
            "        printf(\"\\n\");",
            "    }",
            "}",
            "",
            "int main(int argc, char **argv)",
            "{",
            "    FILE *f = argc > 1 ? fopen(argv[1], \"r\") : stdin;",
            f"    static uint8_t bits[64 * {up}_NUM_INPUTS];",
            "    unsigned long line = 1;",
            "    size_t m = 0, i = 0;",
            "    int ch;",
            "    if (!f) { fprintf(stderr, \"cannot open %s\\n\", argv[1]); return 2; }",
            "    do {",
            "        ch = fgetc(f);",
            "        if (ch == '0' || ch == '1') {",
            f"            if (i == {up}_NUM_INPUTS) {{ fprintf(stderr, \"line %lu: too many bits\\n\", line); return 1; }}",
            f"            bits[m * {up}_NUM_INPUTS + i++] = (uint8_t)(ch - '0');",
            "        } else if (ch == '\\n' || ch == EOF) {",
            "            if (i > 0) {",
            f"                if (i != {up}_NUM_INPUTS) {{",
            f"                    fprintf(stderr, \"line %lu: %lu bits, expected %d\\n\", line, (unsigned long)i, {up}_NUM_INPUTS);",
            "                    return 1;",
            "                }",
            "                i = 0;",
            f"                if (++m == 64) {{ {name}_flush(bits, m); m = 0; }}",
            "            }",
            "            line++;",
            "        } else if (ch != '\\r' && ch != ' ' && ch != '\\t') {",
            "            fprintf(stderr, \"line %lu: unexpected character %d\\n\", line, ch);",
            "            return 1;",
            "        }",
            "    } while (ch != EOF);",
            f"    if (m) {name}_flush(bits, m);",
            "    if (f != stdin) fclose(f);",
            "    return 0;",
            "}",
            "#endif",
        ]
    return "\n".join(lines) + "\n"


def to_c(netlist: Any, path: Any, *, function_name: str = "lgn_net", with_main: bool = True,
         simplify: bool = True):
    """Write ``netlist`` as a self-contained C99 file at ``path`` (atomically); returns the path.

    See the module docstring for the generated API. ``simplify`` runs ``netlist.simplify()`` first
    (the result is equivalent bit for bit).
    """
    return atomic_write_text(path, c_source(netlist, function_name=function_name, with_main=with_main,
                                            simplify=simplify))
