"""Pretrained LGNs shipped inside the package: a compact safetensors form and timm's loading hooks.

``timm.create_model("lgn_dense_s", pretrained=True)`` loads ``weights/lgn_dense_s.mnist.safetensors``
(the first tag of the model's ``default_cfgs``, so ``pretrained=True`` picks it); a tag whose file is
not installed raises a ``FileNotFoundError`` that names it and ``pretrained=False`` is unaffected.

The compact form holds the discrete circuit only, which is all a trained LGN is:

* ``<layer>.gate_ids``: each gate's kept id (uint8; ``(out,)`` for ``LogicDense``, ``(out, 2^depth - 1)``
  for ``LogicTreeConv2d``) in place of its float logits ``<layer>.weight``;
* the wiring buffers (``in_a`` / ``in_b``, ``leaf_index``, a learnable layer's ``cand_a`` / ``cand_b``)
  as uint8 / uint16 where the values fit (int32 / int64 otherwise); a learnable layer's wire logits
  ``<layer>.wire_a`` / ``wire_b`` as ``<layer>.wire_a_ids`` / ``wire_b_ids``, the candidate each gate
  input keeps (``(out,)``); the thermometer ``thresholds`` and any other float tensor unchanged;
* metadata: the format, the timm tag, the model name and the run's model kwargs (``input_bits`` and
  the like, applied under the caller's kwargs when the model is built).

Beside each file a JSON record (``<tag>.json``) gives the ``lgn-nas train`` command that produced
it, the run's config, its measured test accuracies and gate counts and the file's sha256. Both are
written by ``python -m lgn_nas.pretrained RUN_DIR TAG`` (:mod:`lgn_nas.pretrained.convert`).

What the loaded model computes. ``checkpoint_filter_fn`` expands each gate id into logits
(``logits_for_gate_ids``) of ``PRETRAINED_LOGIT`` = 128 on the kept gate and 0 on the others
(``raw16``), or +-128 per truth-table entry (``truth_table``), and each wire id into wire logits of
128 on the kept candidate and 0 on the others. In eval mode the model is the trained
circuit exactly, as every eval-mode LGN is. In training mode (and in the "relaxed" scores of
``lgn_nas.train``) the float32 softmax / sigmoid of a margin of 128 is exactly one-hot, since
``exp(-128)`` underflows to 0, and the Gumbel / logistic noise of the stochastic relaxations (under 24
in magnitude after the clamps in ``relaxations.py``) cannot move it; so at temperature 1 the relaxed
forward equals the circuit too, bit for bit. The relaxed accuracy of the original training run (the
soft mixture of gates, e.g. 98.08% against 97.53% discrete for ``lgn_dense_s`` on MNIST) is not
kept: the discrete circuit is the product. Every gate-choice gradient is exactly 0 as well, so
fine-tuning from these weights learns nothing until ``soften_gate_logits(model)`` scales the logits
down (to 5 on the kept gate, p = 0.91 under softmax, like the residual initialisation; the argmax
and so the circuit are unchanged). A temperature above 128 / 104 also makes the relaxation inexact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import nn

from ..layers import LogicDense, LogicGates
from ..layers.parametrizations import logits_for_gate_ids

__all__ = [
    "PRETRAINED_TAGS", "PRETRAINED_LOGIT", "WEIGHTS_FORMAT", "GATE_IDS_KEY", "WIRE_IDS_SUFFIX", "weights_dir", "weights_path",
    "weights_file", "record_path", "read_record", "read_weights_metadata", "compact_state_dict",
    "expand_state_dict", "checkpoint_filter_fn", "pretrained_model_kwargs", "soften_gate_logits",
]

PathLike = Union[str, os.PathLike]

WEIGHTS_FORMAT = "lgn_nas.pretrained/1"
GATE_IDS_KEY = "gate_ids"
WIRE_IDS_SUFFIX = "_ids"  # <layer>.wire_a -> <layer>.wire_a_ids
_WIRES = ("wire_a", "wire_b")
PRETRAINED_LOGIT = 128.0

# Every tag lgn-nas ships (or will: a tag without its file is wired but refuses pretrained=True) and the
# ``lgn-nas train --dataset`` names a run converted to it must have used.
PRETRAINED_TAGS: Dict[str, Tuple[str, ...]] = {
    "lgn_dense_s.mnist": ("mnist",),
    "lgn_dense_m.fashion_mnist": ("fashion_mnist",),
    "lgn_conv_mnist_s.mnist": ("mnist",),
    "lgn_conv_mnist_s.mnist_nas": ("mnist",),
    "lgn_conv_s.cifar10_jpeg": ("cifar10",),
    "lgn_conv_s.cifar10_jpeg_nas": ("cifar10",),
    "lgn_dense_learnable_4k.mnist": ("mnist",),
    "lgn_dense_learnable_8k.mnist": ("mnist",),
}


def weights_dir() -> Path:
    """The package directory that holds the shipped weights and their records."""
    return Path(__file__).resolve().parent / "weights"


def weights_path(tag: str, directory: Optional[PathLike] = None) -> Path:
    """Where the weights of ``tag`` (``model.tag``) live: ``<directory>/<tag>.safetensors``."""
    return Path(directory if directory is not None else weights_dir()) / f"{tag}.safetensors"


def record_path(weights: PathLike) -> Path:
    """The JSON record beside a weights file (``<tag>.json``)."""
    weights = Path(weights)
    return weights.with_name(weights.name[:-len(".safetensors")] + ".json") \
        if weights.name.endswith(".safetensors") else weights.with_suffix(".json")


def weights_file(tag: str) -> Optional[str]:
    """The installed weights of ``tag`` as a string for ``pretrained_cfg["file"]``, or None if absent."""
    path = weights_path(tag)
    return str(path) if path.is_file() else None


def read_record(tag: str, directory: Optional[PathLike] = None) -> Dict[str, Any]:
    """The JSON record of ``tag``'s weights (command, config, accuracies, gates, sha256)."""
    path = record_path(weights_path(tag, directory))
    if not path.is_file():
        raise FileNotFoundError(f"no record for {tag}: {path} is missing")
    return json.loads(path.read_text())


def read_weights_metadata(path: PathLike) -> Dict[str, str]:
    """The safetensors metadata of ``path`` (without reading its tensors); {} if there is none."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def _gate_modules(model: nn.Module) -> Dict[str, nn.Module]:
    return {name: module for name, module in model.named_modules() if isinstance(module, LogicGates)}


def _small_int(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in the narrowest of uint8, uint16, int32, int64 that holds its values."""
    tensor = tensor.detach().cpu()
    low, high = (int(tensor.min()), int(tensor.max())) if tensor.numel() else (0, 0)
    for dtype, lo, hi in ((torch.uint8, 0, 255), (torch.uint16, 0, 65535), (torch.int32, -2 ** 31, 2 ** 31 - 1)):
        if lo <= low and high <= hi:
            return tensor.to(dtype).contiguous()
    return tensor.to(torch.int64).contiguous()


def compact_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The discrete circuit of ``model``: gate ids instead of gate logits, wiring in small ints.

    Float tensors other than gate logits (thermometer thresholds, a hybrid's backbone) are kept as
    they are; ``expand_state_dict`` turns the result back into a state dict of ``model``'s layout.
    """
    gates = _gate_modules(model)
    compact: Dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        prefix, _, leaf = key.rpartition(".")
        if leaf == "weight" and prefix in gates:
            compact[f"{prefix}.{GATE_IDS_KEY}"] = gates[prefix].gate_ids().cpu().to(torch.uint8).contiguous()
        elif leaf in _WIRES and prefix in gates:
            compact[f"{key}{WIRE_IDS_SUFFIX}"] = _small_int(value.argmax(dim=-1))
        elif value.is_floating_point() or value.dtype == torch.bool:
            compact[key] = value.detach().cpu().contiguous()
        else:
            compact[key] = _small_int(value)
    return compact


def expand_state_dict(state_dict: Dict[str, torch.Tensor], model: nn.Module, *,
                      logit: float = PRETRAINED_LOGIT) -> Dict[str, torch.Tensor]:
    """A state dict for ``model`` from a compact one (a full state dict is returned unchanged).

    Gate ids become logits (``logit`` on the kept gate, see the module docstring); integer tensors
    take the dtype of ``model``'s buffers.
    """
    suffix = "." + GATE_IDS_KEY
    if not any(key.endswith(suffix) for key in state_dict):
        return state_dict
    gates = _gate_modules(model)
    target = model.state_dict()
    expanded: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf in {w + WIRE_IDS_SUFFIX for w in _WIRES}:
            wire = leaf[:-len(WIRE_IDS_SUFFIX)]
            module = gates.get(prefix)
            logits = getattr(module, wire) if isinstance(module, LogicDense) else None
            if logits is None:
                raise ValueError(f"the pretrained weights hold wire ids for {prefix!r}, which is not a learnable "
                                 f"logic layer of this {type(model).__name__}: build it with the weights' model kwargs")
            ids = value.long()
            if tuple(ids.shape) != tuple(logits.shape[:-1]) or (
                    ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) < logits.shape[-1]):
                raise ValueError(f"the pretrained wire ids for {prefix!r} ({tuple(ids.shape)}) do not fit this model's "
                                 f"{tuple(logits.shape[:-1])} gate inputs of {logits.shape[-1]} candidates: build it "
                                 f"with the weights' model kwargs")
            zeros = torch.zeros(logits.shape, dtype=logits.dtype)
            expanded[f"{prefix}.{wire}"] = zeros.scatter_(-1, ids.unsqueeze(-1), float(logit))
        elif key.endswith(suffix):
            prefix = key[:-len(suffix)]
            module = gates.get(prefix)
            if module is None:
                raise ValueError(f"the pretrained weights hold gate ids for {prefix!r}, which is not a logic layer "
                                 f"of this {type(model).__name__}")
            expected = tuple(module.weight.shape[:-1])
            if tuple(value.shape) != expected:
                raise ValueError(f"the pretrained weights hold {tuple(value.shape)} gate ids for {prefix!r}, but this "
                                 f"model's layer has {expected} gates: build it with the weights' model kwargs")
            expanded[f"{prefix}.weight"] = logits_for_gate_ids(value, module.parametrization, logit=logit,
                                                                dtype=module.weight.dtype)
        elif key in target and not value.is_floating_point() and value.dtype != target[key].dtype:
            expanded[key] = value.to(target[key].dtype)
        else:
            expanded[key] = value
    return expanded


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """timm ``pretrained_filter_fn``: expand lgn-nas compact weights, pass anything else through."""
    return expand_state_dict(state_dict, model)


def pretrained_model_kwargs(variant: str, pretrained: bool, kwargs: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``(kwargs, run_kwargs)``: the entrypoint's kwargs with the weights' model kwargs under them.

    Only for ``pretrained=True`` with lgn-nas compact weights from ``pretrained_cfg["file"]``; other
    sources (``local-dir:``, a URL, the Hub, a state dict) are left to timm. A shipped tag whose file
    is not installed raises ``FileNotFoundError`` naming the file and the command that makes it.
    """
    if not pretrained:
        return kwargs, {}
    from timm.models import resolve_pretrained_cfg

    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get("pretrained_cfg"),
                                 pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay"))
    if (cfg.source or "timm") != "timm" or cfg.state_dict or cfg.url or cfg.hf_hub_id:
        return kwargs, {}
    name = f"{variant}.{cfg.tag}" if cfg.tag else variant
    path = cfg.file
    if not path:
        shipped = weights_path(name)
        if name not in PRETRAINED_TAGS:
            return kwargs, {}  # timm reports "No pretrained weights exist"
        if not shipped.is_file():
            raise FileNotFoundError(
                f"{name}: no pretrained weights in this installation ({shipped} is missing); make them from a "
                f"finished run with `python -m lgn_nas.pretrained RUN_DIR {name}`, or use pretrained=False")
        path = str(shipped)  # converted after this process registered the models
        kwargs = dict(kwargs, pretrained_cfg_overlay=dict(kwargs.get("pretrained_cfg_overlay") or {}, file=path))
    if not Path(path).is_file():
        raise FileNotFoundError(f"{name}: the pretrained weights file {path} does not exist")
    metadata = read_weights_metadata(path)
    if metadata.get("format") != WEIGHTS_FORMAT:
        return kwargs, {}
    if metadata.get("model") != variant:
        raise ValueError(f"{path} holds weights for {metadata.get('model')!r}, not for {variant!r}")
    run_kwargs = json.loads(metadata.get("model_kwargs", "{}"))
    merged = dict(run_kwargs, **kwargs)
    merged.setdefault("pretrained_model_args", dict(run_kwargs))
    return merged, run_kwargs


@torch.no_grad()
def soften_gate_logits(model: nn.Module, logit: float = 5.0) -> nn.Module:
    """Scale every gate's logits (and learnable wiring's) so the kept choice has ``logit`` instead of
    ``PRETRAINED_LOGIT``.

    For fine-tuning pretrained weights (whose relaxation is saturated, with zero gradients): the
    argmax, and so the discrete circuit, stays the same. Returns ``model``.
    """
    if not float(logit) > 0:
        raise ValueError(f"logit must be > 0, got {logit!r}")
    for module in _gate_modules(model).values():
        for parameter in module.parameters(recurse=False):  # the gate logits, and learnable wiring's
            parameter.mul_(float(logit) / PRETRAINED_LOGIT)
    return model
