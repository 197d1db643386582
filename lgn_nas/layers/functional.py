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

Learnable connectivity (``logic_dense_learnable``): each gate input reads a relaxed mixture of ``K``
candidate wires, ``a[:, n] = sum_k wa[n, k] * x[:, cand_a[n, k]]`` (``b`` likewise with ``cand_b``,
``wb``), then the same 4-coefficient formula. The fused function saves ``x``, the candidate indices,
the wire weights and the coefficients and re-gathers in backward (candidate columns in chunks, so no
``(batch, n, K)`` tensor larger than :data:`GATHER_CHUNK` elements lives at once). Its gradients:
``wa[n, k]`` gets ``sum_batch ga * x[:, cand_a[n, k]]`` with ``ga = g * (ca + cab * b)``, and
``x`` gets ``ga * wa`` scattered to the candidates (``gb``, ``wb`` likewise).
``logic_dense_learnable_plain`` is the same in ordinary autograd ops (TorchScript and reference).
"""
from __future__ import annotations

import torch

__all__ = ["logic_dense", "logic_dense_plain", "logic_dense_mixture", "gate_outputs_16", "logic_dense_learnable",
           "logic_dense_learnable_plain", "GATHER_CHUNK"]

# The most elements of gathered candidate inputs (batch x neurons x candidate columns) the fused
# learnable op holds at once; it walks the candidate columns in chunks under this size.
GATHER_CHUNK = 1 << 22


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


def _check_learnable(x: torch.Tensor, cand_a: torch.Tensor, cand_b: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor,
                     coefficients: torch.Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"logic layer input must be 2-D (batch, features), got shape {tuple(x.shape)}")
    if cand_a.dim() != 2:
        raise ValueError(f"cand_a must be 2-D (neurons, candidates), got shape {tuple(cand_a.shape)}")
    shape = tuple(cand_a.shape)
    for label, t in (("cand_b", cand_b), ("wa", wa), ("wb", wb)):
        if tuple(t.shape) != shape:
            raise ValueError(f"{label} must have the shape of cand_a {shape}, got {tuple(t.shape)}")
    if coefficients.dim() != 2 or coefficients.shape[1] != 4 or coefficients.shape[0] != shape[0]:
        raise ValueError(f"coefficients must have shape ({shape[0]}, 4), got {tuple(coefficients.shape)}")


def _column_chunks(batch: int, neurons: int, candidates: int):
    step = max(1, GATHER_CHUNK // max(1, batch * neurons))
    return [(k, min(candidates, k + step)) for k in range(0, candidates, step)]


def _mix(x: torch.Tensor, cand: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``sum_k w[:, k] * x[:, cand[:, k]]``: (batch, neurons), gathering the candidate columns in chunks."""
    batch, (neurons, candidates) = x.shape[0], cand.shape
    out = x.new_zeros(batch, neurons)
    for lo, hi in _column_chunks(batch, neurons, candidates):
        gathered = x.index_select(1, cand[:, lo:hi].reshape(-1)).view(batch, neurons, hi - lo)
        out.add_(gathered.mul_(w[:, lo:hi]).sum(-1))
    return out


def _mix_backward(x: torch.Tensor, cand: torch.Tensor, w: torch.Tensor, g: torch.Tensor, grad_x, need_w: bool):
    """Adds ``g * w`` into ``grad_x`` at the candidates (if given); returns ``sum_batch g * x[:, cand]`` (or None)."""
    batch, (neurons, candidates) = x.shape[0], cand.shape
    grad_w = torch.empty_like(w) if need_w else None
    for lo, hi in _column_chunks(batch, neurons, candidates):
        index = cand[:, lo:hi].reshape(-1)
        if grad_w is not None:
            gathered = x.index_select(1, index).view(batch, neurons, hi - lo)
            grad_w[:, lo:hi] = gathered.mul_(g.unsqueeze(-1)).sum(0)
        if grad_x is not None:
            grad_x.index_add_(1, index, (g.unsqueeze(-1) * w[:, lo:hi]).view(batch, -1))
    return grad_w


class _LogicDenseLearnableFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cand_a, cand_b, wa, wb, coefficients):
        x = x.contiguous()
        wa, wb = wa.to(x.dtype).contiguous(), wb.to(x.dtype).contiguous()
        coefficients = coefficients.to(x.dtype).contiguous()
        a, b = _mix(x, cand_a, wa), _mix(x, cand_b, wb)
        c1, ca, cb, cab = coefficients.unbind(1)
        out = torch.addcmul(ca, cab, b).mul_(a)
        out.add_(b.mul_(cb)).add_(c1)
        ctx.save_for_backward(x, cand_a, cand_b, wa, wb, coefficients)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, cand_a, cand_b, wa, wb, coefficients = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        a, b = _mix(x, cand_a, wa), _mix(x, cand_b, wb)
        _, ca, cb, cab = coefficients.unbind(1)
        need_x, need_wa, need_wb, need_c = (ctx.needs_input_grad[0], ctx.needs_input_grad[3],
                                            ctx.needs_input_grad[4], ctx.needs_input_grad[5])
        grad_x = torch.zeros_like(x) if need_x else None
        grad_wa = grad_wb = grad_coefficients = None
        if need_x or need_wa or need_wb:
            ga = torch.addcmul(ca, cab, b).mul_(grad_out)
            gb = torch.addcmul(cb, cab, a).mul_(grad_out)
            grad_wa = _mix_backward(x, cand_a, wa, ga, grad_x, need_wa)
            del ga
            grad_wb = _mix_backward(x, cand_b, wb, gb, grad_x, need_wb)
            del gb
        if need_c:
            ga = a.mul_(grad_out)
            g_a = ga.sum(0)
            g_ab = ga.mul_(b).sum(0)
            g_b = b.mul_(grad_out).sum(0)
            grad_coefficients = torch.stack([grad_out.sum(0), g_a, g_b, g_ab], dim=1)
        return grad_x, None, None, grad_wa, grad_wb, grad_coefficients


def logic_dense_learnable(x: torch.Tensor, cand_a: torch.Tensor, cand_b: torch.Tensor, wa: torch.Tensor,
                          wb: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Fused logic layer over relaxed candidate wires: ``(batch, in) -> (batch, n)``.

    ``cand_a``/``cand_b``: int64 ``(n, K)`` candidate input indices per gate input; ``wa``/``wb``:
    their relaxed weights ``(n, K)`` (already relaxed by the caller); ``coefficients``: ``(n, 4)``.
    Differentiable in ``x``, ``wa``, ``wb`` and ``coefficients``.
    """
    _check_learnable(x, cand_a, cand_b, wa, wb, coefficients)
    return _LogicDenseLearnableFunction.apply(x, cand_a, cand_b, wa, wb, coefficients)


def logic_dense_learnable_plain(x: torch.Tensor, cand_a: torch.Tensor, cand_b: torch.Tensor, wa: torch.Tensor,
                                wb: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """The same layer in ordinary autograd ops (TorchScript-compatible; stores the gathered inputs)."""
    batch, neurons, candidates = x.shape[0], cand_a.shape[0], cand_a.shape[1]
    a = (x.index_select(1, cand_a.reshape(-1)).view(batch, neurons, candidates) * wa.to(x.dtype)).sum(-1)
    b = (x.index_select(1, cand_b.reshape(-1)).view(batch, neurons, candidates) * wb.to(x.dtype)).sum(-1)
    coefficients = coefficients.to(x.dtype)
    return coefficients[:, 0] + coefficients[:, 1] * a + coefficients[:, 2] * b + coefficients[:, 3] * a * b
