"""``lgn-nas search``: the command-line side of :func:`search_spaces.run_search` (arguments in lgn_nas.cli)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, Optional, Sequence

__all__ = ["run_search_command", "parse_space_args"]


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
    from .spaces import list_spaces
    from .storage import StorageError, mask_url, scrub, storage_kind
    from .study import run_search

    def fail(message: str, code: int = 2) -> int:
        print(f"lgn-nas search: error: {scrub(message, args.storage)}", file=sys.stderr)
        return code

    if args.space not in list_spaces():
        return fail(f"unknown search space {args.space!r}; known: {', '.join(list_spaces())}")
    try:
        storage_kind(args.storage)
        bounds = parse_space_args(args.space_arg)
    except ValueError as error:
        return fail(str(error))
    train = {"batch_size": args.batch_size, "seed": args.seed, "val_size": args.val_size,
             "limit_train": args.limit_train, "limit_test": args.limit_test}
    # Options left unset come from the search's defaults and the space's model recipe (run_search).
    train.update({field: getattr(args, dest) for dest, field in _TRAIN_FLAGS.items()
                  if getattr(args, dest, None) is not None})
    try:
        run_search(space=args.space, dataset=args.dataset, trials=args.trials, epochs=args.epochs,
                   storage=args.storage, study_name=args.study, objectives=args.objectives, timeout=args.timeout,
                   out=args.out, space_bounds=bounds, train=train, sampler=args.sampler, pruner=args.pruner,
                   sampler_seed=args.sampler_seed, max_gates=args.max_gates, max_raw_gates=args.max_raw_gates,
                   prune_margin=None if args.prune_margin < 0 else args.prune_margin, prune_warmup=args.prune_warmup,
                   reduction_factor=args.reduction_factor,
                   lr_range=None if args.lr is not None else tuple(args.lr_range) if args.lr_range else "auto",
                   heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
                   max_retry=args.max_retry,
                   data_root=args.data_root, progress=not args.no_progress, export=not args.no_export)
    except StorageError as error:
        return fail(str(error))
    except ValueError as error:
        return fail(str(error))
    except FileNotFoundError as error:
        return fail(str(error), 1)
    except KeyboardInterrupt:
        print(f"lgn-nas search: interrupted; run the same command again to resume (storage "
              f"{mask_url(args.storage)})", file=sys.stderr)
        return 130
    return 0
