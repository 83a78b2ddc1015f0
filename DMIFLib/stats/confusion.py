"""Confusion-matrix metrics at a cut-off, with NaN (not an exception) where a ratio has no denominator."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score

METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "auc")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


def as_binary_labels(y_true) -> np.ndarray:
    """``y_true`` as an int array of 0/1; raises ValueError for other values."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    y = y.astype(float)
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError(f"labels must be 0/1, got values {sorted(set(np.unique(y).tolist()))[:5]}")
    return y.astype(int)


def confusion_counts(y_true, y_pred) -> dict[str, int]:
    """TP, FP, TN, FN for 0/1 labels and 0/1 predictions (1 = positive, e.g. 1p/19q co-deleted)."""
    tn, fp, fn, tp = confusion_matrix(as_binary_labels(y_true), as_binary_labels(y_pred), labels=[0, 1]).ravel()
    return {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}


def binary_metrics(y_true, score, cutoff: float) -> dict:
    """Accuracy, sensitivity, specificity, PPV, NPV and ROC AUC of ``score`` thresholded at ``cutoff``.

    A case is called positive when ``score >= cutoff``. PPV = TP/(TP+FP), NPV = TN/(TN+FN). A ratio whose
    denominator is zero (e.g. sensitivity with no positive case) and the AUC when one class is absent are NaN.
    Returns those six plus ``cutoff``, ``n`` (number of cases), ``n_pos``, ``n_neg`` and the counts tp/fp/tn/fn.
    """
    y = as_binary_labels(y_true)
    s = np.asarray(score, dtype=float)
    if s.shape != y.shape:
        raise ValueError(f"score shape {s.shape} does not match labels shape {y.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    c = confusion_counts(y, (s >= cutoff).astype(int))
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    n_pos, n_neg = tp + fn, tn + fp
    auc = float(roc_auc_score(y, s)) if n_pos and n_neg else float("nan")
    return {
        "accuracy": _ratio(tp + tn, len(y)),
        "sensitivity": _ratio(tp, n_pos),
        "specificity": _ratio(tn, n_neg),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "auc": auc,
        "cutoff": float(cutoff),
        "n": len(y),
        "n_pos": n_pos,
        "n_neg": n_neg,
        **c,
    }
