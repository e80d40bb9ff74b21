"""Classification metrics from predicted probabilities: accuracy, per-class ROC AUC, confusion.

The paper reports accuracy and one-vs-rest ROC AUC per jet class; both are computed here from the
same probability matrix so they always describe the same predictions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows whose arg-max class is the label (NaN for non-finite probabilities,
    e.g. a diverged model: their arg-max means nothing)."""
    probs = np.asarray(probs)
    if not len(y) or not np.all(np.isfinite(probs)):
        return float("nan")
    return float((probs.argmax(axis=1) == np.asarray(y)).mean())


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``m[i, j]`` = number of rows of true class i predicted as class j."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m


def roc_auc_per_class(probs: np.ndarray, y: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """One-vs-rest ROC AUC per class (NaN where a class is absent or the only one present)."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for k, name in enumerate(class_names):
        positive = np.asarray(y) == k
        if positive.all() or not positive.any() or not np.all(np.isfinite(probs[:, k])):
            out[str(name)] = float("nan")
        else:
            out[str(name)] = float(roc_auc_score(positive, probs[:, k]))
    return out


def classification_metrics(probs: np.ndarray, y: np.ndarray, class_names: Sequence[str]) -> dict:
    """All metrics of one split as JSON-ready Python values."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    aucs = roc_auc_per_class(probs, y, class_names)
    finite = [v for v in aucs.values() if np.isfinite(v)]
    return {
        "n": int(len(y)),
        "accuracy": accuracy(probs, y),
        "roc_auc": aucs,
        "roc_auc_macro": float(np.mean(finite)) if finite else float("nan"),
        "confusion_matrix": confusion_matrix(y, probs.argmax(axis=1), len(class_names)).tolist(),
    }
