"""Genomes: plain JSON dicts ``{"model": <timm name>, **create_model kwargs}``.

A genome is what a search space returns for a trial, what a trial stores in its user attributes and
what ``timm.models.save_for_hf`` writes as ``model_args``: ``timm.create_model(genome.pop("model"),
**genome)`` rebuilds the architecture anywhere. :func:`validate_genome` checks one at the boundary;
:func:`raw_gate_count` counts its gates before any training (exact for the circuit as built; netlist
simplification after training can only remove gates, so it is an upper bound of the final count).
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Mapping

__all__ = ["Genome", "GenomeError", "validate_genome", "build_model", "raw_gate_count", "genome_model_kwargs"]

# Keyword arguments every LGN model family accepts, with the JSON type expected.
_COMMON_KEYS: Dict[str, tuple] = {
    "num_classes": (int,), "in_chans": (int,), "img_size": (int, list), "input_bits": (int,),
    "thresholds": (str,), "connectivity": (str,), "relaxation": (str,), "parametrization": (str,),
    "init": (str,), "temperature": (int, float), "group_tau": (int, float), "drop_rate": (int, float),
    "backend": (str,), "seed": (int, type(None)), "global_pool": (str,),
}
_FAMILY_KEYS: Dict[str, Dict[str, tuple]] = {
    "LogicDenseNet": {"depth": (int,), "width": (int, list), "input_crop": (int, list, type(None))},
    "LogicTreeNet": {
        "channels": (list,), "kernel_size": (int, list), "padding": (int, list), "tree_depth": (int, list),
        "channels_per_tree": (int,), "groups": (int, list), "head_widths": (list,),
    },
    "HybridLGN": {
        "backbone": (str,), "feature_index": (int,), "head_widths": (list,), "backbone_kwargs": (dict, type(None)),
    },
}


class GenomeError(ValueError):
    """A genome that is not plain data, names an unknown model or breaks the model's constraints."""


class Genome(dict):
    """A genome :func:`validate_genome` has checked: a plain dict in every other way (JSON, storage,
    ``dict(genome)``), which the functions here take without checking it again."""


def _family(model_name: str) -> str:
    import timm

    import lgn_nas  # noqa: F401  (registers the models)

    known = timm.list_models("lgn*")
    if model_name not in known:
        raise GenomeError(f"genome key 'model': unknown model {model_name!r}; known: {', '.join(known)}")
    if model_name.startswith("lgn_dense"):
        return "LogicDenseNet"
    if model_name.startswith("lgn_conv"):
        return "LogicTreeNet"
    if model_name.startswith("lgn_hybrid"):
        return "HybridLGN"
    raise GenomeError(f"genome key 'model': {model_name!r} belongs to no searchable family")


def genome_model_kwargs(genome: Mapping[str, Any]) -> Dict[str, Any]:
    """The create_model keyword arguments of ``genome`` (a copy without ``model``)."""
    return {k: v for k, v in genome.items() if k != "model"}


def validate_genome(genome: Mapping[str, Any], *, build: bool = True) -> Genome:
    """Return a JSON-clean copy of ``genome`` (a :class:`Genome`) or raise :class:`GenomeError` naming
    the bad key/value.

    Checks: a dict with a registered ``model``; known keys for that model family with JSON values of
    the right type; finite positive numbers; and (``build=True``) that the model really builds with
    these arguments (image too small for the stages, head width narrower than the classes,
    groups that do not divide the channels, ...), reporting the model's own message. A :class:`Genome`
    is returned as it is (checked once); ``build=True`` still builds it. The search checks a trial's
    genome with ``build=False`` in its space and builds the model once, to train it.
    """
    if isinstance(genome, Genome):
        if build:
            build_model(genome)
        return genome
    if not isinstance(genome, Mapping):
        raise GenomeError(f"a genome must be a dict, got {type(genome).__name__}")
    if "model" not in genome or not isinstance(genome["model"], str):
        raise GenomeError(f"genome key 'model' must be a timm model name (str), got {genome.get('model')!r}")
    family = _family(genome["model"])
    allowed = dict(_COMMON_KEYS, **_FAMILY_KEYS[family])
    clean = Genome(model=genome["model"])
    for key, value in genome.items():
        if key == "model":
            continue
        if key not in allowed:
            raise GenomeError(f"genome key {key!r} is not an argument of {genome['model']} ({family}); "
                              f"known: {', '.join(sorted(allowed))}")
        types = allowed[key]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            raise GenomeError(f"genome key {key!r}: expected {expected}, got {value!r}")
        if isinstance(value, float) and not (math.isfinite(value) and value > 0):
            raise GenomeError(f"genome key {key!r}: expected a finite positive number, got {value!r}")
        if isinstance(value, int) and key not in ("seed", "feature_index") and value < (0 if key == "padding" else 1):
            raise GenomeError(f"genome key {key!r}: expected a positive int, got {value!r}")
        if isinstance(value, list) and any(isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "padding" else 1)
                                           for v in value):
            raise GenomeError(f"genome key {key!r}: expected a list of positive ints, got {value!r}")
        try:
            json.dumps(value)
        except TypeError as error:
            raise GenomeError(f"genome key {key!r}: value {value!r} is not JSON data") from error
        clean[key] = value
    if build:
        build_model(clean)
    return clean


def build_model(genome: Mapping[str, Any], **overrides: Any):
    """``timm.create_model(genome["model"], **kwargs)``; a constraint violation raises :class:`GenomeError`.

    ``genome`` is checked first unless it is a :class:`Genome` (checked already).
    """
    import timm

    import lgn_nas  # noqa: F401

    genome = validate_genome(genome, build=False)
    kwargs = dict(genome_model_kwargs(genome), **overrides)
    try:
        return timm.create_model(genome["model"], **kwargs)
    except (ValueError, TypeError, AssertionError, RuntimeError) as error:
        raise GenomeError(f"{genome['model']} cannot be built from genome {json.dumps(kwargs, sort_keys=True)}: "
                          f"{error}") from error


def raw_gate_count(genome: Mapping[str, Any], *, model: Any = None) -> int:
    """Exact gates of the circuit as built from ``genome``, before training and simplification.

    Dense: the sum of the layer widths; conv: ``LogicTreeNet.gate_count()`` (trees at every position,
    OR pools, dense head); hybrid: the logic head's widths (the float backbone has no gates).
    Training never adds gates and simplification only removes them, so the final simplified count
    is at most this.
    """
    genome = validate_genome(genome, build=False)
    family = _family(genome["model"])
    if family == "LogicDenseNet" and "depth" in genome and "width" in genome:
        width = genome["width"]
        return int(width * genome["depth"] if isinstance(width, int) else sum(width))
    if family == "HybridLGN" and "head_widths" in genome:
        return int(sum(genome["head_widths"]))
    model = model if model is not None else build_model(genome)
    if hasattr(model, "gate_count"):
        return int(model.gate_count()["total"])
    if family == "LogicDenseNet":
        return int(sum(model.widths))
    return int(sum(model.head_widths))
