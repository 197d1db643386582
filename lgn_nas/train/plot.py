"""Training-curve plot (matplotlib, Agg backend)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, List, Union

from .checkpoint import atomic_write_bytes

__all__ = ["plot_curves"]


def plot_curves(history: List[Dict[str, Any]], path: Union[str, Path], *, eval_split: str = "val") -> Path:
    """Loss (left) and accuracies (right) per epoch, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    left.plot(epochs, [h[f"{eval_split}_loss_relaxed"] for h in history], marker="o", label=f"{eval_split} loss (relaxed)")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    left.legend()
    right.plot(epochs, [h["train_acc"] for h in history], marker="o", label="train acc (as trained)")
    right.plot(epochs, [h[f"{eval_split}_acc_relaxed"] for h in history], marker="o", label=f"{eval_split} acc relaxed")
    right.plot(epochs, [h[f"{eval_split}_acc_discrete"] for h in history], marker="o", label=f"{eval_split} acc discrete")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue())
