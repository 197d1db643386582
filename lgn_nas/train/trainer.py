"""The training loop: ``fit(config)`` / ``Trainer``, evaluation of relaxed and discrete accuracy.

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
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models._optim import is_gate_logit_module
from .checkpoint import CHECKPOINT_NAME, atomic_write_json, load_checkpoint, save_checkpoint
from .augment import random_crop, random_hflip, random_shift
from .config import TrainConfig, temperature_at
from .distributed import DistributedContext, init_distributed, resolve_device

__all__ = [
    "EpochEnd", "StopTraining", "TrainingDiverged", "TrainResult", "Trainer", "fit", "build_model",
    "make_param_groups", "fit_encoders", "load_run", "evaluate", "evaluate_train_mode", "evaluate_netlist", "netlist_feed", "relaxed_mode", "is_gate_logit_module",
]

Callback = Callable[["EpochEnd"], Optional[bool]]


class StopTraining(Exception):
    """Raise from a callback to end training after the current epoch (final metrics still computed)."""


class TrainingDiverged(FloatingPointError):
    """The loss (or a parameter) became NaN/inf; the last good checkpoint is left untouched."""


@dataclasses.dataclass
class EpochEnd:
    """What a callback sees after each epoch. ``epoch`` counts completed epochs (1, 2, ...)."""

    epoch: int
    metrics: Dict[str, Any]
    model: nn.Module
    config: TrainConfig
    history: List[Dict[str, Any]]
    trainer: "Trainer"


@dataclasses.dataclass
class TrainResult:
    config: TrainConfig
    metrics: Dict[str, Any]  # final test metrics + summary (see Trainer.fit)
    history: List[Dict[str, Any]]  # one dict per completed epoch
    model: nn.Module  # unwrapped, on the training device, in eval mode
    netlist: Any  # the discrete Netlist (raw, as the model computes it)
    out_dir: Optional[Path]
    epochs_completed: int
    stopped_early: bool
    stop_reason: Optional[str] = None


# --------------------------------------------------------------------------- model and optimizer

def fit_encoders(model: nn.Module, x_train: torch.Tensor, *, max_images: int = 10_000) -> int:
    """Fit every distributive ``Thermometer`` in ``model`` to the training images; returns how many.

    The thresholds become per-channel quantiles of (at most ``max_images`` of) ``x_train``, the same on
    every rank because the images are the first ones of the split. Uint8 images are scaled to [0, 1].
    """
    from ..layers import Thermometer

    encoders = [m for m in model.modules() if isinstance(m, Thermometer) and m.method == "distributive"]
    if encoders:
        sample = x_train[:max_images]
        sample = sample.float() / 255.0 if sample.dtype == torch.uint8 else sample.float()
        for encoder in encoders:
            if encoder.in_channels == sample.shape[1]:
                encoder.fit(sample)
    return len(encoders)


def make_param_groups(model: nn.Module, weight_decay: float, *, decay_gate_logits: bool = False) -> List[Dict[str, Any]]:
    """Optimizer parameter groups: gate logits, other decayed weights, non-decayed biases/norms.

    Gate logits (all parameters of lgn-nas layers) get ``weight_decay`` only if ``decay_gate_logits``;
    other parameters follow timm's rule (no decay for 1-d tensors and biases). Empty groups are
    dropped. Each group has a ``name`` for inspection.
    """
    gate, decay, no_decay = [], [], []
    seen = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if is_gate_logit_module(module):
                gate.append(param)
            elif param.ndim <= 1 or name.endswith("bias"):
                no_decay.append(param)
            else:
                decay.append(param)
    groups = [
        {"name": "gate_logits", "params": gate, "weight_decay": weight_decay if decay_gate_logits else 0.0},
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def _known_dataset(name: str) -> bool:
    from ..data import list_datasets

    key = str(name).lower().replace("-", "_")
    known = list_datasets()
    return key in known or key in {k.replace("_", "") for k in known}


def check_model_name(name: str) -> None:
    """Raise ``ValueError`` listing the registered LGN models if ``name`` is not one."""
    import timm

    import lgn_nas  # noqa: F401  (registers the models)

    known_models = timm.list_models("lgn*")
    if name not in known_models:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(known_models)}")


def check_names(config: TrainConfig) -> None:
    """Raise ``ValueError`` listing the known names if the model or data set is unknown."""
    from ..data import list_datasets

    check_model_name(config.model)
    if not _known_dataset(config.dataset):
        raise ValueError(f"unknown dataset {config.dataset!r}; known: {', '.join(list_datasets())}")


def build_model(config: TrainConfig, *, num_classes: int, input_shape: Sequence[int]) -> nn.Module:
    """``timm.create_model(config.model, **kwargs)`` with the data set's classes/channels filled in."""
    import timm

    import lgn_nas  # noqa: F401

    kwargs = dict(config.model_kwargs)
    kwargs.setdefault("num_classes", num_classes)
    kwargs.setdefault("in_chans", int(input_shape[0]))
    try:
        cfg = timm.models.get_pretrained_cfg(config.model)
        default_hw = tuple(cfg.input_size[1:]) if cfg is not None and cfg.input_size else None
    except Exception:  # noqa: BLE001 - a model without cfg simply gets no img_size default
        default_hw = None
    if default_hw is not None and default_hw != tuple(input_shape[1:]):
        kwargs.setdefault("img_size", list(input_shape[1:]))
    return timm.create_model(config.model, **kwargs)


def load_run(run_dir: Union[str, Path], *, device: Union[str, torch.device] = "cpu") -> tuple[nn.Module, TrainConfig]:
    """The trained model (in eval mode) and the config of a ``lgn-nas train`` output directory.

    The relaxation temperature is the one training ended with (a temperature schedule's last value),
    so the relaxed model scores as it did at the end of the run.
    """
    from ..data import _spec
    from .checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    path = run_dir / "checkpoint.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run directory: {path.name} is missing")
    checkpoint = load_checkpoint(path, device=device)
    config = TrainConfig.from_dict(checkpoint["meta"]["config"])
    spec = _spec(config.dataset)
    model = build_model(config, num_classes=spec.num_classes, input_shape=spec.input_shape)
    model.load_state_dict(checkpoint["model"])
    history = checkpoint["meta"].get("history") or []
    temperature = history[-1].get("temperature") if history else None
    set_temperature = getattr(model, "set_temperature", None)
    if temperature is not None and set_temperature is not None:
        set_temperature(temperature)
    return model.to(device).eval(), config


def _model_temperature(model: nn.Module) -> Optional[float]:
    for module in model.modules():
        if is_gate_logit_module(module) and hasattr(module, "temperature"):
            return float(module.temperature)
    return None


# --------------------------------------------------------------------------- evaluation

@contextlib.contextmanager
def relaxed_mode(model: nn.Module, *, keep_relaxation: bool = False) -> Iterator[nn.Module]:
    """Model in eval mode except logic layers: training mode with noise-free ``softmax`` relaxation.

    ``keep_relaxation``: the logic layers keep their own relaxation instead (the training forward,
    noise included).
    """
    was_training = {module: module.training for module in model.modules()}
    relaxations = {}
    model.eval()
    try:
        for module in model.modules():
            if is_gate_logit_module(module) and hasattr(module, "relaxation"):
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


def _as_float(x: torch.Tensor) -> torch.Tensor:
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
                xb = _as_float(x[batch]).to(device)
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

    return any(getattr(m, "relaxation", None) in STOCHASTIC_RELAXATIONS
               for m in model.modules() if is_gate_logit_module(m))


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
    head_input = getattr(model, "head_input", None)
    if head_input is None:
        return lambda xb: xb

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
        xb = _as_float(x[batch].cpu())
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


def _netlist_stats(model: nn.Module) -> tuple[Any, Dict[str, Any]]:
    from ..discretize import discretize

    netlist = discretize(model)
    simplified, _ = netlist.simplify()
    stats = {
        "gates_raw": int(netlist.num_gates),
        "gates": int(simplified.num_gates),
        "unused_gate_fraction": float(netlist.unused_gate_fraction()),
        "logic_depth": int(simplified.logic_depth),
    }
    return (netlist, simplified), stats


# --------------------------------------------------------------------------- trainer

class Trainer:
    """One training run. ``fit()`` returns a :class:`TrainResult`.

    - ``callbacks``: called after every epoch (after the checkpoint is written) with an
      :class:`EpochEnd`; returning True or raising :class:`StopTraining` ends training (final test
      metrics are still computed and written); any other exception propagates (e.g. Optuna's
      ``TrialPruned``). Under torchrun every rank runs the callbacks with identical metrics and a
      stop on any rank stops all.
    - ``out_dir``: rank 0 writes ``config.json`` (at start), ``checkpoint.safetensors`` (every
      epoch, atomically), and at the end ``metrics.json``, ``netlist.lgn`` (simplified netlist) and
      ``curves.png``. ``resume=True`` continues from the checkpoint there, if any.
    - ``data``: a preloaded :class:`~lgn_nas.data.DatasetSplits` (the search reuses one per process).
    - ``progress``: a tqdm bar per epoch on rank 0; one line per epoch where stderr is not a terminal
      (:func:`lgn_nas.progress.progress_bar`).
    - Subclasses may override :meth:`compute_loss`.
    """

    def __init__(
            self,
            config: TrainConfig,
            *,
            callbacks: Iterable[Callback] = (),
            out_dir: Union[str, Path, None] = None,
            resume: bool = False,
            progress: bool = False,
            data: Any = None,
            plot: bool = True,
    ) -> None:
        config.validate()
        self.config = config
        self.callbacks = list(callbacks)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.resume = resume
        self.progress = progress
        self.data = data
        self.plot = plot
        self.global_step = 0
        self.model: Optional[nn.Module] = None  # the (unwrapped) model, once fit() has built it
        self.optimizer = None

    # ----------------------------------------------------------------- hooks
    def compute_loss(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss of one batch (mean cross-entropy on the class scores)."""
        return F.cross_entropy(scores, targets)

    # ----------------------------------------------------------------- helpers
    @property
    def checkpoint_path(self) -> Optional[Path]:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    def _load_data(self):
        if self.data is not None:
            return self.data
        from ..data import load_dataset

        return load_dataset(self.config.dataset, root=self.config.data_root, val_size=self.config.val_size,
                            dtype=torch.uint8)

    def _seed_epoch(self, epoch: int, rank: int) -> None:
        # Relaxation noise is a function of (seed, epoch, rank) only: a resumed run repeats it.
        torch.manual_seed((self.config.seed * 1_000_003 + (epoch + 1) * 7_919 + rank * 104_729) % (2 ** 63))

    def _temperature(self, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> float:
        c = self.config
        if c.temperature_step == "epoch":
            progress = epoch / max(1, c.epochs - 1)
        else:
            progress = (epoch * steps_per_epoch + step_in_epoch) / max(1, c.epochs * steps_per_epoch - 1)
        return temperature_at(c.temperature_schedule, self._t_start, c.temperature_end, progress)

    def _diverged(self, message: str) -> TrainingDiverged:
        path = self.checkpoint_path
        if path is not None and path.exists():
            message += f"; the last good checkpoint is {path} (epoch {self._last_checkpoint_epoch})"
        elif path is not None:
            message += "; no checkpoint was written yet"
        return TrainingDiverged(message)

    def _write_checkpoint(self, model, optimizer, epoch: int, history) -> None:
        if self.out_dir is None or not self.ctx.is_main:
            return
        save_checkpoint(
            self.checkpoint_path, model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
            meta={"config": self.config.to_dict(), "epoch": epoch, "global_step": self.global_step,
                  "history": history, "world_size": self.ctx.world_size})
        self._last_checkpoint_epoch = epoch

    def _check_resume_config(self, saved: Dict[str, Any]) -> None:
        current = self.config.to_dict()
        saved = {**TrainConfig().to_dict(), **saved}  # fields added since count as their defaults
        differing = sorted(k for k in set(current) | set(saved)
                           if k != "epochs" and json.dumps(current.get(k)) != json.dumps(saved.get(k)))
        if differing:
            details = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}" for k in differing)
            raise ValueError(f"cannot resume from {self.checkpoint_path}: the config differs ({details})")

    # ----------------------------------------------------------------- main loop
    def fit(self) -> TrainResult:
        c = self.config
        if self.data is None:
            check_names(c)
        else:
            check_model_name(c.model)
        device = resolve_device(c.device)
        self.ctx = ctx = init_distributed(device)
        try:
            return self._fit(device)
        finally:
            ctx.shutdown()

    def _fit(self, device: torch.device) -> TrainResult:
        c, ctx = self.config, self.ctx
        if c.batch_size % ctx.world_size:
            raise ValueError(f"batch_size {c.batch_size} is not divisible by the world size {ctx.world_size}")
        wall_start = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.set_device(device)
        splits = self._load_data()
        x_train, y_train = splits.train
        if c.limit_train is not None:
            x_train, y_train = x_train[:c.limit_train], y_train[:c.limit_train]
        x_test, y_test = splits.test
        if c.limit_test is not None:
            x_test, y_test = x_test[:c.limit_test], y_test[:c.limit_test]
        if splits.val[0].shape[0] > 0:
            eval_split, (x_eval, y_eval) = "val", splits.val
        else:
            eval_split, (x_eval, y_eval) = "test", (x_test, y_test)

        torch.manual_seed(c.seed)
        model = build_model(c, num_classes=splits.num_classes, input_shape=splits.input_shape)
        fit_encoders(model, x_train)  # before the move; a resumed run loads the saved thresholds over these
        model = model.to(device)
        self.model = model
        from timm.optim import create_optimizer_v2

        groups = make_param_groups(model, c.weight_decay, decay_gate_logits=c.decay_gate_logits)
        optimizer = create_optimizer_v2(groups, opt=c.optimizer, lr=c.lr, weight_decay=c.weight_decay,
                                        momentum=c.momentum)
        self.optimizer = optimizer
        from ..data import TensorLoader

        loader = TensorLoader(x_train, y_train, batch_size=c.batch_size // ctx.world_size, shuffle=True,
                              seed=c.seed, rank=ctx.rank, world_size=ctx.world_size, device=device)
        steps_per_epoch = len(loader)
        scheduler = None
        if c.scheduler not in ("none", "", None):
            from timm.scheduler import create_scheduler_v2

            scheduler, _ = create_scheduler_v2(
                optimizer, sched=c.scheduler, num_epochs=c.epochs, min_lr=c.min_lr, warmup_epochs=c.warmup_epochs,
                warmup_lr=c.warmup_lr, step_on_epochs=not c.sched_on_updates, updates_per_epoch=steps_per_epoch)

        t_model = _model_temperature(model)
        self._t_start = c.temperature_start if c.temperature_start is not None else t_model
        set_temperature = getattr(model, "set_temperature", None)
        if c.temperature_schedule != "constant" or c.temperature_start is not None:
            if set_temperature is None or self._t_start is None:
                raise ValueError(f"model {c.model} has no temperature to schedule (no set_temperature)")

        # ---- resume
        start_epoch, history = 0, []
        self._last_checkpoint_epoch = None
        if self.out_dir is not None and ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            state = load_checkpoint(self.checkpoint_path, device=device)
            meta = state["meta"]
            self._check_resume_config(meta["config"])
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch, self.global_step, history = int(meta["epoch"]), int(meta["global_step"]), list(meta["history"])
            self._last_checkpoint_epoch = start_epoch
            if scheduler is not None:
                scheduler.step(start_epoch)
                if c.sched_on_updates:
                    scheduler.step_update(self.global_step)
        elif self.out_dir is not None and ctx.is_main:
            atomic_write_json(self.out_dir / "config.json", c.to_dict())

        train_model: nn.Module = model
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

        stopped_early, stop_reason = False, None
        epoch = start_epoch
        for epoch in range(start_epoch, c.epochs):
            if stopped_early:
                break
            self._seed_epoch(epoch, ctx.rank)
            loader.set_epoch(epoch)
            if set_temperature is not None and self._t_start is not None and (
                    c.temperature_schedule != "constant" or c.temperature_start is not None):
                set_temperature(self._temperature(epoch, 0, steps_per_epoch))
            train_stats = self._train_epoch(train_model, model, optimizer, scheduler, loader, epoch, steps_per_epoch,
                                            set_temperature, device)
            if scheduler is not None:
                scheduler.step(epoch + 1)
            for name, param in model.named_parameters():
                if not torch.isfinite(param).all():
                    raise self._diverged(f"parameter {name} became non-finite in epoch {epoch + 1}")

            relaxed = evaluate(model, x_eval, y_eval, relaxed=True, batch_size=c.eval_batch_size, ctx=ctx)
            (netlist, _), gate_stats = _netlist_stats(model)
            # The netlist computes exactly the eval model (checked on the test set at the end) and is
            # far faster than the torch eval forward, so per-epoch discrete accuracy goes through it.
            discrete = evaluate_netlist(netlist, x_eval, y_eval, ctx=ctx, feed=netlist_feed(model))
            metrics = {
                "epoch": epoch + 1,
                **train_stats,
                f"{eval_split}_loss_relaxed": relaxed["loss"],
                f"{eval_split}_acc_relaxed": relaxed["acc"],
                f"{eval_split}_acc_discrete": discrete["acc"],
                f"{eval_split}_gap": relaxed["acc"] - discrete["acc"],
                **gate_stats,
                "temperature": _model_temperature(model),
            }
            history.append(metrics)
            self._write_checkpoint(model, optimizer, epoch + 1, history)

            stop = False
            for callback in self.callbacks:
                try:
                    if callback(EpochEnd(epoch + 1, metrics, model, c, history, self)):
                        stop, stop_reason = True, f"callback {getattr(callback, '__name__', callback)!r} returned True"
                except StopTraining as signal:
                    stop, stop_reason = True, str(signal) or "StopTraining"
                if stop:
                    break
            flag = torch.tensor([1.0 if stop else 0.0], device=device if device.type == "cuda" else "cpu")
            if ctx.all_reduce_max(flag).item() > 0:
                stopped_early = True
                stop_reason = stop_reason or "stopped by a callback on another rank"
        epochs_completed = len(history)

        # ---- final test evaluation
        model.eval()
        test_relaxed = evaluate(model, x_test, y_test, relaxed=True, batch_size=c.eval_batch_size, ctx=ctx)
        relaxations = {m.relaxation for m in model.modules() if is_gate_logit_module(m) and hasattr(m, "relaxation")}
        if relaxations <= {"softmax"}:  # the training forward is the relaxed model just scored
            test_train_mode = test_relaxed
        else:
            test_train_mode = evaluate_train_mode(model, x_test, y_test, seed=c.seed, batch_size=c.eval_batch_size,
                                                  ctx=ctx)
        test_discrete = evaluate(model, x_test, y_test, relaxed=False, batch_size=c.eval_batch_size, ctx=ctx,
                                 return_scores=not ctx.enabled)
        (netlist, simplified), gate_stats = _netlist_stats(model)
        train_seconds = float(sum(h["train_seconds"] for h in history))
        train_images = float(sum(h["train_images"] for h in history))
        metrics: Dict[str, Any] = {
            "model": c.model,
            "dataset": c.dataset,
            "epochs": epochs_completed,
            "test_acc_relaxed": test_relaxed["acc"],
            "test_acc_discrete": test_discrete["acc"],
            "test_loss_relaxed": test_relaxed["loss"],
            "discretization_gap": test_relaxed["acc"] - test_discrete["acc"],
            "test_acc_train_mode": test_train_mode["acc"],
            "train_mode_gap": test_train_mode["acc"] - test_discrete["acc"],
            **gate_stats,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "train_seconds": train_seconds,
            "images_per_second": train_images / train_seconds if train_seconds > 0 else 0.0,
            "world_size": ctx.world_size,
            "device": str(device),
            "stopped_early": stopped_early,
            "history": history,
        }
        mismatch = None
        if ctx.is_main:
            mismatch = self._check_netlists(model, netlist, simplified, x_test, y_test, metrics,
                                            test_discrete.get("scores"))
        metrics["wall_seconds"] = time.perf_counter() - wall_start
        if self.out_dir is not None and ctx.is_main:
            simplified.save(self.out_dir / "netlist.lgn")
            atomic_write_json(self.out_dir / "metrics.json", metrics)
            if self.plot and history:
                from .plot import plot_curves

                plot_curves(history, self.out_dir / "curves.png", eval_split=eval_split)
        ctx.barrier()
        if mismatch:
            raise RuntimeError(mismatch)
        return TrainResult(config=c, metrics=metrics, history=history, model=model, netlist=netlist,
                           out_dir=self.out_dir, epochs_completed=epochs_completed, stopped_early=stopped_early,
                           stop_reason=stop_reason)

    def _check_netlists(self, model, netlist, simplified, x_test, y_test, metrics, reference=None) -> Optional[str]:
        """Score the test set through both netlists; they must equal the eval model's scores."""
        c = self.config
        if reference is None:
            reference = evaluate(model, x_test, y_test, relaxed=False, batch_size=c.eval_batch_size,
                                 return_scores=True)["scores"]
        reference = reference.numpy()
        feed = netlist_feed(model)
        x_np = torch.cat([feed(_as_float(x_test[i:i + c.eval_batch_size].clone()).cpu())
                          for i in range(0, x_test.shape[0], c.eval_batch_size)]).numpy().astype(np.float32)
        labels = y_test.cpu().numpy()
        problems = []
        for name, net in (("netlist", netlist), ("simplified netlist", simplified)):
            scores = net.evaluate(x_np)
            accuracy = float((scores.argmax(axis=1) == labels).mean()) if len(labels) else 0.0
            metrics[f"test_acc_{name.replace(' ', '_')}"] = accuracy
            if scores.shape != reference.shape or not np.allclose(scores, reference, atol=1e-5):
                problems.append(f"{name} scores differ from the eval model on the test set")
        metrics["netlist_agrees"] = not problems
        return "; ".join(problems) if problems else None

    def _train_epoch(self, train_model, model, optimizer, scheduler, loader, epoch, steps_per_epoch,
                     set_temperature, device) -> Dict[str, Any]:
        c, ctx = self.config, self.ctx
        train_model.train()
        bar = None
        if self.progress and ctx.is_main:
            from ..progress import progress_bar

            bar = progress_bar(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{c.epochs}", unit="step")
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count (global)
        per_step_t = c.temperature_step == "step" and c.temperature_schedule != "constant"
        sync_device = device if device.type == "cuda" else torch.device("cpu")
        start = time.perf_counter()
        try:
            for step, (xb, yb) in enumerate(loader):
                if per_step_t:
                    set_temperature(self._temperature(epoch, step, steps_per_epoch))
                if c.random_shift:
                    xb = random_shift(xb, c.random_shift)
                if c.random_crop_padding:
                    xb = random_crop(xb, c.random_crop_padding)
                if c.hflip:
                    xb = random_hflip(xb)
                scores = train_model(xb)
                loss = self.compute_loss(scores, yb)
                with torch.no_grad():
                    n = yb.shape[0]
                    finite = torch.isfinite(loss.detach()).float()
                    stats = torch.stack([
                        torch.nan_to_num(loss.detach().float() * n, nan=0.0, posinf=0.0, neginf=0.0),
                        (scores.argmax(dim=-1) == yb).sum().float(),
                        torch.tensor(float(n), device=loss.device),
                        1.0 - finite,
                    ]).to(sync_device, torch.float64)
                    ctx.all_reduce_sum(stats)
                    stats = stats.cpu()
                if stats[3] > 0:
                    raise self._diverged(
                        f"non-finite loss ({float(loss.detach())}) at epoch {epoch + 1}, step {step + 1} "
                        f"(global step {self.global_step + 1})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                optimizer.step()
                self.global_step += 1
                if scheduler is not None and c.sched_on_updates:
                    scheduler.step_update(self.global_step)
                totals += stats[:3]
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0 or step + 1 == steps_per_epoch:
                        elapsed = time.perf_counter() - start
                        bar.set_postfix(loss=f"{totals[0] / totals[2]:.4f}", acc=f"{totals[1] / totals[2]:.4f}",
                                        img_s=f"{totals[2] / max(elapsed, 1e-9):.0f}", refresh=False)
        finally:
            if bar is not None:
                bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        count = max(float(totals[2]), 1.0)
        return {
            "train_loss": float(totals[0]) / count,
            "train_acc": float(totals[1]) / count,
            "train_images": int(totals[2]),
            "train_seconds": seconds,
            "images_per_second": float(totals[2]) / seconds if seconds > 0 else 0.0,
            "lr": float(optimizer.param_groups[0]["lr"]),
        }


def fit(
        config: TrainConfig,
        *,
        callbacks: Iterable[Callback] = (),
        out_dir: Union[str, Path, None] = None,
        resume: bool = False,
        progress: bool = False,
        data: Any = None,
        plot: bool = True,
) -> TrainResult:
    """Train ``config`` and return a :class:`TrainResult` (see :class:`Trainer` for the arguments)."""
    return Trainer(config, callbacks=callbacks, out_dir=out_dir, resume=resume, progress=progress, data=data,
                   plot=plot).fit()
