"""Relaxations: how a discrete gate choice is made differentiable during training.

A relaxation turns parameters into choice weights in two flavours (plain functions that dispatch on
the relaxation's name, so TorchScript compiles them):

* ``categorical``: logits over the 16 gates (``(..., 16)``) -> a weight per gate summing to 1;
* ``bernoulli``: independent logits (``(..., k)``) -> a probability per entry (used by the
  truth-table parametrisation, where each of the 4 truth-table outputs is its own binary choice).

Registered relaxations (chosen by name, as timm chooses activations):

* ``softmax``: the 2022 mixture, ``softmax(logits / temperature)``.
* ``gumbel_soft``: Gumbel-softmax, ``softmax((logits + G) / temperature)`` with G ~ Gumbel(0, 1).
* ``gumbel_st``: straight-through Gumbel: the forward pass uses the hard argmax of logits + G, the
  backward pass the Gumbel-softmax gradient (Kim 2023; Yousefi et al. 2025).
* ``hard_st``: straight-through without noise: hard argmax forward, softmax gradient backward.

In eval mode every relaxation returns the one-hot argmax (or the hard threshold), deterministically,
so an eval-mode network computes exactly its discrete circuit.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F

__all__ = ["RELAXATIONS", "list_relaxations", "check_relaxation", "relax_categorical", "relax_bernoulli"]


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


def _softmax_cat(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.softmax(logits / temperature, dim=-1)


def _softmax_bern(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.sigmoid(logits / temperature)


def _gumbel_soft_cat(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.softmax((logits + _gumbel_like(logits)) / temperature, dim=-1)


def _gumbel_soft_bern(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.sigmoid((logits + _logistic_like(logits)) / temperature)


def _gumbel_st_cat(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    noisy = logits + _gumbel_like(logits)
    return _straight_through(one_hot_argmax(noisy), F.softmax(noisy / temperature, dim=-1))


def _gumbel_st_bern(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    noisy = logits + _logistic_like(logits)
    return _straight_through(hard_threshold(noisy), torch.sigmoid(noisy / temperature))


def _hard_st_cat(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return _straight_through(one_hot_argmax(logits), F.softmax(logits / temperature, dim=-1))


def _hard_st_bern(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return _straight_through(hard_threshold(logits), torch.sigmoid(logits / temperature))


RELAXATIONS: Tuple[str, ...] = ("softmax", "gumbel_soft", "gumbel_st", "hard_st")
STOCHASTIC_RELAXATIONS: Tuple[str, ...] = ("gumbel_soft", "gumbel_st")


def list_relaxations() -> List[str]:
    """Names accepted wherever a relaxation is chosen."""
    return list(RELAXATIONS)


def check_relaxation(name: str) -> str:
    """Return ``name`` if it is a known relaxation, else raise ``ValueError`` listing the known ones."""
    if name not in RELAXATIONS:
        raise ValueError(f"unknown relaxation {name!r}: expected one of {', '.join(RELAXATIONS)}")
    return name


def relax_categorical(logits: torch.Tensor, relaxation: str, temperature: float, training: bool) -> torch.Tensor:
    """Gate weights over the last dimension; the one-hot argmax when not training."""
    if not training:
        return one_hot_argmax(logits)
    if relaxation == "softmax":
        return _softmax_cat(logits, temperature)
    if relaxation == "gumbel_soft":
        return _gumbel_soft_cat(logits, temperature)
    if relaxation == "gumbel_st":
        return _gumbel_st_cat(logits, temperature)
    if relaxation == "hard_st":
        return _hard_st_cat(logits, temperature)
    raise ValueError("unknown relaxation " + relaxation)


def relax_bernoulli(logits: torch.Tensor, relaxation: str, temperature: float, training: bool) -> torch.Tensor:
    """Independent on-probabilities; the hard threshold ``logits > 0`` when not training."""
    if not training:
        return hard_threshold(logits)
    if relaxation == "softmax":
        return _softmax_bern(logits, temperature)
    if relaxation == "gumbel_soft":
        return _gumbel_soft_bern(logits, temperature)
    if relaxation == "gumbel_st":
        return _gumbel_st_bern(logits, temperature)
    if relaxation == "hard_st":
        return _hard_st_bern(logits, temperature)
    raise ValueError("unknown relaxation " + relaxation)
