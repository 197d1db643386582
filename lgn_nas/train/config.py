"""Training configuration (plain JSON data) and temperature schedules."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional

__all__ = ["TrainConfig", "TEMPERATURE_SCHEDULES", "SCHEDULERS", "temperature_at"]

TEMPERATURE_SCHEDULES = ("constant", "linear", "cosine", "exponential")



# Names timm's create_scheduler_v2 knows, and "none" (a constant learning rate).
SCHEDULERS = ("none", "cosine", "tanh", "step", "multistep", "plateau", "poly", "constant", "wsd", "rsqrt")


def _known_optimizer(name: Any) -> bool:
    """Whether timm's ``create_optimizer_v2`` knows ``name`` (also ``lookahead_NAME``)."""
    if not isinstance(name, str) or not name:
        return False
    from timm.optim import list_optimizers

    base = name.lower()
    base = base[len("lookahead_"):] if base.startswith("lookahead_") else base
    return base in list_optimizers()


@dataclasses.dataclass
class TrainConfig:
    """Everything that determines a training run; ``to_dict``/``from_dict`` round-trip through JSON.

    - ``model`` / ``model_kwargs``: a registered timm model name and its genome. ``num_classes`` and
      ``in_chans`` default to the data set's (and ``img_size`` when the model's default input size
      differs from the data set's).
    - ``batch_size`` is the *global* batch: under ``torchrun`` each of the W processes takes
      ``batch_size / W`` images per step (must divide).
    - ``optimizer`` / ``scheduler``: names for timm's ``create_optimizer_v2`` / ``create_scheduler_v2``
      (``scheduler="none"`` keeps the lr constant). ``sched_on_updates`` steps the schedule every
      update instead of every epoch.
    - ``weight_decay`` applies to float parameters (not biases/norms); gate logits (every parameter
      of an lgn-nas layer) get none unless ``decay_gate_logits``.
    - Temperature: ``temperature_schedule`` goes from ``temperature_start`` to ``temperature_end``
      (``None`` = the model's own temperature) over the run, per ``temperature_step`` ("epoch":
      epoch e of E uses progress e/(E-1); "step": step s of S uses s/(S-1)).
    - ``limit_train`` / ``limit_test``: use only the first N images (quick runs and tests).
    - ``random_shift``: translate each training image by up to N pixels per axis (zero fill).
    - ``random_crop_padding``: pad each training image by N zeros per side and crop it back at a random
      offset (torchvision's ``RandomCrop(size, padding=N)``, the paper's CIFAR-10 augmentation; the
      same transform as ``random_shift=N``, so only one of the two may be set). ``hflip``: mirror each
      training image left to right with probability 0.5. Applied in that order, per step.
    - ``initial_checkpoint``: a ``lgn-nas train`` output directory (or its ``checkpoint.safetensors``)
      whose model weights start this run, after the model is built; unlike a resume, its optimizer,
      epoch and schedules are not taken (a new run, e.g. a fine-tuning phase).
    - ``freeze_logic_layers``: the first N logic layers in forward order keep their argmax gates: they
      compute their discrete circuit in training too and take no gradient (the last phase of the conv
      recipe freezes the first conv stage, whose soft gates the discrete circuit cannot reproduce).
    - ``select_best``: keep the epoch whose discrete accuracy on the validation split is highest (the
      paper selects its models on validation): its weights go to ``best.safetensors`` beside the
      checkpoint and the final test metrics score them. Needs ``val_size > 0`` (never selects on test).
    - ``seed`` fixes model init, data order and relaxation noise (reseeded per epoch and rank, so a
      resumed run repeats an uninterrupted one).
    """

    model: str = "lgn_dense_s"
    model_kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str = "mnist"
    data_root: Optional[str] = None
    val_size: int = 5000
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    epochs: int = 1
    batch_size: int = 128
    eval_batch_size: int = 1000
    optimizer: str = "adam"
    lr: float = 0.01
    weight_decay: float = 0.0
    decay_gate_logits: bool = False
    momentum: float = 0.9
    scheduler: str = "none"
    min_lr: float = 0.0
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5
    sched_on_updates: bool = True
    temperature_schedule: str = "constant"
    temperature_start: Optional[float] = None
    temperature_end: Optional[float] = None
    temperature_step: str = "epoch"
    grad_clip: Optional[float] = None
    random_shift: int = 0
    random_crop_padding: int = 0
    hflip: bool = False
    initial_checkpoint: Optional[str] = None
    freeze_logic_layers: int = 0
    select_best: bool = False
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

        for name in ("epochs", "batch_size", "eval_batch_size"):
            positive_int(name)
        for name in ("limit_train", "limit_test"):
            if getattr(self, name) is not None:
                positive_int(name)
        if not isinstance(self.random_shift, int) or isinstance(self.random_shift, bool) or self.random_shift < 0:
            raise ValueError(f"random_shift must be an int >= 0 (pixels), got {self.random_shift!r}")
        padding = self.random_crop_padding
        if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
            raise ValueError(f"random_crop_padding must be an int >= 0 (pixels), got {padding!r}")
        if self.random_shift and padding:
            raise ValueError(f"random_shift ({self.random_shift}) and random_crop_padding ({padding}) are the same "
                             "transform (zero-pad, crop back at a random offset); set only one")
        frozen = self.freeze_logic_layers
        if not isinstance(frozen, int) or isinstance(frozen, bool) or frozen < 0:
            raise ValueError(f"freeze_logic_layers must be an int >= 0 (logic layers), got {frozen!r}")
        if self.initial_checkpoint is not None and (not isinstance(self.initial_checkpoint, str)
                                                    or not self.initial_checkpoint):
            raise ValueError(f"initial_checkpoint must be a path (a run directory or its checkpoint) or None, "
                             f"got {self.initial_checkpoint!r}")
        if not isinstance(self.hflip, bool):
            raise ValueError(f"hflip must be True or False, got {self.hflip!r}")
        if not isinstance(self.val_size, int) or self.val_size < 0:
            raise ValueError(f"val_size must be an int >= 0, got {self.val_size!r}")
        if not isinstance(self.select_best, bool):
            raise ValueError(f"select_best must be True or False, got {self.select_best!r}")
        if self.select_best and self.val_size == 0:
            raise ValueError("select_best needs a validation split (val_size > 0, got 0): it would select on the "
                             "test set; turn it off (select_best=False, --no-select-best; the CIFAR-10 conv "
                             "recipe turns it on)")
        if not isinstance(self.model_kwargs, dict):
            raise ValueError(f"model_kwargs must be a dict, got {type(self.model_kwargs).__name__}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.temperature_schedule not in TEMPERATURE_SCHEDULES:
            raise ValueError(f"temperature_schedule must be one of {', '.join(TEMPERATURE_SCHEDULES)}, "
                             f"got {self.temperature_schedule!r}")
        if self.temperature_step not in ("epoch", "step"):
            raise ValueError(f"temperature_step must be 'epoch' or 'step', got {self.temperature_step!r}")
        for name in ("temperature_start", "temperature_end"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if self.temperature_schedule != "constant" and self.temperature_end is None:
            raise ValueError(f"temperature_schedule={self.temperature_schedule!r} needs temperature_end")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)} (timm's), got {self.scheduler!r}")
        if not _known_optimizer(self.optimizer):
            raise ValueError(f"optimizer {self.optimizer!r} is not a timm optimizer (timm.optim.list_optimizers(), "
                             "e.g. adam, adamw, sgd)")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainConfig":
        """Build from a dict (e.g. ``config.json``); unknown keys raise ``ValueError``."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def temperature_at(schedule: str, start: float, end: Optional[float], progress: float) -> float:
    """Temperature at ``progress`` in [0, 1] (clipped) of a schedule from ``start`` to ``end``.

    constant: ``start``; linear: straight line; cosine: half cosine (flat at both ends);
    exponential: geometric interpolation ``start * (end / start) ** progress``.
    """
    p = min(max(float(progress), 0.0), 1.0)
    if schedule == "constant" or end is None:
        if schedule not in TEMPERATURE_SCHEDULES:
            raise ValueError(f"unknown temperature schedule {schedule!r}")
        return float(start)
    if schedule == "linear":
        return float(start + (end - start) * p)
    if schedule == "cosine":
        return float(end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * p)))
    if schedule == "exponential":
        return float(start * (end / start) ** p)
    raise ValueError(f"unknown temperature schedule {schedule!r}; known: {', '.join(TEMPERATURE_SCHEDULES)}")
