"""Figures for the report, returned as PNG bytes so the HTML page can inline them.

Uses matplotlib's object-oriented ``Figure`` (rendered by the Agg canvas), not pyplot: no global backend or
figure state, so it works headless and inside Slicer alike.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from DMIFLib.stats import auc_ci


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def roc_figure(y_true, scores: Mapping[str, np.ndarray], title: str) -> bytes:
    """ROC curves of several scores (n,) for the same 0/1 labels (n,); the legend gives AUC and DeLong 95% CI."""
    y = np.asarray(y_true).astype(int)
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(y, score)
        try:
            auc, low, high = auc_ci(y, score)
            label = f"{name}: AUC {auc:.3f} [{low:.3f}, {high:.3f}]"
        except ValueError:  # fewer than 2 cases in a class: no DeLong CI
            label = name
        ax.plot(fpr, tpr, lw=1.6, label=label)
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def history_figure(rows: Sequence[Mapping[str, str]], title: str = "Training curves") -> bytes:
    """Training / validation loss and validation AUC per epoch, one panel pair per stage (rows of history.tsv)."""
    stages = list(dict.fromkeys(r.get("stage", "fit") for r in rows))
    fig = Figure(figsize=(10, 2.6 * len(stages)))
    axes = fig.subplots(len(stages), 2, squeeze=False)

    def values(part, key):
        return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in part])

    for (ax_loss, ax_auc), stage in zip(axes, stages, strict=True):
        part = [r for r in rows if r.get("stage", "fit") == stage]
        epoch = values(part, "epoch")
        ax_loss.plot(epoch, values(part, "loss"), marker=".", label="train loss")
        if "val_loss" in part[0]:
            ax_loss.plot(epoch, values(part, "val_loss"), marker=".", label="validation loss")
        ax_loss.set(title=f"{stage}: loss", xlabel="epoch", ylabel="BCE")
        ax_loss.legend(fontsize=7)
        if "val_auc" in part[0]:
            ax_auc.plot(epoch, values(part, "val_auc"), marker=".", color="C2")
        ax_auc.set(title=f"{stage}: validation AUC", xlabel="epoch", ylim=(0, 1.02))
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def tsne_figure(embeddings: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "t-SNE of features") -> bytes:
    """One scatter panel per model: ``{model: (xy (N, 2), labels (N,) 0/1)}``; class 1 = marker present."""
    n = len(embeddings)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(4 * cols, 3.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (name, (xy, labels)) in zip(axes.ravel(), embeddings.items(), strict=False):
        labels = np.asarray(labels).astype(int)
        for value, color, text in ((0, "#7b3294", "label 0"), (1, "#1b9e77", "label 1")):
            pts = xy[labels == value]
            ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.7, color=color, label=text)
        ax.set(title=name, xticks=[], yticks=[])
        ax.legend(fontsize=7, markerscale=1.5)
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)
