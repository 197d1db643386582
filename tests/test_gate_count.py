"""Gate counts of the conv models: the physical count, the paper's convention, and the published figures.

Petersen et al. 2024 (arXiv 2411.04732) count the gates of their trained networks less the gates that stayed
pass-through wires ('A'/'B', the residual initialisation's choice): github.com/Felix-Petersen/difflogic
issue #42 derives 960,512 physical gates for CIFAR-10 LogicTreeNet-S from the paper's Fig. 6 and appendix
against the published 0.40M, and reports the author's reply that residual gates are not counted. So a
published figure cannot be recomputed from a shape; it can only be checked to be at most the physical count.
"""
import numpy as np
import pytest
import timm
import torch

from lgn_nas.cli import PUBLISHED_GATES
from lgn_nas.discretize import discretize
from lgn_nas.models.lgn_conv import PASS_THROUGH_GATES, VARIANT_ARGS, shape_gate_count

PHYSICAL = ("trees", "or_pools", "dense", "total")


def _small(name, **kwargs):
    return timm.create_model(name, init="gaussian", seed=3, **kwargs).eval()


SMALL = [
    ("lgn_conv_s", dict(channels=[4, 8, 8, 16], head_widths=[40, 20])),
    ("lgn_conv_s", dict(channels=[6, 12], kernel_size=[3, 3], padding=[1, 0], img_size=12, in_chans=2,
                        head_widths=[60, 40], num_classes=4, tree_depth=[2, 3], groups=[2, 3])),
    ("lgn_conv_mnist_s", dict(channels=[2, 4, 6], head_widths=[30, 20])),
]


@pytest.mark.parametrize("name,kwargs", SMALL)
def test_shape_count_equals_the_built_models_count(name, kwargs):
    model = _small(name, **kwargs)
    counts = model.gate_count()
    args = dict(VARIANT_ARGS[name], **kwargs)
    assert shape_gate_count(**args) == {k: counts[k] for k in PHYSICAL}
    assert counts["total"] + 1 == discretize(model).num_gates  # + the constant that zero padding reads


@pytest.mark.parametrize("name,kwargs", SMALL)
def test_paper_convention_leaves_out_exactly_the_pass_through_gates(name, kwargs):
    model = _small(name, **kwargs)
    counts = model.gate_count()
    gates = np.concatenate([layer.gate for layer in discretize(model).layers])
    # the netlist's gates less its pass-throughs, less the constant FALSE gate that padding reads
    assert counts["paper_total"] == int((~np.isin(gates, PASS_THROUGH_GATES)).sum()) - 1
    assert counts["paper_total"] == counts["paper_trees"] + counts["or_pools"] + counts["paper_dense"]
    assert 0 < counts["paper_trees"] < counts["trees"] and 0 < counts["paper_dense"] < counts["dense"]


def test_untrained_residual_model_counts_only_its_or_pools_in_the_paper_convention():
    model = timm.create_model("lgn_conv_s", channels=[4, 8, 8, 16], head_widths=[40, 20])  # init="residual"
    counts = model.gate_count()
    assert counts["paper_trees"] == counts["paper_dense"] == 0
    assert counts["paper_total"] == counts["or_pools"]


def test_physical_counts_of_the_paper_shapes():
    # CIFAR-10 S: the same 960,512 that difflogic issue #42 derives layer by layer from the paper
    assert shape_gate_count(**VARIANT_ARGS["lgn_conv_s"]) == {
        "trees": 7 * (32 * 32 * 32 + 128 * 16 * 16 + 512 * 8 * 8 + 1024 * 4 * 4),
        "or_pools": 3 * (32 * 16 * 16 + 128 * 8 * 8 + 512 * 4 * 4 + 1024 * 2 * 2),
        "dense": (1280 + 640 + 320) * 32, "total": 960_512}
    assert shape_gate_count(**VARIANT_ARGS["lgn_conv_mnist_s"])["total"] == 201_008
    # every part scales with k, so M is exactly 8x (CIFAR) or 4x (MNIST) S; the published M/S ratios
    # (3.08M / 0.40M, 566K / 147K) are not, which is why no shape formula can reproduce them
    assert shape_gate_count(**VARIANT_ARGS["lgn_conv_m"])["total"] == 8 * 960_512
    assert shape_gate_count(**VARIANT_ARGS["lgn_conv_mnist_m"])["total"] == 4 * 201_008


def _lowest(figure: str) -> float:
    """The smallest count that rounds to a published figure such as '0.40M' or '147K'."""
    digits = figure[:-1]
    unit = {"K": 1e3, "M": 1e6}[figure[-1]]
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return (float(digits) - 0.5 * 10 ** -decimals) * unit


CONV_PUBLISHED = sorted(name for name in PUBLISHED_GATES if name.startswith("lgn_conv"))


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(
        strict=True, reason="16.0M published > 15.37M physical: our B shape (k=512, 1x head) cannot be the "
                            "paper's B, whose exact widths and input preprocessing gates are not known here"))
    if name == "lgn_conv_b" else name for name in CONV_PUBLISHED])
def test_published_count_is_at_most_the_physical_count(name):
    published = _lowest(PUBLISHED_GATES[name][0])
    physical = shape_gate_count(**VARIANT_ARGS[name])["total"]
    assert published <= physical


def test_info_prints_both_counts(capsys):
    from lgn_nas.cli import main

    assert main(["info", "lgn_conv_s", "--model-kwargs", "channels=[4,8,8,16]", "head_widths=[40,20]"]) == 0
    out = capsys.readouterr().out
    assert "gate count formula: trees" in out and "total" in out
    assert "gate count, paper convention: trees 0, or_pools" in out
