"""Train a small dense LGN on random bits for a few steps, discretise it, and check the circuit.

    python examples/train_and_discretize.py
"""
import numpy as np
import timm
import torch

import lgn_nas


def main() -> None:
    torch.manual_seed(0)
    model = timm.create_model("lgn_dense_s", depth=3, width=[400, 400, 200], img_size=8, num_classes=2,
                              relaxation="softmax", init="gaussian", group_tau=5.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.rand(512, 1, 8, 8)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()  # top half brighter than bottom?
    for step in range(100):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    netlist = lgn_nas.discretize(model)
    small, stats = netlist.simplify()
    with torch.no_grad():
        eval_scores = model(x).numpy()
    assert np.array_equal(small.evaluate(x.numpy()), eval_scores)
    print(f"loss {loss.item():.3f}; discrete accuracy {lgn_nas.accuracy(torch.from_numpy(eval_scores), y):.3f}; "
          f"gates {stats['gates_before']} -> {stats['gates_after']} after simplification; depth {small.logic_depth}")


if __name__ == "__main__":
    main()
