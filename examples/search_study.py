"""A two-objective architecture search from Python (accuracy vs gates), on the default journal storage.

    python examples/search_study.py [--trials 6]

Builds the ``dense`` space with small bounds, runs (or resumes) the study, prints the Pareto table and
exports the most accurate Pareto trial to ``search_out/best``.
"""
from __future__ import annotations

import argparse

import search_spaces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--storage", default=None, help="default: ./lgn_nas_studies.log")
    args = parser.parse_args()
    study = search_spaces.run_search(
        space="dense", dataset="mnist", trials=args.trials, epochs=1, storage=args.storage,
        study_name="example-dense", objectives=("acc", "gates"),
        space_bounds={"depth": (2, 3), "width": (200, 1500), "relaxation": ("softmax",)},
        train={"limit_train": 10000}, max_gates=24000, out="search_out")
    best = search_spaces.best_trial(study)
    if best is not None:
        print("best genome:", best.user_attrs["genome"])


if __name__ == "__main__":
    main()
