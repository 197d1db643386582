"""``lgn-nas search``: the command-line side of :func:`search_spaces.run_search`.

:func:`add_search_subcommand` is the entry point (group ``lgn_nas.cli_commands``, see pyproject.toml)
through which ``lgn-nas`` finds the command; importing this module is cheap (nothing heavy at the top).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, Optional, Sequence

__all__ = ["add_search_subcommand", "run_search_command", "parse_space_args"]


def add_search_subcommand(sub: Any) -> None:
    """Add ``lgn-nas search`` (an Optuna architecture search, :func:`run_search_command`) to the
    ``lgn-nas`` subcommands ``sub``: the entry point of group ``lgn_nas.cli_commands`` that
    ``lgn_nas.cli`` discovers (pyproject.toml), so lgn_nas never imports this package."""
    from lgn_nas.train.config import TEMPERATURE_SCHEDULES

    search = sub.add_parser("search", help="Optuna architecture search: Pareto table, plot and exported best model")
    search.add_argument("--space", required=True, help="search space: dense, conv or hybrid")
    search.add_argument("--dataset", default="mnist", help="mnist, fashion_mnist or cifar10 (default mnist)")
    search.add_argument("--trials", type=int, default=20, help="finished trials the study should hold (all workers)")
    search.add_argument("--epochs", type=int, default=1, help="training epochs per trial")
    search.add_argument("--storage", default=None,
                        help="journal file (PATH.log, default ./lgn_nas_studies.log), sqlite:///FILE or "
                             "postgresql://USER:PASSWORD@HOST:PORT/DB (shared by many workers)")
    search.add_argument("--study", default=None, help="study name (default SPACE-DATASET-OBJECTIVES); reruns resume it")
    search.add_argument("--objectives", default="acc,gates", help="comma list of acc, gates, latency, depth")
    search.add_argument("--timeout", type=float, default=None, help="stop starting trials after S seconds")
    search.add_argument("--out", default="search_out", help="output directory (trials, pareto.png, best/)")
    search.add_argument("--space-arg", nargs="*", default=[], metavar="KEY=VALUE",
                        help="search-space bounds as JSON, e.g. width=[200,2000] depth=[2,3] relaxation='[\"softmax\"]'")
    search.add_argument("--sampler", default="tpe", help="tpe, nsga2, nsga3 or random (default tpe)")
    search.add_argument("--pruner", default="median",
                        help="median, sha (successive halving), hyperband or none (single 'acc' objective; "
                             "multi-objective studies prune by --prune-margin)")
    search.add_argument("--reduction-factor", type=int, default=3, metavar="ETA",
                        help="sha/hyperband: keep 1/ETA of the trials at each rung (default 3)")
    search.add_argument("--sampler-seed", type=int, default=None, help="seed the sampler (one worker only)")
    search.add_argument("--max-gates", type=int, default=None, help="budget on simplified gates (Optuna constraint)")
    search.add_argument("--max-raw-gates", type=int, default=None, help="prune genomes over this many gates before training")
    search.add_argument("--prune-margin", type=float, default=0.05,
                        help="multi-objective: prune a trial this far behind a no-bigger one at the same epoch (<0: off)")
    search.add_argument("--prune-warmup", "--min-epochs", dest="prune_warmup", type=int, default=None, metavar="EPOCHS",
                        help="epochs before any pruning (default: a tenth of --epochs)")
    search.add_argument("--batch-size", type=int, default=128)
    search.add_argument("--lr", type=float, default=None, help="fixed learning rate (default: searched in --lr-range)")
    search.add_argument("--lr-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="searched learning rate, log-uniform (default 0.01 0.1; conv 0.03 0.3)")
    # Training options: unset ones come from the space's model recipe (conv: lgn_nas.train.recipes.CONV_RECIPE).
    search.add_argument("--opt", default=None, help="timm optimizer name (default adam)")
    search.add_argument("--weight-decay", type=float, default=None,
                        help="fixed weight decay (conv: or search it with --space-arg 'weight_decay=[LOW,HIGH]')")
    search.add_argument("--decay-gate-logits", action="store_true", default=None,
                        help="apply --weight-decay to the gate logits too")
    search.add_argument("--warmup-epochs", type=int, default=None)
    search.add_argument("--min-lr", type=float, default=None)
    search.add_argument("--temperature-schedule", default=None, choices=TEMPERATURE_SCHEDULES,
                        help="default constant; conv: cosine from 1.0 to a searched end (space bound temperature_end)")
    search.add_argument("--temperature-start", type=float, default=None)
    search.add_argument("--temperature-end", type=float, default=None, help="fixed end temperature (not searched)")
    search.add_argument("--temperature-step", default=None, choices=("epoch", "step"))
    search.add_argument("--random-crop-padding", type=int, default=None, metavar="PIXELS",
                        help="pad-and-crop augmentation (the paper's CIFAR-10 one, e.g. 4)")
    search.add_argument("--hflip", action="store_true", default=None, help="random horizontal flips (augmentation)")
    search.add_argument("--sched", default=None,
                        help="timm scheduler of each trial's training (cosine, step, ... or none; default cosine)")
    search.add_argument("--random-shift", type=int, default=None, metavar="PIXELS",
                        help="every trial translates its training images by up to PIXELS per axis (augmentation)")
    search.add_argument("--seed", type=int, default=0, help="training seed of every trial")
    search.add_argument("--val-size", type=int, default=5000, help="validation images (scored per epoch)")
    search.add_argument("--limit-train", type=int, default=None, help="train on the first N images only")
    search.add_argument("--limit-test", type=int, default=None)
    search.add_argument("--data-root", default=None)
    search.add_argument("--heartbeat-interval", type=int, default=30, help="seconds between a running trial's heartbeats")
    search.add_argument("--grace-period", type=int, default=None,
                        help="a trial without heartbeat for S s is failed and re-queued (default 2 x heartbeat; "
                             "on the journal file a dead worker of this host is recognised at once)")
    search.add_argument("--max-retry", type=int, default=3, help="re-queue a dead worker's trial at most N times")
    search.add_argument("--no-progress", action="store_true")
    search.add_argument("--no-export", action="store_true", help="do not export the best trial")
    search.set_defaults(func=run_search_command)


# `lgn-nas search` flags (argparse dest -> TrainConfig field) passed on only when given.
_TRAIN_FLAGS = {
    "lr": "lr", "sched": "scheduler", "random_shift": "random_shift", "opt": "optimizer",
    "weight_decay": "weight_decay", "decay_gate_logits": "decay_gate_logits", "warmup_epochs": "warmup_epochs",
    "min_lr": "min_lr", "temperature_schedule": "temperature_schedule", "temperature_start": "temperature_start",
    "temperature_end": "temperature_end", "temperature_step": "temperature_step",
    "random_crop_padding": "random_crop_padding", "hflip": "hflip",
}


def parse_space_args(items: Optional[Sequence[str]]) -> Dict[str, Any]:
    """``["width=[200,2000]", "relaxation=[\\"softmax\\"]"]`` -> dict (JSON values, else strings)."""
    result: Dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"--space-arg expects key=value pairs, got {item!r}")
        try:
            result[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            result[key.strip()] = value
    return result


def run_search_command(args: argparse.Namespace) -> int:
    """Exit codes: 0 done, 2 bad input (names, bounds, study/objective mismatch, storage), 1 other failure."""
    from .config import SearchConfig
    from .storage import StorageError, mask_url, scrub
    from .study import run_search

    def fail(message: str, code: int = 2) -> int:
        print(f"lgn-nas search: error: {scrub(message, args.storage)}", file=sys.stderr)
        return code

    try:
        config = SearchConfig.from_args(args, space_bounds=parse_space_args(args.space_arg))  # checked once
        run_search(config)
    except (StorageError, ValueError) as error:
        return fail(str(error))
    except FileNotFoundError as error:
        return fail(str(error), 1)
    except KeyboardInterrupt:
        print(f"lgn-nas search: interrupted; run the same command again to resume (storage "
              f"{mask_url(args.storage)})", file=sys.stderr)
        return 130
    return 0
