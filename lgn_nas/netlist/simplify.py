"""Exact netlist simplification and the unused-gate measure.

:func:`simplify` makes one forward pass in topological order in which every node is reduced to a
*literal*: a constant, or (node, negated) where the node is an input or a canonical two-input gate.
Per gate, with its inputs already reduced:

- constant folding: an input that is a constant restricts the gate's truth table;
- wire collapse: pass-through gates (A, B), NOT gates and gates whose two inputs are the same node
  become a literal of their source, so consumers and outputs are rewired to it;
- negation absorption: a negated input is folded into the reading gate's truth table (this subsumes
  double-negation collapse: NOT(NOT x) is x, AND(NOT x, y) becomes gate NOT_A_AND_B on x);
- structural hashing: each remaining gate is normalised (inputs sorted, the gate id mirrored for
  asymmetric gates, and complemented so that out(0, 0) = 0, e.g. NAND is stored as AND, negated) and
  merged with an earlier identical gate.

Because every gate sees fully reduced inputs, one pass reaches the fixed point of these rules. Then
gates unreachable from the outputs are dropped, the survivors are re-levelised (layer = 1 + max layer
of the gate inputs, empty layers vanish) and renumbered. Outputs keep their order; an output that
needs a node's complement, a negated input or a constant gets a driver gate (NOT / complemented copy /
FALSE or TRUE reading node 0). The result never has more gates than the input net, and
``evaluate_bits`` is preserved exactly for every input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..gates import FALSE, GATE_XOR_BASIS, TRUE

if TYPE_CHECKING:  # pragma: no cover
    from .ir import Netlist

__all__ = ["simplify", "unused_gate_mask", "SIMPLIFY_STAT_KEYS"]

NOT_A = 12

SIMPLIFY_STAT_KEYS = (
    "gates_before",
    "gates_after",
    "constant_folded",
    "wires_collapsed",
    "duplicates_merged",
    "dead_removed",
    "gates_kept",
    "drivers_added",
    "layers_before",
    "layers_after",
    "depth_before",
    "depth_after",
)

# Truth tables as 4-bit ints: bit 3 = out(0,0), bit 2 = out(0,1), bit 1 = out(1,0), bit 0 = out(1,1).


def _negate_a(f: np.ndarray) -> np.ndarray:
    return ((f & 0b0011) << 2) | ((f >> 2) & 0b0011)


def _negate_b(f: np.ndarray) -> np.ndarray:
    return ((f & 0b0101) << 1) | ((f >> 1) & 0b0101)


def _restrict_a(f: np.ndarray, value: np.ndarray) -> np.ndarray:
    """f(value, b), written as a two-input table that ignores a."""
    row = np.where(value == 0, (f >> 2) & 0b11, f & 0b11)
    return (row << 2) | row


def _restrict_b(f: np.ndarray, value: np.ndarray) -> np.ndarray:
    """f(a, value), written as a two-input table that ignores b."""
    col = np.where(value == 0, f & 0b1010, (f & 0b0101) << 1)
    return col | (col >> 1)


def _diagonal(f: np.ndarray) -> np.ndarray:
    """f(a, a), written as a two-input table that ignores b."""
    return ((f >> 3) & 1) * 0b1100 | (f & 1) * 0b0011


def _swap(f: np.ndarray) -> np.ndarray:
    """g with g(a, b) = f(b, a)."""
    return (f & 0b1001) | ((f & 0b0100) >> 1) | ((f & 0b0010) << 1)


def _depends_a(f: np.ndarray) -> np.ndarray:
    return ((f >> 2) & 0b11) != (f & 0b11)


def _depends_b(f: np.ndarray) -> np.ndarray:
    return ((f >> 1) & 0b0101) != (f & 0b0101)


_CONSTANT, _WIRE, _DUPLICATE, _CANONICAL = 0, 1, 2, 3


@dataclass
class _Reduction:
    """Literal of every node plus the canonical gates, from one forward pass."""

    lit_var: np.ndarray  # int64 (num_nodes,): source node, or -1 for a constant
    lit_val: np.ndarray  # int64 (num_nodes,): constant value, or 1 if the source is negated
    canon_f: np.ndarray  # int64 (num_nodes,): canonical truth table of canonical gates (out(0,0) = 0)
    canon_a: np.ndarray  # int64 (num_nodes,): first input of canonical gates (canon_a < canon_b)
    canon_b: np.ndarray
    category: np.ndarray  # int8 (num_gates,): _CONSTANT, _WIRE, _DUPLICATE or _CANONICAL


def _reduce(netlist: "Netlist") -> _Reduction:
    n_in, n_nodes = netlist.num_inputs, netlist.num_nodes
    lit_var = np.full(n_nodes, -1, dtype=np.int64)
    lit_var[:n_in] = np.arange(n_in)
    lit_val = np.zeros(n_nodes, dtype=np.int64)
    canon_f = np.full(n_nodes, -1, dtype=np.int64)
    canon_a = np.full(n_nodes, -1, dtype=np.int64)
    canon_b = np.full(n_nodes, -1, dtype=np.int64)
    category = np.zeros(netlist.num_gates, dtype=np.int8)
    table: dict[tuple[int, int, int], int] = {}

    for offset, layer in zip(netlist.layer_offsets, netlist.layers):
        n = len(layer)
        if n == 0:
            continue
        ids = np.arange(offset, offset + n, dtype=np.int64)
        f = layer.gate.astype(np.int64)
        va, na = lit_var[layer.in_a], lit_val[layer.in_a]
        vb, nb = lit_var[layer.in_b], lit_val[layer.in_b]
        const_a, const_b = va < 0, vb < 0
        f = np.where(~const_a & (na == 1), _negate_a(f), f)
        f = np.where(~const_b & (nb == 1), _negate_b(f), f)
        f = np.where(const_a, _restrict_a(f, na), f)
        f = np.where(const_b, _restrict_b(f, nb), f)
        same = ~const_a & ~const_b & (va == vb)
        f = np.where(same, _diagonal(f), f)
        dep_a, dep_b = _depends_a(f), _depends_b(f)
        f00 = (f >> 3) & 1

        is_const = ~dep_a & ~dep_b
        lit_val[ids[is_const]] = f[is_const] & 1
        only_a, only_b = dep_a & ~dep_b, dep_b & ~dep_a
        lit_var[ids[only_a]], lit_val[ids[only_a]] = va[only_a], f00[only_a]
        lit_var[ids[only_b]], lit_val[ids[only_b]] = vb[only_b], f00[only_b]
        rel = ids - offset
        category[(offset - n_in) + rel[is_const]] = _CONSTANT
        category[(offset - n_in) + rel[only_a | only_b]] = _WIRE

        both = np.flatnonzero(dep_a & dep_b)
        if both.size:
            fb, ab, bb = f[both], va[both], vb[both]
            swap = ab > bb
            fb = np.where(swap, _swap(fb), fb)
            ab, bb = np.where(swap, bb, ab), np.where(swap, ab, bb)
            neg = (fb >> 3) & 1
            fb = np.where(neg == 1, fb ^ 0b1111, fb)
            gids = ids[both]
            nodes = np.empty(both.size, dtype=np.int64)
            for i, key in enumerate(zip(fb.tolist(), ab.tolist(), bb.tolist())):
                nodes[i] = table.setdefault(key, int(gids[i]))
            created = nodes == gids
            canon_f[gids[created]] = fb[created]
            canon_a[gids[created]] = ab[created]
            canon_b[gids[created]] = bb[created]
            lit_var[gids], lit_val[gids] = nodes, neg
            category[gids - n_in] = np.where(created, _CANONICAL, _DUPLICATE)
    return _Reduction(lit_var, lit_val, canon_f, canon_a, canon_b, category)


def simplify(netlist: "Netlist") -> tuple["Netlist", dict]:
    """Return ``(simplified, stats)``: an equivalent netlist with no more gates, and what changed.

    ``stats`` holds ``gates_before``, ``gates_after``, ``layers_before``/``after``, ``depth_before``/
    ``after`` and, per original gate, the first rule that removed it: ``constant_folded``,
    ``wires_collapsed`` (pass-through, NOT, same-input gates), ``duplicates_merged``, ``dead_removed``;
    ``gates_kept`` survived; ``drivers_added`` counts the output drivers created (see the module
    docstring). ``gates_before == constant_folded + wires_collapsed + duplicates_merged + dead_removed
    + gates_kept`` and ``gates_after == gates_kept + drivers_added``. The input netlist is unchanged.
    """
    from .ir import Netlist, NetlistLayer

    red = _reduce(netlist)
    n_in, n_nodes = netlist.num_inputs, netlist.num_nodes
    is_canon = red.canon_f >= 0

    # Nodes needed by the outputs, through canonical gates (inputs of a canonical gate come first).
    out_var, out_val = red.lit_var[netlist.outputs], red.lit_val[netlist.outputs]
    needed = np.zeros(n_nodes, dtype=bool)
    needed[out_var[out_var >= 0]] = True
    for offset, layer in reversed(list(zip(netlist.layer_offsets, netlist.layers))):
        ids = np.arange(offset, offset + len(layer))
        ids = ids[needed[ids] & is_canon[ids]]
        needed[red.canon_a[ids]] = True
        needed[red.canon_b[ids]] = True
    kept = np.flatnonzero(needed & is_canon)

    # Polarity: store a gate complemented when the outputs want only its complement.
    gate_out = out_var >= n_in
    demand_pos = np.zeros(n_nodes, dtype=bool)
    demand_neg = np.zeros(n_nodes, dtype=bool)
    demand_pos[out_var[gate_out & (out_val == 0)]] = True
    demand_neg[out_var[gate_out & (out_val == 1)]] = True
    stored_neg = demand_neg & ~demand_pos
    needs_complement = np.flatnonzero(demand_neg & demand_pos)

    level = np.zeros(n_nodes, dtype=np.int64)
    for offset, layer in zip(netlist.layer_offsets, netlist.layers):
        ids = kept[(kept >= offset) & (kept < offset + len(layer))]
        level[ids] = 1 + np.maximum(level[red.canon_a[ids]], level[red.canon_b[ids]])

    f = red.canon_f[kept]
    f = np.where(stored_neg[red.canon_a[kept]], _negate_a(f), f)
    f = np.where(stored_neg[red.canon_b[kept]], _negate_b(f), f)
    kept_gate_pos = f  # value of the gate in positive polarity
    kept_gate = np.where(stored_neg[kept], f ^ 0b1111, f)
    comp_rows = np.searchsorted(kept, needs_complement)

    neg_inputs = np.unique(out_var[(out_var >= 0) & (out_var < n_in) & (out_val == 1)])
    const_values = np.unique(out_val[out_var < 0])

    # New gates: (level, group, key) orders them; group 0 = constants, 1 = input NOTs, 2 = gates.
    parts = [
        # level, group, key, sub, gate, src_a, src_b (source ids in the old numbering)
        (np.ones(const_values.size, np.int64), 0, const_values, 0,
         np.where(const_values == 1, TRUE, FALSE), np.zeros(const_values.size, np.int64),
         np.zeros(const_values.size, np.int64)),
        (np.ones(neg_inputs.size, np.int64), 1, neg_inputs, 0,
         np.full(neg_inputs.size, NOT_A), neg_inputs, neg_inputs),
        (level[kept], 2, kept, 0, kept_gate, red.canon_a[kept], red.canon_b[kept]),
        (level[needs_complement], 2, needs_complement, 1, kept_gate_pos[comp_rows] ^ 0b1111,
         red.canon_a[needs_complement], red.canon_b[needs_complement]),
    ]
    cols = [np.concatenate([np.broadcast_to(np.asarray(p[k], dtype=np.int64), p[0].shape) for p in parts])
            for k in range(7)]
    lvl, group, key, sub, gate, src_a, src_b = cols
    order = np.lexsort((sub, key, group, lvl))
    new_id = np.empty(order.size, dtype=np.int64)
    new_id[order] = n_in + np.arange(order.size)

    # Old id -> new id for inputs and kept gates; ids of the output drivers.
    sizes = [p[0].size for p in parts]
    starts = np.cumsum([0] + sizes)
    remap = np.full(n_nodes, -1, dtype=np.int64)
    remap[:n_in] = np.arange(n_in)
    remap[kept] = new_id[starts[2]:starts[3]]
    const_id = np.full(2, -1, dtype=np.int64)
    const_id[const_values] = new_id[starts[0]:starts[1]]
    not_input_id = np.full(n_in, -1, dtype=np.int64)
    not_input_id[neg_inputs] = new_id[starts[1]:starts[2]]
    complement_id = np.full(n_nodes, -1, dtype=np.int64)
    complement_id[needs_complement] = new_id[starts[3]:starts[4]]

    outputs = np.empty_like(netlist.outputs)
    is_c = out_var < 0
    outputs[is_c] = const_id[out_val[is_c]]
    is_in = (out_var >= 0) & (out_var < n_in)
    in_vars = out_var[is_in]
    outputs[is_in] = np.where(out_val[is_in] == 1, not_input_id[in_vars], in_vars)
    g_vars, g_vals = out_var[gate_out], out_val[gate_out]
    outputs[gate_out] = np.where(g_vals == stored_neg[g_vars].astype(np.int64), remap[g_vars], complement_id[g_vars])

    gate_sorted = gate[order].astype(np.uint8)
    a_sorted, b_sorted = remap[src_a[order]], remap[src_b[order]]  # sources are inputs or kept gates
    lvl_sorted = lvl[order]
    bounds = np.flatnonzero(np.diff(lvl_sorted)) + 1
    layers = [
        NetlistLayer(g, a, b)
        for g, a, b in zip(np.split(gate_sorted, bounds), np.split(a_sorted, bounds), np.split(b_sorted, bounds))
    ] if order.size else []

    result = Netlist(
        netlist.encoding,
        layers,
        outputs,
        num_classes=netlist.num_classes,
        tau=netlist.tau,
        metadata=dict(netlist.metadata),
    )
    counts = np.bincount(red.category, minlength=4)
    n_dead = int((is_canon & ~needed).sum())
    stats = {
        "gates_before": netlist.num_gates,
        "gates_after": result.num_gates,
        "constant_folded": int(counts[_CONSTANT]),
        "wires_collapsed": int(counts[_WIRE]),
        "duplicates_merged": int(counts[_DUPLICATE]),
        "dead_removed": n_dead,
        "gates_kept": int(kept.size),
        "drivers_added": int(const_values.size + neg_inputs.size + needs_complement.size),
        "layers_before": netlist.num_layers,
        "layers_after": result.num_layers,
        "depth_before": netlist.logic_depth,
        "depth_after": result.logic_depth,
    }
    return result, stats


def unused_gate_mask(netlist: "Netlist") -> np.ndarray:
    """Bool (num_gates,): True for gates that influence no output.

    A gate is unused when it is constant after folding (see :func:`simplify`), or when no output can be
    reached from it along inputs that non-constant gates actually depend on (e.g. the ignored input of
    a pass-through gate is not a use).
    """
    red = _reduce(netlist)
    n_in = netlist.num_inputs
    const = red.lit_var < 0
    needed = np.zeros(netlist.num_nodes, dtype=bool)
    needed[netlist.outputs] = True
    for offset, layer in reversed(list(zip(netlist.layer_offsets, netlist.layers))):
        ids = np.arange(offset, offset + len(layer))
        live = needed[ids] & ~const[ids]
        basis = GATE_XOR_BASIS[layer.gate]
        dep_a = (basis[:, 1] | basis[:, 3]).astype(bool)
        dep_b = (basis[:, 2] | basis[:, 3]).astype(bool)
        needed[layer.in_a[live & dep_a]] = True
        needed[layer.in_b[live & dep_b]] = True
    return ~(needed[n_in:] & ~const[n_in:])
