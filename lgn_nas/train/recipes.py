"""Training recipes: the ``TrainConfig`` defaults a model picks up in ``lgn-nas train``.

A recipe is a plain dict of ``TrainConfig`` fields, registered by model name. ``lgn-nas train MODEL``
starts from ``TrainConfig``'s defaults, applies ``MODEL``'s recipe, then the flags the user gave;
``config_with_recipe`` does the same in Python. Each recipe's figures and the measurements that
chose it are in ``benchmarks/RESULTS.md``.

Convolutional LGNs (LogicTreeNet) use ``CONV_RECIPE``. Their residual initialisation puts logit 5 on
the pass-through gate of every neuron; with Adam at lr 0.01 a logit moves about 0.01 a step, so after
one MNIST epoch (430 steps) 96-99% of the argmax gates were still wires and the discrete circuit
scored 58% while the relaxed mixture scored 87%. A ten times larger learning rate (cosine-decayed)
lets the gates leave the wire within the first epoch, and annealing the softmax temperature from 1 to 0.1 over the
whole run (per step, whatever the number of epochs) ends training on a mixture that is nearly its
argmax, so the relaxed and discrete networks agree at the end.

The CIFAR-10 models (``lgn_conv_s`` .. ``lgn_conv_g``) use ``CIFAR_CONV_RECIPE``: the conv recipe with
what CIFAR-10 needed on top (issue 13 in RESULTS.md, twelfth and thirteenth sessions): AdamW at lr 0.03
with weight decay 0.002 on the gate logits too (lr 0.1 without decay scored 1-2 points lower and lost
validation accuracy late in the run), annealing down to 0.03, the paper's augmentation (random crop
with 2 pixels of padding, horizontal flips) and the paper's model selection on validation. Their
best runs also set ``--model-kwargs input_bits=3 thresholds=learnable`` (model arguments, so not part
of a training recipe: ``timm.create_model("lgn_conv_s")`` stays the paper's 2-bit net).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

from .config import TrainConfig

__all__ = ["RECIPES", "CONV_RECIPE", "CIFAR_CONV_RECIPE", "get_recipe", "list_recipes", "config_with_recipe"]

CONV_RECIPE: Dict[str, Any] = {
    "lr": 0.1,
    "scheduler": "cosine",
    "temperature_schedule": "cosine",
    "temperature_start": 1.0,
    "temperature_end": 0.1,
    "temperature_step": "step",
}

CIFAR_CONV_RECIPE: Dict[str, Any] = {
    **CONV_RECIPE,
    "optimizer": "adamw",
    "lr": 0.03,
    "weight_decay": 0.002,
    "decay_gate_logits": True,
    "temperature_end": 0.03,
    "random_crop_padding": 2,
    "hflip": True,
    "select_best": True,
}

RECIPES: Dict[str, Dict[str, Any]] = {
    **{f"lgn_conv_{size}": CIFAR_CONV_RECIPE for size in ("s", "m", "b", "l", "g")},
    **{f"lgn_conv_mnist_{size}": CONV_RECIPE for size in ("s", "m", "l")},
}


def list_recipes() -> List[str]:
    """Model names that have a recipe."""
    return sorted(RECIPES)


def get_recipe(model: str) -> Dict[str, Any]:
    """A copy of ``model``'s recipe (``{}`` when it has none)."""
    recipe = dict(RECIPES.get(model, {}))
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(recipe) - known)
    if unknown:  # a programming error in RECIPES, caught by the tests
        raise ValueError(f"recipe for {model!r} names unknown TrainConfig fields: {', '.join(unknown)}")
    return recipe


def config_with_recipe(model: str, **fields: Any) -> TrainConfig:
    """``TrainConfig`` for ``model``: its defaults, then ``model``'s recipe, then ``fields``."""
    return TrainConfig(model=model, **{**get_recipe(model), **fields})
