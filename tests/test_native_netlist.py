"""compile_netlist_native: the fused, net-specialised AVX-512 and AVX2 code agrees with Netlist.evaluate
bit for bit.

The fusion itself (pure numpy), the AVX2 formulas of all 256 3-input tables and the ISA choice are
checked everywhere; the built code once per ISA (``isa`` parameter), where this machine has that ISA
and a C compiler (else those tests skip, naming why).
"""
from __future__ import annotations

import numpy as np
import pytest

from lgn_nas.netlist import Encoding, NetlistBuilder
from lgn_nas.netlist.evaluate import pack_bits

import tvm_ops
from tvm_ops import netlist_native
from tvm_ops.netlist_asm import GATE_REGISTERS, ISAS
from tvm_ops.netlist_fuse import fuse_plan, run_fused_numpy
from tvm_ops.netlist_plan import make_plan, netlist_arrays
from tvm_ops.netlist_ternary import TEMPORARIES, emit_ternary, formula, formula_value

WHY_NOT = tvm_ops.native_available()
needs_native = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))
# Each built-code test runs once per ISA; one this machine cannot run skips, naming why.
ISA_PARAMS = [pytest.param(isa, marks=pytest.mark.skipif(tvm_ops.native_available(isa=isa) is not None,
                                                         reason=str(tvm_ops.native_available(isa=isa))))
              for isa in ISAS]
over_isas = pytest.mark.parametrize("isa", ISA_PARAMS)

CASES = {
    "mnist_layered": dict(seed=0, widths=(512, 512, 512)),
    "skip_rgb_T3": dict(seed=1, input_shape=(3, 5, 6), thresholds=3, widths=(300, 200, 100, 90), skip=True),
    "small_group": dict(seed=2, input_shape=(2, 9), thresholds=2, widths=(40, 30), num_classes=3, group_size=5,
                        skip=True),
    "group_of_one": dict(seed=3, input_shape=(1, 70), widths=(64, 64), num_classes=4, group_size=1, skip=True),
    "tree_like": dict(seed=4, input_shape=(1, 10, 10), widths=(400, 200, 100, 50), num_classes=5),
    # 300 outputs a class: nine bit planes, so the decode's high count byte is used
    "wide_group": dict(seed=5, input_shape=(1, 8, 8), widths=(700, 700), num_classes=2, group_size=300, skip=True),
}


def _chain_net(depth: int = 300):
    """A single-reader chain ``x = gate(x, input)`` deeper than any register tree: fusion must cut it."""
    rng = np.random.default_rng(11)
    builder = NetlistBuilder(Encoding("thermometer", (1, 8, 8), np.full((1, 1), 0.5, np.float32)))
    inputs = builder.input_ids().ravel()
    prev = builder.add_layer(np.array([6]), inputs[:1], inputs[1:2])
    for i in range(depth):
        gate = np.array([rng.choice([1, 6, 7, 8, 9, 14])])  # AND, XOR, OR, NOR, XNOR, NAND
        prev = builder.add_layer(gate, prev, inputs[(i + 2) % inputs.size:][:1])
    side = builder.add_layer(np.array([0, 15, 3]), inputs[:3], inputs[3:6])  # constant FALSE, TRUE, pass a
    return builder.build(np.concatenate([prev, side, inputs[:2]]), num_classes=2, tau=1.5)


@pytest.fixture(scope="module")
def native(random_netlist):
    cache: dict = {}

    def get(name, isa):
        if (name, isa) not in cache:
            net = _chain_net() if name == "chain" else random_netlist(**CASES[name])
            cache[name, isa] = (net, tvm_ops.compile_netlist_native(net, isa=isa))
        return cache[name, isa]

    return get


@pytest.mark.parametrize("name", list(CASES) + ["chain"])
def test_fused_program_matches_plan(name, random_netlist):
    """Fusion (clusters, head-only gates, slot reuse) against the plan's row-by-row execution."""
    net = _chain_net() if name == "chain" else random_netlist(**CASES[name])
    bits = np.random.default_rng(5).random((300, net.num_inputs)) < 0.5
    plan = make_plan(netlist_arrays(net.simplify()[0]), head="outputs")
    program = fuse_plan(plan)
    words = run_fused_numpy(program, pack_bits(bits))  # (C, K, W)
    as_bytes = np.ascontiguousarray(words.astype("<u8")).view(np.uint8)
    out_bits = np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :300]
    assert np.array_equal(out_bits.sum(axis=1).T, net.evaluate_bits(bits))
    assert program.stats["roots"] + program.stats["head_only"] <= plan.stats["gates_live"]


@pytest.mark.parametrize("isa", ISAS)
def test_fusion_bounds_registers_and_depth(isa):
    net = _chain_net(300)
    program = fuse_plan(make_plan(netlist_arrays(net), head="outputs"), max_registers=GATE_REGISTERS[isa])
    assert max(c.need for c in program.clusters.values()) <= GATE_REGISTERS[isa]
    assert max(c.depth for c in program.clusters.values()) <= 48
    assert program.stats["roots"] >= 2  # the chain is cut into stored roots (a cluster holds up to 3 gates)


def _run_avx2_text(lines, registers: dict, memory: dict) -> None:
    """Execute emitted ``vmovdqa``/``vpand``/``vpor``/``vpxor``/``vpandn``/``vpxor`` lines on Python ints."""
    ops = {"vpand": lambda x, y: x & y, "vpor": lambda x, y: x | y, "vpxor": lambda x, y: x ^ y,
           "vpandn": lambda x, y: ~x & y & (2**64 - 1)}
    for line in lines:
        mnemonic, rest = line.split(" ", 1)
        args = [arg.strip() for arg in rest.split(",")]
        assert "ptr" not in args[0] and all("ptr" not in arg for arg in args[1:-1]), line  # memory: last source only
        read = [memory[arg] if "ptr" in arg else registers[arg] for arg in args[1:]]
        registers[args[0]] = read[0] if mnemonic == "vmovdqa" else ops[mnemonic](*read)


@pytest.mark.parametrize("layout", ["dst_is_a", "two_operands", "fresh_dst", "dst_is_c", "c_in_memory", "b_is_c"])
def test_ternary_formulas_all_256_tables(layout):
    """Every 3-input table's AVX2 formula against the table, and its emitted instructions run on 64-bit
    words against bitwise evaluation: the destination written last, operands and ones left intact."""
    dst, a, b, c = {"dst_is_a": ("r0", "r0", "r1", "r2"), "two_operands": ("r0", "r0", "r0", "m"),
                    "fresh_dst": ("d", "r0", "r1", "m"), "dst_is_c": ("r2", "r0", "r1", "r2"),
                    "c_in_memory": ("r0", "r0", "r1", "m"), "b_is_c": ("r1", "r0", "r1", "r1")}[layout]
    mem = "ymmword ptr [rdi+64]"
    rng = np.random.default_rng(1)
    sizes = []
    for table in range(256):
        expr = formula(table)
        assert formula_value(expr, {"a": 0xF0, "b": 0xCC, "c": 0xAA}) == table
        va, vb, vc = (int(v) for v in rng.integers(0, 2**64, 3, dtype=np.uint64))
        vb = va if b == a else vb
        vc = vb if c == b else vc
        registers = {"r0": va, "r1": vb, "r2": vc, "d": 12345, "t0": 1, "t1": 2, "load": 3, "ones": 2**64 - 1}
        memory = {mem: vc}
        lines: list = []
        emit_ternary(lines.append, dst=dst, a=a, b=b, c=mem if c == "m" else c, table=table, ones="ones",
                     temps=("t0", "t1")[:TEMPORARIES], load="load")
        before = dict(registers)
        _run_avx2_text(lines, registers, memory)
        bits = [(table >> (4 * ((va >> i) & 1) + 2 * ((vb >> i) & 1) + ((vc >> i) & 1))) & 1 for i in range(64)]
        assert registers[dst] == sum(bit << i for i, bit in enumerate(bits)), (table, lines)
        assert all(registers[r] == before[r] for r in ("r0", "r1", "r2", "ones") if r != dst), (table, lines)
        written = [line.split(" ", 1)[1].split(",")[0] for line in lines] or [dst]  # none: dst holds it already
        assert set(written[:-1]) <= {"t0", "t1", "load"} and written[-1] == dst, (table, lines)
        sizes.append(len(lines))
    assert max(sizes) <= 6


def test_avx2_text_stays_in_16_registers(random_netlist):
    """The AVX2 assembly names only ymm0-ymm15 (no zmm, no vpternlogq) and both halves of the rows."""
    import re

    from tvm_ops.netlist_asm import gates_assembly
    from tvm_ops.netlist_cdriver import num_planes

    net = random_netlist(**CASES["wide_group"])
    arrays = netlist_arrays(net.simplify()[0])
    program = fuse_plan(make_plan(arrays, head="outputs"), max_registers=GATE_REGISTERS["avx2"])
    text = gates_assembly(program, name="lgn_gates", num_planes=num_planes(arrays.group_size), isa="avx2",
                          segment_lines=64)
    assert "zmm" not in text and "vpternlogq" not in text
    assert {int(n) for n in re.findall(r"\bymm(\d+)\b", text)} <= set(range(16))
    assert text.count("mov ecx, 2") == text.count("sub rdi, 64") > 1  # several segments, each run twice


def test_isa_choice_and_refusals(monkeypatch, random_netlist):
    """The default ISA is AVX-512 where the CPU has it, else AVX2; an ISA the CPU lacks is refused
    in one line naming it and what the CPU has; an unknown one is a ValueError."""
    net = random_netlist(**CASES["small_group"])
    monkeypatch.setattr(netlist_native.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(netlist_native, "_cpu_flags", lambda: {"avx", "avx2", "avx512f", "avx512bw"})
    assert tvm_ops.native_isas() == ("avx512", "avx2")
    monkeypatch.setattr(netlist_native, "_cpu_flags", lambda: {"avx", "avx2", "avx512f"})  # no BW: AVX2 only
    assert tvm_ops.native_isas() == ("avx2",)
    with pytest.raises(tvm_ops.NativeUnavailable) as error:
        tvm_ops.compile_netlist_native(net, isa="avx512")
    message = str(error.value)
    assert "\n" not in message and "'avx512'" in message and "avx512bw missing" in message and "has AVX2" in message
    monkeypatch.setattr(netlist_native, "_cpu_flags", lambda: {"sse4_2"})
    with pytest.raises(tvm_ops.NativeUnavailable, match=r"isa = 'avx2' needs AVX2 \(avx2 missing .*neither"):
        tvm_ops.compile_netlist_native(net, isa="avx2")
    assert "AVX-512 or AVX2" in tvm_ops.native_available()
    with pytest.raises(ValueError, match="isa = 'sse'"):
        tvm_ops.compile_netlist_native(net, isa="sse")


@over_isas
@pytest.mark.parametrize("name", list(CASES) + ["chain"])
@pytest.mark.parametrize("batch", [1, 63, 512, 1537])
def test_scores_and_counts_bit_exact(name, batch, isa, native):
    net, cn = native(name, isa)
    assert cn.isa == isa and cn.stats["native_isa"] == isa and f"isa={isa}" in repr(cn)
    rng = np.random.default_rng(batch)
    x8 = rng.integers(0, 256, (batch,) + net.encoding.input_shape, dtype=np.uint8)
    assert np.array_equal(cn(x8), net.evaluate(x8))
    assert np.array_equal(cn.counts(x8), net.evaluate_bits(net.encode(x8)))
    xf = rng.random((batch,) + net.encoding.input_shape).astype(np.float32)
    assert np.array_equal(cn(xf), net.evaluate(xf))


@over_isas
@pytest.mark.parametrize("input_shape", [(3, 7, 9), (2, 130), (1, 17, 5), (1, 64)])
def test_encoder_tails_and_threshold_edges(input_shape, isa, threshold_edge_netlist):
    """Channel lengths with every tail past the last 64 positions, thresholds below 0 and at or above
    1 (uint8 cut 0: always on; cut 256: never), inputs 0, 255 and at a threshold."""
    net, thr = threshold_edge_netlist(input_shape)
    rng = np.random.default_rng(input_shape[-1])
    cn = tvm_ops.compile_netlist_native(net, isa=isa)
    x8 = rng.integers(0, 256, (cn.tile_samples + 77,) + input_shape, dtype=np.uint8)
    x8[0], x8[1], x8[2] = 0, 255, 128
    assert np.array_equal(cn.counts(x8), net.evaluate_bits(net.encode(x8)))
    xf = x8.astype(np.float32) / 255
    xf[3] = thr[0, 1]  # exactly at a threshold: x > thr is false
    assert np.array_equal(cn(xf), net.evaluate(xf))


@over_isas
@pytest.mark.parametrize("name", ["mnist_layered", "skip_rgb_T3", "chain"])
def test_pre_packed_bits(name, isa, native):
    net, cn = native(name, isa)
    rng = np.random.default_rng(8)
    for batch in (1, 64, 700, 1024):
        bits = rng.random((batch, net.num_inputs)) < 0.5
        words = pack_bits(bits)
        want = net.evaluate_bits(bits)
        assert np.array_equal(np.rint(cn.scores_packed(words, batch) * np.float32(net.tau)), want)
        wide = np.concatenate([words, rng.integers(0, 2**63, (words.shape[0], 9), dtype=np.uint64)], axis=1)
        assert np.array_equal(np.rint(cn.scores_packed(wide, batch) * np.float32(net.tau)), want)  # extra words ignored
    with pytest.raises(ValueError, match="expected at least num_samples"):
        cn.scores_packed(words, batch + 64)
    with pytest.raises(ValueError, match="uint64"):
        cn.scores_packed(words.astype(np.int64), batch)


@over_isas
def test_real_domain_float_input(isa):
    """Raw inputs in the "real" domain (any finite floats, thresholds outside [0, 1]); uint8 refused."""
    rng = np.random.default_rng(21)
    thr = np.sort(rng.normal(0, 3, (2, 4)).astype(np.float32), axis=1)
    builder = NetlistBuilder(Encoding("thermometer", (2, 40), thr, domain="real"))
    prev = builder.input_ids().ravel()
    for width in (300, 120):
        prev = builder.add_layer(rng.integers(0, 16, width), rng.choice(prev, width), rng.choice(prev, width))
    net = builder.build(prev, num_classes=3, tau=2.0)
    cn = tvm_ops.compile_netlist_native(net, isa=isa)
    x = rng.normal(0, 4, (700, 2, 40)).astype(np.float32)
    x[0, 0, :4] = thr[0]  # exactly at the thresholds
    assert np.array_equal(cn(x), net.evaluate(x))
    with pytest.raises(ValueError, match="dtype uint8"):
        cn(np.zeros((3, 2, 40), np.uint8))


@over_isas
@pytest.mark.parametrize("threads", [2, 3])
def test_threads_split_tiles_bit_exact(threads, isa, random_netlist):
    net = random_netlist(**CASES["skip_rgb_T3"])
    cn = tvm_ops.compile_netlist_native(net, threads=threads, isa=isa)
    rng = np.random.default_rng(threads)
    for batch in (1, 3 * 512, 5 * 512 + 77):
        x = rng.integers(0, 256, (batch,) + net.encoding.input_shape, dtype=np.uint8)
        assert np.array_equal(cn(x), net.evaluate(x))
    with pytest.raises(ValueError, match="threads"):
        tvm_ops.compile_netlist_native(net, threads=0)


@over_isas
def test_build_is_cached_and_written_atomically(isa, tmp_path, monkeypatch, random_netlist):
    monkeypatch.setenv("LGN_NATIVE_CACHE", str(tmp_path / "cache"))
    net = random_netlist(**CASES["small_group"])
    first = tvm_ops.compile_netlist_native(net, isa=isa)
    files = sorted((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".so" and not files[0].name.startswith(".")
    stamp = files[0].stat().st_mtime_ns
    second = tvm_ops.compile_netlist_native(net, isa=isa)
    assert sorted((tmp_path / "cache").iterdir()) == files and files[0].stat().st_mtime_ns == stamp
    x = np.random.default_rng(0).integers(0, 256, (100,) + net.encoding.input_shape, dtype=np.uint8)
    assert np.array_equal(first(x), second(x))


@needs_native
def test_bad_inputs_are_refused(native):
    net, cn = native("mnist_layered", None)
    with pytest.raises(ValueError, match=r"shape \(5, 784\)"):
        cn(np.zeros((5, 784), np.uint8))
    with pytest.raises(ValueError, match="dtype int32"):
        cn(np.zeros((5, 1, 28, 28), np.int32))
    with pytest.raises(ValueError, match="empty batch"):
        cn(np.zeros((0, 1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="input_dtype"):
        tvm_ops.compile_netlist_native(net, input_dtype="int8")


def test_no_compiler_is_one_clear_error(monkeypatch, random_netlist):
    if WHY_NOT is not None and "compiler" not in WHY_NOT:
        pytest.skip(WHY_NOT)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(tvm_ops.NativeUnavailable, match="no C compiler found"):
        tvm_ops.compile_netlist_native(random_netlist(**CASES["small_group"]))


@over_isas
@pytest.mark.parametrize("model_name,seed", [("lgn_dense_s", 3),
                                             pytest.param("lgn_conv_mnist_s", 4, marks=pytest.mark.slow)])
def test_trained_net_bit_exact(model_name, seed, isa):
    """The shipped trained nets (their netlists as discretised from the released weights)."""
    timm = pytest.importorskip("timm")
    import lgn_nas

    net = lgn_nas.discretize(timm.create_model(model_name, pretrained=True).eval())
    cn = tvm_ops.compile_netlist_native(net, isa=isa)
    x = np.random.default_rng(seed).integers(0, 256, (700, 1, 28, 28), dtype=np.uint8)
    assert np.array_equal(cn(x), net.evaluate(x))
