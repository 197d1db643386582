"""The input contract of every evaluator: torch models, ``Netlist.evaluate``, TVM and C.

A batch of raw inputs has shape ``(B, *input_shape)`` with ``B >= 1`` and is, in the input domain of
the network (``Encoding.domain``):

- ``"unit"`` (images, every ``lgn_dense_*`` / ``lgn_conv_*`` model and its netlist): uint8, where
  value ``v`` means ``float32(v) / 255``, or floating point with every value in [0, 1];
- ``"real"`` (a ``LogicBlock`` head's normalised features): finite floating-point values.

Everything else (an empty batch, another shape, int64 or any integer dtype but uint8, bool, NaN,
infinity, floats outside [0, 1] such as 0..255 pixels not divided by 255, uint8 features) is refused
with an :class:`InputError` (a ``ValueError``) naming the shape, dtype or first bad value, by the torch
model in eval and train mode, ``Netlist.evaluate``, ``tvm_ops.CompiledNetlist`` and, as error codes,
the C export's ``NAME_eval_u8`` / ``NAME_eval_f32``. On uint8 and float32 inputs all four agree bit
for bit (floats are compared with the thresholds in float32; a torch model in another dtype compares
in that dtype).

:func:`check_input` is the numpy check (from :mod:`tvm_ops.inputs`, which may not import lgn_nas);
:func:`check_images` is the torch one, which a ``Thermometer`` applies to what it encodes. timm's own
tests and scripts feed ``torch.randn`` to every model: :func:`set_range_check` (or ``LGN_INPUT_RANGE_CHECK=0``
in the environment) turns the [0, 1] check of torch models off for them, as ``scripts/timm_conformance.py``
and ``scripts/run_timm_script.py`` do; NaN and infinity are still refused. A TorchScript-compiled model
checks shape, batch and dtype, not values.
"""
from __future__ import annotations

import os
from typing import List

import torch
import torch.fx
from timm.layers import register_notrace_function

from tvm_ops.inputs import INPUT_DOMAINS, InputError, check_domain, check_input, expected_values, format_shape

__all__ = ["INPUT_DOMAINS", "InputError", "check_domain", "check_input", "check_images", "expected_values",
           "set_range_check", "range_check_enabled"]

_RANGE_CHECK = [os.environ.get("LGN_INPUT_RANGE_CHECK", "1").strip() != "0"]


def set_range_check(enabled: bool) -> bool:
    """Whether torch models refuse unit-domain floats outside [0, 1]; returns the previous setting."""
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled = {enabled!r}, expected True or False")
    previous, _RANGE_CHECK[0] = _RANGE_CHECK[0], enabled
    return previous


def range_check_enabled() -> bool:
    return _RANGE_CHECK[0]


def _values_ok(x: torch.Tensor, domain: str) -> bool:
    if x.dtype == torch.uint8 or x.numel() == 0 or x.is_meta:  # a meta tensor has no values
        return True
    if domain == "unit" and _RANGE_CHECK[0]:
        lo, hi = torch.aminmax(x.detach())  # NaN propagates into both
        return bool((lo >= 0) & (hi <= 1))
    return bool(torch.isfinite(x.detach()).all())


def _raise_input_error(x: torch.Tensor, channels: int, spatial: List[int], domain: str) -> None:
    """Raise the :class:`InputError` the numpy check gives for ``x``, so every evaluator words it alike."""
    if x.dim() < 2 or x.shape[1] != channels or (spatial and list(x.shape[2:]) != spatial):
        shape = [channels, *spatial] if spatial else [channels, "..."]
        raise InputError(f"input has shape {tuple(x.shape)}, expected {format_shape(shape)}")
    if domain == "unit" and not _RANGE_CHECK[0] and x.is_floating_point():
        domain = "real"
    check_input(x, tuple(x.shape[1:]), domain=domain)
    raise InputError(f"input of shape {tuple(x.shape)} and dtype {x.dtype} is refused")  # not reached


@register_notrace_function
def check_images(x: torch.Tensor, channels: int, spatial: List[int], domain: str,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``x`` (B, channels, *spatial) as the float batch an encoder compares, or an :class:`InputError`.

    uint8 becomes ``float32(x) / 255`` (then ``dtype``); floats are returned as they are. ``spatial=[]``: any spatial
    shape. An FX leaf; under TorchScript only shape, batch and dtype are checked.
    """
    ok = (x.dim() >= 2 and x.shape[1] == channels and (len(spatial) == 0 or list(x.shape[2:]) == spatial)
          and x.shape[0] > 0 and (x.is_floating_point() or (x.dtype == torch.uint8 and domain == "unit")))
    if not torch.jit.is_scripting():
        if not ok or not _values_ok(x, domain):
            _raise_input_error(x, channels, spatial, domain)
    elif not ok:
        raise ValueError("input of shape " + str(list(x.shape)) + " is refused: expected (B, " + str(channels) + ", "
                         + str(spatial) + ") with B >= 1, of dtype uint8 or floating point")
    if x.dtype == torch.uint8:
        return (x.to(torch.float32) / 255.0).to(dtype)
    return x


torch.fx.wrap("check_images")
