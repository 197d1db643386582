"""The conv search space (issue 19): its parameters, pool placement, budgets, bounds, recipe and pruning (tiny runs)."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

optuna = pytest.importorskip("optuna")

from lgn_nas import discretize  # noqa: E402
from lgn_nas.layers import LogicTreeConv2d, LogicTreeConvPool2d  # noqa: E402
from lgn_nas.models.lgn_conv import VARIANT_ARGS, shape_gate_count  # noqa: E402
from search_spaces import (  # noqa: E402
    GenomeError, Objective, build_model, get_space, make_pruner, raw_gate_count, receptive_field, run_search,
)
from search_spaces.study import train_template, unsearched_training  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

SMALL = dict(channels=(4, 24), head_width=(20, 60), stages=(1, 3), pool=(True, False), input_bits=(1, 2))


def _trials(space, n, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        genome = space(trial)
        out.append((trial, genome, space.suggest_training(trial, genome, train_template("conv"))))
        study.tell(trial, 0.0)
    return out


def test_conv_space_parameters_appear_and_every_genome_builds():
    space = get_space("conv", relaxation=("softmax", "gumbel_st"), weight_decay=(1e-4, 1e-2), **SMALL)
    seen = set()
    for trial, genome, overrides in _trials(space, 16):
        seen |= set(trial.params)
        model = timm.create_model(genome["model"], **{k: v for k, v in genome.items() if k != "model"})
        assert raw_gate_count(genome) == model.gate_count()["total"] == shape_gate_count(**genome)["total"]
        stages = len(genome["channels"])
        assert len(genome["pool"]) == len(genome["kernel_size"]) == len(genome["tree_depth"]) == stages
        assert [isinstance(s, LogicTreeConvPool2d) for s in model.stages] == genome["pool"]
        if trial.params.get("channel_mode") == "growth":
            k, g = genome["channels"][0], trial.params.get("channel_growth", 1)
            assert genome["channels"] == [k * g ** i for i in range(stages)]
        assert trial.user_attrs["receptive_field"] == receptive_field(genome)
        assert overrides["weight_decay"] == trial.params["weight_decay"] and overrides["decay_gate_logits"]
        if genome["relaxation"] == "softmax":  # the anneal's end is searched; Gumbel keeps its tau
            assert overrides["temperature_end"] == trial.params["temperature_end"]
        else:
            assert overrides["temperature_schedule"] == "constant" and "temperature_end" not in trial.params
    wanted = {"stages", "groups", "channel_mode", "channel_growth", "channels_0", "channels_1", "pool_0", "padding_0",
              "kernel_size_0", "tree_depth_0", "tree_depth_1", "head_depth", "classifier_width", "input_bits",
              "thresholds", "relaxation", "gumbel_tau", "group_tau", "temperature_end", "weight_decay"}
    assert wanted <= seen, wanted - seen
    # The paper's MNIST-S point is a genome of the default space's shape (k = 16, growth 3, 5x5 then 3x3).
    s = dict(VARIANT_ARGS["lgn_conv_mnist_s"], pool=[True, True, True])
    assert receptive_field(s) == 1 + 4 + 1 + 2 * 2 + 2 + 4 * 2 + 4  # 5x5, pool, 3x3, pool, 3x3, pool


def test_cifar_shaped_genomes_name_lgn_conv_s_and_build_the_same_net_as_the_mnist_name():
    space = get_space("conv", input_shape=(3, 32, 32), **SMALL)
    (trial, genome, _), = _trials(space, 1, seed=3)
    assert genome["model"] == "lgn_conv_s" and genome["in_chans"] == 3
    kwargs = {k: v for k, v in genome.items() if k != "model"}
    rgb, mnist_named = timm.create_model("lgn_conv_s", **kwargs), timm.create_model("lgn_conv_mnist_s", **kwargs)
    assert rgb.pretrained_cfg["tag"] == "cifar10_jpeg"  # exported trials carry the CIFAR cfg, not MNIST's
    assert list(rgb.state_dict()) == list(mnist_named.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(rgb.state_dict().values(), mnist_named.state_dict().values()))
    (_, mnist_genome, _), = _trials(get_space("conv", **SMALL), 1)  # MNIST-shaped: the MNIST name
    assert mnist_genome["model"] == "lgn_conv_mnist_s"


def test_receptive_field_counts_kernels_and_pools():
    assert receptive_field({"channels": [4], "kernel_size": [3], "pool": [False]}) == 3
    assert receptive_field({"channels": [4, 4], "kernel_size": [3, 3], "pool": [True, False]}) == 3 + 1 + 2 * 2
    assert receptive_field({"channels": [4, 4], "kernel_size": [3, 3], "pool": [False, False]}) == 5


def test_pool_placement_lowers_to_the_netlist_bit_for_bit():
    kwargs = dict(channels=[4, 6, 8], kernel_size=[3, 3, 3], padding=[1, 1, 0], img_size=12, in_chans=1, input_bits=2,
                  head_widths=[40, 20], num_classes=4, init="gaussian", seed=0, pool=[False, True, False],
                  groups=[1, 2, 2])
    model = timm.create_model("lgn_conv_mnist_s", **kwargs).eval()
    assert not isinstance(model.stages[0], LogicTreeConvPool2d) and isinstance(model.stages[1], LogicTreeConvPool2d)
    assert "stages.0.0.weight" in model.state_dict() and "stages.2.0.weight" in model.state_dict()
    assert model.feature_hw == (4, 4)  # 12 (no pool), 12 -> 6 (pool), 6 -> 4 (3x3 without padding, no pool)
    netlist = discretize(model)
    x = torch.rand(100, 1, 12, 12)
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.array_equal(netlist.evaluate(x.numpy()), expected)
    simple, _ = netlist.simplify()
    assert np.array_equal(simple.evaluate(x.numpy()), expected)
    counts = model.gate_count()
    assert counts["total"] + 1 == netlist.num_gates  # + the constant that zero padding reads
    assert counts["or_pools"] == 6 * 3 * 6 * 6
    assert shape_gate_count(**dict(VARIANT_ARGS["lgn_conv_mnist_s"], **kwargs))["total"] == counts["total"]
    with pytest.raises(ValueError, match=r"pool must be a bool or a list of 3 bools .*got \[True, False\]"):
        timm.create_model("lgn_conv_mnist_s", **dict(kwargs, pool=[True, False]))


def test_unpooled_stages_take_the_unfused_tvm_op_and_agree_with_torch():
    pytest.importorskip("tvm")
    kwargs = dict(channels=[4, 8], kernel_size=3, padding=1, img_size=8, in_chans=1, input_bits=2, head_widths=[40],
                  num_classes=4, init="gaussian", seed=1, pool=[False, True])
    ref = timm.create_model("lgn_conv_mnist_s", backend="torch", **kwargs).train()
    tvm = timm.create_model("lgn_conv_mnist_s", backend="tvm", **kwargs).train()
    tvm.load_state_dict(ref.state_dict())
    assert isinstance(tvm.stages[0][0], LogicTreeConv2d) and len(tvm.stages[0]) == 1
    assert tvm.stages[1].fusable
    x = torch.rand(6, 1, 8, 8)
    out_ref, out_tvm = ref(x), tvm(x)
    assert torch.allclose(out_ref, out_tvm, atol=1e-5)
    out_ref.sum().backward()
    out_tvm.sum().backward()
    for (name, a), b in zip(ref.named_parameters(), tvm.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-4), name


def test_min_raw_gates_is_the_smallest_genome_of_the_space():
    bounds = dict(stages=(1, 2), channels=(4, 6), kernel_size=(3, 5), padding=(0, 1), pool=(True, False),
                  tree_depth=(2, 3), groups=(1, 2), head_depth=(1, 2), head_width=(15, 40), input_bits=(1,))
    space = get_space("conv", **bounds)
    brute = []
    for stages in (1, 2):
        for choice in itertools.product(range(4, 7), (3, 5), (0, 1), (True, False), repeat=stages):
            channels, kernels, paddings, pools = (list(choice[i::4]) for i in range(4))
            genome = dict(channels=channels, kernel_size=kernels, padding=paddings, pool=pools, tree_depth=2,
                          head_widths=[20], img_size=28)
            size, ok = 28, True
            for k, p, po in zip(kernels, paddings, pools):
                size = size + 2 * p - k + 1
                ok = ok and size >= (2 if po else 1)
                size = size // 2 if po else size
            if ok:
                brute.append(shape_gate_count(**genome)["total"])
    assert space.min_raw_gates() == min(brute)  # 20 = the smallest classifier (a multiple of 10 >= 15)
    # and a sampled genome never goes below it
    assert all(raw_gate_count(g) >= min(brute) for _, g, _ in _trials(space, 8))


def test_a_budget_no_genome_meets_is_refused_before_training(tmp_path):
    space = get_space("conv", **SMALL)
    floor = space.min_raw_gates()
    log = tmp_path / "s.log"
    with pytest.raises(ValueError, match=rf"max_raw_gates {floor - 1} is below the smallest genome of space 'conv' "
                                         rf"\({floor} raw gates\)"):
        run_search(space="conv", trials=1, storage=str(log), out=None, max_raw_gates=floor - 1,
                   space_bounds={k: list(v) for k, v in SMALL.items()}, train={"limit_train": 100}, log=lambda *a: None)
    with pytest.raises(ValueError, match=r"max_gates must be an int >= 0 \(gates\), got -5"):
        run_search(space="conv", trials=1, storage=str(log), out=None, max_gates=-5, log=lambda *a: None)
    assert not log.exists()  # nothing written


def test_a_genome_outside_the_bounds_is_refused_naming_the_bound():
    space = get_space("conv", **SMALL)
    paper = {"model": "lgn_conv_mnist_s", **VARIANT_ARGS["lgn_conv_mnist_s"], "pool": [True, True, True],
             "groups": [1, 1, 1], "relaxation": "softmax", "connectivity": "random", "init": "residual",
             "group_tau": 6.5, "num_classes": 10}
    with pytest.raises(GenomeError, match=r"genome key 'channels' \(stage 1\): 48 is outside the space's bound "
                                          r"channels=\[4, 24\]"):
        space.check(paper)
    wide = get_space("conv", channels=(4, 144), head_width=(200, 20480), head_depth=(1, 3))
    wide.check(paper)  # inside the wider space
    with pytest.raises(GenomeError, match=r"'pool' \(stage 1\): False is outside the space's bound pool=\[true\]"):
        get_space("conv", channels=(4, 144), head_width=(200, 20480), head_depth=(1, 3), pool=(True,)).check(
            dict(paper, pool=[True, False, True]))
    # An enqueued trial (Optuna only warns about out-of-range values) is refused before any training.
    study = optuna.create_study()
    study.enqueue_trial({"stages": 1, "channel_mode": "per_stage", "channels_0": 500})
    with pytest.raises(GenomeError, match=r"channels' \(stage 0\): 500 is outside the space's bound channels=\[4, 24\]"), \
            pytest.warns(UserWarning, match="channels_0 with value 500 is out of range"):
        space(study.ask())
    study.enqueue_trial({"relaxation": "softmax", "temperature_end": 5.0})
    trial = study.ask()
    genome = space(trial)
    with pytest.raises(GenomeError, match=r"temperature_end 5.0 is outside the space's bound temperature_end=\[0.03, 0.3\]"), \
            pytest.warns(UserWarning, match="temperature_end with value 5.0 is out of range"):
        space.suggest_training(trial, genome, train_template("conv"))


def test_conv_trials_train_with_the_conv_recipe_field_by_field():
    template = train_template("conv")
    assert (template.lr, template.scheduler, template.temperature_schedule, template.temperature_start,
            template.temperature_end, template.temperature_step) == (0.1, "cosine", "cosine", 1.0, 0.1, "step")
    assert train_template("dense").temperature_schedule == "constant"  # no recipe: unchanged
    changed = train_template("conv", train={"temperature_step": "epoch", "lr": 0.05})
    assert (changed.temperature_step, changed.lr, changed.temperature_start) == ("epoch", 0.05, 1.0)
    space = get_space("conv", relaxation=("softmax",), **{k: v for k, v in SMALL.items() if k != "input_bits"})
    objective = Objective(space=space, data=_Data(), train_config=template, objectives=("acc",), lr_range=(0.03, 0.3),
                          training=space.suggest_training)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    trial = study.ask()
    config = objective.trial_config(trial, space(trial))
    assert config.lr == trial.params["lr"] and 0.03 <= config.lr <= 0.3
    assert config.temperature_end == trial.params["temperature_end"] and 0.03 <= config.temperature_end <= 0.3
    assert (config.scheduler, config.temperature_schedule, config.temperature_start, config.temperature_step) == \
        ("cosine", "cosine", 1.0, "step")
    assert trial.user_attrs["train_overrides"] == {"lr": config.lr, "temperature_schedule": "cosine",
                                                   "temperature_end": config.temperature_end}
    # A training option the caller fixes is not searched.
    assert unsearched_training({}, {"temperature_end": 0.2, "weight_decay": 0.0}) == {"temperature_end": None,
                                                                                       "weight_decay": None}
    assert unsearched_training({}, {"temperature_schedule": "linear"}) == {"temperature_schedule": ["linear"]}
    assert unsearched_training({}, {"temperature_schedule": "constant"}) == {"temperature_end": None}
    assert unsearched_training({"temperature_end": [0.05, 0.2]}, {"temperature_schedule": "constant"}) == {
        "temperature_end": [0.05, 0.2]}  # an explicit bound stays
    linear = get_space("conv", **unsearched_training({}, {"temperature_schedule": "linear"}))
    assert linear.suggest_training(study.ask(), {"relaxation": "softmax"}, template)["temperature_schedule"] == "linear"


class _Data:
    num_classes = 10


@pytest.fixture(scope="module")
def tiny_data():
    from lgn_nas.data import load_dataset

    return load_dataset("mnist", val_size=300, dtype=torch.uint8)


def test_successive_halving_prunes_a_hopeless_conv_trial(tiny_data):
    from lgn_nas.train import TrainConfig

    space = get_space("conv", stages=(1, 1), channels=(8, 8), kernel_size=(5, 5), padding=(0, 0), pool=(True,),
                      tree_depth=(2, 2), head_depth=(1, 1), head_width=(200, 200), input_bits=(1,),
                      relaxation=("softmax",), connectivity=("random",), init=("gaussian",), group_tau=(6.0, 6.0),
                      temperature_end=(0.1, 0.1))
    config = TrainConfig(dataset="mnist", epochs=3, limit_train=1280, batch_size=64, val_size=300, limit_test=300,
                         device="cpu",
                         **{k: v for k, v in train_template("conv").to_dict().items()
                            if k.startswith("temperature") or k == "scheduler"})
    objective = Objective(space=space, data=tiny_data, train_config=config, objectives=("acc",), lr_range=(1e-4, 0.3),
                          training=space.suggest_training)
    study = optuna.create_study(direction="maximize", pruner=make_pruner("sha", epochs=3, warmup=1))
    study.enqueue_trial({"lr": 0.1})  # learns
    study.enqueue_trial({"lr": 1e-4})  # stays near its random initial gates: near chance
    study.optimize(objective, n_trials=2)
    good, hopeless = study.trials
    assert good.state == optuna.trial.TrialState.COMPLETE and sorted(good.intermediate_values) == [1, 2, 3]
    assert hopeless.state == optuna.trial.TrialState.PRUNED, (good.intermediate_values, hopeless.intermediate_values)
    assert sorted(hopeless.intermediate_values) == [1]  # stopped at the first rung
    assert "pruner stopped it after epoch 1" in hopeless.user_attrs["pruned_reason"]
    assert hopeless.intermediate_values[1] < good.intermediate_values[1]
    assert make_pruner("hyperband", epochs=9, warmup=2)._min_resource == 2  # the warm-up is the first rung
    with pytest.raises(ValueError, match="reduction_factor must be an int >= 2"):
        make_pruner("sha", epochs=3, reduction_factor=1)


ROOT = Path(__file__).resolve().parents[1]


def _cli(args, cwd):
    # This checkout's packages first, also where another copy is installed (a worktree beside an editable install).
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    return subprocess.run([sys.executable, "-m", "lgn_nas.cli", "search", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path))


def test_cli_conv_study_stores_the_recipe_and_refuses_bad_budgets(tmp_path):
    base = ["--space", "conv", "--epochs", "1", "--limit-train", "300", "--val-size", "200", "--limit-test", "200",
            "--no-progress", "--sampler-seed", "0", "--objectives", "acc", "--pruner", "sha", "--no-export",
            "--space-arg", "stages=[1,1]", "channels=[4,6]", "head_width=[20,40]", "relaxation=[\"softmax\"]",
            "--temperature-step", "epoch"]
    run = _cli(base + ["--trials", "2"], tmp_path)
    assert run.returncode == 0, run.stderr
    from search_spaces.storage import open_storage

    study = optuna.load_study(study_name="conv-mnist-acc", storage=open_storage(str(tmp_path / "lgn_nas_studies.log")))
    train = study.user_attrs["train"]
    assert (train["scheduler"], train["temperature_schedule"], train["temperature_start"], train["temperature_step"]) \
        == ("cosine", "cosine", 1.0, "epoch")  # the recipe, with the one flag given
    assert study.user_attrs["lr_range"] == [0.03, 0.3] and study.user_attrs["bounds"]["temperature_end"] == [0.03, 0.3]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(set(t.user_attrs["train_overrides"]) == {"lr", "temperature_schedule", "temperature_end"}
                        for t in done)
    bad = _cli(base + ["--trials", "1", "--max-raw-gates", "10", "--storage", str(tmp_path / "b.log")], tmp_path)
    assert bad.returncode == 2 and "max_raw_gates 10 is below the smallest genome of space 'conv'" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "b.log").exists()
    assert study.user_attrs["bounds"]["pool"] == [True, False]


def test_a_space_no_image_can_hold_is_refused_when_built():
    with pytest.raises(ValueError, match=r"stages: a 28x28 image holds at most 4 conv stages .* at least 5"):
        get_space("conv", stages=(5, 5), pool=(True,))
    get_space("conv", stages=(5, 5), pool=(True, False))  # unpooled stages keep the map: they fit
    with pytest.raises(ValueError, match=r"channel_growth: the smallest growth 3 over 3 stages from 4 channels"):
        get_space("conv", channels=(4, 30), channel_growth=(3, 4))
