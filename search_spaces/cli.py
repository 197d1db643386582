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
    search.add_argument("--pruner", default="median", help="median, hyperband or none (single 'acc' objective)")
    search.add_argument("--sampler-seed", type=int, default=None, help="seed the sampler (one worker only)")
    search.add_argument("--max-gates", type=int, default=None, help="budget on simplified gates (Optuna constraint)")
    search.add_argument("--max-raw-gates", type=int, default=None, help="prune genomes over this many gates before training")
    search.add_argument("--prune-margin", type=float, default=0.05,
                        help="multi-objective: prune a trial this far behind a no-bigger one at the same epoch (<0: off)")
    search.add_argument("--prune-warmup", type=int, default=None, metavar="EPOCHS",
                        help="epochs before any pruning (default: a tenth of --epochs)")
    search.add_argument("--batch-size", type=int, default=128)
    search.add_argument("--lr", type=float, default=None, help="fixed learning rate (default: searched in --lr-range)")
    search.add_argument("--lr-range", type=float, nargs=2, default=[0.01, 0.1], metavar=("LOW", "HIGH"))
    search.add_argument("--sched", default="cosine",
                        help="timm scheduler of each trial's training (cosine, step, ... or none; default cosine)")
    search.add_argument("--random-shift", type=int, default=0, metavar="PIXELS",
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
