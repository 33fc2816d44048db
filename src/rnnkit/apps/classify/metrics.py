"""Classification scores from true and predicted class indices (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: row = true class, column = predicted class."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support of every class (0 where undefined, as scikit-learn's default)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def scores(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy (mean recall over the classes present), macro F1 (over the classes
    present in the truth or the predictions), the confusion matrix and the per-class report."""
    cm = confusion(y_true, y_pred, len(classes))
    pc = per_class(cm)
    present = pc["support"] > 0
    seen = present | (cm.sum(0) > 0)
    report = {c: {"precision": float(pc["precision"][i]), "recall": float(pc["recall"][i]),
                  "f1": float(pc["f1"][i]), "support": int(pc["support"][i])} for i, c in enumerate(classes)}
    return {"accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
            "balanced_accuracy": float(pc["recall"][present].mean()) if present.any() else float("nan"),
            "macro_f1": float(pc["f1"][seen].mean()) if seen.any() else float("nan"),
            "cases": len(y_true), "confusion": cm.tolist(), "per_class": report}
