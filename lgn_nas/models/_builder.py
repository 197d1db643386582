"""The lgn* factories' build step: timm's ``build_model_with_cfg`` with a cfg that tells the input truth.

timm's scripts read the input a model takes from its pretrained cfg (``resolve_data_config``) but
build it with their own ``in_chans`` (``benchmark.py`` always passes 3) or ``img_size``. A model built
for another input than its cfg states reports what it was built for: ``input_size`` becomes
``(in_chans, *img_size)``, ``mean``/``std`` get one entry per channel (a single value or equal values are
repeated; per-channel RGB statistics are averaged for other channel counts) and ``pool_size`` is the
size of the map ``forward_features`` returns.

``pretrained=True`` from ``local-dir:DIR`` reads safetensors only: the weights file timm would pick is
checked first, so a truncated file, or a pickle (``pytorch_model.bin``, or one named ``.safetensors``), is
refused in one line naming it (save with ``timm.models.save_for_hf(model, DIR, safe_serialization=True)``).
"""
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

from torch import nn
from timm.models import build_model_with_cfg, resolve_pretrained_cfg

__all__ = ["build_lgn", "check_local_weights"]

# The names timm's local-dir loader tries first, in its order, then any file by extension.
_PREFERRED_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
                    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                    "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")
_EXTENSIONS = (".safetensors", ".pth", ".pth.tar", ".bin")


def check_local_weights(directory: Union[str, Path]) -> Optional[Path]:
    """The weights file timm's ``local-dir:`` loader would read from ``directory``, refused unless safetensors.

    Returns None when there is none (timm then says so). A pickle, or a file that is not readable
    safetensors (truncated, another format), raises ``ValueError`` naming it.
    """
    directory = Path(directory)
    found = next((directory / name for name in _PREFERRED_FILES if (directory / name).exists()), None)
    for ext in _EXTENSIONS:
        if found is None:
            found = next(iter(sorted(directory.glob(f"*{ext}"))), None)
    if found is None:
        return None
    if found.suffix != ".safetensors":
        raise ValueError(f"{found} is a pickle checkpoint; lgn-nas loads safetensors weights only: save the model with "
                         "timm.models.save_for_hf(model, DIR, safe_serialization=True)")
    from safetensors import safe_open

    try:
        with safe_open(str(found), framework="pt") as handle:
            handle.keys()
    except Exception as error:  # noqa: BLE001 - safetensors raises its own types
        raise ValueError(f"{found} is not a readable safetensors file (truncated, or a pickle under a .safetensors "
                         f"name): {type(error).__name__}: {error}") from None
    return found


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, ...]:
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    return tuple(int(s) for s in size)


def _per_channel(values: Sequence[float], channels: int) -> Tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    if len(set(values)) == 1:
        return (values[0],) * channels
    return (sum(values) / len(values),) * channels


def _input_overlay(variant: str, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The cfg entries to change for the ``in_chans``/``img_size`` in ``kwargs`` (empty when they match)."""
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get("pretrained_cfg"),
                                 pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay")).to_dict()
    channels, height, width = cfg["input_size"]
    in_chans = kwargs.get("in_chans", channels)
    input_size = (in_chans, *_pair(kwargs.get("img_size", (height, width))))
    if input_size == tuple(cfg["input_size"]) or not isinstance(in_chans, int) or len(input_size) != 3:
        return {}  # bad values are left to the constructor, which names them
    return dict(input_size=input_size, mean=_per_channel(cfg["mean"], in_chans),
                std=_per_channel(cfg["std"], in_chans))


def build_lgn(model_cls: Callable[..., nn.Module], variant: str, pretrained: bool = False, *,
              feature_cfg: Optional[Dict[str, Any]] = None, **kwargs: Any) -> nn.Module:
    """``build_model_with_cfg`` whose pretrained cfg states the input the model was built for."""
    if pretrained:
        cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get("pretrained_cfg"),
                                     pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay"))
        if cfg.source == "local-dir" and cfg.file:
            check_local_weights(cfg.file)
    overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
    overlay.update(_input_overlay(variant, kwargs))
    kwargs["pretrained_cfg_overlay"] = overlay or None
    model = build_model_with_cfg(model_cls, variant, pretrained, feature_cfg=feature_cfg, **kwargs)
    feature_hw = getattr(model, "feature_hw", None)
    if feature_hw is not None and model.pretrained_cfg.get("pool_size") not in (None, tuple(feature_hw)):
        model.pretrained_cfg["pool_size"] = tuple(feature_hw)  # model.default_cfg is the same dict
    return model
