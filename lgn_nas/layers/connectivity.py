"""Connectivity: which two outputs of the previous layer each neuron reads.

Registered schemes (chosen by name):

* ``random``: inputs drawn from repeated random permutations of the previous layer, so every input
  is read about equally often (each is read at least once when ``2 * out >= in``); a neuron never
  reads the same input twice when ``in >= 2``.
* ``unique``: like ``random``, and moreover no two neurons read the same unordered pair, and every
  input is read at least once when ``2 * out >= in``.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch

__all__ = ["CONNECTIVITIES", "list_connectivities", "make_connections", "check_connections"]

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


CONNECTIVITIES: Dict[str, Callable[..., Wiring]] = {
    "random": random_connections,
    "unique": unique_connections,
}


def list_connectivities() -> List[str]:
    """Names accepted by ``make_connections``."""
    return list(CONNECTIVITIES)


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
    if name not in CONNECTIVITIES:
        raise ValueError(f"unknown connectivity {name!r}: expected one of {', '.join(CONNECTIVITIES)}")
    for label, value in (("in_features", in_features), ("out_features", out_features)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}")
    device = torch.get_default_device()
    with torch.device("cpu"):
        in_a, in_b = CONNECTIVITIES[name](in_features, out_features, generator)
    return in_a.to(device), in_b.to(device)


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
