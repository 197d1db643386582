"""LogicGates: what every layer of learnable two-input gates is (``LogicDense``, ``LogicTreeConv2d``).

A logic layer holds gate logits ``weight`` of shape ``(*gates, num_params)`` and, with learnable wiring,
wire logits (``LogicDense.wire_a``/``wire_b``): its only parameters, all logits, which
``no_weight_decay()`` lists and ``make_param_groups`` leaves undecayed; the strategies of its
:class:`~lgn_nas.layers.spec.LogicSpec` (``relaxation``, ``parametrization``, ``temperature``,
``backend``; ``relaxation`` may be swapped, as ``relaxed_mode`` does), the relaxed coefficients of its
gates (:meth:`LogicGates.coefficients`), the gates it keeps (:meth:`LogicGates.gate_ids`) and its
lowering into a netlist (:meth:`LogicGates.lower`). A layer may be frozen (:meth:`LogicGates.freeze`):
it then computes its discrete circuit in every mode and its logits take no gradient. Code that needs
"the logic layers of a model" asks ``isinstance(module, LogicGates)`` (:func:`logic_layers`), not the
module's name or attributes.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..gates import gate_basis
from .parametrizations import coefficients, discrete_ids, get_parametrization, init_weight
from .relaxations import get_relaxation
from .spec import LogicSpec

__all__ = ["LogicGates", "logic_layers", "freeze_leading_logic_layers", "set_temperature", "model_temperature"]


class LogicGates(nn.Module):
    """Base of the logic layers; subclasses wire their gates, call :meth:`_init_gates`, and define
    ``forward`` (through :meth:`coefficients`) and :meth:`lower`."""

    __jit_unused_properties__ = ["relaxation"]

    def _init_strategies(self, spec: LogicSpec) -> None:
        """Take the (checked) strategies of ``spec``; the weight comes later (:meth:`_init_gates`)."""
        self.relaxation = spec.relaxation
        self.parametrization = spec.parametrization
        self._categorical = get_parametrization(spec.parametrization).categorical
        self.temperature = spec.temperature
        self.backend = spec.backend
        self._resolved_backend = spec.backend  # resolved when the spec was made
        self._init = spec.init
        self.frozen = False

    def _init_gates(self, shape: Tuple[int, ...], generator: Optional[torch.Generator]) -> None:
        """The gate logits ``(*shape, num_params)``, initialised by the spec's ``init`` (after the wiring,
        which draws from ``generator`` first)."""
        self.register_buffer("basis", gate_basis(), persistent=False)
        self.weight = nn.Parameter(init_weight(self.parametrization, shape, self._init, generator=generator))

    @property
    def relaxation(self) -> str:
        """The relaxation's name; setting it (a registered name) switches the layer's relaxed forward."""
        return self._relaxation

    @relaxation.setter
    def relaxation(self, name: str) -> None:
        r = get_relaxation(name)
        self._noise, self._straight_through, self._noise_scale = r.noise, r.straight_through, float(r.noise_scale)
        self._relaxation = name

    @torch.jit.unused
    def freeze(self) -> None:
        """Fix the gates (and wires) at their argmax: the forward is the discrete circuit in every
        mode and the layer's logits stop taking gradients (an optimizer built afterwards skips them)."""
        self.frozen = True
        for param in self.parameters(recurse=False):
            param.requires_grad_(False)

    def coefficients(self) -> torch.Tensor:
        """Per-gate (c1, ca, cb, cab) under the current mode (relaxed in training, hard in eval or
        when frozen)."""
        return coefficients(self.weight, self.basis, self._categorical, self._noise, self._straight_through,
                            self.temperature, self.training and not self.frozen, self._noise_scale)

    @torch.jit.unused
    def gate_ids(self) -> torch.Tensor:
        """The gate id each gate keeps after training (int64, ``weight.shape[:-1]``)."""
        return discrete_ids(self.weight.detach(), self._categorical)

    @torch.jit.unused
    def lower(self, builder, node_ids: np.ndarray) -> np.ndarray:
        """Append this layer's discrete gates to a ``NetlistBuilder``; ``node_ids`` label its inputs."""
        raise NotImplementedError(f"{type(self).__name__} does not define lower()")

    def strategies_repr(self) -> str:
        return (f"relaxation={self.relaxation!r}, parametrization={self.parametrization!r}, "
                f"temperature={self.temperature}, backend={self.backend!r}")


def logic_layers(model: nn.Module) -> Iterator[LogicGates]:
    """The logic layers of ``model`` (itself included), in ``modules()`` order."""
    return (m for m in model.modules() if isinstance(m, LogicGates))


def freeze_leading_logic_layers(model: nn.Module, count: int) -> int:
    """Freeze the first ``count`` logic layers of ``model`` in forward order (:meth:`LogicGates.freeze`);
    returns how many there are in all. ``ValueError`` if ``count`` is not an int in 0..that number."""
    layers = list(logic_layers(model))
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= len(layers):
        raise ValueError(f"cannot freeze {count!r} logic layers: expected an int from 0 to {len(layers)}, "
                         f"the number of logic layers of {type(model).__name__}")
    for layer in layers[:count]:
        layer.freeze()
    return len(layers)


def set_temperature(model: nn.Module, temperature: float) -> int:
    """Set the relaxation temperature of every logic layer of ``model``; returns how many there are."""
    layers = list(logic_layers(model))
    for layer in layers:
        layer.temperature = float(temperature)
    return len(layers)


def model_temperature(model: nn.Module) -> Optional[float]:
    """The temperature of ``model``'s first logic layer (``None`` without one)."""
    return next((float(layer.temperature) for layer in logic_layers(model)), None)
