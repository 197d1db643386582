"""x86-64 AVX-512 assembly of a :class:`~tvm_ops.netlist_fuse.FusedProgram`'s gates: straight-line
code, one ``vpternlogq`` per cluster, one 512-bit load per memory operand and one store per root.

The function (System V ABI) is ``void NAME(uint64_t *act, const uint8_t *next, uint64_t *planes)``:
``act`` holds one 512-sample row (64 bytes) per slot, ``next`` is the next tile's raw input, which
can be prefetched a few lines per root (``prefetch_bytes``; prefetches never fault). After the
roots, the head counts each class's outputs into bit planes, ``planes[(c * num_planes + q) * 8 ..]``
(row ``q``: bit ``q`` of the count of class ``c``; then ``num_planes`` rows of scratch): a binary
counter of carry-save adders (two ``vpternlogq`` each, output negations folded into their tables),
whose low three planes and pending carries stay in registers; a gate read only by the head is
evaluated right there and never stored. Registers zmm0-zmm23 evaluate gates, zmm24-zmm31 hold the
counter; all are caller-saved, so there is no prologue. The assembler is fast (about a second for 100K instructions)
where a C compiler spends minutes on straight-line code of this size.
"""
from __future__ import annotations

from .netlist_fuse import FusedProgram

__all__ = ["gates_assembly"]

_ROW_BYTES = 64


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


def gates_assembly(program: FusedProgram, *, name: str, num_planes: int, prefetch_bytes: int = 0,
                   code_prefetch_every: int = 16, code_prefetch_ahead: int = 32) -> str:
    """GNU assembler source (Intel syntax) of the program's gates and head counter as the function
    ``name``; ``num_planes``: bits of a class count; ``prefetch_bytes``: bytes of the next tile's input
    to prefetch, spread over the roots."""
    lines = [".intel_syntax noprefix", ".text", f".globl {name}", f".hidden {name}",
             f".type {name}, @function", ".p2align 6", f"{name}:"]
    emit = lines.append
    free = [f"zmm{i}" for i in range(23, -1, -1)]
    clusters, slot = program.clusters, program.slot

    def mem(node: int) -> str:
        return f"zmmword ptr [rdi+{slot[node] * _ROW_BYTES}]"

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
            emit(f"vmovdqa64 {register}, {mem(operand[1])}")
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
        emit(f"vpternlogq {r0}, {r1}, {src3}, {_remap(cluster.table, positions)}")
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
        emit(f"vmovdqa64 zmmword ptr [rdi+{slot[root] * _ROW_BYTES}], {register}")
        free.append(register)
        upto = (t + 1) * lines_total // len(roots)
        while done < upto:
            emit(f"prefetcht1 byte ptr [rsi+{done * 64}]")
            done += 1
    _emit_head(program, emit, evaluate, take, free, mem, num_planes)
    emit("vzeroupper")
    emit("ret")
    body = _prefetch_code(lines[7:], every=code_prefetch_every, ahead=code_prefetch_ahead) if code_prefetch_every else lines[7:]
    lines = lines[:7] + body
    lines.append(f".size {name}, .-{name}")
    lines.append('.section .note.GNU-stack,"",@progbits')
    return "\n".join(lines) + "\n"


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
