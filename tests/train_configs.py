"""Tiny training configurations the trainer tests share (a 2 x 200 dense net on 300 MNIST images)."""
from __future__ import annotations

from lgn_nas.train import TrainConfig

TINY_KWARGS = dict(depth=2, width=200, init="gaussian", group_tau=3.0, backend="torch")


def tiny_config(**changes) -> TrainConfig:
    """A two-epoch run of the tiny net; ``changes`` replace its fields."""
    base = dict(model="lgn_dense_s", model_kwargs=dict(TINY_KWARGS), dataset="mnist", val_size=1000,
                limit_train=300, limit_test=300, epochs=2, batch_size=50, lr=0.05, seed=0)
    base.update(changes)
    return TrainConfig(**base)
