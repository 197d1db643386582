"""LogicDense: a layer of learnable two-input logic gates, randomly wired or with learnable wiring."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.fx
from torch import nn
from timm.layers import register_notrace_function

from .backends import dense_learnable_op, dense_op
from .connectivity import make_candidates, make_connections
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


def argmax_wires(candidates: torch.Tensor, wire_logits: torch.Tensor) -> torch.Tensor:
    """The kept wire of each gate input (``candidates.shape[:-1]``): its candidate of largest logit."""
    return candidates.gather(-1, wire_logits.argmax(dim=-1, keepdim=True)).squeeze(-1)


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
    the layer reads): the persistent buffers ``cand_a``/``cand_b`` ``(out_features, K)`` hold each gate
    input's candidate inputs and the parameters ``wire_a``/``wire_b`` (same shape) their logits, relaxed
    in training by the layer's relaxation and temperature (soft, Gumbel or straight-through, as the gate
    choice; a temperature schedule anneals both) and trained with the gate logits (never weight-decayed,
    like them). The wire logits start at 0, whatever the gates' ``init``: training starts from the
    uniform mixture of the candidates, and the kept wire before any step is candidate 0, a balanced
    ``random`` wiring (argmax ties go to the first). On MNIST (3 x 1,000 gates, 8 candidates, 1,500
    Adam steps at lr 0.05, gaussian gates; ``benchmarks/probe_learnable_wiring.py`` with the wire logits
    overwritten after building, scored on the first 5,000 test images) uniform, standard-normal and
    residual-like (candidate 0 at p = 0.91) wire logits ended within 0.3 points of each other (88.4%,
    88.2%, 88.4% discrete; the same net randomly wired 84.6%), so the start that draws nothing and
    begins as the random wiring was kept.
    ``in_a``/``in_b`` are then read-only: the argmax wires (computed when read), which eval mode,
    :meth:`lower` and so every backend use through the ordinary fixed-wiring op.

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
            if subset is not None:
                cand_a, cand_b = subset.to(cand_a.device)[cand_a], subset.to(cand_b.device)[cand_b]
            self.register_buffer("cand_a", cand_a)
            self.register_buffer("cand_b", cand_b)
        else:
            in_a, in_b = make_connections(spec.connectivity, readable, out_features, generator=generator)
            if subset is not None:
                in_a, in_b = subset.to(in_a.device)[in_a], subset.to(in_b.device)[in_b]
            self.register_buffer("in_a", in_a)
            self.register_buffer("in_b", in_b)
            self.register_buffer("cand_a", None)
            self.register_buffer("cand_b", None)
        self._init_gates((out_features,), generator)
        if self.learnable:  # uniform: see the class docstring
            self.wire_a = nn.Parameter(torch.zeros(out_features, self.num_candidates))
            self.wire_b = nn.Parameter(torch.zeros(out_features, self.num_candidates))
        else:
            self.register_parameter("wire_a", None)
            self.register_parameter("wire_b", None)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name not in ("in_a", "in_b"):
                raise
        # a learnable layer's in_a / in_b: the wires it reads now (the argmax candidates)
        side = name[-1]
        cand, wire = super().__getattr__(f"cand_{side}"), super().__getattr__(f"wire_{side}")
        return argmax_wires(cand, wire.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coefficients = self.coefficients()
        cand_a = self.cand_a
        cand_b = self.cand_b
        wire_a = self.wire_a
        wire_b = self.wire_b
        # TorchScript compiles only the branch of this layer's kind (the other's attributes are None)
        if cand_a is None or cand_b is None or wire_a is None or wire_b is None:
            in_a = self.in_a
            in_b = self.in_b
        else:
            if self.training and not self.frozen:
                wa = categorical(wire_a, self._noise, self._straight_through, self.temperature, True)
                wb = categorical(wire_b, self._noise, self._straight_through, self.temperature, True)
                return logic_dense_learnable_forward(x, cand_a, cand_b, wa, wb, coefficients,
                                                     self._resolved_backend, self.in_features)
            in_a = argmax_wires(cand_a, wire_a)
            in_b = argmax_wires(cand_b, wire_b)
        if torch.jit.is_scripting():
            if x.dim() != 2 or x.shape[1] != self.in_features:
                raise ValueError("LogicDense expects input of shape (batch, " + str(self.in_features) + ")")
            return logic_dense_plain(x, in_a, in_b, coefficients)
        return logic_dense_forward(x, in_a, in_b, coefficients, self._resolved_backend, self.in_features)

    @torch.jit.unused
    def wire_choice(self) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """The candidate each gate input keeps, ``(choice_a, choice_b)`` (int64 ``(out_features,)``);
        ``None`` for a fixed wiring."""
        if self.wire_a is None or self.wire_b is None:
            return None
        return self.wire_a.detach().argmax(dim=-1), self.wire_b.detach().argmax(dim=-1)

    @torch.jit.unused
    def lower(self, builder, node_ids: np.ndarray) -> np.ndarray:
        """Append this layer's discrete gates to a ``NetlistBuilder``; ``node_ids`` label the inputs."""
        node_ids = np.asarray(node_ids).reshape(-1)
        if node_ids.shape[0] != self.in_features:
            raise ValueError(f"LogicDense.lower got {node_ids.shape[0]} input nodes, expected {self.in_features}")
        in_a, in_b = self.in_a, self.in_b
        return builder.add_layer(
            self.gate_ids().cpu().numpy().astype(np.uint8),
            node_ids[in_a.cpu().numpy()],
            node_ids[in_b.cpu().numpy()],
        )

    def extra_repr(self) -> str:
        candidates = f", candidates={self.num_candidates}" if self.learnable else ""
        return (f"{self.in_features}, {self.out_features}, connectivity={self.connectivity!r}{candidates}, "
                f"{self.strategies_repr()}")
