"""The TVM kernel that executes a :class:`~tvm_ops.netlist_plan.Plan`: TVMScript, built with LLVM.

One generic kernel per *shape* (encoding layout, input dtype, tile size, classes, planes); the gates
themselves are runtime tables, so compile time does not grow with the number of gates and one
compiled kernel serves every netlist of the same shape.

The batch is cut into tiles of ``TILE_WORDS * 64`` samples (512 by default) so that one tile's
activations stay in the L2 cache across all layers; tiles are split over threads, each with its own
scratch. Per tile, the entry function calls three subroutines:

1. encode: 8 samples at a time, one sample row after another (the raw input is read as one
   sequential stream), ``x >= cut`` (uint8 input) or ``x > thr`` (float32) over 64 positions gives
   one bit of a byte per position; eight bytes make the input's 64-sample word;
2. gates: for each segment ``(op, start, end)`` of the plan one loop over its rows
   ``act[out] = act[a] OP act[b]`` (rows hold word offsets ``slot * TILE_WORDS``), each row a
   ``uint64 x TILE_WORDS`` vector (one AVX-512 register at 8 words). The loop also prefetches the
   next tile's raw input, a cache line every few rows, so that its DRAM reads overlap the gate work;
3. head: carry-save adders count each class's output words into bit planes, which are decoded into
   per-sample int32 counts or float32 ``counts / tau``.

``import tvm`` happens only inside :func:`build_kernel`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["KernelShape", "build_kernel", "KERNEL_NAME"]

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


def encode_scratch_bytes(shape: "KernelShape") -> int:
    """Bytes of encode scratch per thread, the same for both input dtypes (the scratch is shared):
    the byte stage of the float32 encoder (8 per input) or the sample-major bit masks of the uint8
    encoder (one 64-bit mask per sample, 64 positions and threshold: ``tile_samples`` x 8 bytes per
    block of 64 positions)."""
    blocks = shape.channels * shape.thresholds_per_channel * -(-shape.spatial // 64)
    return max(8 * shape.num_inputs, blocks * shape.tile_samples * 8)


_TRANSPOSE_MASKS = {32: 0x00000000FFFFFFFF, 16: 0x0000FFFF0000FFFF, 8: 0x00FF00FF00FF00FF,
                    4: 0x0F0F0F0F0F0F0F0F, 2: 0x3333333333333333, 1: 0x5555555555555555}


def _mask_encode(emit, shape: KernelShape, name: str, scratch_bytes: int, prefetch: bool,
                 prefetch_hint: int) -> None:
    """The uint8 encoder: compare masks, then a bit-matrix transpose, all in vector registers.

    1. Per sample and block of 64 positions of one channel and threshold, one compare of 64 bytes
       gives a 64-bit mask (``vpcmpub`` to a mask register and ``kmovq`` to memory on AVX-512; TIR:
       a ``uint1x64`` reinterpreted as ``uint64``). The masks are stored sample-major,
       ``m[(block * 64 + s % 64) * W + s // 64]``: row ``k`` of a block holds, in its W lanes, the
       masks of samples ``k, 64 + k, ...``, i.e. W independent 64 x 64 bit matrices side by side.
    2. Per block, the six swap stages of the recursive 64 x 64 bit transpose (Hacker's Delight 7-3)
       run on whole rows (``uint64 x W`` vectors), so the W matrices are transposed at once: stages
       32, 16, 8 on the row sets ``r + 8q`` (eight rows in registers, back to the scratch), stages 4,
       2, 1 on the rows ``8g .. 8g + 7``, whose results are then the input slots' rows themselves
       (position ``p``: its W words over the tile's samples), stored as one vector each.

    About 2 instructions per 64 input bits in step 1 and 5 per pair of rows and stage in step 2.
    """
    C, TH, HW = shape.channels, shape.thresholds_per_channel, shape.spatial
    D, W, TILE = shape.row_length, shape.tile_words, shape.tile_samples
    CT = C * TH
    nblk = -(-HW // 64)
    full, tail = HW // 64, HW % 64
    rows_lines = -(-D // 64)

    def rows(start: str) -> str:
        return f"T.Ramp({start}, 1, {W})" if W > 1 else start

    def bc(value: str) -> str:
        return f"T.Broadcast({value}, {W})" if W > 1 else value

    emit(1, "@T.prim_func(private=True)")
    emit(1, f'def {name}_encode(x_ptr: T.handle("uint8"), encp_ptr: T.handle("uint8"), '
            'enb_ptr: T.handle("uint8"), act_ptr: T.handle("uint64"), byt_ptr: T.handle("uint8"), '
            "nslot: T.int32, has_next: T.int32):")
    emit(2, f'x = T.decl_buffer(({2 * TILE * D},), "uint8", data=x_ptr, align=1)')
    emit(2, f'encp = T.decl_buffer(({CT},), "uint8", data=encp_ptr, align=1)')
    emit(2, f'enb = T.decl_buffer(({CT},), "uint8", data=enb_ptr, align=1)')
    emit(2, f'act = T.decl_buffer((nslot * {W},), "uint64", data=act_ptr, align=8)')
    emit(2, f'm = T.decl_buffer(({scratch_bytes // 8},), "uint64", data=byt_ptr, align=64)')
    emit(2, f"for v in T.vectorized({W}):")
    emit(3, "act[v] = T.uint64(0)")
    # Blocks are done G at a time (a group of one channel-threshold), so that a group's masks (G x 64
    # lines, 16 KB) stay in the L1 cache between the two steps; the tile's input is read once per group.
    G = min(4, nblk)
    NG = -(-nblk // G)

    def cmp(lanes: int, start: str) -> str:
        if lanes == 1:
            return f"T.Cast(\"uint64\", x[{start}] >= cut)"
        return (f'T.Cast("uint64", T.reinterpret("uint{lanes}", T.Cast("uint1x{lanes}", '
                f'x[T.Ramp({start}, 1, {lanes})] >= T.Broadcast(cut, {lanes}))))')

    emit(2, f"for ct, bg in T.grid({CT}, {NG}):")
    emit(3, "cut: T.let = encp[ct]")
    # ---- 1. masks of the group, one sample row after another
    emit(3, f"for s in range({TILE}):")
    if prefetch:
        emit(4, "if has_next == 1 and ct == 0 and bg == 0:")
        emit(5, f"for li in range({rows_lines}):")
        emit(6, f'T.evaluate(T.call_llvm_intrin("void", "llvm.prefetch.p0", '
                f'T.address_of(x[(s + {TILE}) * {D} + li * 64]), 0, {prefetch_hint}, 1))')
    row = f"s * {D} + (ct // {TH}) * {HW}"
    for bi in range(G):
        dest = f"m[({bi * 64} + s % 64) * {W} + s // 64]"
        if full:
            emit(4, f"if bg * {G} + {bi} < {full}:")
            emit(5, f"{dest} = {cmp(64, f'{row} + (bg * {G} + {bi}) * 64')}")
        if tail:  # pieces of 32, 16, 8 lanes, then single lanes
            terms, off = [], 0
            for lanes in (32, 16, 8, 4, 2, 1):
                while tail - off >= lanes and (lanes >= 8 or lanes == 1):
                    expr = cmp(lanes, f"{row} + {full * 64 + off}")
                    terms.append(f"({expr} << T.uint64({off}))" if off else expr)
                    off += lanes
            emit(4, f"if bg * {G} + {bi} == {full}:")
            emit(5, f"{dest} = " + " | ".join(terms))
    # ---- 2. transpose each block of the group: W 64 x 64 bit matrices at once
    counter = [0]

    def let(indent: int, expr: str) -> str:
        counter[0] += 1
        emit(indent, f"e{counter[0]}: T.let = {expr}")
        return f"e{counter[0]}"

    def swap(indent: int, vals: list, stride: int, j: int) -> None:
        """One stage on ``vals`` (rows k and k + stride in the list are rows k and k + j)."""
        mask = bc(f"T.uint64({_TRANSPOSE_MASKS[j]})")
        shift = bc(f"T.uint64({j})")
        for k in range(len(vals)):
            if k & stride:
                continue
            lo, hi = vals[k], vals[k + stride]
            t = let(indent, f"((({lo}) >> {shift}) ^ ({hi})) & {mask}")
            vals[k] = let(indent, f"({lo}) ^ ({t} << {shift})")
            vals[k + stride] = let(indent, f"({hi}) ^ {t}")

    emit(3, "en: T.let = " + bc('T.Cast("uint64", enb[ct]) * T.uint64(0x0101010101010101)'))  # 255 or 0
    emit(3, f"for bi in range(T.min({G}, {nblk} - bg * {G})):")
    emit(4, f"b: T.let = bg * {G} + bi")
    emit(4, f"base: T.let = bi * {64 * W}")
    emit(4, "for r in range(8):")
    vals = [let(5, f"m[{rows(f'base + (r + {8 * q}) * {W}')}]") for q in range(8)]
    for stride, j in ((4, 32), (2, 16), (1, 8)):
        swap(5, vals, stride, j)
    for q in range(8):
        emit(5, f"m[{rows(f'base + (r + {8 * q}) * {W}')}] = {vals[q]}")
    emit(4, "for g in range(8):")
    emit(5, f"if b * 64 + g * 8 < {HW}:")
    vals = [let(6, f"m[{rows(f'base + (g * 8 + {r}) * {W}')}]") for r in range(8)]
    for stride, j in ((4, 4), (2, 2), (1, 1)):
        swap(6, vals, stride, j)
    for r in range(8):
        pos = f"b * 64 + g * 8 + {r}"
        store = f"act[{rows(f'(1 + (ct * {HW}) + {pos}) * {W}')}] = {vals[r]} & en"
        if tail % 8 and r >= tail % 8:  # rows past the channel's end in its last group
            emit(6, f"if {pos} < {HW}:")
            emit(7, store)
        else:
            emit(6, store)


def _largest_divisor(n: int, candidates: tuple[int, ...]) -> int:
    return next(c for c in candidates if n % c == 0)


def build_kernel(shape: KernelShape, target: dict):
    """Compile the kernel for ``shape``; returns the TVM executable (function :data:`KERNEL_NAME`)."""
    import tvm

    return tvm.compile(tvm.script.from_source(kernel_source(shape)), target=target)


def kernel_source(shape: KernelShape, *, name: str = KERNEL_NAME, prefetch: bool = True,
                  head_words: int = 0, prefetch_in_gates: bool = True, prefetch_hint: int = 2,
                  row_by_row: bool = True, mask_encode: bool = True) -> str:
    """TVMScript source of the kernel: an IRModule with the entry function ``name`` and three
    subroutines ``name_encode``, ``name_gates`` and ``name_head`` that it calls once per tile (small
    functions keep LLVM's register allocation tight: one big function spilled the gate loop's
    pointers). The head's carry-save tree is unrolled in SSA.

    ``prefetch``: prefetch the next tile's raw input, spread over the gate rows
    (``prefetch_in_gates``, when the net has at least as many rows as the tile has input cache lines)
    or else while encoding; ``prefetch_hint``: LLVM's locality (2: prefetcht1, to L2).
    ``head_words``: vector width of the head in words (0: the tile, at most 8). ``row_by_row``:
    encode one sample row after another (False: eight rows interleaved). ``mask_encode``: uint8 input
    through 64-position compare masks and a bit-matrix transpose (see :func:`_mask_encode`; False:
    the byte-stage encoder that float32 input always uses). The defaults were the fastest measured;
    every setting gives the same results.
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
    NACT = f"nslot * {W}"
    SB = encode_scratch_bytes(shape)

    def ramp(start: str) -> str:
        return f"T.Ramp({start}, 1, {VH})" if VH > 1 else f"{start}"

    def bcast(value: str) -> str:
        return f"T.Broadcast({value}, {VH})" if VH > 1 else value

    lines: list[str] = []

    def emit(indent: int, text: str) -> None:
        lines.append("    " * indent + text)

    def emit_vectorized(indent: int, n: int, width: int, outer: str, body) -> None:
        """``body(pos)`` for positions 0..n-1: ``n // width`` full vectors, then a tail vector."""
        if n // width:
            emit(indent, f"for {outer} in range({n // width}):")
            emit(indent + 1, f"for v in T.vectorized({width}):")
            emit(indent + 2, body(f"{outer} * {width} + v"))
        if n % width:
            emit(indent, f"for v in T.vectorized({n % width}):")
            emit(indent + 1, body(f"{n // width * width} + v"))

    def enc_expr(pos: str) -> str:
        """8 samples -> one byte per input bit, at positions ``pos`` of channel ct // TH."""
        terms = []
        for k in range(8):
            xv = f"x[(row0 + {k}) * {D} + (ct // {TH}) * {HW} + {pos}]"
            cond = f"{xv} >= encp[ct]" if is_u8 else f"{xv} > encp[ct]"
            terms.append(f"T.Select({cond}, T.uint8({1 << k}), T.uint8(0))")
        while len(terms) > 1:  # a balanced tree: no long dependency chain
            terms = [f"({terms[i]} | {terms[i + 1]})" for i in range(0, len(terms), 2)]
        return f"{terms[0]} & enb[ct]" if is_u8 else terms[0]

    def pack_expr(i: str) -> str:
        return " | ".join(
            f"(T.Cast(\"uint64\", byt[{g * NI} + {i}]) << T.uint64({8 * g}))" for g in range(8)
        )

    emit(0, "@I.ir_module")
    emit(0, "class Module:")
    # ------------------------------------------------------------------ 1. encode one tile
    if is_u8 and mask_encode:
        _mask_encode(emit, shape, name, SB, prefetch, prefetch_hint)
    else:
        emit(1, "@T.prim_func(private=True)")
        emit(1, f'def {name}_encode(x_ptr: T.handle("{xdtype}"), encp_ptr: T.handle("{xdtype}"), '
                'enb_ptr: T.handle("uint8"), act_ptr: T.handle("uint64"), byt_ptr: T.handle("uint8"), '
                "nslot: T.int32, has_next: T.int32):")
        emit(2, f'x = T.decl_buffer(({2 * TILE * D},), "{xdtype}", data=x_ptr, align={esize})')
        emit(2, f'encp = T.decl_buffer(({CT},), "{xdtype}", data=encp_ptr, align={esize})')
        emit(2, f'enb = T.decl_buffer(({CT},), "uint8", data=enb_ptr, align=1)')
        emit(2, f'act = T.decl_buffer(({NACT},), "uint64", data=act_ptr, align=8)')
        emit(2, f'byt = T.decl_buffer(({8 * NI},), "uint8", data=byt_ptr, align=1)')
        emit(2, f"for v in T.vectorized({W}):")
        emit(3, "act[v] = T.uint64(0)")
        emit(2, f"for w in range({W}):")
        emit(3, "for g in range(8):")
        emit(4, "row0: T.let = w * 64 + g * 8")
        if prefetch:
            emit(4, "if has_next == 1:")
            emit(5, f"for li in range({lines_per_group}):")
            emit(6, f'T.evaluate(T.call_llvm_intrin("void", "llvm.prefetch.p0", '
                    f'T.address_of(x[(row0 + {TILE}) * {D} + li * {64 // esize}]), 0, {prefetch_hint}, 1))')
        def row_expr(k: int, pos: str) -> str:
            """Bit k of the byte: sample row0 + k at positions ``pos``."""
            xv = f"x[(row0 + {k}) * {D} + (ct // {TH}) * {HW} + {pos}]"
            cond = f"{xv} >= encp[ct]" if is_u8 else f"{xv} > encp[ct]"
            term = f"T.Select({cond}, T.uint8({1 << k}), T.uint8(0))"
            return f"({term} & enb[ct])" if is_u8 else term

        if row_by_row:  # one sample row after another: the input is read as one sequential stream
            for k in range(8):
                def or_row(pos: str, k: int = k) -> str:
                    idx = f"g * {NI} + ct * {HW} + {pos}"
                    return f"byt[{idx}] = " + (row_expr(k, pos) if k == 0 else f"byt[{idx}] | {row_expr(k, pos)}")

                emit(4, f"for ct in range({CT}):")
                emit_vectorized(5, HW, VE, "ho", or_row)
        else:
            emit(4, f"for ct in range({CT}):")
            emit_vectorized(5, HW, VE, "ho", lambda pos: f"byt[g * {NI} + ct * {HW} + {pos}] = {enc_expr(pos)}")
        emit_vectorized(3, NI, VB, "io", lambda i: f"act[(1 + {i}) * {W} + w] = {pack_expr(i)}")
    # ------------------------------------------------------------------ 2. gates (rows: slot * W)
    emit(1, "@T.prim_func(private=True)")
    emit(1, f'def {name}_gates(act_ptr: T.handle("uint64"), seg_ptr: T.handle("int32"), '
            f'rows_ptr: T.handle("int32"), nslot: T.int32, nseg: T.int32, nrow: T.int32, '
            f'pf_ptr: T.handle("{xdtype}"), pf_step: T.int64):')
    emit(2, f'act = T.decl_buffer(({NACT},), "uint64", data=act_ptr, align=8)')
    emit(2, f'pf = T.decl_buffer(({TILE * D},), "{xdtype}", data=pf_ptr, align={esize})')
    emit(2, 'seg = T.decl_buffer((nseg,), "int32", data=seg_ptr, align=4)')
    emit(2, 'rows = T.decl_buffer((nrow,), "int32", data=rows_ptr, align=4)')
    emit(2, "for s in range(nseg // 3):")
    emit(3, "op: T.let = seg[s * 3]")
    emit(3, "lo: T.let = seg[s * 3 + 1]")
    emit(3, "hi: T.let = seg[s * 3 + 2]")
    for index, sym in enumerate(("&", "& ~", "|", "^")):
        emit(3, ("if" if index == 0 else "elif") + f" op == {index}:" if index < 3 else "else:")
        emit(4, "for j in range(lo, hi):")
        if prefetch:  # spread over the gate rows: unit (j * pf_step) >> 16 of the next tile's input
            for i in range(esize):  # a unit is 4 lines for float32 input
                emit(5, 'T.evaluate(T.call_llvm_intrin("void", "llvm.prefetch.p0", T.address_of(pf[T.Cast("int32", '
                        f'(T.Cast("int64", j) * pf_step) >> T.int64(16)) * {64} + {i * 64 // esize}]), 0, '
                        f'{prefetch_hint}, 1))')
        emit(5, f"for v in T.vectorized({W}):")
        emit(6, f"act[rows[j * 3] + v] = act[rows[j * 3 + 1] + v] {sym} act[rows[j * 3 + 2] + v]")
    # ------------------------------------------------------------------ 3. head
    emit(1, "@T.prim_func(private=True)")
    emit(1, f'def {name}_head(act_ptr: T.handle("uint64"), hslot_ptr: T.handle("int32"), '
            f'hmask_ptr: T.handle("uint64"), out_ptr: T.handle("{odtype}"), pl_ptr: T.handle("uint64"), '
            'nslot: T.int32, tau: T.float32):')
    emit(2, f'act = T.decl_buffer(({NACT},), "uint64", data=act_ptr, align=8)')
    emit(2, f'hslot = T.decl_buffer(({NCLS * K},), "int32", data=hslot_ptr, align=4)')
    emit(2, f'hmask = T.decl_buffer(({NCLS * K},), "uint64", data=hmask_ptr, align=8)')
    emit(2, f'out = T.decl_buffer(({TILE * NCLS},), "{odtype}", data=out_ptr, align=4)')
    emit(2, f'pl = T.decl_buffer(({NBA * VH},), "uint64", data=pl_ptr, align=8)')
    # Harley-Seal carry-save adders (16 words per step) into count planes, in SSA
    emit(2, f"for wv, c in T.grid({W // VH}, {NCLS}):")
    emit(3, f"for q in range({NBA}):")
    emit(4, f"pl[{ramp(f'q * {VH}')}] = {bcast('T.uint64(0)')}")

    def out_word(index: str) -> str:
        return f"(act[{ramp(f'hslot[{index}] + wv * {VH}')}] ^ {bcast(f'hmask[{index}]')})"

    counter = [0]

    def let(indent: int, expr: str) -> str:
        counter[0] += 1
        var = f"t{counter[0]}"
        emit(indent, f"{var}: T.let = {expr}")
        return var

    def csa(indent: int, acc: str, a: str, b: str) -> tuple[str, str]:
        """acc + a + b = 2 * carry + sum; returns (carry, sum)."""
        u = let(indent, f"{acc} ^ {a}")
        carry = let(indent, f"({acc} & {a}) | ({u} & {b})")
        total = let(indent, f"{u} ^ {b}")
        return carry, total

    ind = 4
    emit(3, f"for j16 in range({K // 16}):")
    emit(ind, f"hb: T.let = c * {K} + j16 * 16")
    d = [let(ind, out_word(f"hb + {i}")) for i in range(16)]
    ones, twos, fours, eights = [let(ind, f"pl[{ramp(str(q * VH))}]") for q in range(4)]

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
    for q, var in enumerate((ones, twos, fours, eights)):
        emit(ind, f"pl[{ramp(str(q * VH))}] = {var}")
    carry = sixteens
    for q in range(4, NBA):
        plane = let(ind, f"pl[{ramp(str(q * VH))}]")
        emit(ind, f"pl[{ramp(str(q * VH))}] = {plane} ^ {carry}")
        if q + 1 < NBA:
            carry = let(ind, f"{plane} & {carry}")
    # the last K % 16 words: one ripple each
    emit(3, f"for j in range({K // 16 * 16}, {K}):")
    carry = let(4, out_word(f"c * {K} + j"))
    for q in range(NBA):
        plane = let(4, f"pl[{ramp(str(q * VH))}]")
        emit(4, f"pl[{ramp(str(q * VH))}] = {plane} ^ {carry}")
        if q + 1 < NBA:
            carry = let(4, f"{plane} & {carry}")
    # decode planes -> per-sample counts
    emit(3, f"for w, half in T.grid({VH}, 2):")
    emit(4, "for s in T.vectorized(32):")
    count = " | ".join(
        f"(T.Cast(\"int32\", (T.Cast(\"uint32\", pl[{q * VH} + w] >> T.uint64(32 * half)) >> T.Cast(\"uint32\", s))"
        f" & T.uint32(1)) << {q})"
        for q in range(NB)
    )
    value = f"T.Cast(\"int32\", {count})" if counts_out else f"T.Cast(\"float32\", {count}) / tau"
    emit(5, f"out[((wv * {VH} + w) * 64 + half * 32 + s) * {NCLS} + c] = {value}")
    # ------------------------------------------------------------------ entry: tiles over threads
    emit(1, "@T.prim_func")
    emit(1, f"def {name}(x_h: T.handle, enc_h: T.handle, en_h: T.handle, seg_h: T.handle, rows_h: T.handle,")
    emit(1, "    " + " " * len(name) + "hslot_h: T.handle, hmask_h: T.handle, act_h: T.handle, bytes_h: T.handle,")
    emit(1, "    " + " " * len(name) + "out_h: T.handle,")
    emit(1, "    " + " " * len(name) + "tau: T.float32):")
    emit(2, f'T.func_attr({{"global_symbol": "{name}", "tir.noalias": True}})')
    for var in ("n", "nseg", "nrow", "nact", "nbytes"):
        emit(2, f"{var} = T.int32()")
    emit(2, f'x = T.match_buffer(x_h, (n, {D}), "{xdtype}", align=1, offset_factor=1)')
    emit(2, f'encp = T.match_buffer(enc_h, ({CT},), "{xdtype}")')
    emit(2, f'enb = T.match_buffer(en_h, ({CT},), "uint8")')
    emit(2, 'seg = T.match_buffer(seg_h, (nseg,), "int32")')
    emit(2, 'rows = T.match_buffer(rows_h, (nrow,), "int32")')
    emit(2, f'hslot = T.match_buffer(hslot_h, ({NCLS * K},), "int32")')
    emit(2, f'hmask = T.match_buffer(hmask_h, ({NCLS * K},), "uint64")')
    emit(2, 'act = T.match_buffer(act_h, (nact,), "uint64")')
    emit(2, 'byt = T.match_buffer(bytes_h, (nbytes,), "uint8")')
    emit(2, f'out = T.match_buffer(out_h, (n, {NCLS}), "{odtype}", align=1, offset_factor=1)')
    emit(2, f"nch: T.let = nbytes // {SB}")
    emit(2, "slot_words: T.let = nact // nch")
    emit(2, f"nslot: T.let = slot_words // {W}")
    emit(2, f"ntiles: T.let = n // {TILE}")
    emit(2, "per: T.let = (ntiles + nch - 1) // nch")
    emit(2, "for ch in T.parallel(nch):")
    emit(3, f'pl = T.alloc_buffer(({NBA * VH},), "uint64", scope="local")')
    emit(3, "tile_end: T.let = T.min(ch * per + per, ntiles)")
    # The gate rows prefetch the next tile's input, one unit (64 input values: a cache line of uint8,
    # four of float32) every 65536 / pf_step rows, when there are enough rows to cover the tile (else
    # the encode prefetches it).
    emit(3, f"tile_lines: T.let = {-(-TILE * D // 64)}  # units")
    emit(3, "grows: T.let = T.max(nrow // 3, 1)")
    emit(3, "by_gates: T.let = grows >= tile_lines" + ("" if prefetch_in_gates else " and False"))
    emit(3, "pf_step: T.let = T.if_then_else(by_gates, (T.Cast(\"int64\", tile_lines) * T.int64(65536) - T.int64(1)) "
            "// T.Cast(\"int64\", grows), T.int64(0))")
    emit(3, "for tile in range(ch * per, tile_end):")
    emit(4, "a_ptr: T.let = T.address_of(act[ch * slot_words])")
    emit(4, "has_next: T.let = tile + 1 < tile_end")
    emit(4, f"Module.{name}_encode(T.address_of(x[tile * {TILE}, 0]), encp.data, enb.data, a_ptr, "
            f"T.address_of(byt[ch * {SB}]), nslot, T.Cast(\"int32\", has_next and not by_gates))")
    emit(4, f"Module.{name}_gates(a_ptr, seg.data, rows.data, nslot, nseg, nrow, "
            f"T.address_of(x[T.min(tile + 1, ntiles - 1) * {TILE}, 0]), T.if_then_else(has_next, pf_step, T.int64(0)))")
    emit(4, f"Module.{name}_head(a_ptr, hslot.data, hmask.data, T.address_of(out[tile * {TILE}, 0]), pl.data, "
            "nslot, tau)")
    return "\n".join(lines) + "\n"
