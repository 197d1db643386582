"""Parametrisations: which numbers a layer learns per gate, and how they become coefficients.

Every two-input gate relaxation lives in a 4-dimensional space: ``c1 + ca*a + cb*b + cab*a*b``.
A parametrisation maps a layer's weight tensor (``(*shape, num_params)``) to those coefficients
(``(*shape, 4)``) through a relaxation, and reads off the discrete gate ids.

* ``raw16``: 16 logits per gate, one per Boolean function (Petersen et al. 2022); the coefficients
  are the relaxed gate weights times the 16 x 4 basis.
* ``truth_table``: 4 logits per gate, one per truth-table entry out(a, b) for ab = 00, 01, 10, 11,
  each relaxed as an independent binary choice (the input-wise form of the "Light" LGN, arXiv
  2510.03250): 4x fewer parameters and no 16-way softmax.

The maps are plain functions dispatching on the name so TorchScript compiles them; ``init_weight``
is Python only.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch

from ..gates import NUM_GATES, PASS_A
from .relaxations import relax_bernoulli, relax_categorical

__all__ = [
    "PARAMETRIZATIONS", "INITS", "list_parametrizations", "check_parametrization", "num_params",
    "init_weight", "gate_coefficients", "gate_ids", "logits_for_gate_ids",
]

# Number of learned values per gate, by parametrisation name.
PARAMETRIZATIONS: Dict[str, int] = {"raw16": NUM_GATES, "truth_table": 4}
INITS: Tuple[str, ...] = ("residual", "gaussian")

# Residual initialisation (Petersen et al. 2024): logit 5 on the pass-through gate "A", P(A) ~= 0.91.
RESIDUAL_LOGIT = 5.0
# For truth_table, -z, -z, +z, +z on the entries of "A" (0, 0, 1, 1) gives P(A) = sigmoid(z)^4 = 0.91 too.
RESIDUAL_TRUTH_LOGIT = math.log(0.91 ** 0.25 / (1 - 0.91 ** 0.25))


def list_parametrizations() -> List[str]:
    """Names accepted wherever a parametrisation is chosen."""
    return list(PARAMETRIZATIONS)


def check_parametrization(name: str) -> str:
    """Return ``name`` if known, else raise ``ValueError`` listing the known ones."""
    if name not in PARAMETRIZATIONS:
        raise ValueError(f"unknown parametrization {name!r}: expected one of {', '.join(PARAMETRIZATIONS)}")
    return name


def num_params(name: str) -> int:
    """Learned values per gate for parametrisation ``name``."""
    return PARAMETRIZATIONS[check_parametrization(name)]


def init_weight(
        name: str,
        shape: Tuple[int, ...],
        init: str,
        *,
        generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """A new weight tensor of shape ``(*shape, num_params(name))`` initialised by ``init``."""
    check_parametrization(name)
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}: expected one of {', '.join(INITS)}")
    k = num_params(name)
    if init == "gaussian":  # drawn on the CPU, where the generator lives, then on the default device
        device = torch.get_default_device()
        with torch.device("cpu"):
            return torch.randn(*shape, k, generator=generator).to(device)
    if name == "raw16":
        weight = torch.zeros(*shape, k)
        weight[..., PASS_A] = RESIDUAL_LOGIT
        return weight
    z = RESIDUAL_TRUTH_LOGIT
    return torch.tensor([-z, -z, z, z]).expand(*shape, 4).clone()


def gate_coefficients(
        weight: torch.Tensor,
        basis: torch.Tensor,
        parametrization: str,
        relaxation: str,
        temperature: float,
        training: bool,
) -> torch.Tensor:
    """Coefficients ``(*shape, 4)`` = (c1, ca, cb, cab) of each gate's relaxation."""
    if parametrization == "raw16":
        if not training:  # the argmax gate's coefficients, without a one-hot detour
            return basis[weight.argmax(dim=-1)]
        return relax_categorical(weight, relaxation, temperature, training) @ basis
    if parametrization == "truth_table":
        t = relax_bernoulli(weight, relaxation, temperature, training)
        t00 = t[..., 0]
        t01 = t[..., 1]
        t10 = t[..., 2]
        t11 = t[..., 3]
        return torch.stack([t00, t10 - t00, t01 - t00, t00 - t01 - t10 + t11], dim=-1)
    raise ValueError("unknown parametrization " + parametrization)


def gate_ids(weight: torch.Tensor, parametrization: str) -> torch.Tensor:
    """The gate id (int64, ``weight.shape[:-1]``) each neuron keeps after training."""
    if parametrization == "raw16":
        return weight.argmax(dim=-1)
    if parametrization == "truth_table":
        bits = (weight > 0).long()
        return (bits[..., 0] << 3) | (bits[..., 1] << 2) | (bits[..., 2] << 1) | bits[..., 3]
    raise ValueError("unknown parametrization " + parametrization)


def logits_for_gate_ids(ids: torch.Tensor, parametrization: str, *, logit: float,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Weights (``(*ids.shape, num_params)``) whose ``gate_ids`` are ``ids``: the inverse of ``gate_ids``.

    ``raw16``: ``logit`` on the kept gate, 0 on the other 15; ``truth_table``: ``+logit`` on the
    truth-table entries that are 1, ``-logit`` on those that are 0. A large ``logit`` makes the
    relaxed gate equal the discrete one (see ``lgn_nas.pretrained``).
    """
    check_parametrization(parametrization)
    ids = torch.as_tensor(ids).long()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= NUM_GATES):
        raise ValueError(f"gate ids must lie in 0..{NUM_GATES - 1}, got {int(ids.min())}..{int(ids.max())}")
    if not float(logit) > 0:
        raise ValueError(f"logit must be > 0, got {logit!r}")
    if parametrization == "raw16":
        weight = torch.zeros(*ids.shape, NUM_GATES, dtype=dtype)
        return weight.scatter_(-1, ids.unsqueeze(-1), float(logit))
    shifts = torch.tensor([3, 2, 1, 0])  # entry 00 is the id's most significant bit (see gate_ids)
    bits = (ids.unsqueeze(-1) >> shifts) & 1
    return torch.where(bits.bool(), float(logit), -float(logit)).to(dtype)
