"""ROC curves as a PNG, drawn on matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def plot_roc(probs: np.ndarray, y: np.ndarray, class_names: Sequence[str], path: str | os.PathLike,
             title: str = "ROC (test split)") -> None:
    """One-vs-rest ROC curve per class, signal efficiency vs background efficiency (log y)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import auc, roc_curve

    # A bare Figure on the Agg canvas: no pyplot state, no display, safe inside notebooks.
    fig = Figure(figsize=(5, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, name in enumerate(class_names):
        positive = np.asarray(y) == k
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, k])
        ax.plot(tpr, np.clip(fpr, 1e-4, 1.0), label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.set_yscale("log")
    ax.set_xlabel("signal efficiency (true positive rate)")
    ax.set_ylabel("background efficiency (false positive rate)")
    ax.set_xlim(0, 1)
    ax.set_ylim(1e-3, 1)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    from hqrun import atomic

    atomic.savefig(fig, path)
