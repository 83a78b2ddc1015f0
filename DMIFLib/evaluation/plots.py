"""Figures for the report, returned as PNG bytes so the HTML page can inline them.

Uses matplotlib's object-oriented ``Figure`` (rendered by the Agg canvas), not pyplot: no global backend or
figure state, so it works headless and inside Slicer alike.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from DMIFLib.stats import auc_ci


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def roc_figure(y_true, scores: Mapping[str, np.ndarray], title: str, delong_ci: bool = True) -> bytes:
    """ROC curves of several scores (n,) for the same 0/1 labels (n,); the legend gives the AUC, with its DeLong
    95% CI when ``delong_ci`` (only valid for independent cases, i.e. patient level)."""
    y = np.asarray(y_true).astype(int)
    fig = Figure(figsize=(6, 6.2 + 0.17 * len(scores)))
    ax = fig.subplots()
    styles = ("-", "--", "-.", ":")
    for i, (name, score) in enumerate(scores.items()):
        fpr, tpr, _ = roc_curve(y, score)
        if delong_ci and min(y.sum(), len(y) - y.sum()) >= 2:
            auc, low, high = auc_ci(y, score)
            label = f"{name}: AUC {auc:.3f} [{low:.3f}, {high:.3f}]"
        else:
            label = f"{name}: AUC {roc_auc_score(y, score):.3f}"
        ax.plot(fpr, tpr, lw=1.5, ls=styles[(i // 10) % len(styles)], label=label)
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False)
    return _png(fig)


def history_figure(rows: Sequence[Mapping[str, str]], title: str = "Training curves") -> bytes:
    """Training / validation loss and validation AUC per epoch, one line per stage (rows of history.tsv)."""
    stages = list(dict.fromkeys(r.get("stage", "fit") for r in rows))
    fig = Figure(figsize=(11, 4.2 + 0.09 * len(stages)))
    ax_loss, ax_auc = fig.subplots(1, 2)

    def values(part, key):
        return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in part])

    for i, stage in enumerate(stages):
        part = [r for r in rows if r.get("stage", "fit") == stage]
        epoch, color = values(part, "epoch"), f"C{i % 10}"
        style = ("-", "--", "-.", ":")[(i // 10) % 4]
        ax_loss.plot(epoch, values(part, "loss"), color=color, ls=style, marker=".", label=f"{stage} (train)")
        if "val_loss" in part[0]:
            ax_loss.plot(epoch, values(part, "val_loss"), color=color, ls=style, alpha=0.45, marker="x")
        if "val_auc" in part[0]:
            ax_auc.plot(epoch, values(part, "val_auc"), color=color, ls=style, marker=".", label=stage)
    ax_loss.set(title="loss (dots: training, faint crosses: validation)", xlabel="epoch", ylabel="BCE")
    ax_auc.set(title="validation AUC (slice level)", xlabel="epoch", ylim=(0, 1.02))
    ax_loss.legend(fontsize=7, loc="upper center", bbox_to_anchor=(1.1, -0.14), ncol=3, frameon=False)
    fig.suptitle(title)
    return _png(fig)


def tsne_figure(embeddings: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """One scatter panel per model: ``{model: (xy (N, 2), labels (N,) 0/1)}``; class 1 = marker present."""
    n = len(embeddings)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(4 * cols, 3.8 * rows), layout="constrained")
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
    return _png(fig)
