"""Training library for LGNs: used by ``lgn-nas train`` and by the Optuna search.

``fit(TrainConfig(...), callbacks=..., out_dir=..., resume=...)`` trains a timm-registered LGN with
timm's optimizer and scheduler factories, tracks relaxed and discrete accuracy (see
:mod:`lgn_nas.train.evaluation` for the definitions), writes atomic checkpoints, and runs data-parallel
under ``torchrun``. The loop is :mod:`lgn_nas.train.trainer`; the model and the optimizer's groups come
from :mod:`lgn_nas.train.build`.
"""
from .checkpoint import CHECKPOINT_NAME, atomic_write_bytes, atomic_write_json, load_checkpoint, save_checkpoint
from .config import TEMPERATURE_SCHEDULES, TrainConfig, temperature_at
from .build import build_model, check_names, fit_encoders, load_run, make_param_groups
from .evaluation import evaluate, evaluate_netlist, evaluate_train_mode, relaxed_mode
from .trainer import EpochEnd, StopTraining, TrainingDiverged, TrainResult, Trainer, fit, is_gate_logit_module

__all__ = [
    "TrainConfig", "TEMPERATURE_SCHEDULES", "temperature_at",
    "fit", "Trainer", "TrainResult", "EpochEnd", "StopTraining", "TrainingDiverged",
    "build_model", "check_names", "evaluate", "evaluate_netlist", "evaluate_train_mode", "fit_encoders", "load_run", "make_param_groups", "relaxed_mode", "is_gate_logit_module",
    "save_checkpoint", "load_checkpoint", "atomic_write_bytes", "atomic_write_json", "CHECKPOINT_NAME",
]
