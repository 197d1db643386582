"""Where a relaxed LGN departs from its discrete circuit, layer by layer.

``discretization_report(model, x)`` runs one batch through the model twice, relaxed (noise-free
softmax, as :func:`~lgn_nas.train.relaxed_mode` scores it) and discrete (eval mode), and for every
logic layer (each conv block after its OR pool, each dense layer) reports:

- ``pass_through``: fraction of gates whose kept gate is a wire ('A' or 'B', ids 3 and 5);
  ``residual``: fraction still on 'A', the residual initialisation's gate;
- ``margin_median``: median gap between the top two gate logits (raw16) or the smallest
  ``|logit|`` of the four truth-table entries (truth_table), in logit units at temperature 1;
- ``p_top_mean``: mean relaxed weight of the kept gate (softmax at the layer's temperature);
- ``mean_relaxed`` / ``mean_discrete``: mean output activation of the layer in each mode;
- ``mean_abs_diff``: mean ``|relaxed - discrete|`` of the layer's outputs, each mode fed by its own
  previous layers, so it shows where the two networks drift apart;
- ``flip_rate``: fraction of outputs where ``round(relaxed)`` differs from the discrete bit.

The head row gives GroupSum's tau and outputs per class. ``gradient_reach(model, x, y)`` gives, per
logic layer, the fraction of gates whose logits get a non-zero gradient from one batch of the
training forward. ``gap_by_layer(model, x, y)`` scores the model with one logic layer at a time relaxed,
the rest discrete: which layer holds the relaxed-discrete gap. All are used by
``benchmarks/diagnose_conv.py``.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from ..gates import PASS_A as _PASS_A, PASS_B as _PASS_B
from ..layers import GroupSum, LogicDense, LogicTreeConv2d, LogicTreeConvPool2d
from ..layers.parametrizations import get_parametrization
from ..layers.relaxations import relax_categorical
from .evaluation import relaxed_mode

__all__ = ["discretization_report", "format_report", "gradient_reach", "gap_by_layer"]


def _logic_layers(model: nn.Module) -> List[tuple]:
    """``(name, hooked module, logic layer)``: conv blocks are hooked after their pool."""
    layers, inside_blocks = [], set()
    for name, module in model.named_modules():
        if isinstance(module, LogicTreeConvPool2d):
            layers.append((name, module, module[0]))
            inside_blocks.update(id(m) for m in module.modules())
        elif isinstance(module, LogicTreeConv2d) and id(module) not in inside_blocks:
            layers.append((name, module, module))
        elif isinstance(module, LogicDense):
            layers.append((name, module, module))
    return layers


def _gate_stats(layer: nn.Module) -> Dict[str, float]:
    weight = layer.weight.detach().float()
    ids = layer.gate_ids().reshape(-1)
    stats = {
        "gates": int(ids.numel()),
        "pass_through": float(((ids == _PASS_A) | (ids == _PASS_B)).float().mean()),
        "residual": float((ids == _PASS_A).float().mean()),
    }
    if get_parametrization(layer.parametrization).categorical:
        top2 = weight.topk(2, dim=-1).values
        stats["margin_median"] = float((top2[..., 0] - top2[..., 1]).median())
        probs = relax_categorical(weight, "softmax", layer.temperature, True)
        stats["p_top_mean"] = float(probs.max(dim=-1).values.mean())
    else:
        stats["margin_median"] = float(weight.abs().min(dim=-1).values.median())
        p = torch.sigmoid(weight.abs() / layer.temperature)
        stats["p_top_mean"] = float(p.prod(dim=-1).mean())
    return stats


@torch.no_grad()
def discretization_report(model: nn.Module, x: torch.Tensor) -> List[Dict[str, Any]]:
    """One row per logic layer (see the module docstring) for the batch ``x`` (float in [0, 1])."""
    layers = _logic_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no logic layers to report on")
    captured: Dict[str, Dict[str, torch.Tensor]] = {"relaxed": {}, "discrete": {}}
    mode = {"name": "relaxed"}
    hooks = [module.register_forward_hook(
        lambda _m, _i, out, key=name: captured[mode["name"]].__setitem__(key, out.detach().float()))
        for name, module, _ in layers]
    was_training = model.training
    try:
        with relaxed_mode(model):
            model(x)
        mode["name"] = "discrete"
        model.eval()
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    rows = []
    for name, _, layer in layers:
        relaxed, discrete = captured["relaxed"][name], captured["discrete"][name]
        rows.append({
            "layer": name,
            **_gate_stats(layer),
            "mean_relaxed": float(relaxed.mean()),
            "mean_discrete": float(discrete.mean()),
            "mean_abs_diff": float((relaxed - discrete).abs().mean()),
            "flip_rate": float(((relaxed > 0.5).float() != discrete).float().mean()),
        })
    from ..models.lgn_conv import LogicHead

    head = next((m for m in model.modules() if isinstance(m, LogicHead)), None)
    if head is not None and isinstance(head.group_sum, GroupSum) and isinstance(head.classifier, LogicDense):
        rows.append({"layer": "group_sum", "tau": float(head.group_sum.tau),
                     "outputs_per_class": head.classifier.out_features / head.group_sum.num_classes})
    return rows


def format_report(rows: List[Dict[str, Any]]) -> str:
    """A Markdown table of ``discretization_report`` rows."""
    columns = ["layer", "gates", "pass_through", "residual", "margin_median", "p_top_mean",
               "mean_relaxed", "mean_discrete", "mean_abs_diff", "flip_rate"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    extra = []
    for row in rows:
        if "gates" not in row:
            extra.append(", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
            continue
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + extra)


def gradient_reach(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Dict[str, float]:
    """Per logic layer, the fraction of gates with a non-zero logit gradient from one training step.

    Under a straight-through forward every pass-through gate 'A' passes gradient to its first input
    only, so at the residual initialisation most gates get none; the softmax mixture reaches all.
    """
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        F.cross_entropy(model(x), y).backward()
        reach = {}
        for name, _, layer in _logic_layers(model):
            grad = layer.weight.grad
            reach[name] = 0.0 if grad is None else float((grad.abs().amax(dim=-1) > 0).float().mean())
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return reach


def gap_by_layer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000) -> Dict[str, float]:
    """Accuracy on ``(x, y)`` with one logic layer at a time relaxed (noise-free softmax at its
    temperature) and every other one discrete; ``"discrete"`` and ``"relaxed"`` are all-discrete and
    all-relaxed. The layer whose row is nearest ``"relaxed"`` holds the relaxed-discrete gap."""
    layers = [(name, layer) for name, _, layer in _logic_layers(model)]

    def accuracy(relaxed: List[nn.Module]) -> float:
        correct = 0
        with torch.no_grad(), relaxed_mode(model, layers=relaxed):
            for start in range(0, x.shape[0], batch_size):
                scores = model(x[start:start + batch_size])
                correct += int((scores.argmax(dim=-1) == y[start:start + batch_size]).sum())
        return correct / max(1, x.shape[0])

    result = {"discrete": accuracy([]), "relaxed": accuracy([layer for _, layer in layers])}
    for name, layer in layers:
        result[name] = accuracy([layer])
    return result
