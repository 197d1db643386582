"""Study creation and resumption, the search loop, the Pareto front, its plot and the best model's export."""
from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .config import SearchConfig
from .objectives import (
    OBJECTIVES, Objective, check_budgets, parse_objectives, resolve_prune_warmup, save_trial, train_genome,
)
from .storage import StorageError, mask_url, open_storage, scrub

__all__ = ["SAMPLERS", "PRUNERS", "open_study", "make_sampler", "make_pruner", "pareto_trials", "best_trial",
           "pareto_table", "plot_pareto", "export_trial", "run_search", "finished_trials", "setting_differences",
           "train_template", "unsearched_training"]

SAMPLERS = ("tpe", "nsga2", "nsga3", "random")
PRUNERS = ("median", "sha", "hyperband", "none")


def make_sampler(name: str, *, objectives: Sequence[str], seed: Optional[int] = None) -> Any:
    """``tpe`` (default; constraint-aware, multi-objective capable), ``nsga2``, ``nsga3``, ``random``."""
    import optuna

    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed, population_size=8)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def make_pruner(name: str, *, epochs: int, warmup: Optional[int] = None, reduction_factor: int = 3) -> Any:
    """A pruner on the per-epoch discrete validation accuracy (single ``acc`` objective), or ``none``.

    - ``median``: stop a trial below the median of earlier trials at the same epoch, after ``warmup``.
    - ``sha`` (successive halving) and ``hyperband`` (several successive-halving brackets): trials
      start short and only the best ``1 / reduction_factor`` at each rung (epochs ``r``, ``r * eta``,
      ``r * eta^2``, ...; ``r`` = the first rung, ``max(1, warmup)`` epochs) train on.

    ``warmup``: epochs before any pruning (``None``: a tenth of ``epochs``, as the manual pruning of
    multi-objective trials does).
    """
    import optuna

    warmup = resolve_prune_warmup(warmup, epochs)
    if name in ("sha", "hyperband") and (not isinstance(reduction_factor, int) or isinstance(reduction_factor, bool)
                                         or reduction_factor < 2):
        raise ValueError(f"reduction_factor must be an int >= 2 (successive halving keeps 1 / factor of the trials "
                         f"at each rung), got {reduction_factor!r}")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warmup)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup), reduction_factor=reduction_factor)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup), max_resource=max(1, epochs),
                                              reduction_factor=reduction_factor)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; known: {', '.join(PRUNERS)}")


def open_study(*, study_name: str, storage: Any = None, objectives: Sequence[str] = ("acc", "gates"),
               sampler: Any = None, pruner: Any = None, metadata: Optional[Dict[str, Any]] = None,
               storage_url: Optional[str] = None) -> Any:
    """Create the study or load it to resume; an existing study with other objectives is an error.

    ``storage`` is an Optuna storage or URL (``None``: the default journal file). ``metadata`` (JSON:
    space, dataset, bounds, training settings, budgets, ...) is stored on creation; on resume any
    differing setting (:func:`setting_differences`) is an error too (the trials would not be
    comparable), raised before anything is written.
    """
    import optuna

    objectives = parse_objectives(objectives)
    if storage is None or isinstance(storage, str):
        storage_url = storage if storage_url is None else storage_url
        storage = open_storage(storage)
    directions = [OBJECTIVES[name] for name in objectives]
    where = mask_url(storage_url) if storage_url is not None or storage is None else "the storage"
    try:
        existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    except Exception as error:  # noqa: BLE001 - a broken connection after opening
        raise StorageError(f"cannot read studies from {where}: {scrub(str(error), storage_url).splitlines()[0]}") from None
    if study_name in existing:
        summary = existing[study_name]
        old_directions = [d.name.lower() for d in summary.directions]
        old_objectives = summary.user_attrs.get("objectives")
        if old_directions != directions or (old_objectives is not None and list(old_objectives) != list(objectives)):
            raise ValueError(
                f"study {study_name!r} in {where} exists with objectives "
                f"{','.join(old_objectives) if old_objectives else '?'} ({', '.join(old_directions)}), not "
                f"{','.join(objectives)} ({', '.join(directions)}): choose another --study name or the same objectives")
        for key in ("space", "dataset"):
            old = summary.user_attrs.get(key)
            if metadata and old is not None and key in metadata and old != metadata[key]:
                raise ValueError(f"study {study_name!r} in {where} searches {key} {old!r}, not {metadata[key]!r}: "
                                 "choose another --study name")
        differences = setting_differences(summary.user_attrs, metadata or {})
        if differences:
            raise ValueError(f"study {study_name!r} in {where} was run with other settings ({'; '.join(differences)})"
                             ": its trials would not be comparable; rerun with the stored settings or choose a new "
                             "--study name")
        return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
    study = optuna.create_study(study_name=study_name, storage=storage, directions=directions, sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    study.set_user_attr("objectives", list(objectives))
    for key, value in (metadata or {}).items():
        study.set_user_attr(key, value)
    return study


# Settings stored with a study that may differ between its workers (where data lives, how fast it is scored).
FREE_SETTINGS = ("train.data_root", "train.device", "train.eval_batch_size")


def _flatten(settings: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name in ("bounds", "train"):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def setting_differences(stored: Dict[str, Any], settings: Dict[str, Any]) -> List[str]:
    """``"train.epochs: stored 1, now 2"`` for each setting in both ``stored`` and ``settings`` that differs.

    Values are compared as JSON (tuples and lists alike); a setting an older study did not store is
    not compared, nor are :data:`FREE_SETTINGS`.
    """
    old = _flatten(json.loads(json.dumps(stored, default=str)))
    new = _flatten(json.loads(json.dumps(settings, default=str)))
    return [f"{key.removeprefix('train.')}: stored {json.dumps(old[key])}, now {json.dumps(new[key])}"
            for key in new if key in old and key not in FREE_SETTINGS and old[key] != new[key]]


def _requeued_trials(study: Any, *, max_retry: Optional[int] = 3, grace_period: float = 60.0,
                     log: Any = None) -> int:
    """Trials waiting to run, after re-queueing the trials of dead workers.

    Storages with Optuna's heartbeat fail their stale trials themselves; the others (the journal
    file) go through :func:`search_spaces.recovery.recover_dead_trials`.
    """
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled

    from .recovery import recover_dead_trials

    if is_heartbeat_enabled(study._storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    else:
        recover_dead_trials(study, max_retry=max_retry, grace_period=grace_period, log=log)
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


def finished_trials(study: Any) -> int:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def _feasible(trial: Any) -> bool:
    return all(v <= 0 for v in trial.constraints.values()) if hasattr(trial, "constraints") else True


def pareto_trials(study: Any) -> List[Any]:
    """Feasible completed trials on the Pareto front, most accurate (or first objective best) first."""
    trials = list(study.best_trials) if len(study.directions) > 1 else (
        [study.best_trial] if any(t.state.name == "COMPLETE" and _feasible(t) for t in study.trials) else [])
    trials = [t for t in trials if _feasible(t)]
    sign = -1 if study.directions[0].name == "MAXIMIZE" else 1
    return sorted(trials, key=lambda t: (sign * t.values[0], *[v for v in t.values[1:]], t.number))


def best_trial(study: Any) -> Optional[Any]:
    """The trial to export: the Pareto trial best in the first objective (ties: cheaper, then older)."""
    front = pareto_trials(study)
    return front[0] if front else None


def pareto_table(study: Any) -> str:
    """A plain-text table of the Pareto front (objective values and the key metrics)."""
    objectives = study.user_attrs.get("objectives") or [f"value_{i}" for i in range(len(study.directions))]
    rows = []
    for t in pareto_trials(study):
        a = t.user_attrs
        latency = a.get("latency_ns")
        rows.append([str(t.number), f"{a.get('val_acc_discrete', float('nan')) * 100:.2f}",
                     f"{a.get('test_acc_discrete', float('nan')) * 100:.2f}", str(a.get("gates", "")),
                     str(a.get("gates_raw", "")), str(a.get("logic_depth", "")),
                     f"{latency:.1f}" if latency is not None else "-",
                     " ".join(filter(None, (_describe(a.get("genome", {})), _describe(a.get("train_overrides") or {}))))])
    header = ["trial", "val acc %", "test acc %", "gates", "raw gates", "depth", "ns/img", "genome"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = [f"Pareto front of study {study.study_name!r} ({', '.join(objectives)}): {len(rows)} trial(s)",
             "  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    if not rows:
        lines.append("(no completed feasible trial yet)")
    return "\n".join(lines)


def _describe(genome: Dict[str, Any]) -> str:
    skip = {"model", "num_classes", "in_chans", "img_size", "seed"}
    parts = []
    for key, value in genome.items():
        if key in skip:
            continue
        if value is None:
            continue
        if isinstance(value, float):
            value = f"{value:.3g}"
        parts.append(f"{key}={json.dumps(value) if isinstance(value, list) else value}")
    return " ".join(parts)


def plot_pareto(study: Any, path: Path) -> Optional[Path]:
    """Scatter of completed trials (accuracy vs gates), the Pareto front as a step line; PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in study.trials if t.state.name == "COMPLETE" and "gates" in t.user_attrs]
    if not done:
        return None
    front = sorted(pareto_trials(study), key=lambda t: t.user_attrs["gates"])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    feasible = [t for t in done if _feasible(t)]
    infeasible = [t for t in done if not _feasible(t)]
    ax.scatter([t.user_attrs["gates"] for t in feasible], [t.user_attrs["val_acc_discrete"] * 100 for t in feasible],
               s=18, alpha=0.6, label="trials")
    if infeasible:
        ax.scatter([t.user_attrs["gates"] for t in infeasible],
                   [t.user_attrs["val_acc_discrete"] * 100 for t in infeasible], s=18, marker="x", color="grey",
                   label="over budget")
    if front:
        ax.step([t.user_attrs["gates"] for t in front], [t.user_attrs["val_acc_discrete"] * 100 for t in front],
                where="post", color="C3", marker="o", label="Pareto front")
        for t in front:
            ax.annotate(str(t.number), (t.user_attrs["gates"], t.user_attrs["val_acc_discrete"] * 100), fontsize=7,
                        xytext=(3, -9), textcoords="offset points")
    if min(t.user_attrs["gates"] for t in done) > 0:
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("gates after simplification")
    ax.set_ylabel("discrete validation accuracy (%)")
    ax.set_title(f"{study.study_name}: {len(done)} completed trials")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def export_trial(trial: Any, out_dir: Path, *, trials_dir: Optional[Path] = None, train_config: Any = None,
                 data: Any = None) -> Path:
    """Write ``trial``'s trained model to ``out_dir`` (timm ``save_for_hf`` + ``netlist.lgn`` + genome/metrics).

    Uses the trial's saved artifacts in ``trials_dir`` when this machine trained it; otherwise it
    retrains the genome with ``train_config`` on ``data`` (deterministic for a fixed seed on CPU).
    ``timm.create_model("local-dir:" + out_dir, pretrained=True)`` then rebuilds it (import lgn_nas first).
    """
    out_dir = Path(out_dir)
    source = Path(trials_dir) / f"trial_{trial.number:05d}" if trials_dir is not None else None
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if source is not None and (source / "config.json").exists():
        shutil.copytree(source, tmp)
    else:
        if train_config is None or data is None:
            raise FileNotFoundError(f"trial {trial.number} was trained elsewhere (no {source}); pass train_config and "
                                    "data to retrain it")
        genome = trial.user_attrs["genome"]
        overrides = trial.user_attrs.get("train_overrides", {"lr": trial.params.get("lr", train_config.lr)})
        result = train_genome(genome, train_config.replace(**overrides), data)
        metrics = {k: v for k, v in result.items()}
        save_trial(tmp, genome, result.model, result.netlist, metrics)
    info = {"trial": trial.number, "values": list(trial.values), "study_metrics": {
        k: v for k, v in trial.user_attrs.items() if k not in ("genome",)}}
    (tmp / "trial.json").write_text(json.dumps(info, indent=2, default=float))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def _remove_dominated_artifacts(study: Any, trials_dir: Optional[Path]) -> None:
    """Delete saved models of finished trials that are not on the Pareto front (keeps disk use small)."""
    if trials_dir is None or not trials_dir.is_dir():
        return
    keep = {t.number for t in pareto_trials(study)}
    for trial in study.get_trials(deepcopy=False):
        if trial.state.is_finished() and trial.number not in keep:
            shutil.rmtree(trials_dir / f"trial_{trial.number:05d}", ignore_errors=True)


def train_template(space: str, *, dataset: str = "mnist", epochs: int = 1, data_root: Optional[str] = None,
                   train: Optional[Dict[str, Any]] = None) -> Any:
    """The ``TrainConfig`` every trial of a ``space`` study starts from (before its searched options).

    Layers, each overriding the one before: ``TrainConfig``'s defaults; the search's
    (``scheduler="cosine"``, ``val_size=5000``); the recipe of the space's model
    (``lgn_nas.train.recipes``; the conv space gets ``CONV_RECIPE``: lr 0.1, cosine, softmax
    temperature cosine 1.0 -> 0.1 per step); then ``train``, field by field.
    """
    from lgn_nas.train import TrainConfig
    from lgn_nas.train.recipes import get_recipe

    from .spaces import space_class

    fields = {"val_size": 5000, "scheduler": "cosine", **get_recipe(space_class(space).model), **dict(train or {})}
    return TrainConfig(dataset=dataset, data_root=data_root, epochs=epochs, device="cpu", **fields)


def unsearched_training(bounds: Dict[str, Any], train: Dict[str, Any]) -> Dict[str, Any]:
    """``bounds`` with the training options that ``train`` fixes taken out of the search (field by field).

    A given ``temperature_end`` or ``weight_decay`` is not searched; a given ``temperature_schedule``
    is the only schedule searched (``"constant"``: no anneal, so no end temperature either). Bounds
    the caller set explicitly stay.
    """
    bounds = dict(bounds)
    for field in ("temperature_end", "weight_decay"):
        if field in train:
            bounds.setdefault(field, None)
    schedule = train.get("temperature_schedule")
    if schedule == "constant":
        bounds.setdefault("temperature_end", None)
    elif schedule is not None:
        bounds.setdefault("temperature_schedule", [schedule])
    return bounds


def run_search(config: Optional[SearchConfig] = None, /, *, log: Any = print, **settings: Any) -> Any:
    """Run (or resume) a study until it holds ``trials`` finished (complete or pruned) trials.

    The settings are a :class:`~search_spaces.config.SearchConfig` (what ``lgn-nas search`` passes) or
    its fields as keyword arguments: ``space`` (required), ``dataset``, ``trials``, ``epochs``,
    ``storage``, ``study_name``, ``objectives``, ``timeout``, ``out``, ``space_bounds``, ``train``
    (TrainConfig fields), ``sampler``, ``pruner``, ``sampler_seed``, ``max_gates``, ``max_raw_gates``,
    ``prune_margin``, ``prune_warmup``, ``reduction_factor``, ``lr_range``, ``heartbeat_interval``,
    ``grace_period``, ``max_retry``, ``data_root``, ``progress``, ``export``. They are checked once,
    before any data is loaded or storage opened.

    Several workers may run this on one storage at once; together they stop at ``trials``. Returns
    the study. With ``out``: per-trial artifacts in ``out/trials``, ``out/pareto.png``,
    ``out/pareto.txt`` and the best trial exported to ``out/best``.

    Training: ``TrainConfig`` defaults, then the search's (``scheduler="cosine"``, ``val_size=5000``),
    then the space's model's recipe (``lgn_nas.train.recipes``: the conv recipe for ``conv``), then
    ``train`` (every field given there wins, and a fixed ``temperature_end`` / ``weight_decay`` is not
    searched); all of it is stored with the study. ``lr_range``: searched learning rate ("auto": the
    space's ``default_lr_range``, or none when ``train`` fixes ``lr``; ``None``: the fixed ``train["lr"]``
    or the recipe's).
    """
    import optuna
    import torch

    from lgn_nas.data import load_dataset
    from lgn_nas.train import TrainingDiverged

    from .genome import GenomeError
    from .spaces import get_space

    if config is None:
        config = SearchConfig(**settings)
    elif settings:
        raise TypeError(f"run_search takes a SearchConfig or its fields, not both (got {', '.join(settings)})")
    c = config
    objectives, epochs, trials, out, train_config = c.objectives, c.epochs, c.trials, c.out, c.train_config
    # Data and space first: a bad value is refused before the storage (journal file) is created.
    data = load_dataset(c.dataset, root=c.data_root, val_size=train_config.val_size, dtype=torch.uint8)
    bounds = dict(c.space_bounds or {})
    bounds.setdefault("num_classes", data.num_classes)
    bounds.setdefault("input_shape", tuple(data.input_shape))
    search_space = get_space(c.space, **unsearched_training(bounds, c.train))
    check_budgets(search_space, max_gates=c.max_gates, max_raw_gates=c.max_raw_gates)
    storage_obj = open_storage(c.storage, heartbeat_interval=c.heartbeat_interval, grace_period=c.grace_period,
                               max_retry=c.max_retry)
    study_name = c.study_name or f"{c.space}-{data.name}-{'-'.join(objectives)}"
    study = open_study(study_name=study_name, storage=storage_obj, storage_url=c.storage, objectives=objectives,
                       sampler=make_sampler(c.sampler, objectives=objectives, seed=c.sampler_seed),
                       pruner=make_pruner(c.pruner if len(objectives) == 1 else "none", epochs=epochs,
                                          warmup=c.prune_warmup, reduction_factor=c.reduction_factor),
                       metadata=c.study_settings(search_space.bounds(), data.name))
    trials_dir = out / "trials" if out is not None else None
    if trials_dir is not None:
        trials_dir.mkdir(parents=True, exist_ok=True)
    from optuna.storages._heartbeat import is_heartbeat_enabled

    own_heartbeat = not is_heartbeat_enabled(storage_obj)
    objective = Objective(space=search_space, data=data, train_config=train_config, objectives=objectives,
                          max_gates=c.max_gates, max_raw_gates=c.max_raw_gates, prune_margin=c.prune_margin,
                          prune_warmup=c.prune_warmup, trial_dir=trials_dir, lr_range=c.lr_range,
                          training=search_space.suggest_training,
                          heartbeat_interval=c.heartbeat_interval if own_heartbeat else None)

    def requeued() -> int:
        return _requeued_trials(study, max_retry=c.max_retry, grace_period=c.grace, log=log)

    waiting = requeued()  # a worker killed in an earlier run left its trial RUNNING: retry it now
    done = finished_trials(study)
    log(f"study {study_name!r} on {mask_url(c.storage)}: {done} of {trials} trials finished"
        + (f", {waiting} waiting (re-queued)" if waiting else "") + f"; space {c.space}, "
        f"objectives {','.join(objectives)}, {epochs} epoch(s) per trial")
    start = time.perf_counter()
    if done < trials or waiting:
        bar = None
        if c.progress:  # a tqdm bar on a terminal, one line per finished trial in a log
            from lgn_nas.progress import progress_bar

            bar = progress_bar(total=trials, initial=done, desc=f"search {study_name}", unit="trial")

        def stop_and_report(study: Any, trial: Any) -> None:
            finished = finished_trials(study)
            if bar is not None:
                bar.n = min(finished, trials)
                front = pareto_trials(study) if finished else []
                if front:
                    best = front[0].user_attrs
                    bar.set_postfix(best_acc=f"{best.get('val_acc_discrete', 0) * 100:.2f}%",
                                    gates=best.get("gates"), last=trial.state.name.lower(), refresh=False)
                bar.refresh()
            if finished >= trials and not requeued():
                study.stop()

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study.optimize(objective, timeout=c.timeout, callbacks=[stop_and_report], catch=(GenomeError, TrainingDiverged),
                           gc_after_trial=True)
        finally:
            if bar is not None:
                bar.close()
    log(f"search ran {time.perf_counter() - start:.0f} s; {finished_trials(study)} trial(s) finished")
    log(pareto_table(study))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "pareto.txt").write_text(pareto_table(study) + "\n")
        png = plot_pareto(study, out / "pareto.png")
        if png is not None:
            log(f"Pareto plot: {png}")
        _remove_dominated_artifacts(study, trials_dir)
        best = best_trial(study)
        if c.export and best is not None:
            path = export_trial(best, out / "best", trials_dir=trials_dir, train_config=train_config, data=data)
            log(f"best trial {best.number} exported to {path} (timm.create_model('local-dir:{path}', pretrained=True) "
                "after import lgn_nas; netlist in netlist.lgn)")
    return study
