"""The logic-layer interface: LogicSpec and the strategy registries, LogicGates, the model interfaces,
the genome schema read from them, and the netlist's plain-array view."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import timm
import torch

import lgn_nas  # noqa: F401
from lgn_nas import discretize
from lgn_nas.interfaces import HasLogicHead, LowersToNetlist
from lgn_nas.layers import LogicBlock, LogicDense, LogicGates, LogicSpec, LogicTreeConv2d, OrPool2d
from lgn_nas.layers.backends import BACKENDS
from lgn_nas.layers.connectivity import CONNECTIVITIES
from lgn_nas.layers.parametrizations import INITS, PARAMETRIZATIONS
from lgn_nas.layers.relaxations import RELAXATIONS, STOCHASTIC_RELAXATIONS
from lgn_nas.layers.spec import STRATEGIES
from lgn_nas.models._optim import is_gate_logit_module

SMALL = {"lgn_dense_s": dict(depth=2, width=60), "lgn_conv_mnist_s": dict(channels=[2, 4, 6], head_widths=[30, 20]),
         "lgn_hybrid_resnet18": dict(head_widths=[40, 30], feature_index=1)}


def test_every_strategy_is_a_registry_and_the_spec_checks_each_once():
    assert set(RELAXATIONS) == {"softmax", "gumbel_soft", "gumbel_st", "hard_st"}
    assert {name: (r.noise, r.straight_through) for name, r in RELAXATIONS.items()} == {
        "softmax": (False, False), "gumbel_soft": (True, False), "gumbel_st": (True, True), "hard_st": (False, True)}
    assert STOCHASTIC_RELAXATIONS == ("gumbel_soft", "gumbel_st")
    assert set(PARAMETRIZATIONS) == {"raw16", "truth_table"} and set(INITS) == {"residual", "gaussian"}
    assert set(CONNECTIVITIES) == {"random", "unique", "learnable"} and set(BACKENDS) == {"auto", "torch", "tvm"}
    assert [name for name, c in CONNECTIVITIES.items() if c.learnable] == ["learnable"]
    assert [f.name for f in dataclasses.fields(LogicSpec)] == list(STRATEGIES) == [
        "connectivity", "relaxation", "parametrization", "init", "temperature", "backend", "candidates"]
    assert STRATEGIES["candidates"] == (int, type(None)) and STRATEGIES["temperature"] == (int, float)
    for field, bad, message in (("relaxation", "magic", "unknown relaxation 'magic'"),
                                ("parametrization", "raw8", "unknown parametrization"),
                                ("connectivity", "dense", "unknown connectivity"), ("init", "zeros", "unknown init"),
                                ("backend", "jax", "unknown backend"), ("temperature", 0, "temperature must be > 0"),
                                ("candidates", 0, "candidates must be a positive int"),
                                ("candidates", 4, "candidates=4 needs a learnable connectivity")):
        with pytest.raises(ValueError, match=message):
            LogicSpec(**{field: bad})
    spec = LogicSpec(relaxation="gumbel_st", temperature=2)
    assert spec.temperature == 2.0 and isinstance(spec.temperature, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.relaxation = "softmax"
    with pytest.raises(TypeError, match=r"LogicDense\(\) got an unexpected keyword argument 'relaxatoin'"):
        LogicDense(8, 4, relaxatoin="softmax")


def test_a_model_makes_one_spec_and_every_layer_takes_it():
    model = timm.create_model("lgn_conv_mnist_s", relaxation="hard_st", init="gaussian", **SMALL["lgn_conv_mnist_s"])
    layers = [m for m in model.modules() if isinstance(m, LogicGates)]
    assert {type(m) for m in layers} == {LogicDense, LogicTreeConv2d}
    assert model.logic_spec == LogicSpec(relaxation="hard_st", init="gaussian")
    assert all(m.relaxation == "hard_st" for m in layers)
    assert timm.create_model("lgn_dense_s", **SMALL["lgn_dense_s"]).logic_spec.init == "gaussian"  # the family's default
    block = LogicBlock(12, [20, 10], num_classes=2, spec=LogicSpec(parametrization="truth_table"))
    assert all(layer.parametrization == "truth_table" for layer in block.modules() if isinstance(layer, LogicGates))
    # the layers' strategy attributes stay plain (TorchScript reads them); relaxation can be swapped
    layer = LogicDense(8, 4, relaxation="gumbel_st")
    layer.relaxation = "softmax"
    assert (layer._noise, layer._straight_through) == (False, False)
    with pytest.raises(ValueError, match="unknown relaxation"):
        layer.relaxation = "nope"


@pytest.mark.parametrize("name", list(SMALL))
def test_models_implement_the_interfaces_and_only_logic_layers_own_gate_logits(name):
    model = timm.create_model(name, **SMALL[name]).eval()
    assert isinstance(model, LowersToNetlist)
    assert isinstance(model, HasLogicHead) == name.startswith("lgn_hybrid")
    gate_params = {f"{n}.{p}" if n else p for n, m in model.named_modules() if is_gate_logit_module(m)
                   for p, _ in m.named_parameters(recurse=False)}
    assert gate_params == model.no_weight_decay()
    assert gate_params and all(p.endswith("weight") for p in gate_params)
    assert not any(is_gate_logit_module(m) for m in model.modules() if isinstance(m, (OrPool2d, torch.nn.BatchNorm1d)))
    assert discretize(model).num_gates > 0
    with pytest.raises(TypeError, match="cannot discretize Linear"):
        discretize(torch.nn.Linear(3, 3))


def test_the_genome_schema_is_the_constructors_json_arguments_and_the_spec():
    from search_spaces.genome import GenomeError, genome_schema, validate_genome

    dense, conv, hybrid = (genome_schema(f) for f in ("LogicDenseNet", "LogicTreeNet", "HybridLGN"))
    for schema in (dense, conv, hybrid):
        assert {k: schema[k] for k in STRATEGIES} == STRATEGIES
        assert "device" not in schema and "dtype" not in schema
    assert dense["width"] == (int, list) and dense["input_crop"] == (int, list, type(None))
    assert conv["channels"] == (list,) and hybrid["backbone_kwargs"] == (dict, type(None))
    assert "thresholds" in dense and "thresholds" not in hybrid  # a hybrid's head has no threshold method
    with pytest.raises(GenomeError, match="'thresholds' is not an argument of lgn_hybrid_resnet18"):
        validate_genome({"model": "lgn_hybrid_resnet18", "thresholds": "uniform"}, build=False)
    genome = validate_genome({"model": "lgn_dense_s", "depth": 2, "width": 40, "relaxation": "hard_st"}, build=False)
    assert validate_genome(genome, build=False) is genome  # checked once


def test_the_netlist_view_is_read_only_and_what_the_lowerings_read(random_netlist):
    net = random_netlist(1, input_shape=(2, 3, 3), thresholds=2, widths=(30, 20), num_classes=4, group_size=5)
    view = net.arrays()
    assert view.num_inputs == net.num_inputs and view.num_gates == net.num_gates and view.group_size == 5
    assert view.input_shape == (2, 3, 3) and view.encoding_kind == "thermometer" and view.tau == net.tau
    for array in (view.thresholds, view.outputs, *[a for layer in view.layers for a in layer]):
        assert not array.flags.writeable
        with pytest.raises(ValueError):
            array[...] = 0
    assert all(np.array_equal(g, layer.gate) for (g, _, _), layer in zip(view.layers, net.layers))


def test_one_atomic_writer_below_lgn_nas(tmp_path):
    import lgn_nas.atomic
    import tvm_ops.atomic

    assert lgn_nas.atomic.atomic_write is tvm_ops.atomic.atomic_write
    path = tvm_ops.atomic.atomic_write(tmp_path / "lib.so", lambda tmp: open(tmp, "wb").write(b"x"), suffix=".so")
    assert path.read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == ["lib.so"]
