"""Patient-clustered bootstrap confidence intervals for slice-level metrics.

Slices of one patient are not independent, so the resampling unit is the patient: each replicate draws patients
with replacement (separately within each class, so both classes stay present) and keeps all their slices.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from DMIFLib.stats.confusion import METRIC_NAMES


def _ratio(num: int, den: int) -> float:
    return num / den if den > 0 else float("nan")


def replicate_metrics(y: np.ndarray, s: np.ndarray, cutoff: float) -> dict[str, float]:
    """The ``METRIC_NAMES`` of :func:`~DMIFLib.stats.binary_metrics` without input checks (bootstrap inner loop).

    AUC by the Mann–Whitney rank sum (ties 1/2); NaN where a denominator is zero.
    """
    pred = s >= cutoff
    pos = y == 1
    n_pos = int(pos.sum())
    n_neg = len(y) - n_pos
    tp = int((pred & pos).sum())
    fp = int(pred.sum()) - tp
    tn = n_neg - fp
    fn = n_pos - tp
    auc = float("nan")
    if n_pos and n_neg:
        auc = (rankdata(s)[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return {"accuracy": _ratio(tp + tn, len(y)), "sensitivity": _ratio(tp, n_pos), "specificity": _ratio(tn, n_neg),
            "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn), "auc": float(auc)}


def cluster_bootstrap_ci(
    y_true,
    score,
    groups,
    cutoff: float,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile (1 - alpha) CIs of each metric in ``METRIC_NAMES``, resampling whole ``groups`` (patients).

    ``y_true``, ``score`` and ``groups`` are (n_slices,); a patient's slices must share one label.
    Returns ``{metric: (low, high)}``; replicates where a metric is NaN are left out of its interval.
    """
    y = np.asarray(y_true).astype(int)
    s = np.asarray(score, dtype=float)
    g = np.asarray(groups)
    if not (y.shape == s.shape == g.shape):
        raise ValueError(f"labels {y.shape}, scores {s.shape} and groups {g.shape} must have the same shape")
    ids, inverse = np.unique(g, return_inverse=True)
    patient_label = np.zeros(len(ids), dtype=int)
    for i in range(len(ids)):
        labels = np.unique(y[inverse == i])
        if len(labels) != 1:
            raise ValueError(f"patient {ids[i]!r} has slices with different labels")
        patient_label[i] = labels[0]
    members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    by_class = [np.flatnonzero(patient_label == c) for c in (0, 1)]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in METRIC_NAMES}
    for _ in range(n_boot):
        chosen = np.concatenate([rng.choice(pool, size=len(pool), replace=True) for pool in by_class if len(pool)])
        idx = np.concatenate([members[p] for p in chosen])
        metrics = replicate_metrics(y[idx], s[idx], cutoff)
        for name in METRIC_NAMES:
            samples[name].append(metrics[name])
    out = {}
    for name, values in samples.items():
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        out[name] = (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))) if v.size else (
            float("nan"), float("nan"))
    return out
