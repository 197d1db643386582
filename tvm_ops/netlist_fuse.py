"""Gate fusion for net-specialised code: a :class:`~tvm_ops.netlist_plan.Plan` regrouped into
*roots*, each a small expression tree of 3-input ops evaluated in registers. Pure Python/numpy.

A gate whose value has exactly one reader, a gate, and that no class output reads is not stored:
its reader computes it. Per gate a *cluster* is one 3-input Boolean function (one AVX-512
``vpternlogq``) of at most three operands, each either a stored value (a memory operand) or another
cluster's register; a one-reader child is merged into its reader's cluster when their operands
together number at most three, else it is evaluated into a register first. The gates that remain
stored (several readers, read by the head, or the register bound reached) are the roots; only they
get slots, allocated by liveness over the roots' order (the plan's level order), so a stored value
costs one store and each operand one load, where the plan pays two loads and a store per gate.

Truth tables use ``vpternlogq``'s numbering: bit ``4 * a + 2 * b + c`` of the 8-bit table is the
output for operand values ``a, b, c`` (operand 0 is ``a``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .netlist_plan import OP_AND, OP_ANDN, OP_OR, OP_XOR, Plan

__all__ = ["Cluster", "FusedProgram", "fuse_plan", "run_fused_numpy", "MAX_REGISTERS"]

MAX_REGISTERS = 24  # registers one root may need (AVX-512 has 32; the head's counter holds the rest)
MAX_DEPTH = 48  # clusters nested in one root at most (deep single-reader chains are cut into roots)
_PATTERNS = (0xF0, 0xCC, 0xAA)  # truth tables of operands 0, 1, 2


def _apply(op: int, a: int, b: int) -> int:
    if op == OP_AND:
        return a & b
    if op == OP_ANDN:
        return a & ~b & 0xFF
    if op == OP_OR:
        return a | b
    if op == OP_XOR:
        return a ^ b
    raise ValueError(f"op {op} is not one of AND, ANDN, OR, XOR")


@dataclass
class Cluster:
    """One 3-input op: ``table`` over ``operands``, each ``("mem", node)`` or ``("reg", node)`` (a
    child cluster's value); ``need``: registers its evaluation holds at most."""

    operands: list
    table: int
    need: int
    depth: int = 1


@dataclass
class FusedProgram:
    """Roots in execution order (node ids), each node's cluster, slots of the stored values."""

    num_inputs: int
    num_slots: int
    roots: list
    clusters: dict  # node -> Cluster
    slot: dict  # stored node (inputs, roots) -> slot; inputs sit in slots 1..num_inputs, slot 0 is 0
    head_slots: np.ndarray  # int32 (C, K): slot of each class output, -1 where it is not stored
    head_neg: np.ndarray  # uint8 (C, K): 1 where the output is the complement of its value
    head_nodes: np.ndarray  # int64 (C, K): node of each class output
    head_only: set  # gates read once by the head and by no gate: computed in the head, never stored
    stats: dict = field(default_factory=dict)


def _expr_table(expr, positions: dict) -> int:
    """Table of an expression tree ``("leaf", operand)`` / ``("op", op, e1, e2)`` over ``positions``."""
    if expr[0] == "leaf":
        return _PATTERNS[positions[expr[1]]]
    return _apply(expr[1], _expr_table(expr[2], positions), _expr_table(expr[3], positions))


def _need(operands: list, clusters: dict) -> int:
    """Registers held while a cluster is evaluated: its register operands in decreasing need, one held
    per finished operand, then two for the op itself."""
    needs = sorted((clusters[node].need for kind, node in operands if kind == "reg"), reverse=True)
    held = max([n + i for i, n in enumerate(needs)] + [0])
    return max(held, len(needs) + 2, 2)


def fuse_plan(plan: Plan, *, max_registers: int = MAX_REGISTERS, max_depth: int = MAX_DEPTH) -> FusedProgram:
    """Fuse the gates of ``plan`` (see the module docstring) and allocate the roots' slots."""
    n_in = plan.num_inputs
    current = np.arange(plan.num_slots, dtype=np.int64)  # slot -> node now held there (inputs: slot = node)
    rows = plan.rows.astype(np.int64)
    num_rows = rows.shape[0]
    first = 1 + n_in
    ops = np.empty(num_rows, dtype=np.int64)
    xs = np.empty(num_rows, dtype=np.int64)
    ys = np.empty(num_rows, dtype=np.int64)
    for op, lo, hi in plan.segments:
        ops[lo:hi] = op
    for r in range(num_rows):
        out, a, b = rows[r]
        xs[r], ys[r] = current[a], current[b]
        current[out] = first + r
    head_nodes = current[plan.head_slots.astype(np.int64)]
    readers = np.zeros(first + num_rows, dtype=np.int64)
    np.add.at(readers, xs, 1)
    np.add.at(readers, ys, 1)
    head_read = np.zeros(first + num_rows, dtype=bool)
    head_read[head_nodes.reshape(-1)] = True
    inlinable = (readers == 1) & ~head_read
    inlinable[:first] = False

    clusters: dict = {}
    exprs: dict = {}  # node -> expression tree over its cluster's operands
    absorbed = np.zeros(first + num_rows, dtype=bool)
    for r in range(num_rows):
        node, x, y = first + r, int(xs[r]), int(ys[r])
        children = []
        for child in (x, y):
            if inlinable[child]:
                children.append(child)
        # Candidate operand sets: merge both children, one, or none (children then go to registers).
        best = None
        for merge in ([*children], children[:1], children[1:], []):
            if best is not None:
                break
            expr_of = {}
            operands: list = []
            for child in (x, y):
                if child in merge:
                    expr_of[child] = exprs[child]
                    for operand in clusters[child].operands:
                        if operand not in operands:
                            operands.append(operand)
                else:
                    operand = ("reg", child) if inlinable[child] else ("mem", child)
                    expr_of[child] = ("leaf", operand)
                    if operand not in operands:
                        operands.append(operand)
            if len(operands) > 3:
                continue
            need = _need(operands, clusters)
            depth = 1 + max([clusters[node].depth for kind, node in operands if kind == "reg"]
                            + [clusters[child].depth - 1 for child in merge] + [0])
            if need > max_registers or depth > max_depth:
                continue
            best = (operands, ("op", int(ops[r]), expr_of[x], expr_of[y]), need, merge, depth)
        if best is None:  # both children stored instead (their own clusters are roots)
            for child in children:
                inlinable[child] = False
            children = []
            operands = [("mem", x)] + ([("mem", y)] if y != x else [])
            best = (operands, ("op", int(ops[r]), ("leaf", ("mem", x)), ("leaf", ("mem", y))), 2, [], 1)
        operands, expr, need, merge, depth = best
        for child in children:
            absorbed[child] = True
            if child in merge:
                del clusters[child]  # merged: its function is part of this cluster now
        positions = {operand: i for i, operand in enumerate(operands)}
        clusters[node] = Cluster(operands=operands, table=_expr_table(expr, positions), need=need, depth=depth)
        exprs[node] = expr
    # Gates that only the head reads, once: computed where the head counts them, never stored.
    uses = np.bincount(head_nodes.reshape(-1), minlength=first + num_rows)
    head_only = {first + r for r in range(num_rows)
                 if not absorbed[first + r] and readers[first + r] == 0 and uses[first + r] == 1}
    roots = [first + r for r in range(num_rows) if not absorbed[first + r] and first + r not in head_only]
    live_clusters = {node: clusters[node] for node in clusters}

    # Liveness over the roots: a stored value is read by the roots whose trees name it as "mem".
    def mem_leaves(node: int, out: list) -> None:
        for kind, operand in live_clusters[node].operands:
            if kind == "mem":
                out.append(operand)
            else:
                mem_leaves(operand, out)

    reads = []
    last_use = {}
    for t, root in enumerate(roots):
        leaves: list = []
        mem_leaves(root, leaves)
        reads.append(leaves)
        for leaf in leaves:
            last_use[leaf] = t
    end = len(roots)
    for node in head_nodes.reshape(-1).tolist():
        if node in head_only:
            leaves = []
            mem_leaves(node, leaves)
            for leaf in leaves:
                last_use[leaf] = end
        else:
            last_use[node] = end
    slot = {node: node for node in range(first)}
    free: list = [s for s in range(1, first) if s not in last_use]
    frees_at: dict = {}
    for node, t in last_use.items():
        if node != 0 and t < end:
            frees_at.setdefault(t, []).append(node)
    next_slot = first
    for t, root in enumerate(roots):
        for node in frees_at.get(t, ()):  # loads come before the root's store: its slot is reusable now
            free.append(slot[node])
        if free:
            slot[root] = free.pop()
        else:
            slot[root] = next_slot
            next_slot += 1
    head_slots = np.array([-1 if int(node) in head_only else slot[int(node)] for node in head_nodes.reshape(-1)],
                          dtype=np.int32)
    stats = {
        "gates": num_rows,
        "roots": len(roots),
        "head_only": len(head_only),
        "clusters": len(live_clusters),
        "slots": next_slot,
        "stored_fraction": round(len(roots) / max(1, num_rows), 3),
    }
    return FusedProgram(
        num_inputs=n_in, num_slots=next_slot, roots=roots, clusters=live_clusters, slot=slot,
        head_slots=head_slots.reshape(plan.head_slots.shape), head_neg=plan.head_neg.copy(),
        head_nodes=head_nodes.reshape(plan.head_slots.shape), head_only=head_only, stats=stats,
    )


def _table_apply(table: int, values: list) -> np.ndarray:
    """Bitwise 3-input function ``table`` of uint64 arrays (missing operands read as the first)."""
    a = values[0]
    b = values[1] if len(values) > 1 else a
    c = values[2] if len(values) > 2 else b
    out = np.zeros_like(a)
    for index in range(8):
        if (table >> index) & 1:
            term = (a if index & 4 else ~a) & (b if index & 2 else ~b) & (c if index & 1 else ~c)
            out |= term
    return out


def run_fused_numpy(program: FusedProgram, packed_inputs: np.ndarray) -> np.ndarray:
    """Reference execution of a fused program on packed inputs uint64 (num_inputs, W): the head's
    words, uint64 (C, K, W), negations applied. Slow; tests check the fusion with it."""
    act = np.zeros((program.num_slots, packed_inputs.shape[1]), dtype=np.uint64)
    act[1:1 + program.num_inputs] = packed_inputs

    def value(node: int) -> np.ndarray:
        cluster = program.clusters[node]
        values = [act[program.slot[n]] if kind == "mem" else value(n) for kind, n in cluster.operands]
        # A two-operand cluster's table ignores operand 2: read it as operand 1 (any value would do).
        return _table_apply(cluster.table, values)

    for root in program.roots:
        act[program.slot[root]] = value(root)
    nodes = program.head_nodes.reshape(-1)
    words = np.stack([value(int(node)) if int(node) in program.head_only else act[program.slot[int(node)]]
                      for node in nodes]).reshape(program.head_nodes.shape + (packed_inputs.shape[1],))
    neg = program.head_neg.astype(bool)
    words[neg] = ~words[neg]
    return words
