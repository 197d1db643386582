"""Training library for LGNs: used by ``lgn-nas train`` and by the Optuna search.

``fit(TrainConfig(...), callbacks=..., out_dir=..., resume=...)`` trains a timm-registered LGN with
timm's optimizer and scheduler factories, tracks relaxed and discrete accuracy (see
:mod:`lgn_nas.train.trainer` for the definitions), writes atomic checkpoints, and runs data-parallel
under ``torchrun``.
"""
from .checkpoint import CHECKPOINT_NAME, atomic_write_bytes, atomic_write_json, load_checkpoint, save_checkpoint
from .config import TEMPERATURE_SCHEDULES, TrainConfig, temperature_at
from .trainer import (
    EpochEnd, StopTraining, TrainingDiverged, TrainResult, Trainer, build_model, check_names, evaluate, evaluate_netlist, evaluate_train_mode, fit,
    fit_encoders, is_gate_logit_module, load_run, make_param_groups, relaxed_mode,
)

__all__ = [
    "TrainConfig", "TEMPERATURE_SCHEDULES", "temperature_at",
    "fit", "Trainer", "TrainResult", "EpochEnd", "StopTraining", "TrainingDiverged",
    "build_model", "check_names", "evaluate", "evaluate_netlist", "evaluate_train_mode", "fit_encoders", "load_run", "make_param_groups", "relaxed_mode", "is_gate_logit_module",
    "save_checkpoint", "load_checkpoint", "atomic_write_bytes", "atomic_write_json", "CHECKPOINT_NAME",
]
