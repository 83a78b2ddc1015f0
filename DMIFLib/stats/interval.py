"""A per-patient probability interval from an ensemble of models (e.g. the k fold models of a cross-validation).

Probabilities are arrays (K models, n patients). Prediction uses :func:`logit_half_width` around its own
p_fused (:mod:`DMIFLib.trust.interval`); docs/trust.md has the measured coverage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, logit
from scipy.stats import t as student_t


def ensemble_interval(probabilities: Any, level: float = 0.9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p, low, high)``, each (n,): the models' mean probability and the (1 − level)/2 and (1 + level)/2
    percentiles (linear interpolation) of the K models' probabilities per patient. ``probabilities``: (K, n),
    K ≥ 2. With few models the percentiles sit near the extremes (K = 5, level 0.9: 20 % / 80 % of the way from
    the lowest to the second lowest, and from the second highest to the highest)."""
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 2 or p.shape[0] < 2:
        raise ValueError(f"probabilities must be (K models ≥ 2, n patients), got shape {p.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    low, high = np.percentile(p, [50.0 * (1.0 - level), 50.0 * (1.0 + level)], axis=0)
    return p.mean(axis=0), low, high


def kfold_interval(probabilities: Any, level: float = 0.9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p, low, high)``, each (n,): a prediction interval for the probability a model retrained on a new cohort
    would give, from the K fold models of one K-fold cross-validation. ``probabilities``: (K, n), K ≥ 2.

    On the logit scale: mean m and standard deviation s of the K fold models' logits; two fold models share
    (K − 2)/(K − 1) of their training patients, so their logits correlate by about ρ = (K − 2)/(K − 1) and s
    underestimates the spread between independently trained models by √(1 − ρ) = 1/√(K − 1); hence
    σ = s·√(K − 1) and the interval m ± t_{K−1, (1+level)/2} · σ · √(1 + 1/K), mapped back with σ(·).
    ``p`` is σ(m). Probabilities are clipped to [1e-6, 1 − 1e-6].
    """
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 2 or p.shape[0] < 2:
        raise ValueError(f"probabilities must be (K models ≥ 2, n patients), got shape {p.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean = logit(np.clip(p, 1e-6, 1.0 - 1e-6)).mean(axis=0)
    half = logit_half_width(p, level, folds=p.shape[0])
    return expit(mean), expit(mean - half), expit(mean + half)


def logit_half_width(probabilities: Any, level: float = 0.9, folds: int | None = None) -> np.ndarray:
    """Half-width (n,) on the logit scale of a ``level`` prediction interval from K members' probabilities (K, n).

    t_{K−1, (1+level)/2} · σ · √(1 + 1/K), σ the members' logit standard deviation. ``folds`` = the k of a
    k-fold cross-validation whose fold models the members are: their logits correlate by ρ = (k − 2)/(k − 1), so
    σ = s·√(k − 1) (see :func:`kfold_interval`); None: independent members (σ = s).
    """
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 2 or p.shape[0] < 2:
        raise ValueError(f"probabilities must be (K models ≥ 2, n patients), got shape {p.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if folds is not None and folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    k = p.shape[0]
    s = logit(np.clip(p, 1e-6, 1.0 - 1e-6)).std(axis=0, ddof=1)
    inflation = np.sqrt(folds - 1) if folds is not None else 1.0
    return student_t.ppf(0.5 * (1.0 + level), k - 1) * s * inflation * np.sqrt(1 + 1 / k)


def interval_coverage(low: Any, high: Any, repeats: Any) -> float:
    """Fraction of ``repeats`` (R, n) — e.g. the predictions of R independently retrained models for the same n
    patients — that lie inside [low, high] of their patient (bounds included)."""
    r = np.asarray(repeats, dtype=float)
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if r.ndim != 2 or r.shape[1] != low.shape[0] or low.shape != high.shape:
        raise ValueError(f"repeats must be (R, n) with n = {low.shape[0]}, got shape {r.shape}")
    return float(np.mean((r >= low) & (r <= high)))
