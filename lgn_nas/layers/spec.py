"""LogicSpec: the strategies of a logic layer, chosen by name and checked once.

Every logic layer and model takes the same strategy arguments: six names and numbers
(``connectivity``, ``relaxation``, ``parametrization``, ``init``, ``temperature``, ``backend``) and the
wiring's ``candidates`` (candidate wires per gate input of ``connectivity="learnable"``; ``None``:
its default, 1 for the fixed schemes). Each name is looked up in its registry (``CONNECTIVITIES``,
``RELAXATIONS``, ``PARAMETRIZATIONS``, ``INITS``, ``BACKENDS``, as timm's ``get_act_layer`` looks up
activations). A :class:`LogicSpec` holds one choice of all, checked when it is made, so a model makes
one and hands it to each of its layers, which take it as it is. The search's genome schema reads its
fields (their names and JSON types) from here too.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Mapping, Optional, Tuple

from .backends import learnable_unavailable, resolve_backend
from .connectivity import check_candidates, get_connectivity
from .parametrizations import check_init, check_parametrization
from .relaxations import check_relaxation

__all__ = ["LogicSpec", "STRATEGIES"]


@dataclasses.dataclass(frozen=True)
class LogicSpec:
    """One choice of each strategy (defaults: those of ``LogicDense``). Made only valid:
    unknown names and a non-positive temperature raise ``ValueError``, an unavailable ``backend="tvm"``
    too, and so do ``candidates`` that are not a positive int (or above 1 with a fixed wiring) and a
    backend that cannot train learnable wiring; ``temperature`` becomes a float. ``candidates`` is kept
    as given (``None`` included: :attr:`num_candidates` is the count in effect), so a spec's dict
    rebuilds it exactly."""

    connectivity: str = "random"
    relaxation: str = "softmax"
    parametrization: str = "raw16"
    init: str = "residual"
    temperature: float = 1.0
    backend: str = "auto"
    candidates: Optional[int] = None

    def __post_init__(self) -> None:
        get_connectivity(self.connectivity)
        check_candidates(self.connectivity, self.candidates)
        check_relaxation(self.relaxation)
        check_parametrization(self.parametrization)
        check_init(self.init)
        try:
            temperature = float(self.temperature)
        except (TypeError, ValueError):
            temperature = math.nan
        if isinstance(self.temperature, bool) or not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        object.__setattr__(self, "temperature", temperature)
        resolve_backend(self.backend)
        if self.learnable:
            reason = learnable_unavailable(self.backend)
            if reason is not None:
                raise ValueError(f"backend {self.backend!r} cannot train connectivity='learnable': {reason}; "
                                 f"use backend='torch' or 'auto'")

    @property
    def learnable(self) -> bool:
        """Whether the wiring is learned (``connectivity`` is a learnable scheme)."""
        return get_connectivity(self.connectivity).learnable

    @property
    def num_candidates(self) -> int:
        """Candidate wires per gate input: ``candidates``, or the scheme's default for ``None``."""
        return check_candidates(self.connectivity, self.candidates)

    @classmethod
    def coerce(cls, spec: Optional["LogicSpec"] = None, *, owner: str = "LogicSpec",
               defaults: Optional[Mapping[str, Any]] = None, **strategies: Any) -> "LogicSpec":
        """The spec a layer or model was given: ``spec`` (as it is) or one made from ``strategies`` over
        ``defaults``; an argument that is no strategy is a ``TypeError`` naming ``owner``, as Python's."""
        unknown = sorted(set(strategies) - set(STRATEGIES))
        if unknown:
            raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
        if spec is not None:
            if not isinstance(spec, LogicSpec):
                raise TypeError(f"{owner}(): spec must be a LogicSpec, got {type(spec).__name__}")
            return dataclasses.replace(spec, **strategies) if strategies else spec
        return cls(**{**(defaults or {}), **strategies})

    def to_dict(self) -> Dict[str, Any]:
        """The choices as plain JSON values (model kwargs, genomes)."""
        return dataclasses.asdict(self)


# The JSON types a genome may give a strategy field of each annotation.
_FIELD_TYPES: Dict[str, Tuple[type, ...]] = {"float": (int, float), "str": (str,), "Optional[int]": (int, type(None))}

# The strategy arguments and the JSON types a genome may give them.
STRATEGIES: Dict[str, Tuple[type, ...]] = {
    f.name: _FIELD_TYPES[f.type if isinstance(f.type, str) else f.type.__name__] for f in dataclasses.fields(LogicSpec)
}
