"""Thermometer: encode real-valued inputs as bits ``x > threshold`` for a few thresholds per channel."""

from typing import List, Optional, Sequence

import torch
import torch.fx
from torch import nn
from timm.layers import register_notrace_function

from ..inputs import check_images

__all__ = ["Thermometer", "thermometer_encode", "thermometer_ramp", "THRESHOLD_METHODS"]

THRESHOLD_METHODS = ("uniform", "distributive", "learnable")


@register_notrace_function
def thermometer_encode(x: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial) -> (B, C * T, *spatial)`` bits (as x's float dtype), channel-major: c * T + t."""
    channels = thresholds.shape[0]
    if x.dim() < 2 or x.shape[1] != channels:
        raise ValueError("Thermometer expects input of shape (batch, " + str(channels) + ", ...), got "
                         + str(list(x.shape)))
    out = x.unsqueeze(2) > _per_pixel(thresholds, x)
    return out.to(x.dtype if x.is_floating_point() else torch.float32).flatten(1, 2)


def _per_pixel(thresholds: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``thresholds`` (C, T) shaped to broadcast against ``x.unsqueeze(2)`` (B, C, T, *spatial), in x's dtype."""
    return thresholds.to(x.dtype).reshape([1, thresholds.shape[0], thresholds.shape[1]] + [1] * (x.dim() - 2))


@register_notrace_function
def thermometer_ramp(x: torch.Tensor, thresholds: torch.Tensor, width: float) -> torch.Tensor:
    """The straight-through surrogate of :func:`thermometer_encode`: ``clamp((x - t) / width + 1/2, 0, 1)``,
    same shape and channel order."""
    x = x if x.is_floating_point() else x.float()
    ramp = ((x.unsqueeze(2) - _per_pixel(thresholds, x)) / width + 0.5).clamp(0.0, 1.0)
    return ramp.flatten(1, 2)


torch.fx.wrap("thermometer_encode")
torch.fx.wrap("thermometer_ramp")
torch.fx.wrap("check_images")


class Thermometer(nn.Module):
    """Thermometer encoder with ``num_bits`` thresholds per input channel.

    ``method="uniform"``: thresholds evenly spaced inside (low, high); ``"distributive"``: thresholds
    at the per-channel quantiles of the data, set by ``fit`` (uniform until then). Both keep them in a
    persistent buffer of shape ``(in_channels, num_bits)`` and their bits carry no gradient.
    ``"learnable"``: uniform to start, but a parameter the network trains (learnable input thresholds,
    as in WARP, arXiv 2602.03527): the forward pass gives the same hard bits, and in training the
    backward pass takes the slope of a linear ramp as wide as the uniform spacing around each threshold
    (straight-through), so gradient reaches the thresholds and the input.

    The input is checked against the contract of :mod:`lgn_nas.inputs` (``img_size``: the spatial shape
    it must have, None for any): with the default range ``0 <= low < high <= 1`` the encoder reads
    images (``domain="unit"``: uint8, scaled by 1/255, or floats in [0, 1]), otherwise finite floats.
    """

    input_spatial: List[int]

    def __init__(
            self,
            num_bits: int = 1,
            *,
            in_channels: int = 1,
            method: str = "uniform",
            low: float = 0.0,
            high: float = 1.0,
            img_size: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_bits, int) or isinstance(num_bits, bool) or num_bits < 1:
            raise ValueError(f"Thermometer num_bits must be a positive int, got {num_bits!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"Thermometer in_channels must be a positive int, got {in_channels!r}")
        if method not in THRESHOLD_METHODS:
            raise ValueError(f"unknown threshold method {method!r}: expected one of {', '.join(THRESHOLD_METHODS)}")
        if not high > low:
            raise ValueError(f"Thermometer needs low < high, got low={low!r}, high={high!r}")
        self.num_bits = num_bits
        self.in_channels = in_channels
        self.method = method
        self.domain = "unit" if 0.0 <= low and high <= 1.0 else "real"
        self.input_spatial = [] if img_size is None else [int(s) for s in img_size]
        steps = torch.arange(1, num_bits + 1, dtype=torch.float32) / (num_bits + 1)
        thresholds = (low + (high - low) * steps).expand(in_channels, num_bits).clone()
        self.ramp_width = (high - low) / (num_bits + 1)
        if method == "learnable":
            self.thresholds = nn.Parameter(thresholds)
        else:
            self.register_buffer("thresholds", thresholds)

    @property
    def out_channels(self) -> int:
        return self.in_channels * self.num_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_images(x, self.in_channels, self.input_spatial, self.domain, self.thresholds.dtype)
        bits = thermometer_encode(x, self.thresholds.detach())
        if self.training and self.thresholds.requires_grad and torch.is_grad_enabled():
            ramp = thermometer_ramp(x, self.thresholds, self.ramp_width)
            bits = bits + (ramp - ramp.detach())  # exactly the hard bits, the ramp's gradient
        return bits

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        saved = state_dict.get(prefix + "thresholds")
        if saved is not None and tuple(saved.shape) != tuple(self.thresholds.shape):
            raise ValueError(
                f"the checkpoint's encoder has thresholds of shape {tuple(saved.shape)} ({saved.shape[0]} input "
                f"channels x {saved.shape[1]} bits), but this model was built with in_chans={self.in_channels} "
                f"and {self.num_bits} bits: create the model with in_chans={saved.shape[0]}, "
                f"input_bits={saved.shape[1]}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> "Thermometer":
        """Set distributive thresholds to the per-channel quantiles of ``x`` (B, C, ...)."""
        if self.method != "distributive":
            raise ValueError(f"fit() sets distributive thresholds; this encoder's method is {self.method!r}")
        if x.dim() < 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"fit expects data of shape (N, {self.in_channels}, ...), got {tuple(x.shape)}")
        values = x.transpose(0, 1).reshape(self.in_channels, -1).float()
        if values.shape[1] > 1_000_000:
            values = values[:, torch.randperm(values.shape[1])[:1_000_000]]
        q = torch.arange(1, self.num_bits + 1, dtype=torch.float32) / (self.num_bits + 1)
        self.thresholds.copy_(torch.quantile(values, q, dim=1).T)
        return self

    def to_encoding(self, input_shape: Sequence[int]):
        """The netlist ``Encoding`` of this encoder for raw inputs of shape ``input_shape`` (C, ...)."""
        from ..netlist import Encoding

        input_shape = tuple(int(s) for s in input_shape)
        if input_shape[0] != self.in_channels:
            raise ValueError(f"input_shape {input_shape} does not start with in_channels={self.in_channels}")
        return Encoding(kind="thermometer", input_shape=input_shape,
                        thresholds=self.thresholds.detach().cpu().numpy().astype("float32"), domain=self.domain)

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, in_channels={self.in_channels}, method={self.method!r}"
