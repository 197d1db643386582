"""The input contract of a netlist's raw inputs, one check for every Python-side evaluator.

A netlist's thermometer encoding reads raw inputs of shape ``(B, *input_shape)`` with ``B >= 1``, in
one of two domains (:data:`INPUT_DOMAINS`):

- ``"unit"`` (images; every ``lgn_dense_*`` / ``lgn_conv_*`` model): uint8, where value ``v`` means
  ``float32(v) / 255``, or floating point with every value in [0, 1];
- ``"real"`` (a ``LogicBlock`` head's normalised features): finite floating-point values.

Anything else is refused with an :class:`InputError` naming the shape, dtype or first bad value: an
empty batch, another shape, integer dtypes other than uint8 (int64 included), bool, NaN or infinity,
a float outside [0, 1] in the unit domain (0..255 pixels not divided by 255), uint8 in the real
domain. Floats are compared with the thresholds in float32.

``lgn_nas`` uses this module for ``Netlist.evaluate`` and its torch models (``lgn_nas.inputs``), this
package for ``CompiledNetlist``; ``tvm_ops`` never imports ``lgn_nas``, so the contract lives here. The
C export implements the same checks in C and documents them in the generated file.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["INPUT_DOMAINS", "InputError", "check_domain", "check_input", "expected_values", "format_shape"]

INPUT_DOMAINS = ("unit", "real")


class InputError(ValueError):
    """A batch of raw inputs outside the contract (shape, empty batch, dtype or a value)."""


def check_domain(domain: Any) -> str:
    if domain not in INPUT_DOMAINS:
        raise ValueError(f"input domain {domain!r} is not supported, expected one of {INPUT_DOMAINS}")
    return domain


def expected_values(domain: str) -> str:
    """What the values of a batch in ``domain`` must be, for error messages."""
    if domain == "unit":
        return "uint8 (0..255, read as value / 255) or floats in [0, 1]"
    return "finite floats"


def format_shape(input_shape: Sequence[Any]) -> str:
    return "(B, " + ", ".join(str(s) for s in input_shape) + ") with B >= 1"


def _as_numpy(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):  # a tensor, read without importing torch
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16; float64 holds it exactly
            x = x.double()
        return x.numpy()
    return np.asarray(x)


def _first_bad(x: np.ndarray, bad: np.ndarray) -> str:
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    return f"{x[index].item()!r} at sample {index[0]}, position {index[1:]}"


def check_input(x: Any, input_shape: Sequence[int], *, domain: str = "unit") -> np.ndarray:
    """``x`` as a C-contiguous uint8 (unit domain) or float32 array, or an :class:`InputError`.

    ``x``: a numpy array, an array-like or a torch tensor of shape ``(B, *input_shape)``.
    """
    domain = check_domain(domain)
    input_shape = tuple(int(s) for s in input_shape)
    arr = _as_numpy(x)
    if arr.ndim != len(input_shape) + 1 or tuple(arr.shape[1:]) != input_shape:
        raise InputError(f"input has shape {tuple(arr.shape)}, expected {format_shape(input_shape)}")
    if arr.shape[0] == 0:
        raise InputError(f"input is an empty batch (shape {tuple(arr.shape)}), expected at least one sample")
    if arr.dtype == np.uint8 and domain == "unit":
        return np.ascontiguousarray(arr)
    if arr.dtype.kind != "f":
        raise InputError(f"input has dtype {arr.dtype}, expected {expected_values(domain)}")
    lo, hi = arr.min(), arr.max()  # NaN propagates into both
    if domain == "unit":
        if not (lo >= 0 and hi <= 1):
            bad = ~((arr >= 0) & (arr <= 1))
            raise InputError(f"input holds {_first_bad(arr, bad)}, expected {expected_values(domain)}"
                             " (divide 0..255 pixels by 255, or pass them as uint8)")
    elif not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"input holds {_first_bad(arr, ~np.isfinite(arr))}, expected {expected_values(domain)}")
    return np.ascontiguousarray(arr, dtype=np.float32)
