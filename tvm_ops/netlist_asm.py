"""x86-64 assembly of a :class:`~tvm_ops.netlist_fuse.FusedProgram`'s gates: straight-line code,
one 3-input op per cluster, one load per memory operand and one store per root; for AVX-512 or AVX2.

The function (System V ABI) is ``void NAME(uint64_t *act, const uint8_t *next, uint64_t *planes)``:
``act`` holds one 512-sample row (64 bytes) per slot, ``next`` is the next tile's raw input, which
can be prefetched a few lines per root (``prefetch_bytes``; prefetches never fault). After the
roots, the head counts each class's outputs into bit planes, ``planes[(c * num_planes + q) * 8 ..]``
(row ``q``: bit ``q`` of the count of class ``c``; then ``num_planes`` rows of scratch): a binary
counter of carry-save adders (output negations folded into them); a gate read only by the head is
evaluated right there and never stored. All registers are caller-saved, so there is no prologue.
The assembler is fast (about a second for 100K instructions) where a C compiler spends minutes on
straight-line code of this size.

- ``isa="avx512"``: zmm registers hold whole rows; one ``vpternlogq`` per cluster, two per
  carry-save adder; zmm0-zmm23 evaluate gates, zmm24-zmm31 hold the counter's low three planes and
  pending carries.
- ``isa="avx2"``: ymm registers hold 32-byte halves of the rows: the code is cut, where no register
  holds a value, into segments of a few hundred instructions, each run on the rows' first halves and
  then (``rdi``, ``rdx`` 32 bytes on) on their second halves, so a segment's code and rows are fetched
  from L2/L3 once a tile; each cluster is a short formula of ``vpand``/``vpor``/``vpxor``/``vpandn``
  (:mod:`tvm_ops.netlist_ternary`); ymm15 is all ones, ymm13-ymm14 the formulas' temporaries, ymm12
  a memory third operand's load register, and ymm0-ymm11 (:data:`GATE_REGISTERS`) evaluate gates
  and, in the head, the counter, whose planes and pending values all live in the ``planes`` scratch
  (five ops a full adder, negations free).
"""
from __future__ import annotations

from .netlist_fuse import MAX_REGISTERS, FusedProgram
from .netlist_ternary import TEMPORARIES, emit_ternary

__all__ = ["gates_assembly", "GATE_REGISTERS", "ISAS"]

_ROW_BYTES = 64
ISAS = ("avx512", "avx2")
# Registers a root may hold (netlist_fuse's bound): AVX-512 keeps 8 of 32 for the head's counter;
# AVX2 keeps 4 of 16 for the all-ones constant, the formulas' temporaries and a load register.
GATE_REGISTERS = {"avx512": MAX_REGISTERS, "avx2": 16 - 2 - TEMPORARIES}
_AVX2_ONES = "ymm15"
_AVX2_TEMPS = tuple(f"ymm{13 + i}" for i in range(TEMPORARIES))
_AVX2_LOAD = "ymm12"
_AVX2_SEGMENT_LINES = 256  # measured flat from 32 to 1,024 on the trained dense net; 1.3x over none


def _remap(table: int, positions: list) -> int:
    """The cluster's ``table`` as an instruction table whose operand ``j`` holds cluster operand
    ``positions[j]`` (an operand may sit in two positions; combinations where they differ never occur)."""
    where = {}
    for j, operand in enumerate(positions):
        where.setdefault(operand, j)
    out = 0
    for index in range(8):
        bits = ((index >> 2) & 1, (index >> 1) & 1, index & 1)  # instruction operands a, b, c
        values = [bits[where[i]] if i in where else 0 for i in range(3)]
        cluster_index = 4 * values[0] + 2 * values[1] + values[2]
        out |= ((table >> cluster_index) & 1) << index
    return out


def _ternlog(function, negated: tuple) -> int:
    """Table of ``function(a, b, c)`` (on 8-bit patterns) with the operands flagged in ``negated``
    complemented."""
    a, b, c = (pattern ^ (0xFF if neg else 0) for pattern, neg in zip((0xF0, 0xCC, 0xAA), negated))
    return function(a, b, c) & 0xFF


def _majority(a: int, b: int, c: int) -> int:
    return (a & b) | (a & c) | (b & c)


def _parity(a: int, b: int, c: int) -> int:
    return a ^ b ^ c


def gates_assembly(program: FusedProgram, *, name: str, num_planes: int, isa: str = "avx512",
                   prefetch_bytes: int = 0, code_prefetch_every: int = 16, code_prefetch_ahead: int = 32,
                   segment_lines: int = _AVX2_SEGMENT_LINES) -> str:
    """GNU assembler source (Intel syntax) of the program's gates and head counter as the function
    ``name`` for ``isa`` (see the module docstring; the program must be fused with
    ``GATE_REGISTERS[isa]``); ``num_planes``: bits of a class count; ``prefetch_bytes``: bytes of the
    next tile's input to prefetch, spread over the roots; ``segment_lines``: (AVX2) instructions of a
    segment that runs on both halves of the rows before the next one starts."""
    if isa not in ISAS:
        raise ValueError(f"isa = {isa!r}, expected one of {', '.join(map(repr, ISAS))}")
    avx2 = isa == "avx2"
    vector, width, move = ("ymm", "ymmword", "vmovdqa") if avx2 else ("zmm", "zmmword", "vmovdqa64")
    lines = [".intel_syntax noprefix", ".text", f".globl {name}", f".hidden {name}",
             f".type {name}, @function", ".p2align 6", f"{name}:"]
    emit = lines.append
    free = [f"{vector}{i}" for i in range(GATE_REGISTERS[isa] - 1, -1, -1)]
    clusters, slot = program.clusters, program.slot
    halves = _HalfLoop(emit=emit, lines=lines, free=free, pool=GATE_REGISTERS[isa], segment_lines=segment_lines)
    if avx2:
        emit(f"vpcmpeqd {_AVX2_ONES}, {_AVX2_ONES}, {_AVX2_ONES}")
        halves.open()

    def ternary(dst: str, b: str, c: str, table: int) -> None:
        """``dst`` = ``table`` of (``dst``, ``b``, ``c``); ``c`` may be a memory operand."""
        if avx2:
            emit_ternary(emit, dst=dst, a=dst, b=b, c=c, table=table, ones=_AVX2_ONES, temps=_AVX2_TEMPS,
                         load=_AVX2_LOAD)
        else:
            emit(f"vpternlogq {dst}, {b}, {c}, {table}")

    def mem(node: int) -> str:
        return f"{width} ptr [rdi+{slot[node] * _ROW_BYTES}]"

    def take() -> str:
        if not free:
            raise RuntimeError("register pool exhausted (the fusion's register bound is wrong)")
        return free.pop()

    def evaluate(node: int) -> str:
        cluster = clusters[node]
        regs = {}
        order = sorted((op for op in cluster.operands if op[0] == "reg"),
                       key=lambda op: -clusters[op[1]].need)
        for operand in order:
            regs[operand] = evaluate(operand[1])
        pending = [op for op in cluster.operands if op[0] == "reg"] + [op for op in cluster.operands if op[0] == "mem"]
        index = {op: i for i, op in enumerate(cluster.operands)}

        def in_register(operand) -> str:
            if operand in regs:
                return regs[operand]
            register = take()
            emit(f"{move} {register}, {mem(operand[1])}")
            return register

        first = pending[0]
        r0 = in_register(first)
        if len(pending) == 3:
            second, third = pending[1], pending[2]
            r1 = in_register(second)
            positions = [index[first], index[second], index[third]]
        else:
            second, third, r1 = None, pending[1], r0
            positions = [index[first], index[first], index[third]]
        src3 = regs[third] if third in regs else mem(third[1])
        ternary(r0, r1, src3, _remap(cluster.table, positions))
        if second is not None:
            free.append(r1)
        if third in regs:
            free.append(regs[third])
        return r0

    roots = program.roots
    lines_total = -(-prefetch_bytes // 64)
    done = 0
    for t, root in enumerate(roots):
        register = evaluate(root)
        emit(f"{move} {mem(root)}, {register}")
        free.append(register)
        upto = (t + 1) * lines_total // len(roots)
        while done < upto:
            emit(f"prefetcht1 byte ptr [rsi+{done * 64}]")
            done += 1
        if avx2:
            halves.split_if_long()
    if avx2:
        _emit_head_avx2(program, emit, evaluate, take, free, mem, num_planes, halves.split_if_long)
        halves.close()
    else:
        _emit_head(program, emit, evaluate, take, free, mem, num_planes)
    emit("vzeroupper")
    emit("ret")
    body = _prefetch_code(lines[7:], every=code_prefetch_every, ahead=code_prefetch_ahead) if code_prefetch_every else lines[7:]
    lines = lines[:7] + body
    lines.append(f".size {name}, .-{name}")
    lines.append('.section .note.GNU-stack,"",@progbits')
    return "\n".join(lines) + "\n"


class _HalfLoop:
    """The AVX2 code's loop over the two 32-byte halves of the rows: the straight-line code is cut,
    where no register holds a value, into segments of about ``segment_lines`` instructions, each run
    on the first half and again (``rdi``, ``rdx`` 32 bytes on) on the second before the next segment,
    so that a segment's code (in the L1 instruction cache) and its rows (in L1/L2) are fetched once
    a tile, not once a half."""

    def __init__(self, *, emit, lines: list, free: list, pool: int, segment_lines: int) -> None:
        self.emit, self.lines, self.free, self.pool, self.segment_lines = emit, lines, free, pool, segment_lines
        self.count = 0
        self.start = 0

    def open(self) -> None:
        self.emit("mov ecx, 2")
        self.emit(f".Lhalf{self.count}:")
        self.start = len(self.lines)

    def close(self) -> None:
        for line in ("add rdi, 32", "add rdx, 32", "dec ecx", f"jnz .Lhalf{self.count}", "sub rdi, 64", "sub rdx, 64"):
            self.emit(line)
        self.count += 1

    def split_if_long(self) -> None:
        """End the segment here and start the next, if it is long enough and no register is held."""
        if len(self.lines) - self.start >= self.segment_lines and len(self.free) == self.pool:
            self.close()
            self.open()


def _prefetch_code(body: list, *, every: int, ahead: int) -> list:
    """``body`` with a label every ``every`` instructions and, at each, a prefetch (to L2) of the
    code ``ahead`` labels further on: the straight-line code is far larger than the instruction
    cache, and the data streaming through L2 (the input, the next tile's prefetch) evicts it."""
    out = []
    marks = 0
    for index, line in enumerate(body):
        if index % every == 0:
            out.append(f".Lcode{marks}:")
            out.append(f"prefetcht1 byte ptr [rip+.Lcode{marks + ahead}]")
            marks += 1
        out.append(line)
    for extra in range(marks, marks + ahead):
        out.append(f".Lcode{extra}:")
    return out


def _emit_head(program: FusedProgram, emit, evaluate, take, free, mem, num_planes: int) -> None:
    """The head counter (see the module docstring): per class, each output enters a binary counter at
    weight 1; two pending values of one weight meet the plane of that weight in a carry-save adder."""
    fixed = 3  # weights 0..2: plane in zmm29 + q, pending value in zmm26 + q; higher ones in memory
    classes, group = program.head_nodes.shape
    scratch = classes * num_planes

    def plane_mem(c: int, q: int) -> str:
        return f"zmmword ptr [rdx+{(c * num_planes + q) * 64}]"

    def pend_mem(q: int) -> str:
        return f"zmmword ptr [rdx+{(scratch + q) * 64}]"

    for c in range(classes):
        pending = [None] * num_planes  # None, or the negation flag of the value waiting at weight q
        plane_zero = [True] * num_planes

        def add(register: str, neg: bool, q: int) -> None:
            if q >= num_planes:  # a carry past the top plane: the count is < 2**num_planes, so it is 0
                free.append(register)
                return
            if pending[q] is None:
                emit(f"vmovdqa64 {f'zmm{26 + q}' if q < fixed else pend_mem(q)}, {register}")
                pending[q] = neg
                free.append(register)
                return
            wait = pending[q]
            pending[q] = None
            if q < fixed:
                p_reg, w_reg = f"zmm{29 + q}", f"zmm{26 + q}"
            else:
                p_reg, w_reg = "zmm25", "zmm24"
                emit(f"vmovdqa64 {w_reg}, {pend_mem(q)}")
            carry = take()
            if plane_zero[q]:  # plane = wait ^ value, carry = wait & value
                emit(f"vmovdqa64 {carry}, {w_reg}")
                emit(f"vpternlogq {carry}, {register}, {register}, {_ternlog(lambda a, b, _c: a & b, (wait, neg, neg))}")
                emit(f"vmovdqa64 {p_reg}, {w_reg}")
                emit(f"vpternlogq {p_reg}, {register}, {register}, {_ternlog(lambda a, b, _c: a ^ b, (wait, neg, neg))}")
                plane_zero[q] = False
            else:
                if q >= fixed:
                    emit(f"vmovdqa64 {p_reg}, {plane_mem(c, q)}")
                emit(f"vmovdqa64 {carry}, {p_reg}")
                emit(f"vpternlogq {carry}, {w_reg}, {register}, {_ternlog(_majority, (False, wait, neg))}")
                emit(f"vpternlogq {p_reg}, {w_reg}, {register}, {_ternlog(_parity, (False, wait, neg))}")
            if q >= fixed:
                emit(f"vmovdqa64 {plane_mem(c, q)}, {p_reg}")
            free.append(register)
            add(carry, False, q + 1)

        for j in range(group):
            node, neg = int(program.head_nodes[c, j]), bool(program.head_neg[c, j])
            if node in program.head_only:
                register = evaluate(node)
            else:
                register = take()
                emit(f"vmovdqa64 {register}, {mem(node)}")
            add(register, neg, 0)
        for q in range(num_planes):  # flush: a pending value is half-added into its plane
            if pending[q] is None:
                continue
            wait = pending[q]
            pending[q] = None
            w_reg = f"zmm{26 + q}" if q < fixed else "zmm24"
            if q >= fixed:
                emit(f"vmovdqa64 {w_reg}, {pend_mem(q)}")
            p_reg = f"zmm{29 + q}" if q < fixed else "zmm25"
            plane_zero_before = plane_zero[q]
            if plane_zero[q]:
                emit(f"vpternlogq {w_reg}, {w_reg}, {w_reg}, {_ternlog(lambda a, _b, _c: a, (wait, wait, wait))}")
                emit(f"vmovdqa64 {p_reg}, {w_reg}")
                plane_zero[q] = False
            else:
                if q >= fixed:
                    emit(f"vmovdqa64 {p_reg}, {plane_mem(c, q)}")
                carry = take()
                emit(f"vmovdqa64 {carry}, {p_reg}")
                emit(f"vpternlogq {carry}, {w_reg}, {w_reg}, {_ternlog(lambda a, b, _c: a & b, (False, wait, wait))}")
                emit(f"vpternlogq {p_reg}, {w_reg}, {w_reg}, {_ternlog(lambda a, b, _c: a ^ b, (False, wait, wait))}")
            if q >= fixed:
                emit(f"vmovdqa64 {plane_mem(c, q)}, {p_reg}")
            if not plane_zero_before:
                add(carry, False, q + 1)
        for q in range(min(fixed, num_planes)):
            if plane_zero[q]:
                emit(f"vpxorq zmm{29 + q}, zmm{29 + q}, zmm{29 + q}")
            emit(f"vmovdqa64 {plane_mem(c, q)}, zmm{29 + q}")
        for q in range(fixed, num_planes):
            if plane_zero[q]:
                emit("vpxorq zmm25, zmm25, zmm25")
                emit(f"vmovdqa64 {plane_mem(c, q)}, zmm25")


def _emit_head_avx2(program: FusedProgram, emit, evaluate, take, free, mem, num_planes: int, split) -> None:
    """The head counter of the AVX2 path: the carry-save adders of :func:`_emit_head` with every plane
    and pending value in memory (32-byte halves at the AVX-512 rows' offsets) and registers from the
    gate pool. Negations cost nothing: every value, plane and pending one, carries a flag "held
    complemented" known here, each AND picks ``vpand``/``vpandn``/``vpor`` by De Morgan, and a plane
    still flagged at the end is complemented once. A full adder is five ops (``t = v ^ w``,
    ``carry = v ^ (t & (v ^ p))``, ``plane = t ^ p``); a pending stored output is read where it is."""
    classes, group = program.head_nodes.shape
    scratch = classes * num_planes
    t0, t1 = _AVX2_TEMPS[:2]

    def plane_mem(c: int, q: int) -> str:
        return f"ymmword ptr [rdx+{(c * num_planes + q) * 64}]"

    def pend_mem(q: int) -> str:
        return f"ymmword ptr [rdx+{(scratch + q) * 64}]"

    def both(dst: str, x: str, x_flag: bool, y: str, y_flag: bool) -> bool:
        """``dst`` = x & y of the true values, ``x`` a register, ``y`` a register or memory operand;
        returns the flag of what ``dst`` holds."""
        if x_flag and y_flag:  # ~x & ~y = ~(x | y)
            emit(f"vpor {dst}, {x}, {y}")
            return True
        if y_flag:  # x & ~y: vpandn complements its first operand, which must be a register
            if "ptr" in y:
                emit(f"vmovdqa {_AVX2_LOAD}, {y}")
                y = _AVX2_LOAD
            x, y = y, x
        emit(f"{'vpandn' if x_flag or y_flag else 'vpand'} {dst}, {x}, {y}")
        return False

    for c in range(classes):
        pending: list = [None] * num_planes  # None, or (flag, memory operand) of the value waiting at q
        plane_flag: list = [None] * num_planes  # None while plane q is 0, else its flag

        def add(register: str, flag: bool, q: int) -> None:
            """Count the value in ``register`` (its complement if ``flag``) at weight ``q``; frees it."""
            if q >= num_planes:  # a carry past the top plane: the count is < 2**num_planes, so it is 0
                free.append(register)
                return
            if pending[q] is None:
                emit(f"vmovdqa {pend_mem(q)}, {register}")
                pending[q] = (flag, pend_mem(q))
                free.append(register)
                return
            (wait_flag, waiting), pending[q] = pending[q], None
            carry = take()
            plane = plane_mem(c, q)
            if plane_flag[q] is None:  # half adder: carry = v & w, plane = v ^ w
                carry_flag = both(carry, register, flag, waiting, wait_flag)
                emit(f"vpxor {register}, {register}, {waiting}")
                plane_flag[q] = flag ^ wait_flag
            else:  # full adder
                emit(f"vpxor {t0}, {register}, {waiting}")
                emit(f"vpxor {t1}, {register}, {plane}")
                and_flag = both(t1, t0, flag ^ wait_flag, t1, flag ^ plane_flag[q])
                emit(f"vpxor {carry}, {register}, {t1}")
                carry_flag = flag ^ and_flag
                emit(f"vpxor {register}, {t0}, {plane}")
                plane_flag[q] = flag ^ wait_flag ^ plane_flag[q]
            emit(f"vmovdqa {plane}, {register}")
            free.append(register)
            add(carry, carry_flag, q + 1)

        for j in range(group):
            node, neg = int(program.head_nodes[c, j]), bool(program.head_neg[c, j])
            if node in program.head_only:
                add(evaluate(node), neg, 0)
            elif pending[0] is None:  # the stored row waits where it is
                pending[0] = (neg, mem(node))
            else:
                register = take()
                emit(f"vmovdqa {register}, {mem(node)}")
                add(register, neg, 0)
            split()
        for q in range(num_planes):  # flush: a pending value is half-added into its plane
            if pending[q] is None:
                continue
            (wait_flag, waiting), pending[q] = pending[q], None
            register = take()
            if plane_flag[q] is None:
                emit(f"vmovdqa {register}, {waiting}")
                emit(f"vmovdqa {plane_mem(c, q)}, {register}")
                plane_flag[q] = wait_flag
                free.append(register)
                continue
            carry = take()
            emit(f"vmovdqa {register}, {plane_mem(c, q)}")
            carry_flag = both(carry, register, plane_flag[q], waiting, wait_flag)
            emit(f"vpxor {register}, {register}, {waiting}")
            emit(f"vmovdqa {plane_mem(c, q)}, {register}")
            plane_flag[q] ^= wait_flag
            free.append(register)
            add(carry, carry_flag, q + 1)
        register = take()
        if None in plane_flag:
            emit(f"vpxor {register}, {register}, {register}")
            for q in range(num_planes):
                if plane_flag[q] is None:
                    emit(f"vmovdqa {plane_mem(c, q)}, {register}")
        for q in range(num_planes):  # planes held complemented: complemented once now
            if plane_flag[q]:
                emit(f"vpxor {register}, {_AVX2_ONES}, {plane_mem(c, q)}")
                emit(f"vmovdqa {plane_mem(c, q)}, {register}")
        free.append(register)
