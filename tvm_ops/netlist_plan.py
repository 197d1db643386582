"""Lowering plan for a discrete logic gate network: pure numpy, no TVM.

A *plan* turns a netlist (given as plain arrays, see :class:`NetlistArrays`: the view that
``lgn_nas.netlist.Netlist.arrays()`` provides, checked there) into what a bit-sliced kernel executes on
words of 64 samples:

1. Every node becomes a *literal* ``2 * node + negated`` (node 0 is the constant FALSE, so literal 0 is
   FALSE and 1 is TRUE; nodes ``1 .. num_inputs`` are the encoded inputs). Per gate, negated inputs
   are absorbed into the truth table, constant inputs restrict it, and what is left is either a
   literal (constant, pass-through, NOT, a gate whose two inputs are one node) or one of four
   single-instruction ops on two distinct nodes, ``AND``, ``ANDN`` (a & ~b), ``OR``, ``XOR``, with
   the output negation pushed into the readers. So NOT, NAND, NOR, XNOR, ... cost the same as AND.
2. The GroupSum head becomes gates too: per class a Wallace tree of full and half adders (built with
   the same literal rules) reduces the class's output bits to the binary digits of its count, the
   *planes* (plane ``p`` of class ``c`` holds bit ``p`` of the count of every sample).
3. Gates that no plane reads are dropped, the rest are levelised (level = 1 + max level of the
   inputs) and assigned *slots* (rows of the activation scratch) by liveness, so the scratch holds
   only the nodes still needed: about two layers' width for a layered net.
4. Per level, gates are grouped by op into segments ``(op, start, end)`` of an index table whose rows
   are ``(out_slot, a_slot, b_slot)``: the kernel runs one tight loop per segment.

The plan is data; the compiled kernel is generic in it (only the encoding shape, tile size and
number of classes and planes are compile-time constants).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from .inputs import check_domain

__all__ = [
    "OP_AND",
    "OP_ANDN",
    "OP_OR",
    "OP_XOR",
    "OP_NAMES",
    "NetlistArrays",
    "NetlistSource",
    "Plan",
    "netlist_arrays",
    "make_plan",
    "uint8_cuts",
    "run_plan_numpy",
]

OP_AND, OP_ANDN, OP_OR, OP_XOR = 0, 1, 2, 3
OP_NAMES = ("AND", "ANDN", "OR", "XOR")

# Resolution kinds of one gate after its input literals are known.
_K_CONST, _K_PASS_A, _K_PASS_B, _K_GATE = 0, 1, 2, 3


def _val(f: int, a: int, b: int) -> int:
    """Output of truth table ``f`` (difflogic gate id: out(0,0) is the MSB) at inputs a, b."""
    return (f >> (3 - 2 * a - b)) & 1


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    """NEG[f, na, nb]: table with the input negations absorbed;
    RES[f, a_const, b_const, same] -> (kind, out_neg, op, swap)."""
    neg = np.zeros((16, 2, 2), dtype=np.int64)
    for f in range(16):
        for na in range(2):
            for nb in range(2):
                g = 0
                for a in range(2):
                    for b in range(2):
                        g |= _val(f, a ^ na, b ^ nb) << (3 - 2 * a - b)
                neg[f, na, nb] = g
    res = np.zeros((16, 2, 2, 2, 4), dtype=np.int64)
    for f in range(16):
        for ac in range(2):
            for bc in range(2):
                for same in range(2):
                    res[f, ac, bc, same] = _resolve(f, ac, bc, same)
    return neg, res


def _resolve(f: int, a_const: int, b_const: int, same: int) -> tuple[int, int, int, int]:
    """(kind, out_neg, op, swap) for table ``f`` whose (already un-negated) inputs are constant 0
    (``a_const``/``b_const``) or the same node (``same``)."""
    def unary(h0: int, h1: int, kind: int) -> tuple[int, int, int, int]:
        if h0 == h1:
            return (_K_CONST, h0, 0, 0)
        return (kind, h0, 0, 0)  # h0 == 1 means the literal is negated

    if a_const and b_const:
        return (_K_CONST, _val(f, 0, 0), 0, 0)
    if a_const:
        return unary(_val(f, 0, 0), _val(f, 0, 1), _K_PASS_B)
    if b_const:
        return unary(_val(f, 0, 0), _val(f, 1, 0), _K_PASS_A)
    if same:
        return unary(_val(f, 0, 0), _val(f, 1, 1), _K_PASS_A)
    dep_a = any(_val(f, 0, b) != _val(f, 1, b) for b in range(2))
    dep_b = any(_val(f, a, 0) != _val(f, a, 1) for a in range(2))
    if not dep_a and not dep_b:
        return (_K_CONST, _val(f, 0, 0), 0, 0)
    if not dep_b:
        return unary(_val(f, 0, 0), _val(f, 1, 0), _K_PASS_A)
    if not dep_a:
        return unary(_val(f, 0, 0), _val(f, 0, 1), _K_PASS_B)
    ones = bin(f).count("1")
    if ones == 2:  # XOR family
        return (_K_GATE, _val(f, 0, 0), OP_XOR, 0)
    # AND family: exactly one minterm differs from the rest.
    out_neg = 1 if ones == 3 else 0
    g = f ^ 0b1111 if out_neg else f
    a_star, b_star = next((a, b) for a in range(2) for b in range(2) if _val(g, a, b))
    # g = (a == a_star) & (b == b_star)
    if a_star and b_star:
        return (_K_GATE, out_neg, OP_AND, 0)
    if a_star and not b_star:
        return (_K_GATE, out_neg, OP_ANDN, 0)  # a & ~b
    if b_star and not a_star:
        return (_K_GATE, out_neg, OP_ANDN, 1)  # b & ~a
    return (_K_GATE, out_neg ^ 1, OP_OR, 0)  # ~a & ~b = ~(a | b)


_NEG, _RES = _build_tables()

def _gate_id(function) -> int:
    """The gate id of a Boolean ``function(a, b)`` in the netlist's numbering: its truth table with
    out(0, 0) as the most significant bit (as :func:`_val` reads it)."""
    return sum(function(a, b) << (3 - 2 * a - b) for a in (0, 1) for b in (0, 1))


_GATE_XOR, _GATE_AND, _GATE_OR = (_gate_id(f) for f in (lambda a, b: a ^ b, lambda a, b: a & b, lambda a, b: a | b))


# ----------------------------------------------------------------------------------------------------
@runtime_checkable
class NetlistArrays(Protocol):
    """What the lowering reads: a netlist as plain arrays, as ``lgn_nas.netlist.Netlist.arrays()`` gives
    it (``tvm_ops`` never imports ``lgn_nas``). The format and its checks are lgn_nas's: a view comes
    from a validated ``Netlist``, so nothing here checks it again.

    ``layers``: per layer (gate uint8, in_a int64, in_b int64) with netlist node ids (inputs first);
    ``outputs``: node ids, class ``c`` owns ``outputs[c*k:(c+1)*k]``; ``thresholds``: float32 (C, T) of
    the thermometer encoding of raw inputs of shape ``input_shape = (C, *spatial)``, in
    ``input_domain`` (:mod:`tvm_ops.inputs`).
    """

    input_shape: tuple
    thresholds: np.ndarray
    layers: Sequence[tuple]
    outputs: np.ndarray
    num_classes: int
    tau: float
    encoding_kind: str
    input_domain: str
    num_inputs: int
    num_gates: int
    group_size: int


@runtime_checkable
class NetlistSource(Protocol):
    """A netlist object (``lgn_nas.netlist.Netlist``): its plain-array view, and its simplification."""

    def arrays(self) -> NetlistArrays: ...

    def simplify(self) -> Any: ...


def netlist_arrays(netlist: Any) -> NetlistArrays:
    """The plain-array view of ``netlist`` (a :class:`NetlistSource`, or a view itself), as the
    lowering reads it; refuses what is not a netlist, and encodings this lowering does not implement."""
    if isinstance(netlist, NetlistSource):
        arrays = netlist.arrays()
    elif isinstance(netlist, NetlistArrays):
        arrays = netlist
    else:
        raise ValueError(f"{type(netlist).__name__} is not a netlist: expected an lgn_nas Netlist or its arrays()")
    if arrays.encoding_kind != "thermometer":
        raise ValueError(f"encoding kind {arrays.encoding_kind!r} is not supported here, expected 'thermometer'")
    check_domain(arrays.input_domain)
    return arrays


def uint8_cuts(thresholds: np.ndarray) -> np.ndarray:
    """Per threshold the smallest uint8 ``n`` with ``float32(n) / 255 > thr`` (256 when none), int64.

    So for uint8 inputs ``x / 255 > thr`` (in float32, as the reference encoder) is ``x >= cut``.
    """
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    flat = np.asarray(thresholds, dtype=np.float32).reshape(-1)
    return np.searchsorted(levels, flat, side="right").astype(np.int64).reshape(np.shape(thresholds))


# ----------------------------------------------------------------------------------------------------
class _GateGraph:
    """Literal-level gate graph, built in batches of independent gates (numpy-vectorised)."""

    def __init__(self, num_inputs: int) -> None:
        self.num_nodes = 1 + num_inputs  # node 0 = FALSE, 1..num_inputs = inputs
        self.num_inputs = num_inputs
        self.op: list[np.ndarray] = []
        self.x: list[np.ndarray] = []
        self.y: list[np.ndarray] = []

    def gates(self, gate: np.ndarray, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
        """Literals of ``gate[i](la[i], lb[i])`` (difflogic gate ids, literal inputs)."""
        f = _NEG[gate.astype(np.int64), la & 1, lb & 1]
        na, nb = la >> 1, lb >> 1
        res = _RES[f, (na == 0).astype(np.int64), (nb == 0).astype(np.int64), (na == nb).astype(np.int64)]
        kind, neg, op, swap = res[:, 0], res[:, 1], res[:, 2], res[:, 3]
        lit = np.where(kind == _K_PASS_A, 2 * na + neg, np.where(kind == _K_PASS_B, 2 * nb + neg, neg))
        is_gate = np.flatnonzero(kind == _K_GATE)
        if is_gate.size:
            xs = np.where(swap[is_gate] == 1, nb[is_gate], na[is_gate])
            ys = np.where(swap[is_gate] == 1, na[is_gate], nb[is_gate])
            ids = self.num_nodes + np.arange(is_gate.size, dtype=np.int64)
            self.num_nodes += is_gate.size
            self.op.append(op[is_gate].astype(np.int64))
            self.x.append(xs.astype(np.int64))
            self.y.append(ys.astype(np.int64))
            lit[is_gate] = 2 * ids + neg[is_gate]
        return lit.astype(np.int64)

    def full_add(self, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = self.gates(np.full(a.shape, _GATE_XOR), a, b)
        s = self.gates(np.full(a.shape, _GATE_XOR), t, c)
        u = self.gates(np.full(a.shape, _GATE_AND), a, b)
        v = self.gates(np.full(a.shape, _GATE_AND), t, c)
        return s, self.gates(np.full(a.shape, _GATE_OR), u, v)

    def half_add(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.gates(np.full(a.shape, _GATE_XOR), a, b), self.gates(np.full(a.shape, _GATE_AND), a, b)

    def popcount(self, lits: np.ndarray, num_planes: int) -> np.ndarray:
        """Wallace tree: literals of the binary digits (LSB first) of the number of true ``lits``."""
        columns: list[np.ndarray] = [np.asarray(lits, dtype=np.int64)] + [
            np.zeros(0, np.int64) for _ in range(num_planes)
        ]
        while any(col.size > 1 for col in columns):
            new = [np.zeros(0, np.int64) for _ in columns]
            for w, col in enumerate(columns):
                n3 = col.size // 3
                sums, carries = [], []
                if n3:
                    s, c = self.full_add(col[0:3 * n3:3], col[1:3 * n3:3], col[2:3 * n3:3])
                    sums.append(s)
                    carries.append(c)
                rest = col[3 * n3:]
                if rest.size == 2:
                    s, c = self.half_add(rest[:1], rest[1:])
                    sums.append(s)
                    carries.append(c)
                else:
                    sums.append(rest)
                new[w] = np.concatenate([new[w]] + sums)
                if carries:
                    if w + 1 >= len(new):  # a carry that is always 0 (the count is < 2**num_planes)
                        new.append(np.zeros(0, np.int64))
                    new[w + 1] = np.concatenate([new[w + 1]] + carries)
            # Constant-FALSE literals carry no information: drop them (they would only fold away).
            columns = [col[col != 0] for col in new]
        # Columns past num_planes hold carries that are always 0 and are dropped.
        return np.array([col[0] if col.size else 0 for col in columns[:num_planes]], dtype=np.int64)


@dataclass
class Plan:
    """Tables a bit-sliced kernel executes; see the module docstring. Slots are scratch rows."""

    num_inputs: int
    num_classes: int
    num_planes: int
    num_slots: int
    segments: np.ndarray  # int32 (S, 3): op, first row, end row into ``rows``
    rows: np.ndarray  # int32 (G, 3): out_slot, a_slot, b_slot
    head: str  # "adder": head_* are the count planes (C, num_planes); "outputs": the outputs (C, k)
    head_slots: np.ndarray  # int32: slot of each plane / output
    head_neg: np.ndarray  # uint8: 1 where the plane / output is the complement of its slot
    num_levels: int
    stats: dict = field(default_factory=dict)


def make_plan(arrays: NetlistArrays, *, head: str = "outputs") -> Plan:
    """Lower ``arrays`` (a validated netlist's view) to a :class:`Plan`. Input ``i`` lives in slot ``1 + i``; slot 0 is 0.

    ``head="outputs"``: the plan ends at the output literals (the kernel counts them itself);
    ``head="adder"``: an adder tree of gates reduces each class's outputs to its count planes.
    """
    n_in = arrays.num_inputs
    graph = _GateGraph(n_in)
    lits = np.concatenate([np.zeros(1, np.int64), 2 * np.arange(1, n_in + 1, dtype=np.int64)])
    # lits[1 + node] is the literal of netlist node ``node``; index 0 unused.
    node_lit = np.empty(n_in + arrays.num_gates, dtype=np.int64)
    node_lit[:n_in] = 2 * np.arange(1, n_in + 1, dtype=np.int64)
    offset = n_in
    for gate, in_a, in_b in arrays.layers:
        n = gate.shape[0]
        if n:
            node_lit[offset:offset + n] = graph.gates(
                gate.astype(np.int64), node_lit[in_a.astype(np.int64)], node_lit[in_b.astype(np.int64)]
            )
        offset += n
    del lits
    gates_after_folding = graph.num_nodes - 1 - n_in
    k = arrays.group_size
    num_planes = max(1, int(k).bit_length())
    out_lits = node_lit[arrays.outputs.astype(np.int64)].reshape(arrays.num_classes, k)
    if head == "adder":
        heads = np.stack([graph.popcount(out_lits[c], num_planes) for c in range(arrays.num_classes)])
    elif head == "outputs":
        heads = out_lits
    else:
        raise ValueError(f"head = {head!r}, expected 'adder' or 'outputs'")

    op = np.concatenate(graph.op) if graph.op else np.zeros(0, np.int64)
    gx = np.concatenate(graph.x) if graph.x else np.zeros(0, np.int64)
    gy = np.concatenate(graph.y) if graph.y else np.zeros(0, np.int64)
    first_gate = 1 + n_in
    n_nodes = graph.num_nodes
    # Dead-gate removal: walk the gates backwards (each gate's inputs have smaller ids).
    live = np.zeros(n_nodes, dtype=bool)
    live[heads.reshape(-1) >> 1] = True
    live[0] = True
    for node in range(n_nodes - 1, first_gate - 1, -1):
        if live[node]:
            j = node - first_gate
            live[gx[j]] = True
            live[gy[j]] = True
    gate_live = live[first_gate:]
    # Levels (gates come in topological order).
    level = np.zeros(n_nodes, dtype=np.int64)
    ids = np.flatnonzero(gate_live)
    _levels_in_order(level, ids + first_gate, gx[ids], gy[ids])
    num_levels = int(level.max()) if ids.size else 0
    # Last level at which each node is read; planes are read after the last level.
    last_use = np.full(n_nodes, -1, dtype=np.int64)
    np.maximum.at(last_use, gx[ids], level[ids + first_gate])
    np.maximum.at(last_use, gy[ids], level[ids + first_gate])
    last_use[heads.reshape(-1) >> 1] = num_levels + 1
    last_use[0] = num_levels + 1

    slot = np.full(n_nodes, -1, dtype=np.int64)
    slot[: 1 + n_in] = np.arange(1 + n_in)
    order = np.argsort(level[ids + first_gate], kind="stable")
    gate_nodes = ids[order] + first_gate
    gate_levels = level[gate_nodes]
    bounds = np.searchsorted(gate_levels, np.arange(1, num_levels + 2))
    # Nodes grouped by last use, so slots are freed level by level.
    holders = np.concatenate([np.arange(1 + n_in), gate_nodes])
    by_last = holders[np.argsort(last_use[holders], kind="stable")]
    last_sorted = last_use[by_last]
    free: list[int] = []
    next_slot = 1 + n_in
    seg_rows, segments = [], []
    row = 0
    for lev in range(1, num_levels + 1):
        lo, hi = np.searchsorted(last_sorted, [lev - 1, lev])  # last used at level lev - 1 (or never)
        if lev == 1:
            lo = 0
        free.extend(slot[by_last[lo:hi]].tolist())
        nodes = gate_nodes[bounds[lev - 1]:bounds[lev]]
        # Group by op for one loop per segment; within an op, by first input (memory locality).
        j = nodes - first_gate
        nodes = nodes[np.lexsort((gx[j], op[j]))]
        j = nodes - first_gate
        take = min(len(free), nodes.size)
        new = free[len(free) - take:]
        del free[len(free) - take:]
        extra = nodes.size - take
        new_slots = np.array(new + list(range(next_slot, next_slot + extra)), dtype=np.int64)
        next_slot += extra
        slot[nodes] = new_slots
        rows = np.stack([new_slots, slot[gx[j]], slot[gy[j]]], axis=1)
        seg_rows.append(rows)
        ops_here = op[j]
        starts = np.flatnonzero(np.r_[True, ops_here[1:] != ops_here[:-1]])
        ends = np.r_[starts[1:], ops_here.size]
        for s, e in zip(starts, ends):
            segments.append((int(ops_here[s]), row + int(s), row + int(e)))
        row += nodes.size
    rows = np.concatenate(seg_rows) if seg_rows else np.zeros((0, 3), np.int64)
    assert (rows >= 0).all()
    op_counts = np.bincount(op[ids], minlength=4) if ids.size else np.zeros(4, np.int64)
    stats = {
        "gates_in": arrays.num_gates,
        "gates_after_folding": int(gates_after_folding),
        "gates_live": int(ids.size),
        "net_gates_live": int(np.count_nonzero(gate_live[:gates_after_folding])),
        "levels": num_levels,
        "slots": int(next_slot),
        "ops": {name: int(c) for name, c in zip(OP_NAMES, op_counts)},
    }
    return Plan(
        num_inputs=n_in,
        num_classes=arrays.num_classes,
        num_planes=num_planes,
        num_slots=int(next_slot),
        segments=np.asarray(segments, dtype=np.int32).reshape(-1, 3),
        rows=rows.astype(np.int32),
        head=head,
        head_slots=slot[heads >> 1].astype(np.int32),
        head_neg=(heads & 1).astype(np.uint8),
        num_levels=num_levels,
        stats=stats,
    )


def _levels_in_order(level: np.ndarray, nodes: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
    """level[n] = 1 + max(level[x], level[y]) for nodes in topological (increasing id) order."""
    # Process in waves: a node whose inputs are all settled can be done in one vectorised step.
    pending = np.ones(nodes.size, dtype=bool)
    done = np.zeros(level.size, dtype=bool)
    done[: int(nodes.min()) if nodes.size else level.size] = True
    done[~np.isin(np.arange(level.size), nodes)] = True
    while pending.any():
        idx = np.flatnonzero(pending)
        ready = idx[done[xs[idx]] & done[ys[idx]]]
        level[nodes[ready]] = 1 + np.maximum(level[xs[ready]], level[ys[ready]])
        done[nodes[ready]] = True
        pending[ready] = False


def run_plan_numpy(plan: Plan, packed_inputs: np.ndarray) -> np.ndarray:
    """Reference execution of a plan on packed inputs uint64 (num_inputs, W): int64 counts (W*64, C).

    Slow (numpy); used by tests to check a plan independently of the compiled kernels.
    """
    words = packed_inputs.shape[1]
    act = np.zeros((plan.num_slots, words), dtype=np.uint64)
    act[1:1 + plan.num_inputs] = packed_inputs
    for op, lo, hi in plan.segments:
        out, a, b = plan.rows[lo:hi, 0], plan.rows[lo:hi, 1], plan.rows[lo:hi, 2]
        va, vb = act[a], act[b]
        if op == OP_AND:
            act[out] = va & vb
        elif op == OP_ANDN:
            act[out] = va & ~vb
        elif op == OP_OR:
            act[out] = va | vb
        else:
            act[out] = va ^ vb
    counts = np.zeros((words * 64, plan.num_classes), dtype=np.int64)
    shifts = np.arange(64, dtype=np.uint64)
    for c in range(plan.num_classes):
        for j in range(plan.head_slots.shape[1]):
            word = act[plan.head_slots[c, j]]
            if plan.head_neg[c, j]:
                word = ~word
            bits = ((word[:, None] >> shifts[None, :]) & np.uint64(1)).reshape(-1).astype(np.int64)
            counts[:, c] += bits << j if plan.head == "adder" else bits
    return counts
