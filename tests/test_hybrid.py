import numpy as np
import pytest
import torch
import timm

import lgn_nas
from lgn_nas.layers import LogicBlock, StraightThroughThermometer


def test_logic_block_as_an_ordinary_layer_returns_bits_or_scores():
    torch.manual_seed(0)
    bits_block = LogicBlock(32, [64, 48], num_classes=0)
    scores_block = LogicBlock(32, [64, 40], num_classes=4, group_tau=2.0)
    x = torch.randn(5, 2, 4, 4)
    assert bits_block(x).shape == (5, 48)
    assert set(bits_block.eval()(x).unique().tolist()) <= {0.0, 1.0}
    assert scores_block(x).shape == (5, 4)
    with pytest.raises(ValueError, match="expects 32 features per sample, got shape \\[5, 33\\]"):
        scores_block(torch.randn(5, 33))
    with pytest.raises(ValueError, match="num_classes=41 exceeds the last width 40"):
        LogicBlock(32, [64, 40], num_classes=41)
    uneven = LogicBlock(32, [64, 40], num_classes=3).eval()  # groups of 14, 13 and 13 outputs
    bits = uneven.classifier(uneven.layers(uneven.encoder(x)))
    expected = torch.stack([bits[:, :14].sum(1), bits[:, 14:27].sum(1), bits[:, 27:].sum(1)], 1)
    assert torch.equal(uneven(x), expected)
    hidden = uneven.layers(uneven.encoder(x))
    uneven.reset_classifier(0)  # timm's reset: the last layer goes, the block returns its hidden bits
    assert torch.equal(uneven(x), hidden)
    uneven.reset_classifier(6)
    assert uneven(x).shape == (5, 6)


def test_straight_through_thermometer_passes_gradients_inside_its_range():
    enc = StraightThroughThermometer(3, low=-1.0, high=1.0)
    x = torch.tensor([[-2.0, -0.6, 0.1, 0.6]], requires_grad=True)
    bits = enc(x)
    assert bits.detach().reshape(4, 3).tolist() == [[0, 0, 0], [0, 0, 0], [1, 1, 0], [1, 1, 1]]
    bits.sum().backward()
    assert x.grad[0, 0] == 0 and (x.grad[0, 1:] > 0).all()


def test_block_inside_a_cnn_trains_end_to_end_and_discretizes():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 4, 3, padding=1)
    block = LogicBlock(4 * 8 * 8, [200, 100], num_classes=2, group_tau=4.0, init="gaussian")
    net = torch.nn.Sequential(conv, block)
    x = torch.randn(16, 1, 8, 8)
    net(x).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    net.eval()
    netlist = lgn_nas.discretize(block)
    with torch.no_grad():
        features = conv(x)
        assert np.array_equal(netlist.evaluate(features.flatten(1).numpy()), net(x).numpy())


@pytest.mark.parametrize("name", ["lgn_hybrid_resnet18", "lgn_hybrid_mobilenetv3"])
def test_hybrid_models_discretize_their_logic_head(name):
    model = timm.create_model(name, head_widths=[300, 200], input_bits=2, seed=0)
    x = torch.rand(3, 3, 32, 32)
    model(x).mean().backward()
    backbone_grads = [p.grad for p in model.backbone.parameters()]
    assert all(g is not None for g in backbone_grads) and any(g.abs().sum() > 0 for g in backbone_grads)
    model.eval()
    netlist = lgn_nas.discretize(model)
    with torch.no_grad():
        assert np.array_equal(netlist.evaluate(model.head_input(x).numpy()), model(x).numpy())
    assert netlist.metadata["architecture"] == name


def test_hybrid_backbone_by_name_and_cut_point():
    model = timm.create_model("lgn_hybrid_resnet18", backbone="resnet10t", feature_index=2,
                              head_widths=[100, 50], in_chans=1, img_size=28, num_classes=5)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 5)
    assert model.num_features == model.backbone.feature_info.channels()[-1]
    assert len(model.feature_info) == 3  # the backbone's levels up to the cut
    with pytest.raises(ValueError, match="unknown backbone 'resnet9000'"):
        timm.create_model("lgn_hybrid_resnet18", backbone="resnet9000")


def test_training_library_scores_a_hybrid_through_its_head_netlist():
    from lgn_nas.train import TrainConfig, fit

    config = TrainConfig(model="lgn_hybrid_resnet18", dataset="mnist", epochs=1, batch_size=64, limit_train=512,
                         limit_test=256, val_size=128, lr=0.01,
                         model_kwargs=dict(backbone="resnet10t", head_widths=[200, 100], in_chans=1, img_size=28))
    result = fit(config)
    assert result.metrics["netlist_agrees"] is True
    assert 0.0 <= result.metrics["test_acc_discrete"] <= 1.0
