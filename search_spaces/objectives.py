"""Objectives and profilers: train a trial's genome, score its discrete circuit.

Objective names (``OBJECTIVES``, with their Optuna direction):

- ``acc`` (maximize): discrete validation accuracy of the last epoch, i.e. the accuracy of the
  netlist (every neuron at its argmax gate), never the relaxed model's.
- ``gates`` (minimize): gates of the trained circuit after netlist simplification (exact).
- ``latency`` (minimize): measured CPU time per image (ns) of the simplified netlist compiled with
  ``tvm_ops.compile_netlist`` (needs TVM; ``throughput`` is stored beside it).
- ``depth`` (minimize): logic depth of the simplified circuit.

Budgets are Optuna constraints (``trial.set_constraint``; feasible when <= 0): ``max_gates`` on the
final simplified count. ``max_raw_gates`` is checked before training from the genome
(:func:`~search_spaces.genome.raw_gate_count`); a trial over it is pruned at once.
:func:`check_budgets` refuses, before a study starts, a budget no genome of the space can meet.

Training options: each trial trains with the study's ``TrainConfig`` template (for a model with a
recipe, such as the conv nets, the recipe is in it), the searched learning rate (``lr_range``) and the
space's searched training options (``training``: e.g. the softmax anneal's end temperature, weight
decay); the fields a trial changes are stored as its user attribute ``train_overrides``.

Pruning: a single ``acc`` objective reports the per-epoch discrete validation accuracy
(``trial.report``) to the study's pruner (median, Hyperband). Multi-objective studies cannot report,
so a trial is pruned by hand (``optuna.TrialPruned``) when it is *hopeless*: still below
``prune_below`` accuracy (default 1.2 x chance) after two epochs, or, once past ``prune_warmup``
epochs, more than ``prune_margin`` behind, at the same epoch, a completed trial with no more raw gates.
The margin rule and the single-objective median pruner both wait ``prune_warmup`` epochs (default
:func:`default_prune_warmup`: a tenth of the schedule), because early accuracy mostly ranks learning
rates: in a 60-epoch MNIST study a trial at lr 0.005 sat 8.6 points behind one at lr 0.008 after its
first epoch.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .genome import build_model, genome_model_kwargs, raw_gate_count, validate_genome

__all__ = ["OBJECTIVES", "parse_objectives", "Objective", "TrialResult", "measure_latency", "netlist_inputs",
           "train_genome", "build_trial_model", "tvm_available", "check_budgets"]

OBJECTIVES: Dict[str, str] = {"acc": "maximize", "gates": "minimize", "latency": "minimize", "depth": "minimize"}


class ObjectiveNames(tuple):
    """Objective names :func:`parse_objectives` has checked (taken as they are when passed again)."""


def parse_objectives(objectives: Any) -> Tuple[str, ...]:
    """``"acc,gates"`` or a sequence -> validated tuple of names (no repeats)."""
    if isinstance(objectives, ObjectiveNames):
        return objectives
    names = [n.strip() for n in objectives.split(",")] if isinstance(objectives, str) else list(objectives)
    names = [n for n in names if n]
    bad = [n for n in names if n not in OBJECTIVES]
    if not names or bad:
        raise ValueError(f"unknown objective(s) {bad or names!r}; known: {', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"objectives repeat a name: {names}")
    return ObjectiveNames(names)


def tvm_available() -> bool:
    try:
        import tvm  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means no TVM lowering here
        return False
    return True


# --------------------------------------------------------------------------- profilers

def netlist_inputs(model: Any, x: Any) -> np.ndarray:
    """What the model's netlist reads for images ``x``: the images, or a hybrid's head features."""
    import torch

    from lgn_nas.interfaces import HasLogicHead

    if isinstance(model, HasLogicHead):
        model.eval()
        with torch.no_grad():
            xf = x.float().div(255.0) if x.dtype == torch.uint8 else x
            return model.head_input(xf).numpy().astype(np.float32)
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def measure_latency(netlist: Any, inputs: np.ndarray, *, threads: int = 1, repeats: int = 3,
                    batch: int = 8192, simplified: bool = False) -> Dict[str, float]:
    """Compile ``netlist`` with TVM and time it on ``inputs`` (tiled up to ``batch`` images).

    Returns ``latency_ns`` (best wall time per image), ``throughput`` (images/s) and
    ``compile_seconds``. Results agree bit for bit with the reference evaluator (checked on a few).
    ``simplified``: the netlist is simplified already (a trial's), so the compiler does not do it again.
    """
    import tvm_ops

    start = time.perf_counter()
    compiled = tvm_ops.compile_netlist(netlist, threads=threads, simplify=not simplified)
    compile_seconds = time.perf_counter() - start
    inputs = np.asarray(inputs)
    reps = max(1, math.ceil(batch / max(1, inputs.shape[0])))
    x = np.ascontiguousarray(np.concatenate([inputs] * reps)[:batch])
    if not np.array_equal(compiled(x[:64]), netlist.evaluate(x[:64])):
        raise RuntimeError("the compiled netlist disagrees with the reference evaluator")
    compiled(x)  # warm up
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        compiled(x)
        best = min(best, time.perf_counter() - t)
    return {"latency_ns": best / x.shape[0] * 1e9, "throughput": x.shape[0] / best, "compile_seconds": compile_seconds}


# --------------------------------------------------------------------------- training

class TrialResult(dict):
    """Metrics of a trained genome (a dict) plus the trained ``model`` and its simplified ``netlist``."""

    model: Any = None
    netlist: Any = None


def train_genome(genome: Dict[str, Any], config: Any, data: Any,
                 on_epoch: Callable[[int, float, Dict[str, Any]], None] = lambda *a: None, *,
                 model: Any = None) -> TrialResult:
    """Train ``genome`` with ``config`` (a TrainConfig template: model/model_kwargs are replaced).

    ``on_epoch(epoch, discrete_val_acc, metrics)`` runs after every epoch and may raise (e.g.
    ``optuna.TrialPruned``). ``model``: the genome's model, built already (:func:`build_trial_model`);
    otherwise training builds it. Returns a :class:`TrialResult`.
    """
    from lgn_nas.train import fit

    config = config.replace(model=genome["model"], model_kwargs=genome_model_kwargs(genome))
    split = "val" if data.val[0].shape[0] else "test"

    def callback(event: Any) -> None:
        on_epoch(event.epoch, float(event.metrics[f"{split}_acc_discrete"]), event.metrics)

    run = fit(config, callbacks=[callback], data=data, plot=False, model=model)
    m = run.metrics
    result = TrialResult(val_acc_discrete=float(run.history[-1][f"{split}_acc_discrete"]),
                         test_acc_discrete=float(m["test_acc_discrete"]), test_acc_relaxed=float(m["test_acc_relaxed"]),
                         gates=int(m["gates"]), gates_raw=int(m["gates_raw"]), logic_depth=int(m["logic_depth"]),
                         train_seconds=float(m["train_seconds"]), epochs=int(m["epochs"]))
    result.model = run.model
    result.netlist = run.simplified_netlist
    return result


def build_trial_model(genome: Dict[str, Any], config: Any) -> Any:
    """``genome``'s model as training ``config`` would build it (after ``torch.manual_seed(config.seed)``:
    a hybrid's backbone draws its init from the global generator); a genome the model refuses raises
    :class:`~search_spaces.genome.GenomeError`. A trial builds its model once, here, and trains it."""
    import torch

    torch.manual_seed(config.seed)
    return build_model(genome)


# --------------------------------------------------------------------------- the objective

def default_prune_warmup(epochs: int) -> int:
    """Epochs a trial trains before any pruning: ``epochs // 10`` (none for schedules under 10 epochs)."""
    return max(0, int(epochs) // 10)


def resolve_prune_warmup(warmup: Optional[int], epochs: int) -> int:
    """``warmup`` checked (an int >= 0), or :func:`default_prune_warmup` of ``epochs`` when ``None``."""
    if warmup is None:
        return default_prune_warmup(epochs)
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"prune_warmup must be an int >= 0 (epochs), got {warmup!r}")
    return warmup


def check_budgets(space: Any, *, max_gates: Optional[int] = None, max_raw_gates: Optional[int] = None) -> None:
    """Refuse (``ValueError`` naming the bound) a gate budget that no genome of ``space`` can meet.

    ``max_raw_gates`` below ``space.min_raw_gates()`` (the smallest genome's raw gates) would prune
    every trial; ``max_gates`` (after simplification, which can remove every gate) must be >= 0.
    """
    for name, value in (("max_gates", max_gates), ("max_raw_gates", max_raw_gates)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"{name} must be an int >= 0 (gates), got {value!r}")
    if max_raw_gates is not None:
        floor = space.min_raw_gates()
        if max_raw_gates < floor:
            raise ValueError(f"max_raw_gates {max_raw_gates} is below the smallest genome of space "
                             f"{getattr(space, 'name', space)!r} ({floor} raw gates): every trial would be pruned; "
                             "raise --max-raw-gates or lower the space's bounds (channels, tree_depth, head_width, ...)")


class Objective:
    """``objective(trial)``: genome from ``space``, train, score; returns one value per objective name.

    Keyword-only arguments: ``space`` (callable trial -> genome), ``data`` (a preloaded
    ``DatasetSplits``), ``train_config`` (a ``TrainConfig`` template), ``objectives`` (names from
    :data:`OBJECTIVES`), ``max_gates`` / ``max_raw_gates`` budgets, ``prune_below`` /
    ``prune_margin`` (manual pruning of multi-objective trials), ``prune_warmup`` (epochs before the
    margin rule applies; ``None``: :func:`default_prune_warmup`), ``lr_range`` (search the learning rate,
    log-uniform, as trial parameter ``lr``; ``None``: the template's), ``trial_dir`` (where each trial's
    model (timm ``save_for_hf`` layout), netlist and metrics go; ``None``: nowhere), ``latency_threads``,
    ``heartbeat_interval`` (seconds between the trial heartbeats of :mod:`search_spaces.recovery`, for
    storages without Optuna's own; ``None``: none, the worker's pid on this host is still recorded),
    ``training`` (``training(trial, genome, template) -> TrainConfig fields``, e.g. a space's
    ``suggest_training``; ``None``: only the learning rate is searched).
    """

    def __init__(self, *, space: Callable[[Any], Dict[str, Any]], data: Any, train_config: Any,
                 objectives: Sequence[str] = ("acc", "gates"), max_gates: Optional[int] = None,
                 max_raw_gates: Optional[int] = None, prune_below: Optional[float] = None,
                 prune_margin: Optional[float] = 0.05, trial_dir: Optional[Path] = None,
                 latency_threads: int = 1, lr_range: Optional[Tuple[float, float]] = None,
                 prune_warmup: Optional[int] = None, heartbeat_interval: Optional[float] = None,
                 training: Optional[Callable[[Any, Dict[str, Any], Any], Dict[str, Any]]] = None) -> None:
        self.space = space
        self.data = data
        self.train_config = train_config
        self.objectives = parse_objectives(objectives)
        if "latency" in self.objectives and not tvm_available():
            raise ValueError("objective 'latency' needs the TVM lowering (import tvm failed): "
                             "install apache-tvm or drop 'latency'")
        self.max_gates = max_gates
        self.max_raw_gates = max_raw_gates
        self.prune_below = prune_below if prune_below is not None else 1.2 / data.num_classes
        self.prune_margin = prune_margin
        self.prune_warmup = resolve_prune_warmup(prune_warmup, train_config.epochs)
        self.trial_dir = Path(trial_dir) if trial_dir is not None else None
        self.latency_threads = latency_threads
        self.lr_range = tuple(lr_range) if lr_range is not None else None
        self.heartbeat_interval = heartbeat_interval
        self.training = training

    def trial_config(self, trial: Any, genome: Dict[str, Any]) -> Any:
        """The ``TrainConfig`` this trial trains with: the template, its searched lr and training options."""
        overrides: Dict[str, Any] = {}
        if self.lr_range is not None:  # a training hyperparameter, not part of the genome
            overrides["lr"] = trial.suggest_float("lr", *self.lr_range, log=True)
        if self.training is not None:
            overrides.update(self.training(trial, genome, self.train_config))
        trial.set_user_attr("train_overrides", overrides)
        return self.train_config.replace(**overrides)

    # ----------------------------------------------------------------- pruning
    def _hopeless(self, trial: Any, epoch: int, acc: float, raw_gates: int) -> Optional[str]:
        import optuna

        if epoch >= 2 and acc < self.prune_below:
            return f"discrete val accuracy {acc:.4f} < {self.prune_below:.4f} after epoch {epoch}"
        if self.prune_margin is None or epoch <= self.prune_warmup:
            return None
        for other in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            curve = other.user_attrs.get("val_acc_discrete_curve") or []
            other_raw = other.user_attrs.get("gates_raw_estimate")
            if len(curve) >= epoch and other_raw is not None and other_raw <= raw_gates \
                    and curve[epoch - 1] - acc > self.prune_margin:
                return (f"discrete val accuracy {acc:.4f} after epoch {epoch} is {curve[epoch - 1] - acc:.4f} behind "
                        f"trial {other.number} ({other_raw} <= {raw_gates} raw gates)")
        return None

    def _on_epoch(self, trial: Any, raw_gates: int, curve: List[float]) -> Callable[[int, float, Dict[str, Any]], None]:
        import optuna

        def on_epoch(epoch: int, acc: float, metrics: Dict[str, Any]) -> None:
            curve.append(float(acc))
            trial.set_user_attr("val_acc_discrete_curve", list(curve))
            if len(self.objectives) == 1:
                if self.objectives[0] == "acc":
                    trial.report(float(acc), epoch)
                    if trial.should_prune():
                        trial.set_user_attr("pruned_reason", f"pruner stopped it after epoch {epoch} ({acc:.4f})")
                        raise optuna.TrialPruned(f"epoch {epoch}: discrete val accuracy {acc:.4f}")
                return
            reason = self._hopeless(trial, epoch, float(acc), raw_gates)
            if reason is not None and epoch < self.train_config.epochs:
                trial.set_user_attr("pruned_reason", reason)
                raise optuna.TrialPruned(reason)

        return on_epoch

    # ----------------------------------------------------------------- call
    def __call__(self, trial: Any) -> Any:
        import optuna

        from .recovery import WORKER_ATTR, Heartbeat, worker_identity

        # First, so that a worker killed from here on is recognised as gone (search_spaces.recovery).
        trial.storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, worker_identity())
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if self.heartbeat_interval is None:
            return self._run(trial)
        with Heartbeat(trial, interval=self.heartbeat_interval):
            return self._run(trial)

    def _run(self, trial: Any) -> Any:
        import optuna

        genome = validate_genome(self.space(trial), build=False)  # a space's genome is checked already
        model = build_trial_model(genome, self.train_config)  # the trial's one build, which checks the rest
        raw = raw_gate_count(genome, model=model)
        trial.set_user_attr("genome", genome)
        trial.set_user_attr("gates_raw_estimate", raw)
        if self.max_raw_gates is not None and raw > self.max_raw_gates:
            if self.max_gates is not None:
                trial.set_constraint("gates", float(raw - self.max_gates))
            trial.set_user_attr("pruned_reason", f"{raw} raw gates > max_raw_gates {self.max_raw_gates}")
            raise optuna.TrialPruned(f"{raw} raw gates > max_raw_gates {self.max_raw_gates}")
        curve: List[float] = []
        config = self.trial_config(trial, genome)
        try:
            result = train_genome(genome, config, self.data, self._on_epoch(trial, raw, curve), model=model)
        except optuna.TrialPruned:
            raise
        except Exception as error:
            from lgn_nas.train import TrainingDiverged

            if isinstance(error, TrainingDiverged):
                trial.set_user_attr("pruned_reason", f"training diverged: {error}")
                raise optuna.TrialPruned(f"training diverged: {error}") from error
            raise
        metrics: Dict[str, Any] = {k: v for k, v in result.items()}
        if "latency" in self.objectives:
            x_val = self.data.val[0] if self.data.val[0].shape[0] else self.data.test[0]
            metrics.update(measure_latency(result.netlist, netlist_inputs(result.model, x_val[:2048]),
                                           threads=self.latency_threads, simplified=True))
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        if self.max_gates is not None:
            trial.set_constraint("gates", float(metrics["gates"] - self.max_gates))
        if self.trial_dir is not None:
            save_trial(self.trial_dir / f"trial_{trial.number:05d}", genome, result.model, result.netlist, metrics)
        values = {"acc": metrics["val_acc_discrete"], "gates": metrics["gates"],
                  "latency": metrics.get("latency_ns"), "depth": metrics["logic_depth"]}
        out = tuple(float(values[name]) for name in self.objectives)
        return out[0] if len(out) == 1 else out


def save_trial(directory: Path, genome: Dict[str, Any], model: Any, netlist: Any, metrics: Dict[str, Any]) -> None:
    """Write a trained trial atomically: timm ``save_for_hf`` files, ``netlist.lgn``, genome and metrics."""
    import timm

    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    timm.models.save_for_hf(model, tmp, model_args=genome_model_kwargs(genome), safe_serialization=True)
    # save_for_hf names the architecture from the model's pretrained_cfg; keep the genome's model name.
    config_path = tmp / "config.json"
    config = json.loads(config_path.read_text())
    config["architecture"] = genome["model"]
    config_path.write_text(json.dumps(config, indent=2))
    netlist.save(tmp / "netlist.lgn")
    (tmp / "genome.json").write_text(json.dumps(genome, indent=2))
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
