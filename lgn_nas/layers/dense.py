"""LogicDense: a layer of learnable two-input logic gates, randomly wired or with learnable wiring."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.fx
from torch import nn
from timm.layers import register_notrace_function

from .backends import dense_learnable_op, dense_op
from .connectivity import init_wire_logits, make_candidates, make_connections
from .functional import logic_dense_learnable_plain, logic_dense_plain
from .logic import LogicGates
from .relaxations import categorical
from .spec import LogicSpec

__all__ = ["LogicDense", "logic_dense_forward", "logic_dense_learnable_forward", "argmax_wires"]


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


@register_notrace_function
def logic_dense_learnable_forward(
        x: torch.Tensor, cand_a: torch.Tensor, cand_b: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor,
        coefficients: torch.Tensor, backend: str, in_features: int,
) -> torch.Tensor:
    """A learnable-wiring layer's training forward with ``backend``'s op (an FX leaf, like
    :func:`logic_dense_forward`; TorchScript compiles the plain torch op)."""
    if torch.jit.is_scripting():
        if x.dim() != 2 or x.shape[1] != in_features:
            raise ValueError("LogicDense expects input of shape (batch, " + str(in_features) + "), got "
                             + str(list(x.shape)))
        return logic_dense_learnable_plain(x, cand_a, cand_b, wa, wb, coefficients)
    if x.dim() != 2 or x.shape[1] != in_features:
        raise ValueError(f"LogicDense expects input of shape (batch, {in_features}), got {tuple(x.shape)}")
    return dense_learnable_op(backend)(x, cand_a, cand_b, wa, wb, coefficients)


torch.fx.wrap("logic_dense_learnable_forward")


def argmax_wires(candidates: torch.Tensor, wire_weight: torch.Tensor) -> torch.Tensor:
    """The kept wires ``(2, out_features)``: each gate input's candidate of largest logit."""
    return candidates.gather(2, wire_weight.argmax(dim=2, keepdim=True)).squeeze(2)


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

    A fixed wiring (``connectivity`` ``random`` / ``unique``) lives in the persistent buffers
    ``in_a``/``in_b`` (so ``state_dict`` carries it); the learned gate parameters in ``weight`` of shape
    ``(out_features, num_params)``. In eval mode each neuron computes exactly its argmax gate on 0/1
    inputs. ``in_subset`` restricts the wiring to those input indices (for example the pixels of a
    centre crop); the other inputs are never read.

    Learnable wiring (``connectivity="learnable"``, ``candidates`` K per gate input, at most the inputs
    it may read): the buffer ``candidates`` ``(2, out_features, K)`` holds each gate input's candidate
    inputs and the parameter ``wire_weight`` (same shape) their logits, relaxed in training by the
    layer's relaxation and temperature (soft, Gumbel or straight-through, as the gate choice) and
    trained with the gate logits; ``init`` starts them too (``residual``: candidate 0, a ``random``
    wiring, at probability 0.91; ``gaussian``: standard normal). ``in_a``/``in_b`` are then ``None``:
    :meth:`wiring` gives the kept (argmax) wires, which eval mode, :meth:`lower` and so every backend use
    through the ordinary fixed-wiring op.

    The strategies are a :class:`~lgn_nas.layers.LogicSpec` (``spec``) or its fields by name
    (``connectivity``, ``relaxation``, ``parametrization``, ``init``, ``temperature``, ``backend``,
    ``candidates``).
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
        self.learnable = spec.learnable
        self.num_candidates = spec.num_candidates
        self._init_strategies(spec)
        subset = None if in_subset is None else _check_subset(in_subset, self.in_features)
        readable = self.in_features if subset is None else int(subset.numel())
        if self.learnable:
            if self.num_candidates > readable:
                raise ValueError(
                    f"candidates={self.num_candidates} exceeds the {readable} inputs this layer reads: expected "
                    f"1 <= candidates <= {readable} (the previous layer's width)")
            cand_a, cand_b = make_candidates(spec.connectivity, readable, out_features, self.num_candidates,
                                             generator=generator)
            candidates = torch.stack([cand_a, cand_b])
            if subset is not None:
                candidates = subset.to(candidates.device)[candidates]
            self.register_buffer("in_a", None)
            self.register_buffer("in_b", None)
            self.register_buffer("candidates", candidates)
        else:
            in_a, in_b = make_connections(spec.connectivity, readable, out_features, generator=generator)
            if subset is not None:
                in_a, in_b = subset.to(in_a.device)[in_a], subset.to(in_b.device)[in_b]
            self.register_buffer("in_a", in_a)
            self.register_buffer("in_b", in_b)
            self.register_buffer("candidates", None)
        self._init_gates((out_features,), generator)
        if self.learnable:  # drawn after the gates, so a generator gives the gates what fixed wiring would
            self.wire_weight = nn.Parameter(init_wire_logits(spec.init, tuple(self.candidates.shape),
                                                             generator=generator))
        else:
            self.register_parameter("wire_weight", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coefficients = self.coefficients()
        in_a = self.in_a
        in_b = self.in_b
        if in_a is None:  # learnable wiring (TorchScript compiles only the branch of this layer's kind)
            candidates = self.candidates
            wire_weight = self.wire_weight
            assert candidates is not None and wire_weight is not None
            if self.training:
                wires = categorical(wire_weight, self._noise, self._straight_through, self.temperature, True)
                return logic_dense_learnable_forward(x, candidates[0], candidates[1], wires[0], wires[1],
                                                     coefficients, self._resolved_backend, self.in_features)
            kept = argmax_wires(candidates, wire_weight)
            in_a = kept[0]
            in_b = kept[1]
        assert in_b is not None
        if torch.jit.is_scripting():
            if x.dim() != 2 or x.shape[1] != self.in_features:
                raise ValueError("LogicDense expects input of shape (batch, " + str(self.in_features) + ")")
            return logic_dense_plain(x, in_a, in_b, coefficients)
        return logic_dense_forward(x, in_a, in_b, coefficients, self._resolved_backend, self.in_features)

    @torch.jit.unused
    def wiring(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The wires each gate keeps, ``(in_a, in_b)`` (int64 ``(out_features,)``): the fixed wiring, or the
        argmax candidates of learnable wiring."""
        if self.candidates is None:
            return self.in_a, self.in_b
        kept = argmax_wires(self.candidates, self.wire_weight.detach())
        return kept[0], kept[1]

    @torch.jit.unused
    def wire_choice(self) -> Optional[torch.Tensor]:
        """The candidate each gate input keeps (int64 ``(2, out_features)``); ``None`` for fixed wiring."""
        return None if self.wire_weight is None else self.wire_weight.detach().argmax(dim=2)

    @torch.jit.unused
    def lower(self, builder, node_ids: np.ndarray) -> np.ndarray:
        """Append this layer's discrete gates to a ``NetlistBuilder``; ``node_ids`` label the inputs."""
        node_ids = np.asarray(node_ids).reshape(-1)
        if node_ids.shape[0] != self.in_features:
            raise ValueError(f"LogicDense.lower got {node_ids.shape[0]} input nodes, expected {self.in_features}")
        in_a, in_b = self.wiring()
        return builder.add_layer(
            self.gate_ids().cpu().numpy().astype(np.uint8),
            node_ids[in_a.cpu().numpy()],
            node_ids[in_b.cpu().numpy()],
        )

    def extra_repr(self) -> str:
        candidates = f", candidates={self.num_candidates}" if self.learnable else ""
        return (f"{self.in_features}, {self.out_features}, connectivity={self.connectivity!r}{candidates}, "
                f"{self.strategies_repr()}")
