"""Training-time augmentation on batches of image tensors (cheap enough to run per step)."""
from __future__ import annotations

import torch

__all__ = ["random_shift"]


def random_shift(x: torch.Tensor, pixels: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image of ``x`` (B, C, H, W) by its own random offset in ``[-pixels, pixels]``
    along both axes, filling with zeros (the background of MNIST-like data)."""
    if pixels < 0:
        raise ValueError(f"random_shift pixels must be >= 0, got {pixels!r}")
    if pixels == 0:
        return x
    if x.dim() != 4:
        raise ValueError(f"random_shift expects (batch, channels, height, width) images, got shape {tuple(x.shape)}")
    batch, _, height, width = x.shape
    padded = torch.nn.functional.pad(x, (pixels, pixels, pixels, pixels))
    offsets = torch.randint(0, 2 * pixels + 1, (2, batch), generator=generator, device="cpu").to(x.device)
    rows = offsets[0, :, None] + torch.arange(height, device=x.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(width, device=x.device)  # (B, W)
    index = torch.arange(batch, device=x.device)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return shifted.permute(0, 3, 1, 2).contiguous()
