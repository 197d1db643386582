"""Parametrisations: which numbers a layer learns per gate, and how they become coefficients.

Every two-input gate relaxation lives in a 4-dimensional space: ``c1 + ca*a + cb*b + cab*a*b``.
A parametrisation maps a layer's weight tensor (``(*shape, num_params)``) to those coefficients
(``(*shape, 4)``) through a relaxation, and reads off the discrete gate ids.

* ``raw16``: 16 logits per gate, one per Boolean function (Petersen et al. 2022); the coefficients
  are the relaxed gate weights times the 16 x 4 basis.
* ``truth_table``: 4 logits per gate, one per truth-table entry out(a, b) for ab = 00, 01, 10, 11,
  each relaxed as an independent binary choice (the input-wise form of the "Light" LGN, arXiv
  2510.03250): 4x fewer parameters and no 16-way softmax.

Each is a :class:`Parametrization` in the registry ``PARAMETRIZATIONS``: its learned values per gate
and whether they are one categorical choice (``raw16``) or independent entries (``truth_table``), which
is all the coefficient map needs (:func:`coefficients`, compiled by TorchScript from the layers). The
initialisations are the registry ``INITS`` (``residual``, ``gaussian``; Python only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..gates import NUM_GATES, PASS_A
from .relaxations import bernoulli, categorical, get_relaxation

__all__ = [
    "Parametrization", "PARAMETRIZATIONS", "INITS", "list_parametrizations", "check_parametrization",
    "get_parametrization", "check_init", "num_params", "init_weight", "coefficients", "gate_coefficients",
    "discrete_ids", "gate_ids", "logits_for_gate_ids",
]

# Residual initialisation (Petersen et al. 2024): logit 5 on the pass-through gate "A", P(A) ~= 0.91.
RESIDUAL_LOGIT = 5.0
# For truth_table, -z, -z, +z, +z on the entries of "A" (0, 0, 1, 1) gives P(A) = sigmoid(z)^4 = 0.91 too.
RESIDUAL_TRUTH_LOGIT = math.log(0.91 ** 0.25 / (1 - 0.91 ** 0.25))


@dataclass(frozen=True)
class Parametrization:
    """What a layer learns per gate: ``num_params`` logits, one ``categorical`` choice among the 16
    gates (relaxed by the categorical relaxation) or independent truth-table entries (each relaxed as
    a binary choice); ``residual_logit`` is the margin of the residual initialisation's gate 'A'."""

    num_params: int
    categorical: bool
    residual_logit: float
    description: str = ""


PARAMETRIZATIONS: Dict[str, Parametrization] = {
    "raw16": Parametrization(NUM_GATES, True, RESIDUAL_LOGIT, "16 logits per gate, one per Boolean function"),
    "truth_table": Parametrization(4, False, RESIDUAL_TRUTH_LOGIT, "4 logits per gate, one per truth-table entry"),
}


def list_parametrizations() -> List[str]:
    """Names accepted wherever a parametrisation is chosen."""
    return list(PARAMETRIZATIONS)


def get_parametrization(name: str) -> Parametrization:
    """The registered parametrisation ``name`` (``ValueError`` listing the known ones otherwise)."""
    try:
        return PARAMETRIZATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown parametrization {name!r}: expected one of {', '.join(PARAMETRIZATIONS)}") from None


def check_parametrization(name: str) -> str:
    """Return ``name`` if known, else raise ``ValueError`` listing the known ones."""
    get_parametrization(name)
    return name


def num_params(name: str) -> int:
    """Learned values per gate for parametrisation ``name``."""
    return get_parametrization(name).num_params


def _residual(p: Parametrization, shape: Tuple[int, ...], generator: Optional[torch.Generator]) -> torch.Tensor:
    """Every gate starts as the pass-through 'A' by a margin of ``residual_logit`` (on any default
    device, ``meta`` included)."""
    return _logits(torch.full(shape, PASS_A), p, float(p.residual_logit), torch.get_default_dtype())


def _gaussian(p: Parametrization, shape: Tuple[int, ...], generator: Optional[torch.Generator]) -> torch.Tensor:
    """Standard normal logits, drawn on the CPU (where the generator lives), then on the default device."""
    device = torch.get_default_device()
    with torch.device("cpu"):
        return torch.randn(*shape, p.num_params, generator=generator).to(device)


INITS: Dict[str, Callable[[Parametrization, Tuple[int, ...], Optional[torch.Generator]], torch.Tensor]] = {
    "residual": _residual,
    "gaussian": _gaussian,
}


def check_init(name: str) -> str:
    """Return ``name`` if it is a known initialisation, else raise ``ValueError`` listing them."""
    if name not in INITS:
        raise ValueError(f"unknown init {name!r}: expected one of {', '.join(INITS)}")
    return name


def init_weight(
        name: str,
        shape: Tuple[int, ...],
        init: str,
        *,
        generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """A new weight tensor of shape ``(*shape, num_params(name))`` initialised by ``init``."""
    p = get_parametrization(name)
    return INITS[check_init(init)](p, tuple(shape), generator)


def coefficients(
        weight: torch.Tensor,
        basis: torch.Tensor,
        is_categorical: bool,
        noise: bool,
        straight_through: bool,
        temperature: float,
        training: bool,
        noise_scale: float = 1.0,
) -> torch.Tensor:
    """Coefficients ``(*shape, 4)`` = (c1, ca, cb, cab) of each gate's relaxation, from the
    parametrisation's kind and the relaxation's flags and noise scale (what the layers call;
    TorchScript compiles it)."""
    if is_categorical:
        if not training:  # the argmax gate's coefficients, without a one-hot detour
            return basis[weight.argmax(dim=-1)]
        return categorical(weight, noise, straight_through, temperature, training, noise_scale) @ basis
    t = bernoulli(weight, noise, straight_through, temperature, training, noise_scale)
    t00 = t[..., 0]
    t01 = t[..., 1]
    t10 = t[..., 2]
    t11 = t[..., 3]
    return torch.stack([t00, t10 - t00, t01 - t00, t00 - t01 - t10 + t11], dim=-1)


def gate_coefficients(
        weight: torch.Tensor,
        basis: torch.Tensor,
        parametrization: str,
        relaxation: str,
        temperature: float,
        training: bool,
) -> torch.Tensor:
    """:func:`coefficients` by the strategies' names."""
    r = get_relaxation(relaxation)
    return coefficients(weight, basis, get_parametrization(parametrization).categorical, r.noise,
                        r.straight_through, temperature, training, r.noise_scale)


def discrete_ids(weight: torch.Tensor, is_categorical: bool) -> torch.Tensor:
    """The gate id (int64, ``weight.shape[:-1]``) each neuron keeps: the argmax of a categorical
    choice, or the id whose truth table is the entries with a positive logit."""
    if is_categorical:
        return weight.argmax(dim=-1)
    bits = (weight > 0).long()
    return (bits[..., 0] << 3) | (bits[..., 1] << 2) | (bits[..., 2] << 1) | bits[..., 3]


def gate_ids(weight: torch.Tensor, parametrization: str) -> torch.Tensor:
    """The gate id (int64, ``weight.shape[:-1]``) each neuron keeps after training."""
    return discrete_ids(weight, get_parametrization(parametrization).categorical)


def logits_for_gate_ids(ids: torch.Tensor, parametrization, *, logit: float,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Weights (``(*ids.shape, num_params)``) whose ``gate_ids`` are ``ids``: the inverse of ``gate_ids``.

    ``raw16``: ``logit`` on the kept gate, 0 on the other 15; ``truth_table``: ``+logit`` on the
    truth-table entries that are 1, ``-logit`` on those that are 0. A large ``logit`` makes the
    relaxed gate equal the discrete one (see ``lgn_nas.pretrained``). ``parametrization``: a name or
    a :class:`Parametrization`.
    """
    p = parametrization if isinstance(parametrization, Parametrization) else get_parametrization(parametrization)
    ids = torch.as_tensor(ids).long()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= NUM_GATES):
        raise ValueError(f"gate ids must lie in 0..{NUM_GATES - 1}, got {int(ids.min())}..{int(ids.max())}")
    if not float(logit) > 0:
        raise ValueError(f"logit must be > 0, got {logit!r}")
    return _logits(ids, p, float(logit), dtype)


def _logits(ids: torch.Tensor, p: Parametrization, logit: float, dtype: torch.dtype) -> torch.Tensor:
    if p.categorical:
        weight = torch.zeros(*ids.shape, NUM_GATES, dtype=dtype, device=ids.device)
        return weight.scatter_(-1, ids.unsqueeze(-1), logit)
    shifts = torch.tensor([3, 2, 1, 0], device=ids.device)  # entry 00 is the id's most significant bit (see gate_ids)
    bits = (ids.unsqueeze(-1) >> shifts) & 1
    return torch.where(bits.bool(), logit, -logit).to(dtype)
