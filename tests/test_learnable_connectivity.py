"""Learnable connectivity (issue 16, item 1): the op, the candidates, the layer, the models, every backend
of their discrete circuit, the pretrained compact form, the search space, and the refusals."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import timm
import torch

import lgn_nas
from lgn_nas import discretize
from lgn_nas.layers import LogicBlock, LogicDense, LogicSpec, functional
from lgn_nas.layers.backends import learnable_unavailable
from lgn_nas.layers.connectivity import (
    DEFAULT_CANDIDATES, make_candidates, make_connections,
)
from lgn_nas.layers.functional import logic_dense, logic_dense_learnable, logic_dense_learnable_plain
from lgn_nas.layers.parametrizations import INITS
from lgn_nas.layers.relaxations import RELAXATIONS

CC = shutil.which("gcc") or shutil.which("cc")


def _op_inputs(seed, batch=6, inputs=11, neurons=7, k=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, inputs, generator=g, dtype=dtype).requires_grad_()
    cand_a = torch.randint(0, inputs, (neurons, k), generator=g)
    cand_b = torch.randint(0, inputs, (neurons, k), generator=g)
    wa = torch.randn(neurons, k, generator=g, dtype=dtype).softmax(-1).requires_grad_()
    wb = torch.randn(neurons, k, generator=g, dtype=dtype).softmax(-1).requires_grad_()
    c = torch.randn(neurons, 4, generator=g, dtype=dtype).requires_grad_()
    return x, cand_a, cand_b, wa, wb, c


# ----------------------------------------------------------------------------- the op
def test_fused_op_equals_plain_op_in_value_and_gradient():
    x, cand_a, cand_b, wa, wb, c = _op_inputs(0)
    out = logic_dense_learnable(x, cand_a, cand_b, wa, wb, c)
    ref = logic_dense_learnable_plain(x, cand_a, cand_b, wa, wb, c)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, wa, wb, c), g)
    want = torch.autograd.grad(ref, (x, wa, wb, c), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda *t: logic_dense_learnable(t[0], cand_a, cand_b, *t[1:]), (x, wa, wb, c))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_op_in_lower_precision_matches_float64(dtype):
    x, cand_a, cand_b, wa, wb, c = (t.detach() for t in _op_inputs(4, batch=9, inputs=40, neurons=30, k=6))
    low = [t.to(dtype).requires_grad_() if t.is_floating_point() else t for t in (x, cand_a, cand_b, wa, wb, c)]
    high = [t.detach().to(torch.float64).requires_grad_() if t.is_floating_point() else t for t in low]
    out = logic_dense_learnable(*low)
    ref = logic_dense_learnable(*high)
    assert out.dtype == dtype
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=0.05, rtol=0.05)
    torch.testing.assert_close(out.double(), ref, **tol)
    out.float().sum().backward()
    ref.sum().backward()
    for lo, hi in zip(low, high):
        if lo.is_floating_point():
            assert lo.grad.dtype == dtype
            torch.testing.assert_close(lo.grad.double(), hi.grad, **tol)


def test_one_hot_wires_are_the_fixed_wiring_op():
    x, cand_a, cand_b, _, _, c = _op_inputs(1, k=5)
    pick_a, pick_b = torch.randint(0, 5, (7,)), torch.randint(0, 5, (7,))
    wa = torch.nn.functional.one_hot(pick_a, 5).double()
    wb = torch.nn.functional.one_hot(pick_b, 5).double()
    in_a, in_b = cand_a.gather(1, pick_a[:, None]).squeeze(1), cand_b.gather(1, pick_b[:, None]).squeeze(1)
    assert torch.equal(logic_dense_learnable(x, cand_a, cand_b, wa, wb, c), logic_dense(x, in_a, in_b, c))


def test_fused_op_saves_only_its_inputs():
    x, cand_a, cand_b, wa, wb, c = _op_inputs(2, batch=32, inputs=100, neurons=300, k=6, dtype=torch.float32)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        logic_dense_learnable(x, cand_a, cand_b, wa, wb, c)
    # x, the two candidate tensors, the two weight tensors and the coefficients: nothing batch x neurons
    assert sum(saved) == 32 * 100 + 4 * 300 * 6 + 300 * 4


def test_op_refuses_mismatched_shapes():
    x, cand_a, cand_b, wa, wb, c = _op_inputs(3)
    with pytest.raises(ValueError, match=r"wb must have the shape of cand_a \(7, 4\), got \(7, 3\)"):
        logic_dense_learnable(x, cand_a, cand_b, wa, wb[:, :3], c)
    with pytest.raises(ValueError, match=r"coefficients must have shape \(7, 4\)"):
        logic_dense_learnable(x, cand_a, cand_b, wa, wb, c[:5])
    with pytest.raises(ValueError, match="must be 2-D"):
        logic_dense_learnable(x[0], cand_a, cand_b, wa, wb, c)


# ----------------------------------------------------------------------------- candidates
@pytest.mark.parametrize("inputs,neurons,k", [(100, 500, 8), (30, 40, 20), (12, 9, 12), (50, 20, 1)])
def test_candidates_are_distinct_per_gate_input_and_start_from_a_random_wiring(inputs, neurons, k):
    cand_a, cand_b = make_candidates("learnable", inputs, neurons, k, generator=torch.Generator().manual_seed(0))
    assert cand_a.shape == cand_b.shape == (neurons, k) and cand_a.dtype == torch.int64
    for cand in (cand_a, cand_b):
        assert int(cand.min()) >= 0 and int(cand.max()) < inputs
        assert all(len(set(row)) == k for row in cand.tolist())  # no gate input lists an input twice
    assert not torch.equal(cand_a[:, 0], cand_b[:, 0]) and bool((cand_a[:, 0] != cand_b[:, 0]).all())
    if 2 * neurons >= inputs:  # column 0 is a "random" wiring: every input is read
        assert set(torch.cat([cand_a[:, 0], cand_b[:, 0]]).tolist()) == set(range(inputs))
    again = make_candidates("learnable", inputs, neurons, k, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], cand_a) and torch.equal(again[1], cand_b)


def test_candidates_cover_the_inputs_about_equally():
    cand_a, _ = make_candidates("learnable", 200, 1000, 8, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(cand_a.flatten(), minlength=200)
    assert int(counts.min()) >= 30 and int(counts.max()) <= 50  # 40 each on average


def test_fixed_schemes_have_one_candidate_their_wiring():
    a, b = make_candidates("random", 20, 30, generator=torch.Generator().manual_seed(2))
    ra, rb = make_connections("random", 20, 30, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a[:, 0], ra) and torch.equal(b[:, 0], rb) and a.shape == (30, 1)


@pytest.mark.parametrize("k,match", [(0, "candidates must be a positive int"), (-3, "candidates must be a positive int"),
                                     (True, "candidates must be a positive int"), (2.5, "got 2.5"),
                                     (21, r"candidates=21 exceeds the 20 inputs")])
def test_bad_candidate_counts_are_refused(k, match):
    with pytest.raises(ValueError, match=match):
        make_candidates("learnable", 20, 30, k)


@pytest.mark.parametrize("init", sorted(INITS))
def test_wires_start_uniform_and_keep_candidate_zero(init):
    layer = LogicDense(40, 30, connectivity="learnable", candidates=6, init=init)
    for wire, choice in zip((layer.wire_a, layer.wire_b), layer.wire_choice()):
        assert torch.equal(wire.detach(), torch.zeros(30, 6))
        assert torch.equal(choice, torch.zeros(30, dtype=torch.int64))
    assert torch.equal(layer.in_a, layer.cand_a[:, 0]) and torch.equal(layer.in_b, layer.cand_b[:, 0])


# ----------------------------------------------------------------------------- the layer
def test_layer_state_and_wiring():
    layer = LogicDense(50, 40, connectivity="learnable", candidates=5)
    assert layer.cand_a.shape == layer.cand_b.shape == layer.wire_a.shape == layer.wire_b.shape == (40, 5)
    assert set(layer.state_dict()) == {"cand_a", "cand_b", "weight", "wire_a", "wire_b"}
    assert {n for n, _ in layer.named_parameters()} == {"weight", "wire_a", "wire_b"}
    with torch.no_grad():
        layer.wire_a.copy_(torch.randn(40, 5))
        layer.wire_b.copy_(torch.randn(40, 5))
    choice_a, choice_b = layer.wire_choice()
    # in_a / in_b are the wires the gates read now: the argmax candidates, updated with the logits
    assert torch.equal(layer.in_a, layer.cand_a.gather(1, choice_a[:, None]).squeeze(1))
    assert torch.equal(layer.in_b, layer.cand_b.gather(1, choice_b[:, None]).squeeze(1))
    with torch.no_grad():
        layer.wire_a[torch.arange(40), (choice_a + 1) % 5] += 100.0
    assert torch.equal(layer.in_a, layer.cand_a.gather(1, ((choice_a + 1) % 5)[:, None]).squeeze(1))
    with pytest.raises(AttributeError):
        layer.in_c
    assert "connectivity='learnable', candidates=5" in repr(layer)
    assert LogicDense(50, 40, connectivity="learnable").num_candidates == DEFAULT_CANDIDATES
    fixed = LogicDense(50, 40)
    assert fixed.cand_a is None and fixed.wire_a is None and fixed.wire_choice() is None
    assert set(fixed.state_dict()) == {"in_a", "in_b", "weight"}


def test_a_seed_builds_the_same_layer():
    def build():
        return LogicDense(30, 20, connectivity="learnable", candidates=3, init="gaussian",
                          generator=torch.Generator().manual_seed(5))

    first, again = build(), build()
    assert torch.equal(first.weight, again.weight) and torch.equal(first.cand_a, again.cand_a)
    assert torch.equal(first.wire_a, again.wire_a) and torch.equal(first.wire_b, again.wire_b)
    other = LogicDense(30, 20, connectivity="learnable", candidates=3, init="gaussian",
                       generator=torch.Generator().manual_seed(6))
    assert not torch.equal(first.cand_a, other.cand_a)


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_layer_trains_its_wires_and_eval_is_the_fixed_op_on_the_argmax_wires(relaxation):
    torch.manual_seed(0)
    layer = LogicDense(24, 30, connectivity="learnable", candidates=4, relaxation=relaxation, init="gaussian",
                       backend="torch")
    x = torch.rand(16, 24)
    layer(x).square().sum().backward()
    for wire in (layer.wire_a, layer.wire_b):
        assert wire.grad is not None and wire.grad.abs().sum() > 0
    assert layer.weight.grad.abs().sum() > 0
    layer.eval()
    bits = (torch.rand(16, 24) > 0.5).float()
    in_a, in_b = layer.in_a, layer.in_b
    expected = logic_dense(bits, in_a, in_b, layer.coefficients())
    assert torch.equal(layer(bits), expected) and set(expected.unique().tolist()) <= {0.0, 1.0}


def test_hard_straight_through_training_forward_is_the_circuit():
    torch.manual_seed(1)
    layer = LogicDense(24, 30, connectivity="learnable", candidates=4, relaxation="hard_st", init="gaussian")
    bits = (torch.rand(16, 24) > 0.5).float()
    train_out = layer(bits)
    assert torch.equal(train_out.detach(), layer.eval()(bits))


def test_in_subset_limits_the_candidates():
    subset = [1, 4, 6, 9, 12, 13]
    layer = LogicDense(20, 30, connectivity="learnable", candidates=6, in_subset=subset)
    assert set(torch.cat([layer.cand_a, layer.cand_b]).unique().tolist()) == set(subset)
    with pytest.raises(ValueError, match=r"candidates=7 exceeds the 6 inputs this layer reads.*previous layer"):
        LogicDense(20, 30, connectivity="learnable", candidates=7, in_subset=subset)


def test_layer_refuses_bad_candidates_naming_the_value():
    with pytest.raises(ValueError, match=r"candidates=9 exceeds the 8 inputs this layer reads: expected 1 <= "
                                         r"candidates <= 8"):
        LogicDense(8, 4, connectivity="learnable", candidates=9)
    with pytest.raises(ValueError, match="candidates must be a positive int .* got 0"):
        LogicDense(8, 4, connectivity="learnable", candidates=0)
    with pytest.raises(ValueError, match="candidates=3 needs a learnable connectivity: connectivity 'unique'"):
        LogicDense(8, 4, connectivity="unique", candidates=3)


def test_backend_that_cannot_train_learnable_wiring_is_refused():
    reason = learnable_unavailable("tvm")
    assert learnable_unavailable("torch") is None and learnable_unavailable("auto") is None
    if reason is None:
        pytest.skip("this tvm_ops trains learnable wiring (its op is tested in the TVM tests)")
    with pytest.raises(ValueError, match=r"backend 'tvm' (cannot train connectivity='learnable'|is not available)"):
        LogicSpec(connectivity="learnable", backend="tvm")
    with pytest.raises(ValueError, match="backend 'tvm'"):
        timm.create_model("lgn_dense_s", depth=1, width=20, connectivity="learnable", backend="tvm")


def test_tvm_backend_agrees_with_torch_where_it_has_the_op():
    if learnable_unavailable("tvm") is not None:
        pytest.skip(f"no TVM op for learnable wiring here: {learnable_unavailable('tvm')}")
    torch.manual_seed(2)
    ref = LogicDense(64, 96, connectivity="learnable", candidates=5, init="gaussian", backend="torch")
    tvm = LogicDense(64, 96, connectivity="learnable", candidates=5, init="gaussian", backend="tvm")
    tvm.load_state_dict(ref.state_dict())
    x = torch.rand(40, 64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    out, out2 = ref(x), tvm(x2)
    torch.testing.assert_close(out2, out, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(out)
    out.backward(g)
    out2.backward(g)
    torch.testing.assert_close(x2.grad, x.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(tvm.wire_a.grad, ref.wire_a.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(tvm.wire_b.grad, ref.wire_b.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(tvm.weight.grad, ref.weight.grad, atol=1e-4, rtol=1e-4)


def test_torchscript_and_fx_compile_learnable_layers():
    torch.manual_seed(3)
    layer = LogicDense(20, 30, connectivity="learnable", candidates=3, init="gaussian")
    x = torch.rand(5, 20)
    scripted = torch.jit.script(layer)
    torch.testing.assert_close(scripted(x), layer(x))
    traced = torch.fx.symbolic_trace(layer)
    torch.testing.assert_close(traced(x), layer(x))
    layer.eval()
    scripted.eval()
    bits = (x > 0.5).float()
    assert torch.equal(scripted(bits), layer(bits))


# ----------------------------------------------------------------------------- models and every backend
MODELS = {
    "lgn_dense_s": dict(depth=3, width=[300, 200, 100], img_size=12, input_crop=8),
    "lgn_conv_mnist_s": dict(channels=[2, 4, 6], head_widths=[60, 40]),
    "lgn_hybrid_resnet18": dict(head_widths=[40, 30], feature_index=1),
}


def _random_learnable(name, candidates=5, **kwargs):
    model = timm.create_model(name, connectivity="learnable", candidates=candidates, seed=0, **MODELS[name], **kwargs)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LogicDense):
                module.wire_a.copy_(torch.randn(module.wire_a.shape, generator=g) * 3)
                module.wire_b.copy_(torch.randn(module.wire_b.shape, generator=g) * 3)
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * 3)
    return model.eval()


INPUT_SHAPES = {"lgn_dense_s": (1, 12, 12), "lgn_conv_mnist_s": (1, 28, 28), "lgn_hybrid_resnet18": (3, 32, 32)}


def _input(name, batch=64, seed=0):
    return torch.rand(batch, *INPUT_SHAPES[name], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_family_with_learnable_wiring_equals_its_netlist(name):
    model = _random_learnable(name)
    layers = [m for m in model.modules() if isinstance(m, LogicDense)]
    assert layers and all(m.learnable and m.num_candidates == 5 for m in layers)
    assert model.logic_spec.candidates == 5
    netlist = discretize(model)
    simple = discretize(model, simplify=True)
    x = _input(name)
    with torch.no_grad():
        expected = model(x).numpy()
        head_input = model.head_input(x).numpy() if isinstance(model, lgn_nas.interfaces.HasLogicHead) else x.numpy()
    assert np.array_equal(netlist.evaluate(head_input), expected)
    assert np.array_equal(simple.evaluate(head_input), expected)


def test_logic_block_with_learnable_wiring_equals_its_netlist():
    torch.manual_seed(4)
    block = LogicBlock(12, [40, 30], num_classes=3, connectivity="learnable", candidates=4, init="gaussian").eval()
    x = torch.randn(50, 12)
    with torch.no_grad():
        assert np.array_equal(discretize(block).evaluate(x.numpy()), block(x).numpy())


def _tiny_dense():
    return _random_learnable("lgn_dense_s", candidates=6)


def test_learnable_net_through_the_c_export_and_verilog_and_tvm(tmp_path):
    model = _tiny_dense()
    netlist = discretize(model)
    x = _input("lgn_dense_s", batch=70, seed=3)
    bits = netlist.encode(x.numpy())
    counts = netlist.evaluate_bits(bits)
    with torch.no_grad():
        assert np.array_equal(counts.astype(np.float32) / np.float32(model.group_tau), model(x).numpy())
    ran = []
    if CC is not None:
        from lgn_nas.export import to_c

        path = to_c(netlist, tmp_path / "net.c")
        subprocess.run([CC, "-std=c99", "-O1", str(path), "-o", str(tmp_path / "net")], check=True,
                       capture_output=True, text=True)
        text = "\n".join("".join("1" if b else "0" for b in row) for row in bits) + "\n"
        out = subprocess.run([str(tmp_path / "net")], input=text, capture_output=True, text=True, check=True).stdout
        got = np.array([[int(v) for v in line.split()] for line in out.strip().splitlines()], dtype=np.int64)
        assert np.array_equal(got, counts)
        ran.append("c")
    if shutil.which("iverilog") and shutil.which("vvp"):
        from lgn_nas.export import to_verilog, write_testbench

        to_verilog(netlist, tmp_path / "net.v")
        write_testbench(netlist, tmp_path / "tb.v", bits[:30])
        subprocess.run(["iverilog", "-g2001", "-o", str(tmp_path / "sim"), str(tmp_path / "net.v"),
                        str(tmp_path / "tb.v")], check=True, capture_output=True, text=True)
        sim = subprocess.run(["vvp", "-n", str(tmp_path / "sim")], check=True, capture_output=True, text=True).stdout
        assert "PASS 30 vectors" in sim, sim
        ran.append("verilog")
    try:
        import tvm  # noqa: F401
    except ImportError:
        pass
    else:
        import tvm_ops

        compiled = tvm_ops.compile_netlist(netlist, threads=1)
        assert np.array_equal(compiled.counts(x.numpy()), counts)
        assert np.array_equal(compiled(x.numpy()), netlist.evaluate(x.numpy()))
        ran.append("tvm")
    if not ran:
        pytest.skip("no C compiler, iverilog or TVM here")


def test_scripted_model_equals_the_model_in_train_and_eval_mode():
    model = _tiny_dense()
    x = _input("lgn_dense_s", batch=16)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        assert torch.equal(scripted(x), model(x))
        model.train()
        scripted.train()
        torch.testing.assert_close(scripted(x), model(x))


def test_state_dict_round_trip_rebuilds_the_same_circuit(tmp_path):
    model = _tiny_dense()
    again = timm.create_model("lgn_dense_s", connectivity="learnable", candidates=6, **MODELS["lgn_dense_s"]).eval()
    again.load_state_dict(model.state_dict())
    x = _input("lgn_dense_s")
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert discretize(again) == discretize(model)


def test_compact_pretrained_form_keeps_the_kept_wires():
    from lgn_nas.pretrained import compact_state_dict, expand_state_dict, soften_gate_logits

    model = _tiny_dense()
    compact = compact_state_dict(model)
    assert not any(key.endswith(("wire_a", "wire_b")) for key in compact)
    assert compact["blocks.0.wire_a_ids"].dtype == compact["blocks.0.wire_b_ids"].dtype == torch.uint8
    assert compact["blocks.0.wire_a_ids"].shape == (300,)
    assert compact["blocks.0.cand_a"].dtype == torch.uint8  # 64 input bits
    fresh = timm.create_model("lgn_dense_s", connectivity="learnable", candidates=6, **MODELS["lgn_dense_s"])
    fresh.load_state_dict(expand_state_dict(compact, fresh))
    fresh.eval()
    x = _input("lgn_dense_s")
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
        fresh.train()
        assert torch.equal(fresh(x), model(x))  # margin 128: the relaxed forward is the circuit too
    soften_gate_logits(fresh)
    assert float(fresh.blocks[0].wire_a.detach().max()) == pytest.approx(5.0)
    assert discretize(fresh.eval()) == discretize(model)
    fixed = timm.create_model("lgn_dense_s", **MODELS["lgn_dense_s"])
    with pytest.raises(ValueError, match="wire ids for 'blocks.0', which is not a learnable logic layer"):
        expand_state_dict(compact, fixed)


# ----------------------------------------------------------------------------- search
def test_dense_space_searches_the_candidate_count():
    import optuna

    from search_spaces import get_space
    from search_spaces.genome import GenomeError, build_model, genome_schema

    assert genome_schema("LogicDenseNet")["candidates"] == (int, type(None))
    space = get_space("dense", connectivity=["learnable", "random"], candidates=[3, 12], width=[40, 80], depth=[2, 2])
    seen = set()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        trial = study.ask()
        genome = space(trial)
        if genome["connectivity"] == "learnable":
            assert 3 <= genome["candidates"] <= 12
            seen.add(genome["candidates"])
            model = build_model(genome)
            assert all(m.num_candidates == genome["candidates"] for m in model.modules() if isinstance(m, LogicDense))
        else:
            assert "candidates" not in genome and "candidates" not in trial.params
        study.tell(trial, 0.5)
    assert len(seen) > 1
    with pytest.raises(GenomeError, match=r"genome key 'candidates': 20 is outside the space's bound candidates=\[3, 12\]"):
        space.check({"connectivity": "learnable", "candidates": 20})
    with pytest.raises(ValueError, match=r"candidates: expected 1 <= low <= high, got \(0, 4\)"):
        get_space("dense", candidates=[0, 4])


def test_space_caps_the_candidates_at_the_narrowest_layer():
    import optuna

    from search_spaces import get_space
    from search_spaces.genome import build_model

    space = get_space("dense", connectivity=["learnable"], candidates=[16, 64], width=[20, 30], depth=[2, 3],
                      width_mode=["per_layer"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        trial = study.ask()
        genome = space(trial)
        assert genome["candidates"] <= min(genome["width"][:-1])
        build_model(genome)
        study.tell(trial, 0.5)


def test_conv_space_with_learnable_head():
    import optuna

    from search_spaces import get_space
    from search_spaces.genome import build_model

    space = get_space("conv", connectivity=["learnable"], candidates=[2, 8], stages=[1, 2], channels=[4, 8],
                      head_width=[40, 80])
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2)).ask()
    genome = space(trial)
    model = build_model(genome)
    heads = [m for m in model.modules() if isinstance(m, LogicDense)]
    assert heads and all(m.learnable and m.num_candidates == genome["candidates"] for m in heads)


# ----------------------------------------------------------------------------- training
def test_wire_logits_are_undecayed_and_annealed_with_the_gates():
    from lgn_nas.models._optim import gate_logit_names
    from lgn_nas.train.build import make_param_groups

    model = timm.create_model("lgn_dense_s", depth=2, width=60, connectivity="learnable", candidates=3)
    names = gate_logit_names(model)
    assert {"blocks.0.wire_a", "blocks.0.wire_b", "classifier.wire_a", "classifier.wire_b"} <= names
    assert names == model.no_weight_decay()
    groups = make_param_groups(model, weight_decay=0.1)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert not decayed & {id(p) for p in model.parameters()}
    model.set_temperature(0.25)
    layer = model.blocks[0].train()
    x = torch.rand(4, 784)
    with torch.no_grad():  # what the layer mixes at temperature 0.25
        layer.wire_a.copy_(torch.randn(layer.wire_a.shape))
        wa = torch.softmax(layer.wire_a / 0.25, dim=-1)
        wb = torch.softmax(layer.wire_b / 0.25, dim=-1)
        expected = logic_dense_learnable(x, layer.cand_a, layer.cand_b, wa, wb, layer.coefficients())
        assert torch.allclose(layer(x), expected, atol=1e-6)


def test_raw_gate_count_of_a_learnable_genome_is_exact():
    from search_spaces.genome import build_model, raw_gate_count, validate_genome

    genome = validate_genome({"model": "lgn_dense_s", "depth": 3, "width": [120, 90, 60], "connectivity": "learnable",
                              "candidates": 4, "img_size": 12, "seed": 0})
    assert raw_gate_count(genome) == discretize(build_model(genome).eval()).num_gates == 270


PREFIX = "model."  # of the model's tensors in a training checkpoint


def test_cli_trains_learnable_wiring_and_resume_restores_the_wire_logits(tmp_path, capsys, mnist_available):
    from safetensors.torch import load_file

    from lgn_nas.cli import main
    from lgn_nas.netlist import load_netlist

    tiny = ["--model-kwargs", "depth=2", "width=100", "init=gaussian", "connectivity=learnable", "candidates=4",
            "backend=torch", "--limit-train", "200", "--limit-test", "200", "--val-size", "100",
            "--batch-size", "50", "--lr", "0.05", "--no-progress"]
    full, split = tmp_path / "full", tmp_path / "split"
    assert main(["train", "lgn_dense_s", "--out", str(full), "--epochs", "2", *tiny]) == 0
    assert main(["train", "lgn_dense_s", "--out", str(split), "--epochs", "1", *tiny]) == 0
    assert main(["train", "lgn_dense_s", "--out", str(split), "--epochs", "2", "--resume", *tiny]) == 0
    states = [load_file(str(run / "checkpoint.safetensors")) for run in (full, split)]
    wires = sorted(key for key in states[0] if key.endswith(("wire_a", "wire_b")))
    assert wires == [f"{PREFIX}{layer}.{wire}" for layer in ("blocks.0", "classifier") for wire in ("wire_a", "wire_b")]
    for key in wires:
        assert torch.equal(states[0][key], states[1][key]), key
    assert not torch.equal(states[0][wires[0]], torch.zeros_like(states[0][wires[0]]))  # the wires trained
    # the run's netlist is the trained model's circuit
    model = timm.create_model("lgn_dense_s", depth=2, width=100, init="gaussian", connectivity="learnable",
                              candidates=4)
    model.load_state_dict({k[len(PREFIX):]: v for k, v in states[0].items() if k.startswith(PREFIX)})
    x = torch.rand(32, 1, 28, 28)
    with torch.no_grad():
        assert np.array_equal(load_netlist(full / "netlist.lgn").evaluate(x.numpy()), discretize(model.eval(),
                              simplify=True).evaluate(x.numpy()))
