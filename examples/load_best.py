"""Load the best trial that ``lgn-nas search`` exported, with timm, and check it against its netlist.

    python examples/load_best.py [search_out/best]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import timm
import torch

import lgn_nas  # noqa: F401  (registers the lgn_* architectures with timm before loading)
from lgn_nas.data import load_dataset
from lgn_nas.netlist import load_netlist


def main() -> None:
    best = Path(sys.argv[1] if len(sys.argv) > 1 else "search_out/best")
    model = timm.create_model(f"local-dir:{best}", pretrained=True).eval()
    netlist = load_netlist(best / "netlist.lgn")
    print("genome:", json.loads((best / "genome.json").read_text()))
    print(netlist.summary())
    x, y = load_dataset("mnist", val_size=0).test
    with torch.no_grad():
        scores = model(x).numpy() if not hasattr(model, "head_input") else None
    net_in = x.numpy() if scores is not None else model.head_input(x).detach().numpy()
    net_scores = netlist.evaluate(net_in)
    print(f"discrete test accuracy: {(net_scores.argmax(1) == y.numpy()).mean() * 100:.2f}% "
          f"({netlist.num_gates} gates, logic depth {netlist.logic_depth})")
    if scores is not None:
        assert np.allclose(scores, net_scores, atol=1e-5), "model and netlist disagree"
        print("timm model and netlist agree on all test images")


if __name__ == "__main__":
    main()
