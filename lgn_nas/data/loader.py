"""A batch iterator over tensors already in memory (or on the GPU), with DDP-style sharding.

Indexing a resident tensor with a permutation is far faster than a ``DataLoader`` over single
samples for MNIST/CIFAR-sized sets, so data loading never limits training.
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Union

import torch

__all__ = ["TensorLoader"]


class TensorLoader:
    """Iterate ``(x, y)`` mini-batches over in-memory tensors.

    - Each epoch uses a fresh permutation drawn from ``seed + epoch`` (identical on every rank),
      like ``DistributedSampler``. ``set_epoch(e)`` selects the epoch for the next pass; without
      it, each pass advances the epoch by one, so repeated passes differ but stay reproducible.
    - With ``world_size > 1`` rank ``r`` takes positions ``r, r + world_size, ...`` of the
      permutation. If ``drop_last``, the permutation is trimmed to a multiple of ``world_size``
      (rank shards are disjoint) and incomplete batches are dropped; otherwise it is padded by
      wrapping around (every sample is seen; at most ``world_size - 1`` are seen twice). Either
      way all ranks get the same number of samples and batches.
    - uint8 images are converted per batch to float32 in [0, 1] (divide by 255); other dtypes are
      returned as stored. ``device`` moves both tensors there once, up front.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: Optional[Union[str, torch.device]] = None,
    ) -> None:
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError("x and y must be torch tensors")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if device is not None:
            x, y = x.to(device), y.to(device)
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        total = x.shape[0]
        if drop_last:
            self.num_samples = total // world_size
        else:
            self.num_samples = math.ceil(total / world_size) if total else 0

    @property
    def dataset_size(self) -> int:
        return int(self.x.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next pass (call with the same value on every rank)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def indices(self, epoch: Optional[int] = None) -> torch.Tensor:
        """This rank's sample indices for ``epoch`` (default: the current one), before batching."""
        epoch = self.epoch if epoch is None else epoch
        total = self.dataset_size
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(total, generator=generator)
        else:
            order = torch.arange(total)
        needed = self.num_samples * self.world_size
        if needed > total:  # pad by wrapping around (possibly more than once for tiny sets)
            order = order.repeat(math.ceil(needed / total))
        order = order[:needed]
        shard = order[self.rank :: self.world_size]
        if self.drop_last:
            shard = shard[: len(self) * self.batch_size]
        return shard

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        shard = self.indices().to(self.x.device)
        self.epoch += 1
        for start in range(0, shard.shape[0], self.batch_size):
            index = shard[start : start + self.batch_size]
            xb = self.x.index_select(0, index)
            if xb.dtype == torch.uint8:
                xb = xb.float().div_(255.0)
            yield xb, self.y.index_select(0, index.to(self.y.device))

    def __repr__(self) -> str:
        return (
            f"TensorLoader(n={self.dataset_size}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, rank={self.rank}/{self.world_size}, batches={len(self)})"
        )
