"""Ensemble percentile intervals (DMIFLib.stats.interval) and their coverage of repeated-training predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from DMIFLib.stats.interval import ensemble_interval, interval_coverage, kfold_interval

WEIGHTS = np.array([1.5, -1.0, 0.5, 0.0, 0.0])


def test_interval_and_coverage_by_hand():
    p = np.array([[0.1, 0.5], [0.2, 0.6], [0.3, 0.7], [0.4, 0.8], [0.5, 0.9]])
    mean, low, high = ensemble_interval(p, level=0.5)  # 25th and 75th percentiles of 5 values
    np.testing.assert_allclose(mean, [0.3, 0.7])
    np.testing.assert_allclose(low, [0.2, 0.6])
    np.testing.assert_allclose(high, [0.4, 0.8])
    assert interval_coverage(low, high, [[0.2, 0.9], [0.3, 0.7]]) == 0.75
    with pytest.raises(ValueError, match="K models"):
        ensemble_interval(p[:1])
    centre, low, high = kfold_interval(p)
    assert np.all(low < centre) and np.all(centre < high)
    assert np.all(low < p.min(axis=0)) and np.all(high > p.max(axis=0))  # wider than the raw range for K = 5


def _cohort(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, len(WEIGHTS)))
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-x @ WEIGHTS))).astype(int)
    return x, y


def _fit_predict(x: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
    return LogisticRegression(C=1.0).fit(x, y).predict_proba(test)[:, 1]


def test_coverage_of_kfold_and_bootstrap_ensembles():
    """Synthetic logistic task, cohorts of 100 patients: 90 % intervals from the 5 fold models of one cohort
    (raw percentiles, and ``kfold_interval``) and from 5 bootstrap models, scored by how many predictions of models
    retrained on 40 fresh cohorts fall inside (averaged over 8 base cohorts). Fold models share 3/4 of their data,
    so their raw spread is narrower than the bootstrap's; ``kfold_interval`` corrects for the overlap."""
    rng = np.random.default_rng(0)
    test_x, _ = _cohort(200, rng)
    repeats = np.array([_fit_predict(*_cohort(100, rng), test_x) for _ in range(40)])
    kfold_cov, boot_cov, corrected_cov = [], [], []
    for _ in range(8):
        x, y = _cohort(100, rng)
        folds = StratifiedKFold(5, shuffle=True, random_state=int(rng.integers(1 << 31))).split(x, y)
        kfold = np.array([_fit_predict(x[train], y[train], test_x) for train, _ in folds])
        boot = []
        while len(boot) < 5:
            index = rng.integers(0, len(y), len(y))
            if 0 < y[index].sum() < len(y):
                boot.append(_fit_predict(x[index], y[index], test_x))
        kfold_cov.append(interval_coverage(*ensemble_interval(kfold)[1:], repeats))
        corrected_cov.append(interval_coverage(*kfold_interval(kfold)[1:], repeats))
        boot_cov.append(interval_coverage(*ensemble_interval(np.array(boot))[1:], repeats))
    print(f"90 % interval coverage of retrained-model predictions: 5-fold ensemble {np.mean(kfold_cov):.3f}, "
          f"5-bootstrap ensemble {np.mean(boot_cov):.3f}, kfold_interval {np.mean(corrected_cov):.3f}")
    assert np.mean(kfold_cov) < np.mean(boot_cov)
    assert np.mean(corrected_cov) > 0.75
