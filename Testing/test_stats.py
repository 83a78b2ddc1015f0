"""DMIFLib.stats against pROC's published aSAH results and against scikit-learn."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_score, recall_score, roc_auc_score

from DMIFLib.stats import (
    auc_ci,
    auc_variance,
    binary_metrics,
    bonferroni,
    cluster_bootstrap_ci,
    delong_test,
    youden_cutoff,
)
from DMIFLib.stats.bootstrap import replicate_metrics


@pytest.fixture
def asah(shared_data):
    with open(shared_data / "reference" / "aSAH.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    y = np.array([row["outcome"] == "Poor" for row in rows], dtype=int)
    return y, {name: np.array([float(row[name]) for row in rows]) for name in ("s100b", "wfns", "ndka")}


def test_asah_auc_and_delong_variance_match_proc(asah):
    y, x = asah
    assert (y.sum(), len(y) - y.sum()) == (41, 72)
    assert auc_ci(y, x["s100b"])[0] == pytest.approx(0.73136856368563685, rel=1e-9)
    assert auc_ci(y, x["wfns"])[0] == pytest.approx(0.823678861788618, rel=1e-9)
    assert auc_variance(y, x["s100b"]) == pytest.approx(0.00266868245717244, rel=1e-9)
    assert auc_variance(y, x["wfns"]) == pytest.approx(0.00146991470882363, rel=1e-9)


def test_asah_auc_ci_is_auc_plus_minus_normal_quantile(asah):
    y, x = asah
    _, low, high = auc_ci(y, x["s100b"])
    half = 1.959963984540054 * np.sqrt(0.00266868245717244)
    assert low == pytest.approx(0.73136856368563685 - half, rel=1e-9)
    assert high == pytest.approx(0.73136856368563685 + half, rel=1e-9)


def test_asah_paired_delong_matches_proc_roc_test(asah):
    y, x = asah
    z, p, low, high = delong_test(y, x["wfns"], x["s100b"])
    assert z == pytest.approx(2.20898359144091, rel=1e-9)
    assert p == pytest.approx(0.0271757822291882, rel=1e-9)
    assert low == pytest.approx(0.0104061769564846, rel=1e-9)
    assert high == pytest.approx(0.174214419249478, rel=1e-9)
    z_rev, p_rev, low_rev, high_rev = delong_test(y, x["s100b"], x["wfns"])
    assert (z_rev, p_rev, low_rev, high_rev) == pytest.approx((-z, p, -high, -low), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    score = np.round(rng.normal(size=200) + 0.8 * y, 1)   # rounded: ties at the cut-off and in the AUC
    cutoff = float(np.median(score))
    m = binary_metrics(y, score, cutoff)
    pred = (score >= cutoff).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), rel=1e-12)
    assert m["sensitivity"] == pytest.approx(recall_score(y, pred), rel=1e-12)
    assert m["specificity"] == pytest.approx(recall_score(1 - y, 1 - pred), rel=1e-12)
    assert m["ppv"] == pytest.approx(precision_score(y, pred), rel=1e-12)
    assert m["ppv"] == pytest.approx(tp / (tp + fp), rel=1e-12)
    assert m["npv"] == pytest.approx(tn / (tn + fn), rel=1e-12)
    assert m["auc"] == pytest.approx(roc_auc_score(y, score), rel=1e-12)
    assert (m["n"], m["cutoff"]) == (200, cutoff)


def test_binary_metrics_empty_class_gives_nan_not_crash():
    m = binary_metrics([0, 0, 0], [0.1, 0.7, 0.9], 0.5)
    assert np.isnan(m["sensitivity"]) and np.isnan(m["auc"])
    assert m["specificity"] == pytest.approx(1 / 3)
    assert m["ppv"] == 0.0
    m = binary_metrics([1, 0], [0.1, 0.2], 0.5)   # nothing called positive: PPV has no denominator
    assert np.isnan(m["ppv"]) and m["npv"] == 0.5


def test_binary_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="0/1"):
        binary_metrics([0, 2], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match="shape"):
        binary_metrics([0, 1], [0.1], 0.5)


def test_youden_cutoff_maximises_j_on_training_data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    score = rng.normal(size=300) + 1.5 * y
    c = youden_cutoff(y, score)
    def j(t):
        return np.mean(score[y == 1] >= t) + np.mean(score[y == 0] < t) - 1

    assert all(j(c) >= j(t) - 1e-12 for t in np.unique(score))
    assert c in score
    assert youden_cutoff([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.8


def test_delong_identical_scores_and_bonferroni():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.9])
    z, p, low, high = delong_test(y, s, s)
    assert np.isnan(z) and np.isnan(p) and low == high == 0.0
    with pytest.raises(ValueError, match="at least 2 positive"):
        auc_ci([0, 0, 1], [0.1, 0.2, 0.3])
    assert bonferroni([0.01, 0.2, 0.6]).tolist() == pytest.approx([0.03, 0.6, 1.0])


def test_bootstrap_replicate_metrics_equal_binary_metrics():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 150)
    s = np.round(rng.normal(size=150) + y, 1)
    fast = replicate_metrics(y, s, 0.3)
    full = binary_metrics(y, s, 0.3)
    assert fast == pytest.approx({k: full[k] for k in fast}, rel=1e-12)
    assert np.isnan(replicate_metrics(np.zeros(3, int), s[:3], 0.3)["auc"])


def test_cluster_bootstrap_widens_with_correlated_slices():
    """Slices of one patient carry the same information; resampling patients must not shrink the CI."""
    rng = np.random.default_rng(0)
    n_pat = 30
    labels = np.arange(n_pat) % 2
    patient_score = rng.normal(size=n_pat) + labels
    groups = np.repeat(np.arange(n_pat), 20)
    y = np.repeat(labels, 20)
    score = np.repeat(patient_score, 20) + 0.01 * rng.normal(size=groups.size)
    ci = cluster_bootstrap_ci(y, score, groups, cutoff=0.5, n_boot=200, seed=1)
    auc = binary_metrics(y, score, 0.5)["auc"]
    assert ci["auc"][0] < auc < ci["auc"][1]
    naive = auc_ci(y, score)   # treats the 600 slices as independent cases
    assert ci["auc"][1] - ci["auc"][0] > 2 * (naive[2] - naive[1])
    assert ci == cluster_bootstrap_ci(y, score, groups, cutoff=0.5, n_boot=200, seed=1)
    with pytest.raises(ValueError, match="different labels"):
        cluster_bootstrap_ci([0, 1], [0.1, 0.2], ["a", "a"], 0.5, n_boot=2)


def test_delong_matches_brute_force_structural_components():
    """DeLong's definition: ψ(x, y) = 1 if x > y, ½ if equal; V10, V01 its row/column means (ties included)."""
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 80)
    a = np.round(rng.normal(size=80) + y, 1)
    b = np.round(rng.normal(size=80) + 0.5 * y, 1)

    def components(s):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    (auc_a, v10_a, v01_a), (auc_b, v10_b, v01_b) = components(a), components(b)
    m, n = len(v10_a), len(v01_a)
    var_a = np.var(v10_a, ddof=1) / m + np.var(v01_a, ddof=1) / n
    var_b = np.var(v10_b, ddof=1) / m + np.var(v01_b, ddof=1) / n
    cov = np.cov(v10_a, v10_b)[0, 1] / m + np.cov(v01_a, v01_b)[0, 1] / n
    assert auc_variance(y, a) == pytest.approx(var_a, rel=1e-12)
    z, p, _, _ = delong_test(y, a, b)
    assert p == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(abs(z) / np.sqrt(2)))), abs=1e-12)
    assert z == pytest.approx((auc_a - auc_b) / np.sqrt(var_a + var_b - 2 * cov), rel=1e-12)
    assert auc_ci(y, b)[0] == pytest.approx(auc_b, rel=1e-12)
