"""Optuna architecture search for logic gate networks, from a laptop to many machines.

- Spaces (define-by-run, ``space(trial) -> genome``): :func:`list_spaces`, :func:`get_space`
  (``dense``, ``conv``, ``hybrid``), :func:`register_space`; searched training options
  (:class:`TrainingSpace`: anneal end temperature, weight decay); :func:`receptive_field` of a conv genome.
- Genomes (plain dicts ``{"model": <timm name>, **create_model kwargs}``): :func:`validate_genome`,
  :func:`build_model`, :func:`raw_gate_count`.
- Objectives and profilers: :class:`Objective` (discrete accuracy, simplified gates, logic depth,
  measured TVM latency; gate budgets as Optuna constraints, :func:`check_budgets`; pruning),
  :func:`measure_latency`.
- Studies: :func:`open_study` (create or resume; checks the objectives), :func:`run_search` (what
  ``lgn-nas search`` runs, on a :class:`SearchConfig` checked once), :func:`pareto_table`,
  :func:`plot_pareto`, :func:`export_trial`.
- Storage: :func:`open_storage` (journal file by default, PostgreSQL/MySQL/SQLite with heartbeats and
  retry of a dead worker's trial), :func:`mask_url`.

Heavy imports (optuna's samplers, torch, TVM) happen inside the functions that need them.
"""
from .config import SearchConfig
from .genome import Genome, GenomeError, build_model, raw_gate_count, validate_genome
from .objectives import OBJECTIVES, Objective, check_budgets, measure_latency, parse_objectives, train_genome
from .spaces import (
    BaseSpace, ConvSpace, DenseSpace, HybridSpace, get_space, list_spaces, receptive_field, register_space, space_class,
)
from .training import TrainingSpace
from .storage import DEFAULT_JOURNAL, StorageError, mask_url, open_storage
from .study import (
    PRUNERS, SAMPLERS, best_trial, export_trial, make_pruner, make_sampler, open_study, pareto_table, pareto_trials,
    plot_pareto, run_search,
)

__all__ = [
    "list_spaces", "get_space", "register_space", "space_class", "BaseSpace", "DenseSpace", "ConvSpace", "HybridSpace",
    "TrainingSpace", "receptive_field", "check_budgets",
    "Genome", "GenomeError", "validate_genome", "build_model", "raw_gate_count", "SearchConfig",
    "OBJECTIVES", "parse_objectives", "Objective", "measure_latency", "train_genome",
    "DEFAULT_JOURNAL", "StorageError", "mask_url", "open_storage",
    "SAMPLERS", "PRUNERS", "open_study", "make_sampler", "make_pruner", "pareto_trials", "best_trial",
    "pareto_table", "plot_pareto", "export_trial", "run_search",
]
