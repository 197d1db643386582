"""Relaxations: how a discrete gate choice is made differentiable during training.

A relaxation turns parameters into choice weights in two flavours (:func:`categorical` and
:func:`bernoulli`, plain functions of the relaxation's two flags, so TorchScript compiles them):

* ``categorical``: logits over the 16 gates (``(..., 16)``) -> a weight per gate summing to 1;
* ``bernoulli``: independent logits (``(..., k)``) -> a probability per entry (used by the
  truth-table parametrisation, where each of the 4 truth-table outputs is its own binary choice).

Registered relaxations (``RELAXATIONS``, chosen by name, as timm chooses activations; each is a
:class:`Relaxation`: with or without noise, straight-through or not):

* ``softmax``: the 2022 mixture, ``softmax(logits / temperature)``.
* ``gumbel_soft``: Gumbel-softmax, ``softmax((logits + G) / temperature)`` with G ~ Gumbel(0, 1).
* ``gumbel_st``: straight-through Gumbel: the forward pass uses the hard argmax of logits + G, the
  backward pass the Gumbel-softmax gradient (Kim 2023; Yousefi et al. 2025).
* ``hard_st``: straight-through without noise: hard argmax forward, softmax gradient backward.

In eval mode every relaxation returns the one-hot argmax (or the hard threshold), deterministically,
so an eval-mode network computes exactly its discrete circuit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

__all__ = ["Relaxation", "RELAXATIONS", "STOCHASTIC_RELAXATIONS", "list_relaxations", "check_relaxation",
           "get_relaxation", "categorical", "bernoulli", "relax_categorical", "relax_bernoulli"]


def _gumbel_like(x: torch.Tensor) -> torch.Tensor:
    u = torch.rand_like(x).clamp_(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def _logistic_like(x: torch.Tensor) -> torch.Tensor:
    u = torch.rand_like(x).clamp_(1e-10, 1.0 - 1e-7)
    return torch.log(u) - torch.log1p(-u)


def one_hot_argmax(logits: torch.Tensor) -> torch.Tensor:
    """One-hot of the argmax along the last dimension, in the dtype of ``logits``."""
    index = logits.argmax(dim=-1, keepdim=True)
    return torch.zeros_like(logits).scatter_(-1, index, 1.0)


def hard_threshold(logits: torch.Tensor) -> torch.Tensor:
    """1 where the logit is positive, else 0, in the dtype of ``logits``."""
    return (logits > 0).to(logits.dtype)


def _straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    return hard + (soft - soft.detach())  # exactly ``hard`` in value, ``soft``'s gradient


@dataclass(frozen=True)
class Relaxation:
    """A relaxation as two choices: ``noise`` (Gumbel noise on the logits, logistic for the
    independent entries: a sample, not the expectation) and ``straight_through`` (the hard choice
    forward, the soft choice's gradient backward). The four registered ones are the four combinations."""

    noise: bool
    straight_through: bool
    description: str = ""


RELAXATIONS: Dict[str, Relaxation] = {
    "softmax": Relaxation(False, False, "softmax(logits / temperature), the 2022 mixture"),
    "gumbel_soft": Relaxation(True, False, "softmax((logits + Gumbel) / temperature)"),
    "gumbel_st": Relaxation(True, True, "argmax(logits + Gumbel) forward, Gumbel-softmax gradient"),
    "hard_st": Relaxation(False, True, "argmax(logits) forward, softmax gradient"),
}
STOCHASTIC_RELAXATIONS: Tuple[str, ...] = tuple(name for name, r in RELAXATIONS.items() if r.noise)


def list_relaxations() -> List[str]:
    """Names accepted wherever a relaxation is chosen."""
    return list(RELAXATIONS)


def check_relaxation(name: str) -> str:
    """Return ``name`` if it is a known relaxation, else raise ``ValueError`` listing the known ones."""
    get_relaxation(name)
    return name


def get_relaxation(name: str) -> Relaxation:
    """The registered relaxation ``name`` (``ValueError`` listing the known ones otherwise)."""
    try:
        return RELAXATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown relaxation {name!r}: expected one of {', '.join(RELAXATIONS)}") from None


def categorical(logits: torch.Tensor, noise: bool, straight_through: bool, temperature: float,
                training: bool) -> torch.Tensor:
    """Choice weights over the last dimension for a relaxation's two flags; the one-hot argmax when
    not training. TorchScript compiles it (the layers pass their relaxation's flags)."""
    if not training:
        return one_hot_argmax(logits)
    if noise:
        logits = logits + _gumbel_like(logits)
    soft = F.softmax(logits / temperature, dim=-1)
    return _straight_through(one_hot_argmax(logits), soft) if straight_through else soft


def bernoulli(logits: torch.Tensor, noise: bool, straight_through: bool, temperature: float,
              training: bool) -> torch.Tensor:
    """Independent on-probabilities for a relaxation's two flags; ``logits > 0`` when not training."""
    if not training:
        return hard_threshold(logits)
    if noise:
        logits = logits + _logistic_like(logits)
    soft = torch.sigmoid(logits / temperature)
    return _straight_through(hard_threshold(logits), soft) if straight_through else soft


def relax_categorical(logits: torch.Tensor, relaxation: str, temperature: float, training: bool) -> torch.Tensor:
    """Gate weights over the last dimension under relaxation ``relaxation``; the one-hot argmax when not training."""
    r = get_relaxation(relaxation)
    return categorical(logits, r.noise, r.straight_through, temperature, training)


def relax_bernoulli(logits: torch.Tensor, relaxation: str, temperature: float, training: bool) -> torch.Tensor:
    """Independent on-probabilities under relaxation ``relaxation``; ``logits > 0`` when not training."""
    r = get_relaxation(relaxation)
    return bernoulli(logits, r.noise, r.straight_through, temperature, training)
