"""The confusion matrix as a PNG: true class down, predicted class across, counts in the cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_confusion(path: Path, cm: np.ndarray, classes: list[str], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from rnnkit.io.atomic import save_figure_atomic

    n = len(classes)
    size = min(12.0, 2.5 + 0.5 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    names = [c if len(c) <= 14 else c[:13] + "…" for c in classes]
    ax.set_xticks(range(n), names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.tight_layout()
    out = save_figure_atomic(fig, path)
    plt.close(fig)
    return out
