"""Training-time augmentation on batches of image tensors (cheap enough to run per step).

Every function draws one random choice per image, on the CPU from ``generator`` (default: torch's
global generator, which the trainer reseeds per epoch and rank, so a resumed run repeats an
uninterrupted one), and works on the whole (B, C, H, W) batch at once on the batch's device.
"""
from __future__ import annotations

import torch

__all__ = ["random_shift", "random_crop", "random_hflip"]


def _check_images(x: torch.Tensor, caller: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{caller} expects (batch, channels, height, width) images, got shape {tuple(x.shape)}")


def _pad_and_crop(x: torch.Tensor, pixels: int, generator: torch.Generator | None) -> torch.Tensor:
    """Zero-pad by ``pixels`` on every side, then take each image's H x W window at its own offset."""
    batch, _, height, width = x.shape
    padded = torch.nn.functional.pad(x, (pixels, pixels, pixels, pixels))
    offsets = torch.randint(0, 2 * pixels + 1, (2, batch), generator=generator, device="cpu").to(x.device)
    rows = offsets[0, :, None] + torch.arange(height, device=x.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(width, device=x.device)  # (B, W)
    index = torch.arange(batch, device=x.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return cropped.permute(0, 3, 1, 2).contiguous()


def random_shift(x: torch.Tensor, pixels: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image of ``x`` (B, C, H, W) by its own random offset in ``[-pixels, pixels]``
    along both axes, filling with zeros (the background of MNIST-like data)."""
    if pixels < 0:
        raise ValueError(f"random_shift pixels must be >= 0, got {pixels!r}")
    if pixels == 0:
        return x
    _check_images(x, "random_shift")
    return _pad_and_crop(x, pixels, generator)


def random_crop(x: torch.Tensor, padding: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad each image of ``x`` (B, C, H, W) with ``padding`` zeros on every side and crop it back to
    H x W at its own random offset in ``[0, 2 * padding]`` per axis.

    This is torchvision's ``RandomCrop(size, padding=padding)``, the CIFAR-10 augmentation of
    Petersen et al. 2024 (with :func:`random_hflip`). It is the same transform as
    ``random_shift(x, padding)`` (crop offset o = shift by o - padding) and, drawing the same random
    numbers, gives the same images.
    """
    if padding < 0:
        raise ValueError(f"random_crop padding must be >= 0, got {padding!r}")
    if padding == 0:
        return x
    _check_images(x, "random_crop")
    return _pad_and_crop(x, padding, generator)


def random_hflip(x: torch.Tensor, p: float = 0.5, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image of ``x`` (B, C, H, W) left to right with probability ``p``, independently."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random_hflip p must be in [0, 1], got {p!r}")
    if p == 0.0:
        return x
    _check_images(x, "random_hflip")
    flip = (torch.rand(x.shape[0], generator=generator, device="cpu") < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)
