"""Evaluation of a training run: relaxed, train-mode and discrete accuracy, the netlist's own.

Definitions used in every metric:

- **discrete** accuracy: the model in ``eval()`` mode, where every logic neuron computes its argmax
  gate on 0/1 inputs, i.e. exactly the circuit ``discretize(model)`` returns. At the end of training
  the test set is also run through the ``Netlist`` itself (raw and simplified) and the class scores
  must agree with the eval model; a mismatch raises ``RuntimeError`` (a discretisation bug).
- **relaxed** accuracy: the differentiable model as trained, without noise: every module in eval
  mode (no dropout) except the logic layers, which run in training mode with the noise-free
  ``softmax`` relaxation at their current temperature (so ``gumbel_*`` and ``hard_st`` models are
  scored by the expectation they are trained towards, not by one noise sample).
- **gap** = relaxed - discrete (fractions in [0, 1]; positive when discretising hurts).
- **train-mode** accuracy: the logic layers' own training forward, noise included (for ``gumbel_*``
  one Gumbel draw per neuron and evaluation batch, as in training; for ``hard_st`` the argmax circuit
  itself), the other modules in eval mode. ``train_mode_gap`` = train-mode - discrete is the gap as
  Yousefi et al. 2025 measure it ("train mode" vs "eval mode" accuracy); reported at the end of
  training only, with a fixed noise seed.

Per-epoch discrete accuracy is computed through the netlist (identical by construction, and much
faster than the torch eval forward); the final discrete test accuracy through the eval model.
Per-epoch metrics use the validation split (``val_*`` keys) or, with ``val_size=0``, the test split
(``test_*``); final metrics are on the test split.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..interfaces import HasLogicHead
from ..layers.logic import logic_layers
from .distributed import DistributedContext

__all__ = ["relaxed_mode", "as_float", "evaluate", "evaluate_train_mode", "netlist_feed", "evaluate_netlist",
           "netlist_stats"]


@contextlib.contextmanager
def relaxed_mode(model: nn.Module, *, keep_relaxation: bool = False,
                 layers: Optional[Iterable[nn.Module]] = None) -> Iterator[nn.Module]:
    """Model in eval mode except logic layers: training mode with noise-free ``softmax`` relaxation.

    ``keep_relaxation``: the logic layers keep their own relaxation instead (the training forward,
    noise included). ``layers``: relax only these logic layers of ``model`` (default: all of them);
    the others stay discrete.
    """
    was_training = {module: module.training for module in model.modules()}
    relaxations = {}
    model.eval()
    try:
        for module in (logic_layers(model) if layers is None else layers):
            relaxations[module] = module.relaxation
            if not keep_relaxation:
                module.relaxation = "softmax"
            module.training = True
        yield model
    finally:
        for module, relaxation in relaxations.items():
            module.relaxation = relaxation
        for module, training in was_training.items():
            module.training = training


def as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


@torch.no_grad()
def evaluate(
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        relaxed: bool,
        batch_size: int = 1000,
        device: Union[str, torch.device, None] = None,
        ctx: Optional[DistributedContext] = None,
        return_scores: bool = False,
        train_mode: bool = False,
) -> Dict[str, Any]:
    """Accuracy and mean cross-entropy of ``model`` on ``(x, y)``, relaxed or discrete.

    ``train_mode`` (with ``relaxed=True``): the logic layers' own training forward, noise included,
    drawn from the global torch generator (see :func:`evaluate_train_mode` for a seeded estimate).

    Under torch.distributed (``ctx``) each rank scores ``rank::world_size`` of the samples and the
    counts are summed, so every rank gets the same exact result. ``return_scores`` (single process
    only) also returns the class scores in order.
    """
    ctx = ctx or DistributedContext()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    index = torch.arange(ctx.rank, x.shape[0], ctx.world_size)
    totals = torch.zeros(3, dtype=torch.float64)
    scores_out = []
    if train_mode and not relaxed:
        raise ValueError("evaluate: train_mode=True needs relaxed=True (the discrete model has no training forward)")
    mode = relaxed_mode(model, keep_relaxation=train_mode) if relaxed else contextlib.nullcontext()
    was_training = model.training
    if not relaxed:
        model.eval()
    try:
        with mode:
            for start in range(0, index.shape[0], batch_size):
                batch = index[start:start + batch_size]
                xb = as_float(x[batch]).to(device)
                yb = y[batch].to(device)
                scores = model(xb)
                totals[0] += float(F.cross_entropy(scores.float(), yb, reduction="sum"))
                totals[1] += float((scores.argmax(dim=-1) == yb).sum())
                totals[2] += batch.shape[0]
                if return_scores:
                    scores_out.append(scores.float().cpu())
    finally:
        model.train(was_training)
    if ctx.enabled:
        reduced = totals.to(device if device.type == "cuda" else "cpu")
        ctx.all_reduce_sum(reduced)
        totals = reduced.cpu()
    count = max(float(totals[2]), 1.0)
    result: Dict[str, Any] = {"acc": float(totals[1]) / count, "loss": float(totals[0]) / count}
    if return_scores:
        result["scores"] = torch.cat(scores_out) if scores_out else torch.zeros(0)
    return result


def _stochastic(model: nn.Module) -> bool:
    from ..layers.relaxations import STOCHASTIC_RELAXATIONS

    return any(m.relaxation in STOCHASTIC_RELAXATIONS for m in logic_layers(model))


def evaluate_train_mode(
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        draws: int = 3,
        seed: int = 0,
        batch_size: int = 1000,
        device: Union[str, torch.device, None] = None,
        ctx: Optional[DistributedContext] = None,
) -> Dict[str, Any]:
    """Accuracy and loss of the training forward (noise included), averaged over ``draws`` passes.

    Deterministic relaxations (``softmax``, ``hard_st``) take one pass. The noise comes from a torch
    generator seeded with ``seed`` (and the rank) inside ``torch.random.fork_rng``, so the estimate is
    repeatable and the caller's random state is untouched.
    """
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
        raise ValueError(f"draws must be an int >= 1, got {draws!r}")
    ctx = ctx or DistributedContext()
    passes = draws if _stochastic(model) else 1
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    accs, losses = [], []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed * 1009 + ctx.rank)
        for _ in range(passes):
            result = evaluate(model, x, y, relaxed=True, train_mode=True, batch_size=batch_size,
                              device=device, ctx=ctx)
            accs.append(result["acc"])
            losses.append(result["loss"])
    return {"acc": float(np.mean(accs)), "loss": float(np.mean(losses)), "draws": passes,
            "acc_per_draw": accs}


def netlist_feed(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Map images to the raw input of ``discretize(model)``: the images themselves, or for hybrids the
    eval-mode ``head_input`` (normalised backbone features) that their logic head's netlist reads."""
    if not isinstance(model, HasLogicHead):
        return lambda xb: xb
    head_input = model.head_input

    def feed(xb: torch.Tensor) -> torch.Tensor:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return head_input(xb.to(device)).cpu()
        finally:
            model.train(was_training)

    return feed


def evaluate_netlist(netlist: Any, x: torch.Tensor, y: torch.Tensor, *,
                     ctx: Optional[DistributedContext] = None, chunk: int = 10000,
                     feed: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Dict[str, Any]:
    """Accuracy of a ``Netlist`` (numpy reference evaluator) on ``(x, y)``; sharded like :func:`evaluate`.

    ``feed`` maps an image batch to the netlist's raw input (see :func:`netlist_feed`).
    """
    ctx = ctx or DistributedContext()
    index = torch.arange(ctx.rank, x.shape[0], ctx.world_size)
    totals = torch.zeros(2, dtype=torch.float64)
    for start in range(0, index.shape[0], chunk):
        batch = index[start:start + chunk]
        xb = as_float(x[batch].cpu())
        if feed is not None:
            xb = feed(xb)
        xb = xb.numpy().astype(np.float32, copy=False)
        predicted = netlist.predict(xb)
        totals[0] += float((predicted == y[batch].cpu().numpy()).sum())
        totals[1] += batch.shape[0]
    if ctx.enabled:
        device = torch.device("cuda", torch.cuda.current_device()) if dist_backend_is_nccl() else "cpu"
        reduced = totals.to(device)
        ctx.all_reduce_sum(reduced)
        totals = reduced.cpu()
    return {"acc": float(totals[0]) / max(float(totals[1]), 1.0)}


def dist_backend_is_nccl() -> bool:
    import torch.distributed as dist

    return dist.is_initialized() and dist.get_backend() == "nccl"


def netlist_stats(model: nn.Module) -> tuple[Any, Dict[str, Any]]:
    """``((netlist, simplified), stats)``: gate counts, the two unused-gate counts of
    :mod:`lgn_nas.metrics` (``unused_gate_fraction``: ours; ``unused_gate_fraction_next_layer``: read by
    no gate, one hop) and the simplified logic depth."""
    from ..discretize import discretize
    from ..metrics import unused_gate_fraction

    netlist = discretize(model)
    simplified, _ = netlist.simplify()
    stats = {
        "gates_raw": int(netlist.num_gates),
        "gates": int(simplified.num_gates),
        "unused_gate_fraction": unused_gate_fraction(netlist),
        "unused_gate_fraction_next_layer": unused_gate_fraction(netlist, "next_layer"),
        "logic_depth": int(simplified.logic_depth),
    }
    return (netlist, simplified), stats
