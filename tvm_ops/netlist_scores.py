"""What every compiled netlist derives from its float32 scores: the integer counts and the predictions."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ScoredNetlist"]


class ScoredNetlist:
    """Base of the compiled netlists (TVM and native): ``__call__`` returns float32 scores
    ``count / tau`` of shape (B, num_classes); ``counts`` and ``predict`` follow from them."""

    tau: float

    def __call__(self, x: Any) -> np.ndarray:
        raise NotImplementedError

    def counts(self, x: Any) -> np.ndarray:
        """Int64 per-class counts (B, num_classes), as ``netlist.evaluate_bits(netlist.encode(x))``."""
        scores = self(x)
        # scores = float32(count) / float32(tau) is within half an ulp of count / tau: rounding is exact.
        return np.rint(scores.astype(np.float64) * np.float64(np.float32(self.tau))).astype(np.int64)

    def predict(self, x: Any) -> np.ndarray:
        """Predicted class per sample (argmax of the scores, ties to the lowest class), int64 (B,)."""
        return self(x).argmax(axis=1).astype(np.int64)
