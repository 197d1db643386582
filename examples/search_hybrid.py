"""A tiny hybrid search: a timm backbone cut at a searched point feeding a searched logic head.

    python examples/search_hybrid.py

Uses the ``hybrid`` space (backbone, feature_index, head widths, bits, temperatures) on 2,000 MNIST
images so it finishes in a few minutes on a laptop CPU. The netlist of a hybrid covers the logic head;
it reads ``model.head_input(x)``.
"""
from __future__ import annotations

import search_spaces


def main() -> None:
    search_spaces.run_search(
        space="hybrid", dataset="mnist", trials=3, epochs=1, study_name="example-hybrid",
        objectives=("acc", "gates"),
        space_bounds={"backbone": ("resnet18",), "feature_index": (1, 2), "head_width": (100, 500)},
        train={"limit_train": 2000, "limit_test": 1000, "val_size": 1000, "batch_size": 64},
        out="search_hybrid_out")


if __name__ == "__main__":
    main()
