"""Searched training options: the part of a trial that is not its genome.

A space's genome holds the model's constructor arguments; how the model is trained (the relaxation
temperature's schedule, weight decay) belongs to the trial's ``TrainConfig``. :class:`TrainingSpace`
asks the trial for those options (parameter names ``temperature_end``, ``temperature_schedule``,
``weight_decay``, stored in the trial's ``params`` like the genome's) and returns the ``TrainConfig``
fields to change. The learning rate stays with :class:`~search_spaces.objectives.Objective`
(``lr_range``), which searches it for every space.

The relaxation decides what the temperature means: the softmax mixture and ``hard_st`` anneal it
(``temperature_start`` of the template, then the schedule down to the searched ``temperature_end``);
a Gumbel relaxation keeps the genome's searched ``gumbel_tau`` for the whole run (constant schedule),
so a template's annealing (the conv recipe) does not overwrite it.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

from .genome import GenomeError

__all__ = ["TrainingSpace", "is_gumbel"]


def is_gumbel(relaxation: Any) -> bool:
    """Whether ``relaxation`` draws noise (``gumbel_soft``, ``gumbel_st``, ``kim_gumbel``: the registry's
    ``STOCHASTIC_RELAXATIONS``), so that its temperature is the searched ``gumbel_tau``, kept constant."""
    from lgn_nas.layers.relaxations import STOCHASTIC_RELAXATIONS

    return relaxation in STOCHASTIC_RELAXATIONS


def _range(name: str, bounds: Any) -> Optional[Tuple[float, float]]:
    if bounds is None:
        return None
    if (isinstance(bounds, (str, bytes)) or not isinstance(bounds, Sequence) or len(bounds) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bounds)
            or not 0 < bounds[0] <= bounds[1]):
        raise ValueError(f"{name}: expected a [low, high] pair of numbers with 0 < low <= high (searched "
                         f"log-uniform), got {bounds!r}")
    return float(bounds[0]), float(bounds[1])


class TrainingSpace:
    """Training options searched per trial (all optional; ``None`` / one choice: not searched).

    - ``temperature_end``: ``[low, high]`` end of the temperature anneal (log-uniform), for the
      non-Gumbel relaxations; the schedule is ``temperature_schedule`` (one name: fixed; several:
      searched) from the template's ``temperature_start``, per the template's ``temperature_step``.
    - ``weight_decay``: ``[low, high]`` (log-uniform). ``decay_gate_logits``: whether the trial
      decays the gate logits too (an LGN without float parameters has nothing else to decay).
    """

    def __init__(self, *, temperature_end: Optional[Sequence[float]] = None,
                 temperature_schedule: Sequence[str] = ("cosine",),
                 weight_decay: Optional[Sequence[float]] = None, decay_gate_logits: bool = True) -> None:
        from lgn_nas.train.config import TEMPERATURE_SCHEDULES

        self.temperature_end = _range("temperature_end", temperature_end)
        schedules = tuple(temperature_schedule)
        bad = [s for s in schedules if s not in TEMPERATURE_SCHEDULES or s == "constant"]
        if not schedules or bad:
            raise ValueError(f"temperature_schedule: unknown or constant schedule(s) {bad or list(schedules)}; "
                             f"expected one or more of {', '.join(s for s in TEMPERATURE_SCHEDULES if s != 'constant')}")
        self.temperature_schedule = schedules
        self.weight_decay = _range("weight_decay", weight_decay)
        self.decay_gate_logits = bool(decay_gate_logits)

    def bounds(self) -> Dict[str, Any]:
        """The searched options' bounds (JSON; ``None`` ones left out)."""
        out: Dict[str, Any] = {}
        if self.temperature_end is not None:
            out["temperature_end"] = list(self.temperature_end)
            out["temperature_schedule"] = list(self.temperature_schedule)
        if self.weight_decay is not None:
            out["weight_decay"] = list(self.weight_decay)
        return out

    def __call__(self, trial: Any, genome: Dict[str, Any], template: Any) -> Dict[str, Any]:
        """``TrainConfig`` fields for this trial (``template``: the study's ``TrainConfig``)."""
        overrides: Dict[str, Any] = {}
        relaxation = genome.get("relaxation", "softmax")
        if is_gumbel(relaxation):
            if template.temperature_schedule != "constant" or template.temperature_start is not None:
                overrides.update(temperature_schedule="constant", temperature_start=None, temperature_end=None)
        elif self.temperature_end is not None:
            schedule = (self.temperature_schedule[0] if len(self.temperature_schedule) == 1
                        else trial.suggest_categorical("temperature_schedule", list(self.temperature_schedule)))
            end = trial.suggest_float("temperature_end", *self.temperature_end, log=True)
            overrides.update(temperature_schedule=schedule, temperature_end=end)
        if self.weight_decay is not None:
            overrides["weight_decay"] = trial.suggest_float("weight_decay", *self.weight_decay, log=True)
            overrides["decay_gate_logits"] = self.decay_gate_logits
        self.check(overrides)
        return overrides

    def check(self, overrides: Dict[str, Any]) -> None:
        """Raise :class:`GenomeError` naming the bound when an option lies outside it (e.g. an enqueued trial)."""
        def inside(name: str, bounds: Optional[Tuple[float, float]]) -> None:
            value = overrides.get(name)
            if value is not None and bounds is not None and not bounds[0] <= value <= bounds[1]:
                raise GenomeError(f"{name} {value!r} is outside the space's bound {name}={list(bounds)}")

        inside("temperature_end", self.temperature_end)
        inside("weight_decay", self.weight_decay)
        schedule = overrides.get("temperature_schedule")
        if schedule not in (None, "constant") and schedule not in self.temperature_schedule:
            raise GenomeError(f"temperature_schedule {schedule!r} is outside the space's bound "
                              f"temperature_schedule={list(self.temperature_schedule)}")
