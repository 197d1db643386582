"""Genomes: plain JSON dicts ``{"model": <timm name>, **create_model kwargs}``.

A genome is what a search space returns for a trial, what a trial stores in its user attributes and
what ``timm.models.save_for_hf`` writes as ``model_args``: ``timm.create_model(genome.pop("model"),
**genome)`` rebuilds the architecture anywhere. :func:`validate_genome` checks one at the boundary;
:func:`raw_gate_count` counts its gates before any training (exact for the circuit as built; netlist
simplification after training can only remove gates, so it is an upper bound of the final count).
"""
from __future__ import annotations

import functools
import inspect
import json
import math
from collections import abc
from typing import Any, Dict, Mapping, Tuple, Union, get_args, get_origin, get_type_hints

__all__ = ["Genome", "GenomeError", "validate_genome", "build_model", "raw_gate_count", "genome_model_kwargs",
           "genome_schema"]

# Keys whose values are a bool or a list of bools (the others refuse bools).
_BOOL_KEYS = ("pool",)

# The model family of each name prefix; a family's genome keys are its constructor's JSON arguments.
_FAMILIES = {"lgn_dense": "LogicDenseNet", "lgn_conv": "LogicTreeNet", "lgn_hybrid": "HybridLGN"}


def _json_types(annotation: Any) -> Tuple[type, ...]:
    """The JSON types a value of ``annotation`` may have; ``()`` if some member is not JSON data."""
    if annotation is type(None):
        return (type(None),)
    if get_origin(annotation) is Union:
        members = [_json_types(arg) for arg in get_args(annotation)]
        return () if not all(members) else tuple(dict.fromkeys(t for m in members for t in m))
    origin = get_origin(annotation) or annotation
    for python, json_types in ((bool, (bool,)), (int, (int,)), (float, (int, float)), (str, (str,))):
        if origin is python:
            return json_types
    if isinstance(origin, type) and issubclass(origin, (list, tuple, abc.Sequence)) and origin is not str:
        return (list,)
    if isinstance(origin, type) and issubclass(origin, (dict, abc.Mapping)):
        return (dict,)
    return ()


@functools.lru_cache(maxsize=None)
def genome_schema(family: str) -> Dict[str, Tuple[type, ...]]:
    """The genome keys of ``family`` (a model class name) and their JSON types: the keyword arguments of
    its constructor that take JSON data (not ``device``/``dtype``), and the strategies of
    :class:`lgn_nas.layers.LogicSpec` (its ``**strategies``)."""
    import lgn_nas.models
    from lgn_nas.layers.spec import STRATEGIES

    cls = getattr(lgn_nas.models, family)
    hints = get_type_hints(cls.__init__)
    schema: Dict[str, Tuple[type, ...]] = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if parameter.kind is parameter.KEYWORD_ONLY and _json_types(hints.get(name, Any)):
            schema[name] = _json_types(hints[name])
    schema.update(STRATEGIES)
    return schema


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
    for prefix, family in _FAMILIES.items():
        if model_name.startswith(prefix):
            return family
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
    allowed = genome_schema(family)
    clean = Genome(model=genome["model"])
    for key, value in genome.items():
        if key == "model":
            continue
        if key not in allowed:
            raise GenomeError(f"genome key {key!r} is not an argument of {genome['model']} ({family}); "
                              f"known: {', '.join(sorted(allowed))}")
        types = allowed[key]
        if key in _BOOL_KEYS:
            if not (isinstance(value, bool) or (isinstance(value, list) and all(isinstance(v, bool) for v in value))):
                raise GenomeError(f"genome key {key!r}: expected a bool or a list of bools, got {value!r}")
            clean[key] = value
            continue
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
    from lgn_nas.models import LogicTreeNet

    model = model if model is not None else build_model(genome)
    if isinstance(model, LogicTreeNet):
        return int(model.gate_count()["total"])
    if family == "LogicDenseNet":
        return int(sum(model.widths))
    return int(sum(model.head_widths))
