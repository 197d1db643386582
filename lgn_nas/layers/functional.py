"""Differentiable logic-layer ops on the 4-coefficient basis.

A layer of ``n`` neurons reading ``x[:, in_a]`` and ``x[:, in_b]`` computes, per neuron and sample,
``c1 + ca*a + cb*b + cab*a*b`` (3 multiply-adds) with per-neuron coefficients ``(n, 4)``. The fused
autograd function keeps only its input ``x`` (the previous layer's output, alive anyway), the index
vectors and the coefficients for the backward pass, and re-gathers ``a``, ``b`` there: no gathered
copies are held between the passes. The coefficient gradients are the batch sums of ``g``, ``g*a``,
``g*b`` and ``g*a*b``; the input gradients ``g*(ca + cab*b)`` and ``g*(cb + cab*a)`` are scattered
back with ``index_add_``.

``logic_dense_plain`` is the same formula in ordinary autograd ops (TorchScript and reference);
``logic_dense_mixture`` is the 16-gate formulation of Petersen et al. 2022, kept as the reference
and baseline.
"""
from __future__ import annotations

import torch

__all__ = ["logic_dense", "logic_dense_plain", "logic_dense_mixture", "gate_outputs_16"]


def _check_inputs(x: torch.Tensor, in_a: torch.Tensor, in_b: torch.Tensor, coefficients: torch.Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"logic layer input must be 2-D (batch, features), got shape {tuple(x.shape)}")
    if coefficients.dim() != 2 or coefficients.shape[1] != 4 or coefficients.shape[0] != in_a.shape[0]:
        raise ValueError(
            f"coefficients must have shape ({in_a.shape[0]}, 4), got {tuple(coefficients.shape)}")


class _LogicDenseFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, in_a: torch.Tensor, in_b: torch.Tensor, coefficients: torch.Tensor):
        x = x.contiguous()
        coefficients = coefficients.to(x.dtype).contiguous()
        a = x.index_select(1, in_a)
        b = x.index_select(1, in_b)
        c1, ca, cb, cab = coefficients.unbind(1)
        # c1 + a * (ca + cab * b) + cb * b, reusing the buffers of the gathers.
        out = torch.addcmul(ca, cab, b).mul_(a)
        out.add_(b.mul_(cb)).add_(c1)
        ctx.save_for_backward(x, in_a, in_b, coefficients)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, in_a, in_b, coefficients = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        a = x.index_select(1, in_a)
        b = x.index_select(1, in_b)
        _, ca, cb, cab = coefficients.unbind(1)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x)
            grad_x.index_add_(1, in_a, torch.addcmul(ca, cab, b).mul_(grad_out))
            grad_x.index_add_(1, in_b, torch.addcmul(cb, cab, a).mul_(grad_out))
        grad_coefficients = None
        if ctx.needs_input_grad[3]:
            ga = a.mul_(grad_out)
            g_a = ga.sum(0)
            g_ab = ga.mul_(b).sum(0)
            g_b = b.mul_(grad_out).sum(0)
            grad_coefficients = torch.stack([grad_out.sum(0), g_a, g_b, g_ab], dim=1)
        return grad_x, None, None, grad_coefficients


def logic_dense(x: torch.Tensor, in_a: torch.Tensor, in_b: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Fused 4-coefficient logic layer: ``(batch, in) -> (batch, n)``."""
    _check_inputs(x, in_a, in_b, coefficients)
    return _LogicDenseFunction.apply(x, in_a, in_b, coefficients)


def logic_dense_plain(x: torch.Tensor, in_a: torch.Tensor, in_b: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """The same layer in ordinary autograd ops (TorchScript-compatible; stores the gathered inputs)."""
    a = x.index_select(1, in_a)
    b = x.index_select(1, in_b)
    coefficients = coefficients.to(x.dtype)
    return coefficients[:, 0] + coefficients[:, 1] * a + coefficients[:, 2] * b + coefficients[:, 3] * a * b


def gate_outputs_16(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The relaxations of all 16 gates, stacked on a new last dimension (gate id order)."""
    ab = a * b
    return torch.stack([
        torch.zeros_like(a), ab, a - ab, a, b - ab, b, a + b - 2 * ab, a + b - ab,
        1 - (a + b - ab), 1 - (a + b - 2 * ab), 1 - b, 1 - b + ab, 1 - a, 1 - a + ab, 1 - ab, torch.ones_like(a),
    ], dim=-1)


def logic_dense_mixture(x: torch.Tensor, in_a: torch.Tensor, in_b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The 16-gate formulation: ``sum_i weights[:, i] * g_i(a, b)`` with ``weights`` of shape (n, 16)."""
    a = x[:, in_a]
    b = x[:, in_b]
    return (gate_outputs_16(a, b) * weights.to(x.dtype)).sum(-1)
