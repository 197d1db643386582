"""3-input Boolean functions without ``vpternlogq``: every one of the 256 tables as a shortest
formula over AVX2's two-input ``vpand``, ``vpor``, ``vpxor`` and ``vpandn`` (``~x & y``), and its
emission as VEX instructions. Pure Python; the AVX2 path of :mod:`tvm_ops.netlist_asm` uses it.

Tables use ``vpternlogq``'s numbering (bit ``4 * a + 2 * b + c`` is the output for operand values
``a, b, c``), so the operands read as the 8-bit patterns ``a = 0xF0``, ``b = 0xCC``, ``c = 0xAA``; a
constant all-ones register (``0xFF``) gives the complement (``x ^ ones``). The formulas come from a
search by size: every table reachable with ``k`` two-input ops combines two formulas of sizes ``i``
and ``k - 1 - i``; ties go to the formula that needs fewer temporaries, then to one that can read
``c`` from memory in place. Every table takes at most five ops and two temporaries; 0x00 is one
``vpxor`` of the destination with itself. Built once, on first use (about 0.3 s).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Dict, List, Optional, Tuple, Union

__all__ = ["OPERAND_PATTERNS", "TEMPORARIES", "formula", "formula_value", "emit_ternary"]

OPERAND_PATTERNS = {"a": 0xF0, "b": 0xCC, "c": 0xAA, "ones": 0xFF}
TEMPORARIES = 2  # scratch registers emit_ternary may write (besides the destination and the load register)

# A formula: a leaf name ("a", "b", "c", "ones") or (op, left, right) with op one of _OPS.
Formula = Union[str, Tuple[str, "Formula", "Formula"]]

_OPS: Dict[str, Callable[[int, int], int]] = {
    "and": lambda x, y: x & y,
    "or": lambda x, y: x | y,
    "xor": lambda x, y: x ^ y,
    "andn": lambda x, y: ~x & y,
}
_MNEMONIC = {"and": "vpand", "or": "vpor", "xor": "vpxor", "andn": "vpandn"}
_COMMUTATIVE = {"and", "or", "xor"}


def _temps(expr: Formula) -> int:
    """Registers needed to compute ``expr`` into a register of its own (0 for a leaf: it is one)."""
    if isinstance(expr, str):
        return 0
    return max(_root_temps(expr), 1)


def _root_temps(expr: Formula) -> int:
    """Temporaries needed to compute ``expr`` straight into a destination register (the larger child
    first, then the other beside its result)."""
    if isinstance(expr, str):
        return 0
    _, left, right = expr
    return min(_peak(left, right), _peak(right, left))


def _preference(expr: Formula) -> Tuple[int, bool]:
    """Among formulas of one size: fewer temporaries, then ``c`` read in place if it is in memory."""
    return _root_temps(expr), not _in_place_ok(expr, "c")


@lru_cache(maxsize=1)
def _formulas() -> Dict[int, Formula]:
    """A shortest formula of every table but 0x00 (see the module docstring)."""
    best: Dict[int, Formula] = {pattern: name for name, pattern in OPERAND_PATTERNS.items()}
    by_size: List[List[int]] = [list(best)]
    while len(best) < 255:
        size = len(by_size)
        found: Dict[int, Formula] = {}
        for left_size in range(size):
            for x in by_size[left_size]:
                for y in by_size[size - 1 - left_size]:
                    for op, apply in _OPS.items():
                        table = apply(x, y) & 0xFF
                        if table in best or table == 0:
                            continue
                        candidate = (op, best[x], best[y])
                        if table not in found or _preference(candidate) < _preference(found[table]):
                            found[table] = candidate
        best.update(found)
        by_size.append(list(found))
    return best


def formula(table: int) -> Optional[Formula]:
    """The formula of ``table`` (0..255); None for the constant 0x00."""
    if not 0 <= table <= 255:
        raise ValueError(f"table = {table!r}, expected 0..255")
    return None if table == 0 else _formulas()[table]


def formula_value(expr: Optional[Formula], values: Dict[str, int], *, mask: int = 0xFF) -> int:
    """``expr`` evaluated bitwise on the integers ``values`` ("a", "b", "c"; "ones" is ``mask``)."""
    if expr is None:
        return 0
    if isinstance(expr, str):
        return mask if expr == "ones" else values[expr] & mask
    op, left, right = expr
    return _OPS[op](formula_value(left, values, mask=mask), formula_value(right, values, mask=mask)) & mask


def _in_place_ok(expr: Formula, leaf: str) -> bool:
    """Whether every op of ``expr`` that reads ``leaf`` directly can take it as its last source (not
    as andn's complemented operand, not twice)."""
    if isinstance(expr, str):
        return True
    op, left, right = expr
    if left == leaf and (right == leaf or op not in _COMMUTATIVE):
        return False
    return _in_place_ok(left, leaf) and _in_place_ok(right, leaf)


def _peak(first: Formula, second: Formula) -> int:
    """Temporaries held computing ``first`` and then ``second`` beside it."""
    return max(_temps(first), (0 if isinstance(first, str) else 1) + _temps(second))


def emit_ternary(emit: Callable[[str], None], *, dst: str, a: str, b: str, c: str, table: int,
                 ones: str, temps: Tuple[str, ...], load: str) -> None:
    """Instructions that set register ``dst`` to ``table`` of ``a``, ``b``, ``c``. ``a`` and ``b`` are
    registers, ``c`` a register or a memory operand (read in place where every op can take it as its
    last source, else loaded into ``load`` first); ``dst`` may be one of the operands: it is written
    by the last instruction only. ``temps``: at least :data:`TEMPORARIES` scratch registers, none of
    them an operand."""
    expr = formula(table)
    if expr is None:
        emit(f"vpxor {dst}, {dst}, {dst}")
        return
    leaves = {"a": a, "b": b, "c": c, "ones": ones}
    if "ptr" in c and not _in_place_ok(expr, "c"):
        emit(f"vmovdqa {load}, {c}")
        leaves["c"] = load
    if isinstance(expr, str):  # a copy (or the all-ones constant)
        if leaves[expr] != dst:
            emit(f"vmovdqa {dst}, {leaves[expr]}")
        return
    free = list(temps[::-1])

    def value(node: Formula) -> str:
        """Where ``node``'s value is: an operand, or a temporary it is computed into now."""
        return leaves[node] if isinstance(node, str) else compute(node, None)

    def compute(node: Tuple[str, Formula, Formula], target: Optional[str]) -> str:
        op, left, right = node
        if _peak(right, left) < _peak(left, right):  # the child that needs more temporaries first
            y = value(right)
            x = value(left)
        else:
            x = value(left)
            y = value(right)
        for register in (x,) if x == y else (x, y):  # a fixed order: the same text every run
            if register in temps:
                free.append(register)
        if target is None:  # a temporary, possibly one a child's value was just read from
            target = free.pop()
        if "ptr" in x:  # a memory operand goes last (_in_place_ok: only and, or, xor get here with it)
            x, y = y, x
        emit(f"{_MNEMONIC[op]} {target}, {x}, {y}")
        return target

    compute(expr, dst)
