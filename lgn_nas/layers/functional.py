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
``wb``), then the same 4-coefficient formula. The mixture is a sparse matrix ``W_a`` (``n`` rows of
``K`` entries) times the transposed input, ``a^T = W_a @ x^T``, so the fused function runs on torch's
sparse CSR kernels: it saves ``x``, the candidate indices, the wire weights and the coefficients, and
in backward recomputes ``a``, ``b``, takes the wire gradients ``sum_batch ga * x[:, cand_a[n, k]]``
(``ga = g * (ca + cab * b)``) as the product ``ga @ x`` sampled at ``W_a``'s entries
(``torch.sparse.sampled_addmm``) and the input gradient as ``W_a^T @ ga`` (``b`` likewise). No
``(batch, n, K)`` tensor is made. float16/bfloat16 compute in float32.
``logic_dense_learnable_plain`` is the same in ordinary autograd ops (TorchScript and reference; it
stores the gathered ``(batch, n, K)`` candidate inputs).
"""
from __future__ import annotations

import warnings

import torch

__all__ = ["logic_dense", "logic_dense_plain", "logic_dense_mixture", "gate_outputs_16", "logic_dense_learnable",
           "logic_dense_learnable_plain"]


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


def _wire_matrix(cand: torch.Tensor, w: torch.Tensor, in_features: int) -> torch.Tensor:
    """The sparse ``(n, in_features)`` CSR matrix with ``w[j, k]`` at column ``cand[j, k]`` (row ``j``)."""
    n, k = cand.shape
    crow = torch.arange(0, n * k + 1, k, device=cand.device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the ops used here are stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cand.reshape(-1), w.reshape(-1), size=(n, in_features))


def _wire_matrix_t(cand: torch.Tensor, w: torch.Tensor, in_features: int) -> torch.Tensor:
    """The transpose of :func:`_wire_matrix` as a CSR matrix ``(in_features, n)`` (rows: the inputs)."""
    n, k = cand.shape
    flat = cand.reshape(-1)
    order = flat.argsort(stable=True)
    crow = torch.zeros(in_features + 1, dtype=torch.int64, device=cand.device)
    torch.cumsum(torch.bincount(flat, minlength=in_features), 0, out=crow[1:])
    rows = torch.div(order, k, rounding_mode="floor")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, rows, w.reshape(-1)[order], size=(in_features, n))


def _sampled(matrix: torch.Tensor, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(g @ x)`` at the nonzeros of ``matrix``: ``sum_batch g[j] * x[:, cand[j, k]]`` per wire ``(j, k)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse.sampled_addmm(matrix, g, x, beta=0.0).values()


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class _LogicDenseLearnableFunction(torch.autograd.Function):
    """Works on the transposed layout ``(features, batch)``, where each gate input's mixture is a row of
    a sparse matrix with ``K`` entries per row: ``a^T = W_a @ x^T`` (CSR times dense)."""

    @staticmethod
    def forward(ctx, x, cand_a, cand_b, wa, wb, coefficients):
        dtype = _compute_dtype(x.dtype)
        xt = x.to(dtype).t().contiguous()
        wa, wb = wa.to(dtype).contiguous(), wb.to(dtype).contiguous()
        coefficients = coefficients.to(dtype).contiguous()
        in_features = x.shape[1]
        a = _wire_matrix(cand_a, wa, in_features) @ xt
        b = _wire_matrix(cand_b, wb, in_features) @ xt
        c1, ca, cb, cab = (c.unsqueeze(1) for c in coefficients.unbind(1))
        out = torch.addcmul(ca, cab, b).mul_(a)
        out.add_(b.mul_(cb)).add_(c1)
        ctx.save_for_backward(x, cand_a, cand_b, wa, wb, coefficients)
        return out.t().to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        x, cand_a, cand_b, wa, wb, coefficients = ctx.saved_tensors
        dtype, in_features = wa.dtype, x.shape[1]
        xd = x.to(dtype)
        xt, gt = xd.t().contiguous(), grad_out.to(dtype).t().contiguous()
        matrix_a, matrix_b = _wire_matrix(cand_a, wa, in_features), _wire_matrix(cand_b, wb, in_features)
        a, b = matrix_a @ xt, matrix_b @ xt
        _, ca, cb, cab = (c.unsqueeze(1) for c in coefficients.unbind(1))
        grad_x = grad_wa = grad_wb = grad_coefficients = None
        need_x, need_wa, need_wb, need_c = (ctx.needs_input_grad[i] for i in (0, 3, 4, 5))
        if need_x or need_wa or need_wb:
            ga = torch.addcmul(ca, cab, b).mul_(gt)
            gb = torch.addcmul(cb, cab, a).mul_(gt)
            if need_wa:
                grad_wa = _sampled(matrix_a, ga, xd).view_as(wa)
            if need_wb:
                grad_wb = _sampled(matrix_b, gb, xd).view_as(wb)
            if need_x:
                grad_xt = _wire_matrix_t(cand_a, wa, in_features) @ ga
                grad_xt += _wire_matrix_t(cand_b, wb, in_features) @ gb
                grad_x = grad_xt.t().to(x.dtype)
        if need_c:
            ga = a.mul_(gt)
            g_a = ga.sum(1)
            g_ab = ga.mul_(b).sum(1)
            g_b = b.mul_(gt).sum(1)
            grad_coefficients = torch.stack([gt.sum(1), g_a, g_b, g_ab], dim=1)
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
