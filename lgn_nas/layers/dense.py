"""LogicDense: a layer of learnable two-input logic gates with fixed random wiring."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.fx
from timm.layers import register_notrace_function

from .backends import dense_op
from .connectivity import make_connections
from .functional import logic_dense_plain
from .logic import LogicGates
from .spec import LogicSpec

__all__ = ["LogicDense", "logic_dense_forward"]


@register_notrace_function
def logic_dense_forward(
        x: torch.Tensor, in_a: torch.Tensor, in_b: torch.Tensor, coefficients: torch.Tensor, backend: str,
        in_features: int,
) -> torch.Tensor:
    """Evaluate a dense logic layer with ``backend``'s op (an FX leaf: traced as one call).

    TorchScript (an FX graph scripted) compiles only the first branch: the plain torch op.
    """
    if torch.jit.is_scripting():
        if x.dim() != 2 or x.shape[1] != in_features:
            raise ValueError("LogicDense expects input of shape (batch, " + str(in_features) + "), got "
                             + str(list(x.shape)))
        return logic_dense_plain(x, in_a, in_b, coefficients)
    if x.dim() != 2 or x.shape[1] != in_features:
        raise ValueError(f"LogicDense expects input of shape (batch, {in_features}), got {tuple(x.shape)}")
    return dense_op(backend)(x, in_a, in_b, coefficients)


torch.fx.wrap("logic_dense_forward")


def _check_subset(subset: Union[Sequence[int], torch.Tensor], in_features: int) -> torch.Tensor:
    subset = torch.as_tensor(subset, dtype=torch.int64, device="cpu").reshape(-1)
    if subset.numel() < 2 or int(subset.min()) < 0 or int(subset.max()) >= in_features:
        raise ValueError(f"in_subset must hold at least 2 input indices in 0..{in_features - 1}, got "
                         f"{subset.numel()} indices in {int(subset.min()) if subset.numel() else None}.."
                         f"{int(subset.max()) if subset.numel() else None}")
    if torch.unique(subset).numel() != subset.numel():
        raise ValueError("in_subset must not repeat an input index")
    return subset


class LogicDense(LogicGates):
    """``out_features`` gates, each reading two of the ``in_features`` inputs.

    The wiring lives in the persistent buffers ``in_a``/``in_b`` (so ``state_dict`` carries it); the
    learned gate parameters in ``weight`` of shape ``(out_features, num_params)``. In eval mode each
    neuron computes exactly its argmax gate on 0/1 inputs. ``in_subset`` restricts the wiring to those
    input indices (for example the pixels of a centre crop); the other inputs are never read.
    The strategies are a :class:`~lgn_nas.layers.LogicSpec` (``spec``) or its fields by name
    (``connectivity``, ``relaxation``, ``parametrization``, ``init``, ``temperature``, ``backend``).
    """

    def __init__(
            self,
            in_features: int,
            out_features: int,
            *,
            spec: Optional[LogicSpec] = None,
            generator: Optional[torch.Generator] = None,
            in_subset: Optional[Union[Sequence[int], torch.Tensor]] = None,
            **strategies: Any,
    ) -> None:
        super().__init__()
        spec = LogicSpec.coerce(spec, owner=type(self).__name__, **strategies)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.connectivity = spec.connectivity
        self._init_strategies(spec)
        if in_subset is None:
            in_a, in_b = make_connections(spec.connectivity, in_features, out_features, generator=generator)
        else:
            subset = _check_subset(in_subset, self.in_features)
            in_a, in_b = make_connections(spec.connectivity, int(subset.numel()), out_features, generator=generator)
            in_a, in_b = subset.to(in_a.device)[in_a], subset.to(in_b.device)[in_b]
        self.register_buffer("in_a", in_a)
        self.register_buffer("in_b", in_b)
        self._init_gates((out_features,), generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coefficients = self.coefficients()
        if torch.jit.is_scripting():
            if x.dim() != 2 or x.shape[1] != self.in_features:
                raise ValueError("LogicDense expects input of shape (batch, " + str(self.in_features) + ")")
            return logic_dense_plain(x, self.in_a, self.in_b, coefficients)
        return logic_dense_forward(
            x, self.in_a, self.in_b, coefficients, self._resolved_backend, self.in_features)

    @torch.jit.unused
    def lower(self, builder, node_ids: np.ndarray) -> np.ndarray:
        """Append this layer's discrete gates to a ``NetlistBuilder``; ``node_ids`` label the inputs."""
        node_ids = np.asarray(node_ids).reshape(-1)
        if node_ids.shape[0] != self.in_features:
            raise ValueError(f"LogicDense.lower got {node_ids.shape[0]} input nodes, expected {self.in_features}")
        return builder.add_layer(
            self.gate_ids().cpu().numpy().astype(np.uint8),
            node_ids[self.in_a.cpu().numpy()],
            node_ids[self.in_b.cpu().numpy()],
        )

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, connectivity={self.connectivity!r}, {self.strategies_repr()}"
