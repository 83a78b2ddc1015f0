"""DeLong's nonparametric AUC variance, confidence interval and paired test (DeLong et al., Biometrics 1988).

Uses the placement values of Sun & Xu (IEEE SPL 2014) computed from mid-ranks, so ties count 1/2, like pROC's
``roc(..., direction = "<")``: a higher score means "more likely positive".
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata


def _split(y_true, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(float)
    if y.ndim != 1 or not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError("labels must be a 1-D array of 0/1")
    if scores.shape[-1] != y.shape[0]:
        raise ValueError(f"{scores.shape[-1]} scores for {y.shape[0]} labels")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    if pos.shape[1] < 2 or neg.shape[1] < 2:
        raise ValueError(f"DeLong needs at least 2 positive and 2 negative cases, got {pos.shape[1]} and "
                         f"{neg.shape[1]}")
    return pos, neg


def delong_placements(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs (k,), positive placements V10 (k, m) and negative placements V01 (k, n) for k score rows.

    ``scores`` is (n_cases,) or (k, n_cases); m positives, n negatives.
    """
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    pos, neg = _split(y_true, s)
    m, n = pos.shape[1], neg.shape[1]
    r_pos = np.apply_along_axis(rankdata, 1, pos)
    r_neg = np.apply_along_axis(rankdata, 1, neg)
    r_all = np.apply_along_axis(rankdata, 1, np.concatenate([pos, neg], axis=1))
    v10 = (r_all[:, :m] - r_pos) / n          # fraction of negatives below each positive (ties 1/2)
    v01 = 1.0 - (r_all[:, m:] - r_neg) / m    # fraction of positives above each negative
    return v10.mean(axis=1), v10, v01


def delong_covariance(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance matrix (k, k)."""
    auc, v10, v01 = delong_placements(y_true, scores)
    cov = np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]
    return auc, cov


def auc_variance(y_true, score) -> float:
    """DeLong variance of the ROC AUC of one score."""
    return float(delong_covariance(y_true, score)[1][0, 0])


def auc_ci(y_true, score, alpha: float = 0.05) -> tuple[float, float, float]:
    """(AUC, low, high): the ROC AUC with its DeLong (1 - alpha) confidence interval, clipped to [0, 1]."""
    auc, cov = delong_covariance(y_true, score)
    half = norm.ppf(1 - alpha / 2) * np.sqrt(cov[0, 0])
    return float(auc[0]), float(max(auc[0] - half, 0.0)), float(min(auc[0] + half, 1.0))


def delong_test(y_true, score_a, score_b, alpha: float = 0.05) -> tuple[float, float, float, float]:
    """Paired DeLong test of AUC(a) = AUC(b) on the same cases: (z, two-sided p, diff_low, diff_high).

    The difference is AUC(a) - AUC(b); (diff_low, diff_high) is its (1 - alpha) confidence interval, clipped to
    [-1, 1].
    z and p are NaN when both scores give identical placements (zero variance of the difference).
    """
    auc, cov = delong_covariance(y_true, np.vstack([np.asarray(score_a, float), np.asarray(score_b, float)]))
    diff = auc[0] - auc[1]
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    if var <= 0:
        return float("nan"), float("nan"), float(diff), float(diff)
    se = np.sqrt(var)
    z = diff / se
    half = norm.ppf(1 - alpha / 2) * se
    return float(z), float(2 * norm.sf(abs(z))), float(max(diff - half, -1.0)), float(min(diff + half, 1.0))


def bonferroni(p_values) -> np.ndarray:
    """Bonferroni-corrected p-values, min(p * k, 1) for k comparisons; NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    return np.minimum(p * p.size, 1.0)
