"""Connectivity: which two outputs of the previous layer each neuron reads.

Registered schemes (``CONNECTIVITIES``, chosen by name; each a :class:`Connectivity`):

* ``random``: inputs drawn from repeated random permutations of the previous layer, so every input
  is read about equally often (each is read at least once when ``2 * out >= in``); a neuron never
  reads the same input twice when ``in >= 2``.
* ``unique``: like ``random``, and moreover no two neurons read the same unordered pair, and every
  input is read at least once when ``2 * out >= in``.
* ``learnable``: each of a neuron's two inputs chooses among ``candidates`` wires during training
  (a learned distribution over them, relaxed like the gate choice) and keeps its argmax wire
  (Mommen et al. 2025, arXiv 2507.06173). The candidates (:func:`make_candidates`): column 0 is a
  ``random`` wiring, the other columns distinct further inputs drawn from permutation streams, so
  every input is a candidate about equally often and no gate input lists an input twice.

The fixed schemes have one candidate per gate input: their wiring.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

__all__ = ["Connectivity", "CONNECTIVITIES", "DEFAULT_CANDIDATES", "list_connectivities", "get_connectivity",
           "check_candidates", "make_connections", "make_candidates", "check_connections"]

# Candidate wires per gate input of connectivity "learnable" when none is given.
DEFAULT_CANDIDATES = 8

Wiring = Tuple[torch.Tensor, torch.Tensor]


def _permutation_stream(n: int, count: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    reps = -(-count // n)
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(reps)])[:count]


def _fix_self_pairs(in_a: torch.Tensor, in_b: torch.Tensor, n: int, generator: Optional[torch.Generator]) -> None:
    same = in_a == in_b
    if n > 1 and bool(same.any()):
        shift = torch.randint(1, n, (int(same.sum()),), generator=generator)
        in_b[same] = (in_b[same] + shift) % n


def random_connections(in_features: int, out_features: int, generator: Optional[torch.Generator] = None) -> Wiring:
    if in_features < 2:
        raise ValueError(
            f"connectivity 'random' needs in_features >= 2 (each neuron reads two inputs), got {in_features}")
    stream = _permutation_stream(in_features, 2 * out_features, generator)
    in_a, in_b = stream[0::2].clone(), stream[1::2].clone()
    _fix_self_pairs(in_a, in_b, in_features, generator)
    return in_a, in_b


def unique_connections(in_features: int, out_features: int, generator: Optional[torch.Generator] = None) -> Wiring:
    max_pairs = in_features * (in_features - 1) // 2
    if in_features < 2 or out_features > max_pairs:
        raise ValueError(
            f"connectivity 'unique' cannot wire {out_features} neurons to {in_features} inputs: "
            f"expected in_features >= 2 and out_features <= in_features * (in_features - 1) / 2 = {max_pairs}")
    n = in_features
    # First cover every input once (pairs of a permutation), then add fresh random pairs.
    perm = torch.randperm(n, generator=generator)
    cover = min(out_features, n // 2)
    lo = torch.minimum(perm[0:2 * cover:2], perm[1:2 * cover:2])
    hi = torch.maximum(perm[0:2 * cover:2], perm[1:2 * cover:2])
    codes = lo * n + hi
    if n % 2 == 1 and cover < out_features and cover == n // 2:
        last = perm[-1]
        other = perm[torch.randint(0, n - 1, (1,), generator=generator)]
        extra = torch.minimum(last, other) * n + torch.maximum(last, other)
        codes = torch.unique(torch.cat([codes, extra]))
    used = codes
    while used.numel() < out_features:
        need = out_features - used.numel()
        a = torch.randint(0, n, (2 * need + 16,), generator=generator)
        b = torch.randint(0, n, (2 * need + 16,), generator=generator)
        keep = a != b
        cand = torch.minimum(a, b)[keep] * n + torch.maximum(a, b)[keep]
        cand = torch.unique(cand)
        cand = cand[~torch.isin(cand, used)]
        cand = cand[torch.randperm(cand.numel(), generator=generator)][:need]
        used = torch.cat([used, cand])
    used = used[torch.randperm(used.numel(), generator=generator)]
    in_a, in_b = used // n, used % n
    # Randomise which side of each pair is "a" so asymmetric gates see both orders.
    flip = torch.rand(out_features, generator=generator) < 0.5
    return torch.where(flip, in_b, in_a), torch.where(flip, in_a, in_b)


def _distinct_rows(cand: torch.Tensor, n: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """``cand`` (rows of indices in 0..n-1, ``cand.shape[1] <= n``) with every row's entries distinct: a
    repeated entry (not the first of its value in column order, so column 0 is kept) is redrawn."""
    rows, k = cand.shape
    if k == 1:
        return cand
    if 2 * k > n:  # dense rows: column 0, then the other inputs in random order
        scores = torch.rand(rows, n, generator=generator)
        scores.scatter_(1, cand[:, :1], -1.0)
        return torch.cat([cand[:, :1], scores.argsort(dim=1)[:, 1:k]], dim=1)
    cand = cand.clone()
    while True:
        values, order = cand.sort(dim=1, stable=True)
        repeat_sorted = torch.zeros_like(values, dtype=torch.bool)
        repeat_sorted[:, 1:] = values[:, 1:] == values[:, :-1]
        if not bool(repeat_sorted.any()):
            return cand
        repeat = torch.zeros_like(repeat_sorted).scatter_(1, order, repeat_sorted)
        cand[repeat] = torch.randint(0, n, (int(repeat.sum()),), generator=generator)


def learnable_candidates(in_features: int, out_features: int, candidates: int,
                         generator: Optional[torch.Generator] = None) -> Wiring:
    """``(cand_a, cand_b)``, each ``(out_features, candidates)``: column 0 a ``random`` wiring, the
    rest distinct per row (see the module docstring)."""
    in_a, in_b = random_connections(in_features, out_features, generator)
    if candidates == 1:
        return in_a.unsqueeze(1), in_b.unsqueeze(1)
    columns = []
    for first in (in_a, in_b):
        rest = _permutation_stream(in_features, out_features * (candidates - 1), generator)
        cand = torch.cat([first.unsqueeze(1), rest.view(out_features, candidates - 1)], dim=1)
        columns.append(_distinct_rows(cand, in_features, generator))
    return columns[0], columns[1]


@dataclass(frozen=True)
class Connectivity:
    """A wiring scheme: ``wire(in_features, out_features, generator)`` draws a fixed wiring;
    ``learnable`` schemes instead draw candidates (:func:`make_candidates`) and learn which to keep."""

    wire: Callable[..., Wiring]
    learnable: bool = False
    description: str = ""


CONNECTIVITIES: Dict[str, Connectivity] = {
    "random": Connectivity(random_connections, False, "random permutations of the previous layer"),
    "unique": Connectivity(unique_connections, False, "random, and no input pair twice"),
    "learnable": Connectivity(random_connections, True, "learned among candidate wires, argmax kept"),
}


def list_connectivities() -> List[str]:
    """Names accepted by ``make_connections``."""
    return list(CONNECTIVITIES)


def get_connectivity(name: str) -> Connectivity:
    """The registered scheme ``name`` (``ValueError`` listing the known ones otherwise)."""
    try:
        return CONNECTIVITIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown connectivity {name!r}: expected one of {', '.join(CONNECTIVITIES)}") from None


def check_candidates(connectivity: str, candidates: Optional[int]) -> int:
    """The candidate count of a gate input under ``connectivity``: ``candidates`` (a positive int; only a
    learnable scheme takes more than 1), or its default (``DEFAULT_CANDIDATES`` / 1) for ``None``."""
    learnable = get_connectivity(connectivity).learnable
    if candidates is None:
        return DEFAULT_CANDIDATES if learnable else 1
    if not isinstance(candidates, int) or isinstance(candidates, bool) or candidates < 1:
        raise ValueError(f"candidates must be a positive int (candidate wires per gate input), got {candidates!r}")
    if candidates > 1 and not learnable:
        raise ValueError(f"candidates={candidates} needs a learnable connectivity: connectivity {connectivity!r} "
                         f"wires each gate input to one input (use connectivity='learnable', or candidates=1)")
    return candidates


def make_connections(
        name: str,
        in_features: int,
        out_features: int,
        *,
        generator: Optional[torch.Generator] = None,
) -> Wiring:
    """Wire ``out_features`` neurons to ``in_features`` inputs with scheme ``name`` (int64 index pairs).

    The draws run on the CPU (their loops read values, which a ``meta`` device cannot), and the wiring is
    returned on the default device, so models build inside ``with torch.device(...)`` too.
    """
    scheme = get_connectivity(name)
    _check_sizes(in_features, out_features)
    device = torch.get_default_device()
    with torch.device("cpu"):
        in_a, in_b = scheme.wire(in_features, out_features, generator)
    return in_a.to(device), in_b.to(device)


def _check_sizes(in_features: int, out_features: int) -> None:
    for label, value in (("in_features", in_features), ("out_features", out_features)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}")


def make_candidates(
        name: str,
        in_features: int,
        out_features: int,
        candidates: Optional[int] = None,
        *,
        generator: Optional[torch.Generator] = None,
) -> Wiring:
    """Candidate wires ``(cand_a, cand_b)``, int64 ``(out_features, candidates)``, of scheme ``name``.

    A fixed scheme's candidates are its wiring (one column); ``learnable`` draws ``candidates`` per gate
    input (default ``DEFAULT_CANDIDATES``), which must lie in ``1..in_features``. On the default device
    like :func:`make_connections`.
    """
    count = check_candidates(name, candidates)
    _check_sizes(in_features, out_features)
    if count > in_features:
        raise ValueError(f"candidates={count} exceeds the {in_features} inputs of the layer: expected "
                         f"1 <= candidates <= {in_features}")
    if not get_connectivity(name).learnable:
        in_a, in_b = make_connections(name, in_features, out_features, generator=generator)
        return in_a.unsqueeze(1), in_b.unsqueeze(1)
    device = torch.get_default_device()
    with torch.device("cpu"):
        cand_a, cand_b = learnable_candidates(in_features, out_features, count, generator)
    return cand_a.to(device), cand_b.to(device)


def check_connections(in_a: torch.Tensor, in_b: torch.Tensor, in_features: int) -> None:
    """Raise ``ValueError`` unless both index tensors are 1-D int64 of equal length within range."""
    for label, idx in (("in_a", in_a), ("in_b", in_b)):
        if idx.dim() != 1 or idx.dtype != torch.int64:
            raise ValueError(f"{label} must be a 1-D int64 tensor, got shape {tuple(idx.shape)} and {idx.dtype}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= in_features):
            raise ValueError(
                f"{label} reads input {int(idx.max()) if int(idx.max()) >= in_features else int(idx.min())}, "
                f"expected indices in 0..{in_features - 1}")
    if in_a.numel() != in_b.numel():
        raise ValueError(f"in_a and in_b differ in length: {in_a.numel()} vs {in_b.numel()}")

