"""The settings of a search, parsed and checked once: :class:`SearchConfig`.

``lgn-nas search`` builds one from its arguments (:meth:`SearchConfig.from_args`) and
:func:`search_spaces.run_search` takes it (or the same fields as keyword arguments), so both check the
same values in the same order, and everything refusable is refused before a data set is loaded or a
storage is opened.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any, Dict, Optional

from .objectives import parse_objectives, resolve_prune_warmup
from .storage import storage_kind

__all__ = ["SearchConfig"]


def _int_at_least(name: str, value: Any, minimum: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be {what}, got {value!r}")


@dataclasses.dataclass
class SearchConfig:
    """Everything :func:`~search_spaces.run_search` needs (see it for the meaning of each field).

    ``objectives`` becomes the parsed tuple, ``prune_warmup`` the resolved number of epochs, and
    ``lr_range`` the searched range (``"auto"``: the space's ``default_lr_range``, or none when ``train``
    fixes ``lr``), and ``train_config`` (not a field you pass) the :class:`~lgn_nas.train.TrainConfig`
    every trial starts from (:func:`~search_spaces.study.train_template`: the search's defaults, the
    space's model recipe, then ``train``; CPU).
    """

    space: str
    dataset: str = "mnist"
    trials: int = 20
    epochs: int = 1
    storage: Optional[str] = None
    study_name: Optional[str] = None
    objectives: Any = ("acc", "gates")
    timeout: Optional[float] = None
    out: Optional[Path] = Path("search_out")
    space_bounds: Optional[Dict[str, Any]] = None
    train: Optional[Dict[str, Any]] = None
    sampler: str = "tpe"
    pruner: str = "median"
    sampler_seed: Optional[int] = None
    max_gates: Optional[int] = None
    max_raw_gates: Optional[int] = None
    prune_margin: Optional[float] = 0.05
    prune_warmup: Optional[int] = None
    reduction_factor: int = 3
    lr_range: Any = "auto"
    heartbeat_interval: int = 30
    grace_period: Optional[int] = None
    max_retry: Optional[int] = 3
    data_root: Optional[str] = None
    progress: bool = True
    export: bool = True
    train_config: Any = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from .spaces import list_spaces, space_class
        from .study import PRUNERS, make_pruner, train_template

        if self.space not in list_spaces():
            raise ValueError(f"unknown search space {self.space!r}; known: {', '.join(list_spaces())}")
        storage_kind(self.storage)  # StorageError for an unknown scheme, before anything is written
        self.objectives = parse_objectives(self.objectives)
        _int_at_least("trials", self.trials, 1, "a positive int")
        self.prune_warmup = resolve_prune_warmup(self.prune_warmup, self.epochs)
        if self.pruner not in PRUNERS:
            raise ValueError(f"unknown pruner {self.pruner!r}; known: {', '.join(PRUNERS)}")
        make_pruner(self.pruner, epochs=self.epochs, warmup=self.prune_warmup,
                    reduction_factor=self.reduction_factor)  # checks the factor
        if len(self.objectives) > 1 and self.pruner not in ("none", "median"):
            raise ValueError(f"pruner {self.pruner!r} needs a single 'acc' objective (multi-objective studies prune "
                             "hopeless trials by hand); use --pruner none")
        if isinstance(self.lr_range, str):
            if self.lr_range != "auto":
                raise ValueError(f"lr_range must be LOW HIGH, None or 'auto', got {self.lr_range!r}")
            self.lr_range = None if "lr" in (self.train or {}) else space_class(self.space).default_lr_range
        if self.lr_range is not None:
            low_high = list(self.lr_range)
            if (len(low_high) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in low_high)
                    or not 0 < low_high[0] <= low_high[1] or not all(math.isfinite(v) for v in low_high)):
                raise ValueError(f"lr_range must be LOW HIGH with 0 < LOW <= HIGH (searched log-uniform), got "
                                 f"{' '.join(map(str, low_high))}")
            self.lr_range = tuple(low_high)
        self.out = Path(self.out) if self.out is not None else None
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise ValueError(f"--out {str(self.out)!r} exists and is not a directory")
        self.train = dict(self.train or {})  # the options given; the rest come from train_template
        self.train_config = train_template(self.space, dataset=self.dataset, epochs=self.epochs,
                                           data_root=self.data_root, train=self.train)
        if self.max_retry is not None:
            _int_at_least("max_retry", self.max_retry, 0, "an int >= 0 (re-runs of a dead worker's trial)")
        _int_at_least("heartbeat_interval", self.heartbeat_interval, 1, "a positive int (seconds)")
        grace = self.grace
        if not isinstance(grace, int) or isinstance(grace, bool) or grace <= self.heartbeat_interval:
            raise ValueError(f"grace_period must be an int above heartbeat_interval {self.heartbeat_interval} "
                             f"(seconds), got {grace!r}")

    @property
    def grace(self) -> int:
        """Seconds without a heartbeat after which a trial counts as dead (default 2 x the interval)."""
        return self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval

    def study_settings(self, bounds: Dict[str, Any], dataset_name: str) -> Dict[str, Any]:
        """What a study stores and a rerun must match (space, data, bounds, training, budgets)."""
        return {"space": self.space, "dataset": dataset_name, "bounds": bounds,
                "train": {k: v for k, v in self.train_config.to_dict().items() if k not in ("model", "model_kwargs")},
                "max_gates": self.max_gates, "max_raw_gates": self.max_raw_gates,
                "lr_range": list(self.lr_range) if self.lr_range is not None else None}

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, space_bounds: Dict[str, Any]) -> "SearchConfig":
        """The config of parsed ``lgn-nas search`` arguments (``--space-arg`` parsed into ``space_bounds``)."""
        from .cli import _TRAIN_FLAGS

        train = {"batch_size": args.batch_size, "seed": args.seed, "val_size": args.val_size,
                 "limit_train": args.limit_train, "limit_test": args.limit_test}
        # Options left unset come from the search's defaults and the space's model recipe (train_template).
        train.update({field: getattr(args, dest) for dest, field in _TRAIN_FLAGS.items()
                      if getattr(args, dest, None) is not None})
        return cls(space=args.space, dataset=args.dataset, trials=args.trials, epochs=args.epochs,
                   storage=args.storage, study_name=args.study, objectives=args.objectives, timeout=args.timeout,
                   out=args.out, space_bounds=space_bounds, train=train, sampler=args.sampler, pruner=args.pruner,
                   sampler_seed=args.sampler_seed, max_gates=args.max_gates, max_raw_gates=args.max_raw_gates,
                   prune_margin=None if args.prune_margin < 0 else args.prune_margin, prune_warmup=args.prune_warmup,
                   reduction_factor=args.reduction_factor,
                   lr_range=None if args.lr is not None else tuple(args.lr_range) if args.lr_range else "auto",
                   heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
                   max_retry=args.max_retry, data_root=args.data_root, progress=not args.no_progress,
                   export=not args.no_export)

