"""The training loop: ``fit(config)`` / :class:`Trainer`.

What the loop reports is defined in :mod:`lgn_nas.train.evaluation` (relaxed, train-mode and discrete
accuracy, and the gaps); the model and the optimizer groups come from :mod:`lgn_nas.train.build`.
Per-epoch metrics use the validation split (``val_*`` keys) or, with ``val_size=0``, the test split
(``test_*``); final metrics are on the test split, where the netlist (raw and simplified) must score
exactly as the eval model (a mismatch raises ``RuntimeError``: a discretisation bug).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..layers.logic import freeze_leading_logic_layers, logic_layers, set_temperature
from ..models._optim import is_gate_logit_module
from .augment import random_crop, random_hflip, random_shift
from .build import (build_model, check_model_name, check_names, fit_encoders, load_initial_checkpoint, load_run,
                    make_param_groups, model_temperature)
from .checkpoint import BEST_CHECKPOINT_NAME, CHECKPOINT_NAME, atomic_write_json, load_checkpoint, save_checkpoint
from .config import TrainConfig, temperature_at
from .distributed import init_distributed, resolve_device
from .evaluation import (as_float, evaluate, evaluate_netlist, evaluate_train_mode, netlist_feed, netlist_stats,
                         relaxed_mode)
from .host import training_host

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
    simplified_netlist: Any = None  # netlist.simplify()[0]: what metrics["gates"] counts and netlist.lgn holds


# --------------------------------------------------------------------------- trainer

@dataclasses.dataclass
class _Run:
    """What one ``Trainer.fit`` call works with, from setup to the final metrics."""

    model: nn.Module
    optimizer: Any
    scheduler: Any
    loader: Any
    steps_per_epoch: int
    set_temperature: Optional[Callable[[float], None]]  # None: the temperature is not scheduled
    eval_split: str  # "val", or "test" with val_size=0
    eval_data: tuple
    test_data: tuple
    stopped_early: bool = False
    stop_reason: Optional[str] = None
    netlists: Optional[tuple] = None  # ((netlist, simplified), gate stats, state) of the last scored model


def _state_key(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of ``model`` is replaced or changed in place (so a
    netlist derived from it can be reused exactly as long as the key stays the same)."""
    return tuple((id(t), t._version) for t in (*model.parameters(), *model.buffers()))


def _netlists(run: "_Run") -> tuple:
    """``((netlist, simplified), gate_stats)`` of the run's model, reusing the last ones while the model
    is unchanged (the last epoch's serve the final metrics)."""
    key = _state_key(run.model)
    if run.netlists is None or run.netlists[2] != key:
        run.netlists = (*netlist_stats(run.model), key)
    return run.netlists[0], run.netlists[1]


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
    - ``model``: the model to train, freshly built from ``config`` as :func:`~lgn_nas.train.build_model`
      builds it (right after ``torch.manual_seed(config.seed)``), so a caller that built it already
      (the search builds each trial's model once, to validate its genome) does not build another.
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
            model: Optional[nn.Module] = None,
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
        self._given_model = model
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

    def _keep_if_best(self, run: "_Run", model, optimizer, epoch: int, history) -> None:
        """Under ``select_best``: remember (and write ``best.safetensors``) when this epoch's discrete
        validation accuracy beats every earlier epoch's (ties keep the earlier epoch)."""
        acc = history[-1][f"{run.eval_split}_acc_discrete"]
        if self._best is not None and acc <= self._best[0]:
            return
        self._best = (acc, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if self.out_dir is not None and self.ctx.is_main:
            self._save(self.out_dir / BEST_CHECKPOINT_NAME, model, optimizer, epoch, history)

    def _resume_best(self, run: "_Run", history, device: torch.device) -> None:
        """The selected epoch so far of a resumed ``select_best`` run, from its ``best.safetensors``."""
        path = self.out_dir / BEST_CHECKPOINT_NAME if self.out_dir is not None else None
        if not history or path is None or not path.is_file():
            return
        state = load_checkpoint(path, device=device)
        epoch = int(state["meta"]["epoch"])
        self._best = (history[epoch - 1][f"{run.eval_split}_acc_discrete"], epoch, state["model"])

    def _save(self, path: Path, model, optimizer, epoch: int, history) -> None:
        """One checkpoint file of the run's state after ``epoch``."""
        save_checkpoint(
            path, model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
            meta={"config": self.config.to_dict(), "epoch": epoch, "global_step": self.global_step,
                  "history": history, "world_size": self.ctx.world_size})

    def _write_checkpoint(self, model, optimizer, epoch: int, history) -> None:
        if self.out_dir is None or not self.ctx.is_main:
            return
        self._save(self.checkpoint_path, model, optimizer, epoch, history)
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
            with training_host():  # flush-to-zero floats, a heap that keeps freed memory (see train/host.py)
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
        run = self._setup(device)
        history = self._resume_or_start(run, device)
        self._train_epochs(run, history, device)
        return self._finish(run, history, wall_start, device)

    def _setup(self, device: torch.device) -> "_Run":
        """Data splits, model, optimizer, loader, scheduler and the temperature schedule's start."""
        c, ctx = self.config, self.ctx
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
        model = self._given_model
        if model is None:
            model = build_model(c, num_classes=splits.num_classes, input_shape=splits.input_shape)
        fit_encoders(model, x_train)  # before the move; a resumed run loads the saved thresholds over these
        if c.initial_checkpoint is not None:
            load_initial_checkpoint(model, c.initial_checkpoint, model_name=c.model)
        if c.freeze_logic_layers:
            freeze_leading_logic_layers(model, c.freeze_logic_layers)
        model = model.to(device)
        self.model = model
        from timm.optim import create_optimizer_v2

        groups = make_param_groups(model, c.weight_decay, decay_gate_logits=c.decay_gate_logits, lr=c.lr)
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

        t_model = model_temperature(model)
        self._t_start = c.temperature_start if c.temperature_start is not None else t_model
        scheduled = c.temperature_schedule != "constant" or c.temperature_start is not None
        if scheduled and (t_model is None or self._t_start is None):
            raise ValueError(f"model {c.model} has no temperature to schedule (no logic layers)")
        return _Run(model=model, optimizer=optimizer, scheduler=scheduler, loader=loader, steps_per_epoch=steps_per_epoch,
                    set_temperature=functools.partial(set_temperature, model) if scheduled else None,
                    eval_split=eval_split, eval_data=(x_eval, y_eval), test_data=(x_test, y_test))

    def _resume_or_start(self, run: "_Run", device: torch.device) -> List[Dict[str, Any]]:
        """The history so far: the checkpoint's (``resume``, its state loaded into the run) or none
        (and ``config.json`` written)."""
        c, ctx = self.config, self.ctx
        self.global_step, history = 0, []
        self._start_epoch = 0
        self._last_checkpoint_epoch = None
        self._best = None  # (val discrete accuracy, epoch, model state) of the selected epoch (select_best)
        if self.out_dir is not None and ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            state = load_checkpoint(self.checkpoint_path, device=device)
            meta = state["meta"]
            self._check_resume_config(meta["config"])
            run.model.load_state_dict(state["model"])
            run.optimizer.load_state_dict(state["optimizer"])
            self._start_epoch, self.global_step, history = (int(meta["epoch"]), int(meta["global_step"]),
                                                            list(meta["history"]))
            self._last_checkpoint_epoch = self._start_epoch
            if c.select_best:
                self._resume_best(run, history, device)
            if run.scheduler is not None:
                run.scheduler.step(self._start_epoch)
                if c.sched_on_updates:
                    run.scheduler.step_update(self.global_step)
        elif self.out_dir is not None and ctx.is_main:
            atomic_write_json(self.out_dir / "config.json", c.to_dict())
        return history

    def _train_epochs(self, run: "_Run", history: List[Dict[str, Any]], device: torch.device) -> None:
        """Train from the resumed epoch to ``config.epochs``: per epoch, train, score, checkpoint and
        call the callbacks (which may stop the run: ``run.stopped_early``, ``run.stop_reason``)."""
        c, ctx = self.config, self.ctx
        model = run.model
        train_model: nn.Module = model
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        for epoch in range(self._start_epoch, c.epochs):
            if run.stopped_early:
                break
            self._seed_epoch(epoch, ctx.rank)
            run.loader.set_epoch(epoch)
            if run.set_temperature is not None:
                run.set_temperature(self._temperature(epoch, 0, run.steps_per_epoch))
            train_stats = self._train_epoch(train_model, model, run.optimizer, run.scheduler, run.loader, epoch,
                                            run.steps_per_epoch, run.set_temperature, device)
            if run.scheduler is not None:
                run.scheduler.step(epoch + 1)
            for name, param in model.named_parameters():
                if not torch.isfinite(param).all():
                    raise self._diverged(f"parameter {name} became non-finite in epoch {epoch + 1}")
            metrics = self._epoch_metrics(run, epoch, train_stats)
            history.append(metrics)
            self._write_checkpoint(model, run.optimizer, epoch + 1, history)
            if c.select_best:
                self._keep_if_best(run, model, run.optimizer, epoch + 1, history)
            self._run_callbacks(run, EpochEnd(epoch + 1, metrics, model, c, history, self), device)

    def _epoch_metrics(self, run: "_Run", epoch: int, train_stats: Dict[str, Any]) -> Dict[str, Any]:
        """The epoch's training statistics, relaxed and discrete accuracy on the eval split, gates."""
        c, ctx, split = self.config, self.ctx, run.eval_split
        x_eval, y_eval = run.eval_data
        relaxed = evaluate(run.model, x_eval, y_eval, relaxed=True, batch_size=c.eval_batch_size, ctx=ctx)
        (netlist, _), gate_stats = _netlists(run)
        # The netlist computes exactly the eval model (checked on the test set at the end) and is
        # far faster than the torch eval forward, so per-epoch discrete accuracy goes through it.
        discrete = evaluate_netlist(netlist, x_eval, y_eval, ctx=ctx, feed=netlist_feed(run.model))
        return {
            "epoch": epoch + 1,
            **train_stats,
            f"{split}_loss_relaxed": relaxed["loss"],
            f"{split}_acc_relaxed": relaxed["acc"],
            f"{split}_acc_discrete": discrete["acc"],
            f"{split}_gap": relaxed["acc"] - discrete["acc"],
            **gate_stats,
            "temperature": model_temperature(run.model),
        }

    def _run_callbacks(self, run: "_Run", event: EpochEnd, device: torch.device) -> None:
        """Call the callbacks in order until one stops the run; a stop on any rank stops all."""
        stop = False
        for callback in self.callbacks:
            try:
                if callback(event):
                    stop, run.stop_reason = True, f"callback {getattr(callback, '__name__', callback)!r} returned True"
            except StopTraining as signal:
                stop, run.stop_reason = True, str(signal) or "StopTraining"
            if stop:
                break
        flag = torch.tensor([1.0 if stop else 0.0], device=device if device.type == "cuda" else "cpu")
        if self.ctx.all_reduce_max(flag).item() > 0:
            run.stopped_early = True
            run.stop_reason = run.stop_reason or "stopped by a callback on another rank"

    def _finish(self, run: "_Run", history: List[Dict[str, Any]], wall_start: float,
                device: torch.device) -> TrainResult:
        """Final test metrics (relaxed, train mode, discrete, through both netlists), the outputs."""
        c, ctx, model = self.config, self.ctx, run.model
        x_test, y_test = run.test_data
        epochs_completed = len(history)
        selected = {}
        if c.select_best and self._best is not None:
            _, best_epoch, best_state = self._best
            if best_epoch != epochs_completed:
                model.load_state_dict(best_state)
            selected = {"selected_epoch": best_epoch}
        model.eval()
        test_relaxed = evaluate(model, x_test, y_test, relaxed=True, batch_size=c.eval_batch_size, ctx=ctx)
        relaxations = {m.relaxation for m in logic_layers(model)}
        if relaxations <= {"softmax"}:  # the training forward is the relaxed model just scored
            test_train_mode = test_relaxed
        else:
            test_train_mode = evaluate_train_mode(model, x_test, y_test, seed=c.seed, batch_size=c.eval_batch_size,
                                                  ctx=ctx)
        test_discrete = evaluate(model, x_test, y_test, relaxed=False, batch_size=c.eval_batch_size, ctx=ctx,
                                 return_scores=not ctx.enabled)
        (netlist, simplified), gate_stats = _netlists(run)
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
            "stopped_early": run.stopped_early,
            **selected,
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

                plot_curves(history, self.out_dir / "curves.png", eval_split=run.eval_split)
        ctx.barrier()
        if mismatch:
            raise RuntimeError(mismatch)
        return TrainResult(config=c, metrics=metrics, history=history, model=model, netlist=netlist,
                           out_dir=self.out_dir, epochs_completed=epochs_completed, stopped_early=run.stopped_early,
                           stop_reason=run.stop_reason, simplified_netlist=simplified)

    def _check_netlists(self, model, netlist, simplified, x_test, y_test, metrics, reference=None) -> Optional[str]:
        """Score the test set through both netlists; they must equal the eval model's scores."""
        c = self.config
        if reference is None:
            reference = evaluate(model, x_test, y_test, relaxed=False, batch_size=c.eval_batch_size,
                                 return_scores=True)["scores"]
        reference = reference.numpy()
        feed = netlist_feed(model)
        x_np = torch.cat([feed(as_float(x_test[i:i + c.eval_batch_size].clone()).cpu())
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


def fit(config: TrainConfig, **options: Any) -> TrainResult:
    """Train ``config`` and return a :class:`TrainResult`; ``options`` are :class:`Trainer`'s keyword
    arguments (``callbacks``, ``out_dir``, ``resume``, ``progress``, ``data``, ``plot``, ``model``)."""
    return Trainer(config, **options).fit()
