"""The ``lgn-nas`` command: ``train``, ``info``, ``export`` and ``data``, and the subcommands other packages
add through the entry-point group ``lgn_nas.cli_commands`` (``search``, from ``search_spaces``).

``main(argv)`` returns the exit code: 0 on success, 2 for bad names or usage (unknown model or
data set, output directory in the way, a malformed data or netlist file), 1 when training fails (e.g.
the loss became NaN) or data is missing and cannot be fetched.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

if TYPE_CHECKING:
    from .train.config import TrainConfig

__all__ = ["main", "build_parser", "parse_model_kwargs", "train_config"]


RUN_OUTPUTS = ("checkpoint.safetensors", "best.safetensors", "config.json", "metrics.json", "netlist.lgn", "curves.png")


class UsageError(ValueError):
    """Bad command-line input: reported on stderr with exit code 2."""


def parse_model_kwargs(items: Optional[Sequence[str]]) -> Dict[str, Any]:
    """``["depth=2", "width=[100,200]", "relaxation=gumbel_st"]`` -> dict; values are JSON when they parse.

    ``k=v`` pairs may also be given comma-free in one string each; comma-separated JSON values
    (``channels=64,128``) are a list, as timm's ``--model-kwargs`` makes them a tuple; a value that is
    not JSON (``softmax``) is kept as a string. ``true``/``false``/``null`` are JSON.
    """
    result: Dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not key.isidentifier():
            raise UsageError(f"--model-kwargs expects key=value pairs, got {item!r}")
        result[key] = _parse_value(value)
    return result


def _parse_value(value: str) -> Any:
    """JSON where it parses; ``64,128`` (comma-separated JSON values) as a list; else the string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    if "," in value:
        try:
            return json.loads(f"[{value}]")
        except json.JSONDecodeError:
            pass
    return value


def _known_models() -> List[str]:
    import timm

    import lgn_nas  # noqa: F401  (registers the models)

    return timm.list_models("lgn*")


def _check_model(name: str) -> None:
    known = _known_models()
    if name not in known:
        raise UsageError(f"unknown model {name!r}; known models: {', '.join(known)}")


def _check_dataset(name: str) -> None:
    from .data import list_datasets
    from .train.build import known_dataset

    if not known_dataset(name):
        raise UsageError(f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}")


# --------------------------------------------------------------------------- train

# `lgn-nas train` flags (argparse dest -> TrainConfig field) whose default is the model's recipe.
_RECIPE_FLAGS = {
    "opt": "optimizer", "lr": "lr", "random_shift": "random_shift", "random_crop_padding": "random_crop_padding",
    "hflip": "hflip", "weight_decay": "weight_decay", "decay_gate_logits": "decay_gate_logits",
    "select_best": "select_best",
    "sched": "scheduler", "warmup_epochs": "warmup_epochs", "min_lr": "min_lr",
    "temperature_schedule": "temperature_schedule", "temperature_start": "temperature_start",
    "temperature_end": "temperature_end", "temperature_step": "temperature_step",
}

def train_config(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of parsed ``lgn-nas train`` arguments: defaults, the model's recipe, the flags."""
    from .train.recipes import config_with_recipe, get_recipe

    given = {field: getattr(args, dest) for dest, field in _RECIPE_FLAGS.items() if hasattr(args, dest)}
    taken = {k: v for k, v in get_recipe(args.model).items() if k not in given}
    if taken and _is_main_process():
        print(f"lgn-nas train: {args.model} recipe: " + ", ".join(f"{k}={v}" for k, v in taken.items())
              + " (flags override it)", file=sys.stderr)
    return config_with_recipe(
        args.model, model_kwargs=parse_model_kwargs(args.model_kwargs), dataset=args.dataset,
        data_root=args.data_root, val_size=args.val_size, limit_train=args.limit_train, limit_test=args.limit_test,
        epochs=args.epochs, batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
        grad_clip=args.grad_clip, seed=args.seed, device=args.device,
        initial_checkpoint=args.initial_checkpoint, freeze_logic_layers=args.freeze_logic_layers, **given)


def run_train(args: argparse.Namespace) -> int:
    from .data import DatasetFetchError, DatasetFormatError
    from .train import TrainingDiverged, fit

    _check_model(args.model)
    _check_dataset(args.dataset)
    out = Path(args.out)
    if args.resume and args.force:
        raise UsageError("--resume and --force exclude each other")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (args.resume or args.force):
        raise UsageError(f"output directory {out} exists and is not empty; pass --resume to continue the run "
                         "there or --force to overwrite it")
    try:
        config = train_config(args)
    except ValueError as error:
        raise UsageError(str(error)) from error
    if args.force and out.is_dir():
        _clear_outputs(out)
    try:
        result = fit(config, out_dir=out, resume=args.resume, progress=not args.no_progress)
    except TrainingDiverged as error:
        print(f"lgn-nas train: training diverged: {error}", file=sys.stderr)
        return 1
    except DatasetFormatError as error:  # a malformed data file: bad input, named in the message
        raise UsageError(str(error)) from error
    except (FileNotFoundError, DatasetFetchError) as error:  # data missing or unfetchable
        print(f"lgn-nas train: {error}", file=sys.stderr)
        return 1
    except ValueError as error:  # refused before training: val_size, device, a --resume config mismatch, ...
        raise UsageError(str(error)) from error
    metrics = result.metrics
    if _is_main_process():
        print(f"discrete test accuracy {metrics['test_acc_discrete'] * 100:.2f}% "
              f"(relaxed {metrics['test_acc_relaxed'] * 100:.2f}%, gap {metrics['discretization_gap'] * 100:+.2f} "
              f"points; train mode {metrics['test_acc_train_mode'] * 100:.2f}%), gates {metrics['gates']} ({metrics['gates_raw']} before simplification), "
              f"{metrics['images_per_second']:.0f} images/s, outputs in {out}")
    return 0


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _clear_outputs(out: Path) -> None:
    """Remove a previous run's outputs (only under ``--force``); other files are left alone."""
    for name in RUN_OUTPUTS:
        (out / name).unlink(missing_ok=True)
    for stale in out.glob(".*.tmp"):  # temporaries of an interrupted atomic write
        stale.unlink(missing_ok=True)


# --------------------------------------------------------------------------- info

def run_info(args: argparse.Namespace) -> int:
    import timm
    import torch

    from .discretize import discretize

    kwargs = parse_model_kwargs(args.model_kwargs)
    trained = Path(args.model).is_dir()
    if trained:
        from .train import load_run

        if kwargs:
            raise UsageError("--model-kwargs applies to a model name, not to a trained run directory")
        try:
            model, config = load_run(args.model)
        except (OSError, ValueError, KeyError) as error:
            raise UsageError(f"cannot load the trained model in {args.model}: {error}") from error
    else:
        _check_model(args.model)
        torch.manual_seed(args.seed)
        try:
            model = timm.create_model(args.model, **kwargs)
        except (ValueError, TypeError) as error:
            raise UsageError(f"cannot build {args.model} with {kwargs}: {error}") from error
    netlist = discretize(model.eval())
    simplified, _ = netlist.simplify()
    state = "trained" if trained else "untrained"
    parameters = sum(p.numel() for p in model.parameters())
    print(f"model: {args.model} {json.dumps(kwargs) if kwargs else ''}".rstrip())
    print(f"parameters: {parameters}")
    print(f"inputs: {netlist.num_inputs} bits")
    print(f"layers: {netlist.num_layers} ({', '.join(str(s) for s in netlist.layer_sizes)})")
    print(f"gates: {netlist.num_gates} (as built)")
    print(f"gates after simplification: {simplified.num_gates} (of the {state} model's discretisation"
          + ("" if trained else "; training changes this") + ")")
    print(f"logic depth: {netlist.logic_depth} (as built), {simplified.logic_depth} (simplified, {state})")
    print(f"classes: {netlist.num_classes} x {netlist.group_size} outputs, GroupSum tau {netlist.tau:g}")
    from .models import LogicTreeNet

    if isinstance(model, LogicTreeNet):  # the conv family counts its gates by formula, two ways
        parts = model.gate_count()
        physical = ("trees", "or_pools", "dense", "total")
        print("gate count formula: " + ", ".join(f"{k} {parts[k]}" for k in physical)
              + " (every tree at every position; the netlist adds one constant gate for zero padding)")
        print(f"gate count, paper convention: trees {parts['paper_trees']}, or_pools {parts['or_pools']}, "
              f"dense {parts['paper_dense']}, total {parts['paper_total']} (pass-through A/B gates are wires "
              "and not counted, as Petersen et al. 2024 count; it depends on the trained gates: an "
              "untrained residual-initialised model has only its OR pools)")
    name, custom = args.model, bool(kwargs)
    if trained:  # the published figure only fits a run of the default shape
        name = config.model
        custom = bool(set(config.model_kwargs) - {"backend", "relaxation", "temperature", "init", "seed"})
    published = PUBLISHED_GATES.get(name)
    if published and not custom:
        print(f"published gate count for this shape: {published[0]} ({published[1]}; counted on the paper's "
              "trained model without pass-through gates, so at most the physical count above)")
    return 0


# Published gate counts of the default shapes, for comparison (REFERENCE.md section 3). For the conv
# models these count the trained network's gates less its pass-through (residual) ones (see
# LogicTreeNet.gate_count), so only "published <= physical" can be checked from the shape.
PUBLISHED_GATES = {
    "lgn_dense_s": ("48K", "Petersen et al. 2022, MNIST small"),
    "lgn_dense_m": ("384K", "Petersen et al. 2022, MNIST large"),
    "lgn_dense_l": ("1.28M", "Petersen et al. 2022, CIFAR-10 L"),
    "lgn_conv_s": ("0.40M", "Petersen et al. 2024, LogicTreeNet-S CIFAR-10"),
    "lgn_conv_m": ("3.08M", "Petersen et al. 2024, LogicTreeNet-M CIFAR-10"),
    "lgn_conv_b": ("16.0M", "Petersen et al. 2024, LogicTreeNet-B CIFAR-10"),
    "lgn_conv_g": ("61.0M", "Petersen et al. 2024, LogicTreeNet-G CIFAR-10"),
    "lgn_conv_mnist_s": ("147K", "Petersen et al. 2024, LogicTreeNet-S MNIST"),
    "lgn_conv_mnist_m": ("566K", "Petersen et al. 2024, LogicTreeNet-M MNIST"),
}


# --------------------------------------------------------------------------- export

EXPORT_FORMATS = ("c", "verilog", "tvm", "netlist")


def _load_or_build_netlist(source: str, model_kwargs: Dict[str, Any]):
    """A netlist from a ``.lgn`` file, a training run directory, or an (untrained) model name."""
    from .discretize import discretize
    from .netlist import load_netlist

    path = Path(source)
    if path.is_dir() and (path / "netlist.lgn").exists():
        path = path / "netlist.lgn"
    if path.is_file():
        try:
            return load_netlist(path)
        except ValueError as error:  # truncated, not safetensors, newer version, edited, out of range: named
            raise UsageError(str(error)) from None
    if source in _known_models():
        import timm

        try:
            model = timm.create_model(source, **model_kwargs)
        except (ValueError, TypeError) as error:
            raise UsageError(f"cannot build {source} with {model_kwargs}: {error}") from None
        return discretize(model.eval())
    raise UsageError(f"{source!r} is neither a netlist file, a run directory with netlist.lgn, nor a known model "
                     f"({', '.join(_known_models())})")


def run_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    # Everything refusable is refused before the first write.
    if args.synth and args.format != "verilog":
        raise UsageError(f"--synth needs --format verilog, not {args.format}")
    if args.pipeline_every < 0:
        raise UsageError(f"--pipeline-every must be an int >= 0 (layers between registers; 0: none), "
                         f"got {args.pipeline_every}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"cannot write --out {str(out)!r}: directory {str(parent)!r} does not exist")
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a directory; expected a file name")
    netlist = _load_or_build_netlist(args.source, parse_model_kwargs(args.model_kwargs))
    simple, stats = netlist.simplify()
    if args.format == "netlist":
        simple.save(out)
    elif args.format == "c":
        from .export import to_c

        to_c(simple, out, function_name=args.name)
    elif args.format == "verilog":
        from .export import to_verilog

        to_verilog(simple, out, module_name=args.name, pipeline_every=args.pipeline_every)
    else:
        import tvm_ops

        tvm_ops.compile_netlist(simple).save(out)
    print(f"wrote {out} ({args.format}): {stats['gates_before']} gates, {stats['gates_after']} after "
          f"simplification, logic depth {simple.logic_depth}")
    if args.synth:
        from .export import synthesize

        report = synthesize(out)
        print("synthesis (yosys): " + ", ".join(f"{k} {v}" for k, v in report.items() if not isinstance(v, dict)))
    return 0


# --------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    from .data.cli import add_data_subcommand
    from .train.config import TEMPERATURE_SCHEDULES

    parser = argparse.ArgumentParser(prog="lgn-nas", description="Logic gate networks: train, inspect, fetch data.")
    sub = parser.add_subparsers(dest="command")
    sub.required = True

    train = sub.add_parser("train", help="train an LGN and write metrics, checkpoint, netlist and curves")
    train.add_argument("model", help="timm model name (lgn_*), e.g. lgn_dense_s")
    train.add_argument("--dataset", default="mnist", help="mnist, fashion_mnist or cifar10 (default mnist)")
    train.add_argument("--data-root", default=None, help="data directory (default $LGN_DATA_DIR or ~/.cache/lgn_nas)")
    train.add_argument("--epochs", type=int, default=1)
    train.add_argument("--batch-size", type=int, default=128, help="global batch size")
    train.add_argument("--eval-batch-size", type=int, default=1000)
    train.add_argument("--out", required=True, help="output directory")
    train.add_argument("--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                       help="model arguments; values parsed as JSON when possible (depth=2 width=[100,200])")
    # Flags a model's recipe may set (lgn_nas.train.recipes): absent unless given, so the recipe applies.
    unset = argparse.SUPPRESS
    train.add_argument("--opt", default=unset, help="timm optimizer name (default adam; CIFAR-10 conv models adamw)")
    train.add_argument("--lr", type=float, default=unset, help="learning rate (default 0.01; MNIST conv models 0.1, CIFAR-10 ones 0.03)")
    train.add_argument("--random-shift", type=int, default=unset, metavar="PIXELS",
                       help="translate each training image by up to PIXELS per axis (augmentation)")
    train.add_argument("--random-crop-padding", type=int, default=unset, metavar="PIXELS",
                       help="pad each training image by PIXELS zeros per side, crop back at a random offset "
                            "(the paper's CIFAR-10 augmentation; CIFAR-10 conv models: 2; the same transform as --random-shift)")
    train.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=unset,
                       help="mirror each training image left to right with probability 0.5 (augmentation; "
                            "CIFAR-10 conv models: on)")
    train.add_argument("--weight-decay", type=float, default=unset, help="default 0; CIFAR-10 conv models 0.002")
    train.add_argument("--decay-gate-logits", action=argparse.BooleanOptionalAction, default=unset,
                       help="apply weight decay to gate logits too (CIFAR-10 conv models: on)")
    train.add_argument("--sched", default=unset, help="timm scheduler name (cosine, step, ...) or none (default none; "
                       "conv models cosine)")
    train.add_argument("--warmup-epochs", type=int, default=unset)
    train.add_argument("--min-lr", type=float, default=unset)
    train.add_argument("--temperature-schedule", default=unset, choices=TEMPERATURE_SCHEDULES,
                       help="default constant; conv models cosine from 1.0 to 0.1 per step (CIFAR-10 ones to 0.03)")
    train.add_argument("--temperature-start", type=float, default=unset)
    train.add_argument("--temperature-end", type=float, default=unset)
    train.add_argument("--temperature-step", default=unset, choices=("epoch", "step"))
    train.add_argument("--grad-clip", type=float, default=None)
    train.add_argument("--val-size", type=int, default=5000, help="validation images split off the training set")
    train.add_argument("--limit-train", type=int, default=None, help="use only the first N training images")
    train.add_argument("--limit-test", type=int, default=None, help="use only the first N test images")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    train.add_argument("--initial-checkpoint", default=None, metavar="RUN",
                       help="start from the model weights of this run directory (or its checkpoint.safetensors); "
                            "a new run: optimizer, epochs and schedules start afresh")
    train.add_argument("--freeze-logic-layers", type=int, default=0, metavar="N",
                       help="keep the first N logic layers at their argmax gates (discrete in training too, no "
                            "gradient); with --initial-checkpoint, the conv recipe's last phase freezes 1")
    train.add_argument("--select-best", action=argparse.BooleanOptionalAction, default=unset,
                       help="score the test set with the epoch of best discrete validation accuracy (the paper's "
                            "model selection); its weights are written to best.safetensors in --out (CIFAR-10 "
                            "conv models: on)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    train.add_argument("--force", action="store_true", help="overwrite the run outputs in a non-empty --out (other files are kept)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=run_train)

    info = sub.add_parser("info", help="parameters, gates, layers and logic depth of a model or a trained run")
    info.add_argument("model", help="timm model name (untrained) or a `lgn-nas train` output directory")
    info.add_argument("--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    info.add_argument("--seed", type=int, default=0)
    info.set_defaults(func=run_info)

    export = sub.add_parser("export", help="write a netlist as C, Verilog, a compiled TVM library or a netlist file")
    export.add_argument("source", help="netlist file (.lgn), training run directory, or model name (untrained)")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("--out", required=True, help="output file")
    export.add_argument("--name", default="lgn_net", help="C function / Verilog module name")
    export.add_argument("--pipeline-every", type=int, default=0, help="Verilog: registers every N layers")
    export.add_argument("--synth", action="store_true", help="Verilog: synthesise with yosys and report cells")
    export.add_argument("--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    export.set_defaults(func=run_export)

    add_data_subcommand(sub)
    commands = ["train", "info", "export", "data", *_add_plugin_commands(sub)]
    sub.metavar = "{" + ",".join(commands) + "}"
    return parser


# --------------------------------------------------------------------------- commands of other packages

COMMAND_GROUP = "lgn_nas.cli_commands"


def _source_tree_commands() -> Dict[str, str]:
    """The group as this source tree's ``pyproject.toml`` declares it (where lgn_nas runs from a checkout
    whose installed metadata may predate the declaration); ``{}`` for an installed package."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        import tomllib

        project = tomllib.loads(pyproject.read_text()).get("project", {})
    except (ImportError, OSError, ValueError):
        return {}
    if project.get("name") != "lgn-nas":
        return {}
    return dict(project.get("entry-points", {}).get(COMMAND_GROUP, {}))


def command_plugins() -> Dict[str, Any]:
    """Subcommands other packages add, by name: the entry points of group :data:`COMMAND_GROUP`.

    Each is a function ``add(subparsers)`` that adds its parser (with ``func`` set), as pytest finds
    its plugins; ``search`` (``search_spaces.cli:add_search_subcommand``) is one, so lgn_nas never
    imports the package above it. Read from the installed metadata and, running from a checkout,
    from its ``pyproject.toml`` (``scripts/setup.sh`` reinstalls, so both agree there).
    """
    from importlib.metadata import EntryPoint, entry_points

    found = {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}
    for name, value in _source_tree_commands().items():
        found[name] = EntryPoint(name=name, value=value, group=COMMAND_GROUP)
    return found


def _add_plugin_commands(sub: Any) -> List[str]:
    """Add the plugin subcommands; one that cannot be loaded is left out with a warning, not an error."""
    import warnings

    added = []
    for name, entry_point in sorted(command_plugins().items()):
        try:
            entry_point.load()(sub)
        except Exception as error:  # noqa: BLE001 - a broken plugin must not take the other commands down
            warnings.warn(f"lgn-nas: command {name!r} ({entry_point.value}) is unavailable: "
                          f"{type(error).__name__}: {error}", RuntimeWarning, stacklevel=2)
            continue
        added.append(name)
    return added


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as error:
        print(f"lgn-nas {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
