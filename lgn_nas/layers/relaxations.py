"""Relaxations: how a discrete gate choice is made differentiable during training.

A relaxation turns parameters into choice weights in two flavours (:func:`categorical` and
:func:`bernoulli`, plain functions of the relaxation's two flags and its noise scale, so TorchScript
compiles them):

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
* ``kim_gumbel``: the scaled-Gumbel sampling of Kim 2023 ("Deep Stochastic Logic Gate Networks",
  IEEE Access, 2023; IEEE Xplore document 10301592), a soft sample with the noise scaled by
  ``beta`` (:data:`KIM_NOISE_SCALE`), then normalised::

      w_i = exp((z_i + beta * g_i) / tau) / sum_j exp((z_j + beta * g_j) / tau),  g ~ Gumbel(0, 1)

  What was read: only the paper's abstract (its full text is in none of the stores this project can
  search): plain Gumbel perturbation, being independent of the argmax, fails to "preserve the
  original categorical probability order", so the paper introduces "scaled noise in the Gumbel
  process, followed by normalization to unnormalized probabilities". Our reading is the equation
  above: the unnormalised probabilities ``exp(z_i + beta * g_i)`` normalised over the gates (at
  temperature ``tau``), the forward pass a mixture as in the Gumbel-softmax relaxation the abstract
  builds on. ``beta = 1`` is ``gumbel_soft``, ``beta = 0`` the plain softmax; the perturbed argmax is
  gate i with probability ``softmax(z / beta)_i`` (Gumbel-max on ``z / beta``), which for
  ``beta < 1`` follows the logits' order more closely than the Gumbel-max draw ``softmax(z)``.
  Not read, so ours: the equation's number, the paper's default ``beta`` and whether it is
  annealed; ``beta = 0.5`` is our default, not the paper's. The independent entries of
  ``truth_table`` get logistic noise scaled the same way.

In eval mode every relaxation returns the one-hot argmax (or the hard threshold), deterministically,
so an eval-mode network computes exactly its discrete circuit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

__all__ = ["Relaxation", "RELAXATIONS", "STOCHASTIC_RELAXATIONS", "KIM_NOISE_SCALE", "list_relaxations",
           "check_relaxation", "get_relaxation", "categorical", "bernoulli", "relax_categorical", "relax_bernoulli"]

# beta of kim_gumbel (ours: the paper's default could not be read; see the module docstring)
KIM_NOISE_SCALE = 0.5


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
    forward, the soft choice's gradient backward), and ``noise_scale``, the factor on the noise (1 for
    the standard Gumbel relaxations; ignored without noise)."""

    noise: bool
    straight_through: bool
    description: str = ""
    noise_scale: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.noise_scale, (int, float)) and 0.0 <= float(self.noise_scale) < float("inf")):
            raise ValueError(f"noise_scale must be a finite number >= 0, got {self.noise_scale!r}")


RELAXATIONS: Dict[str, Relaxation] = {
    "softmax": Relaxation(False, False, "softmax(logits / temperature), the 2022 mixture"),
    "gumbel_soft": Relaxation(True, False, "softmax((logits + Gumbel) / temperature)"),
    "gumbel_st": Relaxation(True, True, "argmax(logits + Gumbel) forward, Gumbel-softmax gradient"),
    "hard_st": Relaxation(False, True, "argmax(logits) forward, softmax gradient"),
    "kim_gumbel": Relaxation(True, False, "softmax((logits + beta * Gumbel) / temperature), Kim 2023",
                             noise_scale=KIM_NOISE_SCALE),
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
                training: bool, noise_scale: float = 1.0) -> torch.Tensor:
    """Choice weights over the last dimension for a relaxation's two flags (the noise, Gumbel, times
    ``noise_scale``); the one-hot argmax when not training. TorchScript compiles it (the layers pass
    their relaxation's flags)."""
    if not training:
        return one_hot_argmax(logits)
    if noise:
        logits = logits + noise_scale * _gumbel_like(logits)
    soft = F.softmax(logits / temperature, dim=-1)
    return _straight_through(one_hot_argmax(logits), soft) if straight_through else soft


def bernoulli(logits: torch.Tensor, noise: bool, straight_through: bool, temperature: float,
              training: bool, noise_scale: float = 1.0) -> torch.Tensor:
    """Independent on-probabilities for a relaxation's two flags (the noise, logistic, times
    ``noise_scale``); ``logits > 0`` when not training."""
    if not training:
        return hard_threshold(logits)
    if noise:
        logits = logits + noise_scale * _logistic_like(logits)
    soft = torch.sigmoid(logits / temperature)
    return _straight_through(hard_threshold(logits), soft) if straight_through else soft


def relax_categorical(logits: torch.Tensor, relaxation: str, temperature: float, training: bool) -> torch.Tensor:
    """Gate weights over the last dimension under relaxation ``relaxation``; the one-hot argmax when not training."""
    r = get_relaxation(relaxation)
    return categorical(logits, r.noise, r.straight_through, temperature, training, r.noise_scale)


def relax_bernoulli(logits: torch.Tensor, relaxation: str, temperature: float, training: bool) -> torch.Tensor:
    """Independent on-probabilities under relaxation ``relaxation``; ``logits > 0`` when not training."""
    r = get_relaxation(relaxation)
    return bernoulli(logits, r.noise, r.straight_through, temperature, training, r.noise_scale)
