"""Building what a training run trains: the model from its config, its encoders, the optimizer's groups.

``build_model(config, num_classes=..., input_shape=...)`` is ``timm.create_model`` with the data set's
classes and input filled in; ``load_run(dir)`` rebuilds a finished ``lgn-nas train`` run and
``load_initial_checkpoint`` starts a new one from a run's weights; the name
checks refuse unknown models and data sets before anything is loaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from ..layers.logic import freeze_leading_logic_layers, model_temperature, set_temperature
from ..models._optim import is_gate_logit_module, is_threshold_parameter
from .config import TrainConfig

__all__ = ["fit_encoders", "make_param_groups", "known_dataset", "check_model_name", "check_names", "build_model",
           "load_run", "load_initial_checkpoint", "model_temperature"]


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


#: Learnable input thresholds live on the pixel scale (0..1, a few bits apart), gate logits on a scale of
#: ~5: Adam moves every parameter by about its lr a step, so the thresholds take a tenth of it.
THRESHOLD_LR_SCALE = 0.1


def make_param_groups(model: nn.Module, weight_decay: float, *, decay_gate_logits: bool = False,
                      lr: Optional[float] = None) -> List[Dict[str, Any]]:
    """Optimizer parameter groups: gate logits, other decayed weights, non-decayed biases/norms, and
    learnable input thresholds.

    Gate logits (all parameters of lgn-nas layers) get ``weight_decay`` only if ``decay_gate_logits``;
    learnable thresholds get none and, given the run's ``lr``, ``lr * THRESHOLD_LR_SCALE``; other
    parameters follow timm's rule (no decay for 1-d tensors and biases). Empty groups are dropped.
    Each group has a ``name`` for inspection.
    """
    gate, decay, no_decay, thresholds = [], [], [], []
    seen = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if is_gate_logit_module(module):
                gate.append(param)
            elif is_threshold_parameter(module, name):
                thresholds.append(param)
            elif param.ndim <= 1 or name.endswith("bias"):
                no_decay.append(param)
            else:
                decay.append(param)
    groups = [
        {"name": "gate_logits", "params": gate, "weight_decay": weight_decay if decay_gate_logits else 0.0},
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
        {"name": "thresholds", "params": thresholds, "weight_decay": 0.0,
         **({"lr": lr * THRESHOLD_LR_SCALE} if lr is not None else {})},
    ]
    return [group for group in groups if group["params"]]


def known_dataset(name: str) -> bool:
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
    if not known_dataset(config.dataset):
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
    try:
        return timm.create_model(config.model, **kwargs)
    except TypeError as error:  # an unknown keyword in model_kwargs
        raise ValueError(f"cannot build {config.model} with model_kwargs {config.model_kwargs}: {error}") from None


def load_run(run_dir: Union[str, Path], *, device: Union[str, torch.device] = "cpu") -> tuple[nn.Module, TrainConfig]:
    """The trained model (in eval mode) and the config of a ``lgn-nas train`` output directory (the
    selected epoch's model for a finished ``select_best`` run, the one its metrics score), or of one of
    its checkpoint files (``checkpoint.safetensors`` there is the last epoch, ``best.safetensors`` the selected one).

    The relaxation temperature is the one training ended with (a temperature schedule's last value),
    and the layers the run froze are frozen again, so the relaxed model scores as it did at the end of
    the run.
    """
    from ..data import _spec
    from .checkpoint import CHECKPOINT_NAME, checkpoint_file, load_checkpoint

    run_dir = Path(run_dir)
    if run_dir.is_dir():
        path = checkpoint_file(run_dir)
    elif run_dir.is_file():  # a checkpoint file of a run
        path = run_dir
    else:
        path = run_dir / CHECKPOINT_NAME  # missing: named in the error below
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run directory: {path.name} is missing")
    checkpoint = load_checkpoint(path, device=device)
    config = TrainConfig.from_dict(checkpoint["meta"]["config"])
    spec = _spec(config.dataset)
    model = build_model(config, num_classes=spec.num_classes, input_shape=spec.input_shape)
    model.load_state_dict(checkpoint["model"])
    if config.freeze_logic_layers:  # the run trained (and scored its relaxed model) with these frozen
        freeze_leading_logic_layers(model, config.freeze_logic_layers)
    history = checkpoint["meta"].get("history") or []
    temperature = history[-1].get("temperature") if history else None
    if temperature is not None:
        set_temperature(model, temperature)
    return model.to(device).eval(), config


def load_initial_checkpoint(model: nn.Module, path: Union[str, Path], *, model_name: str) -> None:
    """Load the model weights of a training checkpoint (a run directory or its ``checkpoint.safetensors``)
    into ``model``, a freshly built ``model_name``; ``ValueError`` naming the path when it is not a
    checkpoint, was trained on another model, or its tensors do not fit."""
    from .checkpoint import CHECKPOINT_NAME, checkpoint_file, load_checkpoint

    path, file = Path(path), checkpoint_file(path)
    if not file.is_file():
        raise ValueError(f"initial_checkpoint {path}: no such checkpoint (expected a `lgn-nas train` output "
                         f"directory holding {CHECKPOINT_NAME}, or that file)")
    checkpoint = load_checkpoint(file)
    trained = (checkpoint["meta"].get("config") or {}).get("model")
    if trained != model_name:
        raise ValueError(f"initial_checkpoint {file} holds a {trained!r} model, expected {model_name!r}")
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        reason = first[1].strip() if len(first) > 1 else (first[0] if first else "")
        raise ValueError(f"initial_checkpoint {file} does not fit this {model_name} (other model_kwargs?): "
                         f"{reason}") from None
