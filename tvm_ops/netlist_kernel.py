"""The TVM kernel that executes a :class:`~tvm_ops.netlist_plan.Plan`: TVMScript, built with LLVM.

One generic kernel per *shape* (encoding layout, input dtype, tile size, classes, planes); the gates
themselves are runtime tables, so compile time does not grow with the number of gates and one
compiled kernel serves every netlist of the same shape.

Per tile of ``TILE_WORDS * 64`` samples (tiles are split over threads, each with its own scratch):

1. encode: 8 samples at a time, ``x >= cut`` (uint8 input) or ``x > thr`` (float32) over a vector of
   positions gives one byte per input bit; eight bytes make the input's 64-sample word;
2. gates: for each segment ``(op, start, end)`` of the plan one loop over its rows
   ``act[out] = act[a] OP act[b]``, each row a ``uint64 x TILE_WORDS`` vector (AVX2: 4 words);
3. head: the planes (binary digits of each class count) are decoded into per-sample counts, written
   as int32 counts or as float32 ``counts / tau``.

``import tvm`` happens only inside :func:`build_kernel`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["KernelShape", "build_kernel", "host_target", "KERNEL_NAME"]

KERNEL_NAME = "lgn_netlist_run"


@dataclass(frozen=True)
class KernelShape:
    """Compile-time constants of the kernel (everything else is a runtime table)."""

    channels: int  # C of the input
    thresholds_per_channel: int  # T
    spatial: int  # prod(spatial shape): positions per channel
    input_dtype: str  # "uint8" or "float32"
    output: str  # "scores" (float32 counts / tau) or "counts" (int32)
    num_classes: int
    group_size: int  # K: outputs per class
    num_planes: int  # bits of a count: K.bit_length()
    tile_words: int  # 64-sample words per tile (and vector lanes of a gate row)

    @property
    def num_inputs(self) -> int:
        return self.channels * self.thresholds_per_channel * self.spatial

    @property
    def row_length(self) -> int:
        return self.channels * self.spatial

    @property
    def tile_samples(self) -> int:
        return self.tile_words * 64

    def key(self) -> tuple:
        return tuple(asdict(self).values())


def host_target(target: Any = None) -> dict:
    """LLVM target dict for this CPU (``mcpu`` from LLVM's host detection) unless ``target`` is given."""
    if target is not None:
        if isinstance(target, str):
            raise ValueError(
                f"target {target!r} is a string; TVM 0.27 wants a dict such as "
                "{'kind': 'llvm', 'mtriple': 'x86_64-linux-gnu', 'mcpu': 'znver3'}"
            )
        return dict(target)
    from tvm_ffi import get_global_func

    import tvm  # noqa: F401  (registers the codegen functions)

    cpu = str(get_global_func("tvm.codegen.llvm.GetHostCPUName")())
    triple = str(get_global_func("tvm.codegen.llvm.GetDefaultTargetTriple")())
    return {"kind": "llvm", "mtriple": triple, "mcpu": cpu}


def _largest_divisor(n: int, candidates: tuple[int, ...]) -> int:
    return next(c for c in candidates if n % c == 0)


def build_kernel(shape: KernelShape, target: dict):
    """Compile the kernel for ``shape``; returns the TVM executable (function :data:`KERNEL_NAME`)."""
    import tvm

    func = tvm.script.from_source(kernel_source(shape))
    return tvm.compile(func, target=target)


def kernel_source(shape: KernelShape, *, prefetch: bool = True, head_words: int = 0) -> str:
    """TVMScript source of the kernel (generated: the head's carry-save tree is unrolled in SSA).

    ``prefetch``: while encoding a tile, prefetch the same rows of the next tile (the raw input is
    then read from cache, not from DRAM, and the reads overlap the gate work). ``head_words``: vector
    width of the head in words (0: the tile, at most 8).
    """
    C, TH, HW = shape.channels, shape.thresholds_per_channel, shape.spatial
    D, NI, W, TILE = shape.row_length, shape.num_inputs, shape.tile_words, shape.tile_samples
    NCLS, K, NB = shape.num_classes, shape.group_size, shape.num_planes
    NBA = max(NB, 5)  # planes 0..3 double as the carry-save accumulators (ones, twos, fours, eights)
    VH = head_words or min(W, 8)  # head vector width in words: its state must fit in registers
    VE = min(64, HW)  # encode vector width over positions (a tail loop takes HW % VE)
    VB = min(8, NI)  # byte -> word packing vector width (a tail loop takes NI % VB)
    CT = C * TH
    is_u8 = shape.input_dtype == "uint8"
    xdtype = "uint8" if is_u8 else "float32"
    esize = 1 if is_u8 else 4
    counts_out = shape.output == "counts"
    odtype = "int32" if counts_out else "float32"
    lines_per_group = -(-8 * D * esize // 64)  # cache lines of 8 input rows

    def ramp(start: str) -> str:
        return f"T.Ramp({start}, 1, {VH})" if VH > 1 else f"{start}"

    def bcast(value: str) -> str:
        return f"T.Broadcast({value}, {VH})" if VH > 1 else value

    lines: list[str] = []

    def emit(indent: int, text: str) -> None:
        lines.append("    " * indent + text)

    def enc_expr(pos: str) -> str:
        """8 samples -> one byte per input bit, at positions ``pos`` of channel ct // TH."""
        terms = []
        for k in range(8):
            xv = f"x[row0 + {k}, (ct // {TH}) * {HW} + {pos}]"
            cond = f"{xv} >= encp[ct]" if is_u8 else f"{xv} > encp[ct]"
            terms.append(f"T.Select({cond}, T.uint8({1 << k}), T.uint8(0))")
        expr = " | ".join(terms)
        return f"({expr}) & enb[ct]" if is_u8 else expr

    def pack_expr(i: str) -> str:
        return " | ".join(
            f"(T.Cast(\"uint64\", byt[bbase + {g * NI} + {i}]) << T.uint64({8 * g}))" for g in range(8)
        )

    emit(0, "@T.prim_func")
    emit(0, "def kernel(x_h: T.handle, enc_h: T.handle, en_h: T.handle, seg_h: T.handle, rows_h: T.handle,")
    emit(0, "           hslot_h: T.handle, hmask_h: T.handle, act_h: T.handle, bytes_h: T.handle, out_h: T.handle,")
    emit(0, "           tau: T.float32):")
    emit(1, f'T.func_attr({{"global_symbol": "{KERNEL_NAME}", "tir.noalias": True}})')
    for var in ("n", "nseg", "nrow", "nact", "nbytes"):
        emit(1, f"{var} = T.int32()")
    emit(1, f'x = T.match_buffer(x_h, (n, {D}), "{xdtype}", align=1, offset_factor=1)')
    emit(1, f'encp = T.match_buffer(enc_h, ({CT},), "{xdtype}")')
    emit(1, f'enb = T.match_buffer(en_h, ({CT},), "uint8")')
    emit(1, 'seg = T.match_buffer(seg_h, (nseg,), "int32")')
    emit(1, 'rows = T.match_buffer(rows_h, (nrow,), "int32")')
    emit(1, f'hslot = T.match_buffer(hslot_h, ({NCLS * K},), "int32")')
    emit(1, f'hmask = T.match_buffer(hmask_h, ({NCLS * K},), "uint64")')
    emit(1, 'act = T.match_buffer(act_h, (nact,), "uint64")')
    emit(1, 'byt = T.match_buffer(bytes_h, (nbytes,), "uint8")')
    emit(1, f'out = T.match_buffer(out_h, (n, {NCLS}), "{odtype}", align=1, offset_factor=1)')
    emit(1, f'xf = T.decl_buffer((n * {D},), "{xdtype}", data=x.data)')
    emit(1, f"nch: T.let = nbytes // {8 * NI}")
    emit(1, "slot_words: T.let = nact // nch")
    emit(1, f"ntiles: T.let = n // {TILE}")
    emit(1, "per: T.let = (ntiles + nch - 1) // nch")
    emit(1, "for ch in T.parallel(nch):")
    emit(2, f'pl = T.alloc_buffer(({NBA * VH},), "uint64", scope="local")')
    emit(2, "tile_end: T.let = T.min(ch * per + per, ntiles)")
    emit(2, "for tile in range(ch * per, tile_end):")
    emit(3, "base: T.let = ch * slot_words")
    emit(3, f"bbase: T.let = ch * {8 * NI}")
    emit(3, f"r0: T.let = tile * {TILE}")
    emit(3, f"for v in T.vectorized({W}):")
    emit(4, "act[base + v] = T.uint64(0)")
    # 1. encode, 8 rows (samples) at a time
    emit(3, f"for w in range({W}):")
    emit(4, "for g in range(8):")
    emit(5, "row0: T.let = r0 + w * 64 + g * 8")
    if prefetch:
        emit(5, "if tile + 1 < tile_end:")
        emit(6, f"for li in range({lines_per_group}):")
        emit(7, f'T.evaluate(T.call_llvm_intrin("void", "llvm.prefetch.p0", '
                f'T.address_of(xf[(row0 + {TILE}) * {D} + li * {64 // esize}]), 0, 2, 1))')
    emit(5, f"for ct in range({CT}):")
    if HW // VE:
        emit(6, f"for ho in range({HW // VE}):")
        emit(7, f"for v in T.vectorized({VE}):")
        emit(8, f"byt[bbase + g * {NI} + ct * {HW} + ho * {VE} + v] = {enc_expr(f'ho * {VE} + v')}")
    if HW % VE:
        tail = HW // VE * VE
        emit(6, f"for v in T.vectorized({HW % VE}):")
        emit(7, f"byt[bbase + g * {NI} + ct * {HW} + {tail} + v] = {enc_expr(f'{tail} + v')}")
    if NI // VB:
        emit(4, f"for io in range({NI // VB}):")
        emit(5, f"for v in T.vectorized({VB}):")
        emit(6, f"act[base + (1 + io * {VB} + v) * {W} + w] = {pack_expr(f'io * {VB} + v')}")
    if NI % VB:
        tail = NI // VB * VB
        emit(4, f"for v in T.vectorized({NI % VB}):")
        emit(5, f"act[base + (1 + {tail} + v) * {W} + w] = {pack_expr(f'{tail} + v')}")
    # 2. gates: rows hold slot * W (word offsets)
    emit(3, "for s in range(nseg // 3):")
    emit(4, "op: T.let = seg[s * 3]")
    for index, sym in enumerate(("&", "& ~", "|", "^")):
        emit(4, ("if" if index == 0 else "elif") + f" op == {index}:" if index < 3 else "else:")
        emit(5, "for j in range(seg[s * 3 + 1], seg[s * 3 + 2]):")
        emit(6, f"for v in T.vectorized({W}):")
        emit(7, f"act[base + rows[j * 3] + v] = act[base + rows[j * 3 + 1] + v] {sym} "
                f"act[base + rows[j * 3 + 2] + v]")
    # 3. head: Harley-Seal carry-save adders (16 words per step) into count planes, in SSA
    emit(3, f"for wv, c in T.grid({W // VH}, {NCLS}):")
    emit(4, f"for q in range({NBA}):")
    emit(5, f"pl[{ramp(f'q * {VH}')}] = {bcast('T.uint64(0)')}")

    def out_word(index: str) -> str:
        return f"(act[{ramp(f'base + hslot[{index}] + wv * {VH}')}] ^ {bcast(f'hmask[{index}]')})"

    counter = [0]

    def let(indent: int, expr: str) -> str:
        counter[0] += 1
        name = f"t{counter[0]}"
        emit(indent, f"{name}: T.let = {expr}")
        return name

    def csa(indent: int, acc: str, a: str, b: str) -> tuple[str, str]:
        """acc + a + b = 2 * carry + sum; returns (carry, sum)."""
        u = let(indent, f"{acc} ^ {a}")
        carry = let(indent, f"({acc} & {a}) | ({u} & {b})")
        total = let(indent, f"{u} ^ {b}")
        return carry, total

    emit(4, f"for j16 in range({K // 16}):")
    ind = 5
    emit(ind, f"hb: T.let = c * {K} + j16 * 16")
    d = [let(ind, out_word(f"hb + {i}")) for i in range(16)]
    st = [let(ind, f"pl[{ramp(str(q * VH))}]") for q in range(4)]
    ones, twos, fours, eights = st

    def eights_from(block: list[str], ones: str, twos: str, fours: str):
        twos_a, ones = csa(ind, ones, block[0], block[1])
        twos_b, ones = csa(ind, ones, block[2], block[3])
        fours_a, twos = csa(ind, twos, twos_a, twos_b)
        twos_a, ones = csa(ind, ones, block[4], block[5])
        twos_b, ones = csa(ind, ones, block[6], block[7])
        fours_b, twos = csa(ind, twos, twos_a, twos_b)
        eights_x, fours = csa(ind, fours, fours_a, fours_b)
        return eights_x, ones, twos, fours

    eights_a, ones, twos, fours = eights_from(d[:8], ones, twos, fours)
    eights_b, ones, twos, fours = eights_from(d[8:], ones, twos, fours)
    sixteens, eights = csa(ind, eights, eights_a, eights_b)
    for q, name in enumerate((ones, twos, fours, eights)):
        emit(ind, f"pl[{ramp(str(q * VH))}] = {name}")
    carry = sixteens
    for q in range(4, NBA):
        plane = let(ind, f"pl[{ramp(str(q * VH))}]")
        emit(ind, f"pl[{ramp(str(q * VH))}] = {plane} ^ {carry}")
        if q + 1 < NBA:
            carry = let(ind, f"{plane} & {carry}")
    # the last K % 16 words: one ripple each
    emit(4, f"for j in range({K // 16 * 16}, {K}):")
    carry = let(5, out_word(f"c * {K} + j"))
    for q in range(NBA):
        plane = let(5, f"pl[{ramp(str(q * VH))}]")
        emit(5, f"pl[{ramp(str(q * VH))}] = {plane} ^ {carry}")
        if q + 1 < NBA:
            carry = let(5, f"{plane} & {carry}")
    # decode planes -> per-sample counts
    emit(4, f"for w, half in T.grid({VH}, 2):")
    emit(5, "for s in T.vectorized(32):")
    count = " | ".join(
        f"(T.Cast(\"int32\", (T.Cast(\"uint32\", pl[{q * VH} + w] >> T.uint64(32 * half)) >> T.Cast(\"uint32\", s))"
        f" & T.uint32(1)) << {q})"
        for q in range(NB)
    )
    value = f"T.Cast(\"int32\", {count})" if counts_out else f"T.Cast(\"float32\", {count}) / tau"
    emit(6, f"out[r0 + (wv * {VH} + w) * 64 + half * 32 + s, c] = {value}")
    return "\n".join(lines) + "\n"
