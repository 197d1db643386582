"""Mix LGN blocks into ordinary timm models.

1. Replace a timm ResNet's classifier with a LogicBlock (float features -> bits -> logic -> class scores).
2. Use the registered hybrid ``lgn_hybrid_resnet18`` with another backbone and cut point.
Both train end to end; the logic part discretises into a netlist.

    python examples/hybrid_timm.py
"""
import numpy as np
import timm
import torch

import lgn_nas
from lgn_nas.layers import LogicBlock


def main() -> None:
    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))

    # 1. a timm backbone with its pooled features going into a logic block
    backbone = timm.create_model("resnet10t", num_classes=0)  # pooled features, no classifier
    head = LogicBlock(backbone.num_features, [2000, 1000], num_classes=10, group_tau=8.0, input_bits=2)
    model = torch.nn.Sequential(backbone, torch.nn.BatchNorm1d(backbone.num_features), head)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    netlist = lgn_nas.discretize(head)
    with torch.no_grad():
        features = model[1](backbone(x))
        assert np.array_equal(netlist.evaluate(features.numpy()), model(x).numpy())
    print(f"resnet10t + LogicBlock: loss {loss.item():.3f}, head circuit {netlist.num_gates} gates")

    # 2. the registered hybrid, backbone chosen by name, cut after the third stage
    hybrid = timm.create_model("lgn_hybrid_resnet18", backbone="resnet10t", feature_index=2,
                               head_widths=[2000, 1000])
    print(f"lgn_hybrid_resnet18(backbone=resnet10t): output {tuple(hybrid(x).shape)}, "
          f"{hybrid.flat_features} features into the logic head")


if __name__ == "__main__":
    main()
