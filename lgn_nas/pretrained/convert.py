"""``python -m lgn_nas.pretrained RUN_DIR TAG``: ship a finished ``lgn-nas train`` run as pretrained weights.

Reads the run directory (``config.json``, ``checkpoint.safetensors``, ``metrics.json``), checks that
the run is finished and fits the tag (same model, a data set the tag allows, the tag's input size and
classes, accuracy measured on the whole test set, netlists in agreement), writes the compact weights
(see :mod:`lgn_nas.pretrained`) and their JSON record into the package (or ``--out-dir``), each
atomically, after loading them back through ``timm.create_model(..., pretrained=True)`` and checking
that the loaded model's eval output equals the run's, bit for bit, on random inputs.

The record's ``command`` is the ``lgn-nas train`` command of the run: the one given with
``--command`` (as typed), else one rebuilt from the config; either way it must parse to exactly the
run's config (the data root aside). A run started from another run's weights (``--initial-checkpoint``,
e.g. the conv recipe's frozen-stage phase) lists the runs before it too (``earlier_phases``, and all the
commands in order under ``commands``); each of them must still be a finished run. Any refusal is one
line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from ..atomic import atomic_write_bytes, atomic_write_json
from ..train.checkpoint import checkpoint_file
from . import (
    PRETRAINED_LOGIT, PRETRAINED_TAGS, WEIGHTS_FORMAT, compact_state_dict, record_path, weights_dir, weights_path,
)

__all__ = ["ConversionError", "convert_run", "earlier_phases", "train_command", "check_train_command", "main"]

PathLike = Union[str, os.PathLike]

# TrainConfig field -> `lgn-nas train` flag, in the order a rebuilt command lists them.
_FLAGS = (
    ("dataset", "--dataset"), ("epochs", "--epochs"), ("batch_size", "--batch-size"),
    ("eval_batch_size", "--eval-batch-size"), ("optimizer", "--opt"), ("lr", "--lr"), ("scheduler", "--sched"),
    ("warmup_epochs", "--warmup-epochs"), ("min_lr", "--min-lr"), ("weight_decay", "--weight-decay"),
    ("decay_gate_logits", "--decay-gate-logits"), ("random_shift", "--random-shift"),
    ("random_crop_padding", "--random-crop-padding"), ("hflip", "--hflip"),
    ("temperature_schedule", "--temperature-schedule"), ("temperature_start", "--temperature-start"),
    ("temperature_end", "--temperature-end"), ("temperature_step", "--temperature-step"),
    ("grad_clip", "--grad-clip"), ("val_size", "--val-size"), ("limit_train", "--limit-train"),
    ("limit_test", "--limit-test"), ("initial_checkpoint", "--initial-checkpoint"),
    ("freeze_logic_layers", "--freeze-logic-layers"), ("select_best", "--select-best"), ("seed", "--seed"), ("device", "--device"),
)
_ALWAYS = ("dataset", "epochs", "batch_size")
_IGNORED = ("data_root",)  # where the data lives, not part of the recipe
_RUN_FILES = ("config.json", "checkpoint.safetensors", "metrics.json")


class ConversionError(ValueError):
    """Input the converter refuses; the message is the one line it prints."""


def _parse_train(argv: Sequence[str]) -> argparse.Namespace:
    from ..cli import build_parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return build_parser().parse_args(["train", *argv])
    except SystemExit:
        lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
        raise ConversionError(f"the command does not parse: {lines[-1] if lines else 'argparse error'}") from None


def _config_dict(args: argparse.Namespace) -> Dict[str, Any]:
    from ..cli import UsageError, train_config

    try:
        return train_config(args).to_dict()
    except (ValueError, UsageError) as error:
        raise ConversionError(f"the command's config is invalid: {error}") from None


def _with_defaults(config: Dict[str, Any]) -> Dict[str, Any]:
    """``config`` with the fields added to ``TrainConfig`` since its run began, at their defaults."""
    from ..train.config import TrainConfig

    return {**TrainConfig().to_dict(), **config}


def _strip_prefix(tokens: List[str]) -> List[str]:
    if tokens[:2] == ["lgn-nas", "train"]:
        return tokens[2:]
    if len(tokens) >= 4 and Path(tokens[0]).name.startswith("python") and tokens[1:4] == ["-m", "lgn_nas.cli", "train"]:
        return tokens[4:]
    raise ConversionError(f"the command must start with 'lgn-nas train' or 'python -m lgn_nas.cli train', "
                          f"got {' '.join(tokens[:4])!r}")


def check_train_command(command: str, config: Dict[str, Any]) -> None:
    """Raise ``ConversionError`` unless ``command`` runs exactly ``config`` (the data root aside)."""
    try:
        tokens = shlex.split(command)
    except ValueError as error:
        raise ConversionError(f"the command does not split into words: {error}") from None
    parsed = _config_dict(_parse_train(_strip_prefix(tokens)))
    config = _with_defaults(config)
    differing = [key for key in sorted(set(parsed) | set(config)) if key not in _IGNORED
                 and json.dumps(parsed.get(key), sort_keys=True) != json.dumps(config.get(key), sort_keys=True)]
    if differing:
        details = "; ".join(f"{k}: command {parsed.get(k)!r}, run {config.get(k)!r}" for k in differing)
        raise ConversionError(f"the command does not reproduce the run's config ({details})")


def _kwarg_token(key: str, value: Any) -> str:
    from ..cli import parse_model_kwargs

    if isinstance(value, str) and parse_model_kwargs([f"{key}={value}"])[key] == value:
        return f"{key}={value}"  # a word the parser keeps as a string (softmax); "1,2" needs its quotes
    return f"{key}={json.dumps(value, separators=(',', ':'))}"


def train_command(config: Dict[str, Any], *, out: str = "runs/out") -> str:
    """An ``lgn-nas train`` command that runs ``config``: the data set, epochs and batch size, then every
    flag whose value differs from the CLI default; checked with :func:`check_train_command`."""
    config = _with_defaults(config)
    defaults = _config_dict(_parse_train([config["model"], "--out", out]))
    words = ["lgn-nas", "train", config["model"]]
    for field, flag in _FLAGS:
        value = config.get(field)
        if field not in _ALWAYS and json.dumps(value) == json.dumps(defaults.get(field)):
            continue
        if isinstance(value, bool):  # differs from the default (the model's recipe may turn a switch on)
            words.append(flag if value else "--no-" + flag[2:])
            continue
        words += [flag, str(value)]
    if config.get("model_kwargs"):
        words.append("--model-kwargs")
        words += [_kwarg_token(k, v) for k, v in config["model_kwargs"].items()]
    words += ["--out", out]
    command = " ".join(shlex.quote(word) for word in words)
    try:
        check_train_command(command, config)
    except ConversionError as error:
        raise ConversionError(f"the run's config is not an `lgn-nas train` command ({error}); "
                              f"was it trained through the Python API?") from None
    return command


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConversionError(f"cannot read {path}: {error}") from None


def _check_run(run_dir: Path):
    from ..train.checkpoint import load_checkpoint

    if not run_dir.is_dir():
        raise ConversionError(f"{run_dir} is not a directory")
    for name in _RUN_FILES:
        if not (run_dir / name).is_file():
            hint = " (is the training still running, or did it fail?)" if name == "metrics.json" else ""
            raise ConversionError(f"{run_dir} is not a finished `lgn-nas train` run: {name} is missing{hint}")
    try:
        checkpoint = load_checkpoint(run_dir / "checkpoint.safetensors")
    except (OSError, ValueError, KeyError) as error:
        raise ConversionError(f"cannot read {run_dir / 'checkpoint.safetensors'}: {error}") from None
    meta = checkpoint["meta"]
    config = meta.get("config") or {}
    if _with_defaults(_read_json(run_dir / "config.json")) != _with_defaults(config):
        raise ConversionError(f"{run_dir}: config.json differs from the checkpoint's config (files of two runs?)")
    metrics = _read_json(run_dir / "metrics.json")
    if metrics.get("epochs") != meta.get("epoch"):
        raise ConversionError(f"{run_dir}: metrics.json covers {metrics.get('epochs')} epochs but the checkpoint "
                              f"is from epoch {meta.get('epoch')} (a resumed run that has not finished?)")
    if (metrics.get("model"), metrics.get("dataset")) != (config.get("model"), config.get("dataset")):
        raise ConversionError(f"{run_dir}: metrics.json is for {metrics.get('model')} on {metrics.get('dataset')}, "
                              f"the config for {config.get('model')} on {config.get('dataset')}")
    if metrics.get("netlist_agrees") is not True:
        raise ConversionError(f"{run_dir}: the run's netlists did not agree with its eval model "
                              f"(netlist_agrees={metrics.get('netlist_agrees')!r})")
    if config.get("limit_test") is not None:
        raise ConversionError(f"{run_dir}: the run scored only the first {config['limit_test']} test images "
                              f"(--limit-test); shipped weights need the whole test set")
    if config.get("select_best"):  # the test figures are the selected epoch's: ship its weights
        checkpoint = _selected_checkpoint(run_dir, metrics)
    return checkpoint, config, metrics


def _selected_checkpoint(run_dir: Path, metrics: Dict[str, Any]) -> Dict[str, Any]:
    """The ``best.safetensors`` of a ``--select-best`` run, checked against the epoch its metrics scored."""
    from ..train.checkpoint import BEST_CHECKPOINT_NAME, load_checkpoint

    path = run_dir / BEST_CHECKPOINT_NAME
    try:
        best = load_checkpoint(path)
    except (OSError, ValueError, KeyError) as error:
        raise ConversionError(f"cannot read {path} (a --select-best run ships its selected epoch): {error}") from None
    if best["meta"].get("epoch") != metrics.get("selected_epoch"):
        raise ConversionError(f"{path} is from epoch {best['meta'].get('epoch')} but metrics.json scored epoch "
                              f"{metrics.get('selected_epoch')}")
    return best


def _check_tag(tag: str, config: Dict[str, Any]) -> Any:
    import timm

    import lgn_nas  # noqa: F401  (registers the models)
    from ..data import _spec

    model, dot, name = tag.partition(".")
    if not dot or not model or not name:
        raise ConversionError(f"TAG must be MODEL.TAG (e.g. lgn_dense_s.mnist), got {tag!r}")
    if tag not in PRETRAINED_TAGS:
        raise ConversionError(f"{tag!r} is not a pretrained tag of lgn-nas; known: {', '.join(PRETRAINED_TAGS)} "
                              f"(add it to PRETRAINED_TAGS and to the model's default_cfgs first)")
    if model != config.get("model"):
        raise ConversionError(f"{tag} is a tag of {model}, but the run trained {config.get('model')}")
    try:
        spec = _spec(config.get("dataset"))  # canonical name: "fashion-mnist" is fashion_mnist
    except ValueError as error:
        raise ConversionError(str(error)) from None
    if spec.name not in PRETRAINED_TAGS[tag]:
        raise ConversionError(f"{tag} ships weights trained on {' or '.join(PRETRAINED_TAGS[tag])}, but the run "
                              f"used {config.get('dataset')!r}")
    cfg = timm.models.get_pretrained_cfg(tag)
    if cfg is None:
        raise ConversionError(f"{tag} is not in {model}'s default_cfgs")
    if tuple(cfg.input_size) != tuple(spec.input_shape) or cfg.num_classes != spec.num_classes:
        raise ConversionError(f"{tag}'s pretrained cfg expects input {tuple(cfg.input_size)} and {cfg.num_classes} "
                              f"classes, the run's data set has {tuple(spec.input_shape)} and {spec.num_classes}")
    kwargs = config.get("model_kwargs") or {}
    fixed = sorted(k for k in ("num_classes", "in_chans", "img_size") if k in kwargs)
    if fixed:
        raise ConversionError(f"the run sets {', '.join(fixed)} in its model kwargs; the pretrained cfg of {tag} "
                              f"sets those from its input size and classes")
    return cfg


def _verify(data: bytes, tag: str, model: torch.nn.Module, input_size: Sequence[int]) -> torch.nn.Module:
    """Load ``data`` through timm's pretrained path and check its eval output against ``model``'s."""
    import timm

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{tag}.safetensors"
        path.write_bytes(data)
        variant, _, name = tag.partition(".")
        # the torch backend: every backend computes the same eval circuit, and it needs no TVM build
        loaded = timm.create_model(variant, pretrained=True, pretrained_cfg=name, backend="torch",
                                   pretrained_cfg_overlay=dict(file=str(path))).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(256, *input_size, generator=generator)
    with torch.no_grad():
        expected, got = model.eval()(x), loaded(x)
    if not torch.equal(expected, got):
        raise ConversionError(f"internal error: the converted {tag} does not reproduce the run's eval output "
                              f"(max difference {float((expected - got).abs().max())})")
    return loaded


def earlier_phases(config: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The runs a run started from (its ``initial_checkpoint``, that run's, ...), first phase first: each
    one's rebuilt command (its ``--out`` the directory the next phase names) and its measured figures.
    ``ConversionError`` when one of them is not a finished run or the chain loops."""
    phases: List[Dict[str, Any]] = []
    seen = set()
    start = config.get("initial_checkpoint")
    while start:
        run_dir = checkpoint_file(start).parent
        if run_dir.resolve() in seen:
            raise ConversionError(f"the initial checkpoints loop back to {run_dir}")
        seen.add(run_dir.resolve())
        try:
            _, phase_config, metrics = _check_run(run_dir)
        except ConversionError as error:
            raise ConversionError(f"the run started from {start} (its initial_checkpoint): {error}") from None
        phases.insert(0, {
            "command": train_command(phase_config, out=str(run_dir)),
            "epochs": metrics.get("epochs"),
            "test_acc_discrete": metrics.get("test_acc_discrete"),
            "test_acc_relaxed": metrics.get("test_acc_relaxed"),
            "gates": metrics.get("gates"),
            "train_seconds": metrics.get("train_seconds"),
            "wall_seconds": metrics.get("wall_seconds"),
        })
        start = phase_config.get("initial_checkpoint")
    return phases


def convert_run(run_dir: PathLike, tag: str, *, out_dir: Optional[PathLike] = None, command: Optional[str] = None,
                force: bool = False) -> Dict[str, Any]:
    """Convert a finished ``lgn-nas train`` run into ``<out_dir>/<tag>.safetensors`` + ``<tag>.json``.

    ``out_dir`` defaults to the package's weights directory; ``command`` is the training command as
    typed (checked against the config; rebuilt from the config when None). Returns the record.
    Raises ``ConversionError`` (one line) for anything it refuses.
    """
    from safetensors.torch import save as save_safetensors

    from ..discretize import discretize
    from ..train import load_run

    run_dir = Path(run_dir)
    checkpoint, config, metrics = _check_run(run_dir)
    cfg = _check_tag(tag, config)
    if command is not None:
        check_train_command(command, config)
    else:
        command = train_command(config, out=f"runs/{tag}")
    earlier = earlier_phases(config)
    out_dir = Path(out_dir) if out_dir is not None else weights_dir()
    target = weights_path(tag, out_dir)
    record_file = record_path(target)
    if not force and (target.exists() or record_file.exists()):
        raise ConversionError(f"{target} or its record already exists; pass --force to replace them")
    model, _ = load_run(run_dir)
    model_kwargs = {k: v for k, v in (config.get("model_kwargs") or {}).items() if k != "backend"}
    tensors = compact_state_dict(model)
    data = save_safetensors(tensors, metadata={
        "format": WEIGHTS_FORMAT, "tag": tag, "model": config["model"],
        "model_kwargs": json.dumps(model_kwargs, sort_keys=True)})
    loaded = _verify(data, tag, model, cfg.input_size)
    netlist = discretize(loaded)
    if int(netlist.num_gates) != int(metrics["gates_raw"]):
        raise ConversionError(f"internal error: the converted {tag} has {netlist.num_gates} gates, the run "
                              f"{metrics['gates_raw']}")
    record = {
        "tag": tag,
        "format": WEIGHTS_FORMAT,
        "model": config["model"],
        "model_kwargs": model_kwargs,
        "dataset": config["dataset"],
        "command": command,
        "earlier_phases": earlier,
        "commands": [phase["command"] for phase in earlier] + [command],
        "converted_with": f"python -m lgn_nas.pretrained RUN_DIR {tag}",
        "test_acc_discrete": metrics["test_acc_discrete"],
        "test_acc_relaxed_of_the_run": metrics.get("test_acc_relaxed"),
        "test_acc_netlist": metrics.get("test_acc_netlist"),
        "gates": metrics.get("gates"),
        "gates_raw": metrics.get("gates_raw"),
        "logic_depth": metrics.get("logic_depth"),
        "epochs": metrics.get("epochs"),
        "stopped_early": metrics.get("stopped_early"),
        "train_seconds": metrics.get("train_seconds"),
        "wall_seconds": metrics.get("wall_seconds"),
        "images_per_second": metrics.get("images_per_second"),
        "device": metrics.get("device"),
        "world_size": metrics.get("world_size"),
        "pretrained_logit": PRETRAINED_LOGIT,
        "weights_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "config": {k: v for k, v in config.items() if k not in _IGNORED},
        "note": "the relaxed model of these weights equals the discrete circuit (see lgn_nas.pretrained); "
                "test_acc_relaxed_of_the_run is the trained soft mixture's, which is not shipped",
    }
    atomic_write_bytes(target, data, make_parents=True)
    atomic_write_json(record_file, record)
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lgn_nas.pretrained",
        description="Ship a finished `lgn-nas train` run as pretrained weights (compact safetensors + JSON record).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="output directory of a finished `lgn-nas train`")
    parser.add_argument("tag", metavar="TAG", help=f"pretrained tag: {', '.join(PRETRAINED_TAGS)}")
    parser.add_argument("--out-dir", default=None, help="where to write (default: the package's weights directory)")
    parser.add_argument("--command", default=None,
                        help="the training command as typed (default: rebuilt from the run's config); it must "
                             "reproduce the config")
    parser.add_argument("--force", action="store_true", help="replace existing weights of TAG")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        record = convert_run(args.run_dir, args.tag, out_dir=args.out_dir, command=args.command, force=args.force)
    except ConversionError as error:
        print(f"python -m lgn_nas.pretrained: error: {error}", file=sys.stderr)
        return 2
    target = weights_path(args.tag, args.out_dir if args.out_dir is not None else weights_dir())
    print(f"wrote {target} ({record['weights_bytes']:,} bytes) and {record_path(target).name}: "
          f"{record['model']} on {record['dataset']}, discrete test accuracy {record['test_acc_discrete'] * 100:.2f}%, "
          f"{record['gates']:,} gates ({record['gates_raw']:,} before simplification)")
    return 0
