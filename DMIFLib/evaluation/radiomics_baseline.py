"""The radiomics-only baseline of ``dmif compare`` (seed 001's radiomics features without the deep branch).

Same features as method "radiomics" (:mod:`DMIFLib.methods.radiomics_features`: per modality, inside the label or
else the box, on the preprocessed volumes), standardised and selected by mutual information (SelectKBest) on the
training patients, then an L2 logistic regression (scikit-learn) fitted on the same training patients. The model
is kept as plain arrays (coefficients, intercept, standardisation), written to ``radiomics_baseline.tsv``. It is a
patient-level model: each slice of a patient gets the patient's probability (slice-level rows repeat it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from DMIFLib.methods.radiomics_features import RadiomicsSettings, cohort_features, select_features

BASELINE = "Radiomics (logistic regression)"


@dataclass
class LogisticModel:
    """``p = sigmoid(z · coefficients + intercept)``, ``z = (x - mean) / std`` over ``features`` (K,)."""

    features: list[str]
    mi: list[float]
    mean: np.ndarray
    std: np.ndarray
    coefficients: np.ndarray
    intercept: float

    def standardise(self, features: Mapping[str, float], who: str) -> np.ndarray:
        """(K,) standardised values of one patient's features; ``ValueError`` naming ``who`` when one is missing
        or not finite."""
        values = np.array([features.get(f, np.nan) for f in self.features], dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"{who}: a selected radiomics feature is missing or not finite")
        return (values - self.mean) / self.std

    def probabilities(self, z: np.ndarray) -> np.ndarray:
        """(N,) P(marker) for standardised rows ``z`` (N, K)."""
        return 1.0 / (1.0 + np.exp(-(z @ self.coefficients + self.intercept)))

    def rows(self) -> list[dict]:
        """One row per feature (rank, feature, mi, coefficient, train_mean, train_std), then the intercept."""
        rows = [{"rank": i + 1, "feature": f, "mi": mi, "coefficient": float(c), "train_mean": float(m),
                 "train_std": float(s)} for i, (f, mi, c, m, s) in
                enumerate(zip(self.features, self.mi, self.coefficients, self.mean, self.std, strict=True))]
        return [*rows, {"rank": "", "feature": "(intercept)", "mi": "", "coefficient": self.intercept,
                        "train_mean": "", "train_std": ""}]


def fit_baseline(features: Mapping[str, Mapping[str, float]], labels: Mapping[str, int], train_ids: Sequence[str],
                 settings: RadiomicsSettings, seed: int) -> LogisticModel:
    """Select (MI, SelectKBest) and fit the logistic regression on ``train_ids`` only."""
    from sklearn.linear_model import LogisticRegression

    y = np.array([labels[p] for p in train_ids])
    selection = select_features(dict(features), train_ids, list(y), settings.k, seed)
    z = np.stack([selection.transform(features[p], p) for p in train_ids])
    regression = LogisticRegression(C=settings.baseline_c, max_iter=1000, random_state=seed).fit(z, y)
    return LogisticModel(selection.names, selection.mi, selection.mean, selection.std,
                         regression.coef_[0].astype(np.float64), float(regression.intercept_[0]))


def radiomics_outcome(cases: Sequence, preprocessing, modalities: Sequence[str], labels: Mapping[str, int],
                      train_groups: np.ndarray, test_groups: np.ndarray, settings: RadiomicsSettings, seed: int,
                      cache_dir: Path, progress: Callable[[dict], None] | None = None,
                      cancel: threading.Event | None = None):
    """``(ModelOutcome | None, info)``: the baseline trained on the patients of ``train_groups`` (slice-level
    patient ids) and applied to those of ``test_groups``; None with ``info["skipped"]`` (the reason) when a
    training or test patient has no features (e.g. the radiomics extra is not installed)."""
    from DMIFLib.evaluation.compare import ModelOutcome

    train_ids = list(dict.fromkeys(train_groups.tolist()))
    test_ids = list(dict.fromkeys(test_groups.tolist()))
    wanted = set(train_ids) | set(test_ids)
    params = settings.radiomics_params()
    started = time.perf_counter()
    features, regions, failures = cohort_features([c.only(modalities) for c in cases if c.patient_id in wanted],
                                                  params, modalities, preprocessing, cache_dir, progress, cancel)
    if failures:
        return None, {"skipped": f"radiomics features failed for {len(failures)} patient(s), first: "
                                 f"{failures[0][0]}: {failures[0][1]}"}
    try:
        model = fit_baseline(features, labels, train_ids, settings, seed)
    except ValueError as error:
        return None, {"skipped": str(error)}

    def per_slice(groups: np.ndarray, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        z = {p: model.standardise(features[p], p) for p in ids}
        p = {pid: float(model.probabilities(z[pid][None])[0]) for pid in ids}
        return np.array([p[g] for g in groups]), np.stack([z[g] for g in groups])

    try:
        p_train, _ = per_slice(train_groups, train_ids)
        p_test, test_features = per_slice(test_groups, test_ids)
    except ValueError as error:
        return None, {"skipped": str(error)}
    outcome = ModelOutcome(BASELINE, "reference", p_test, p_train, test_features, time.perf_counter() - started)
    return outcome, {"model": model, "region": "+".join(sorted(set(regions.values()))),
                     "params": params.to_dict(), "settings": settings.to_dict()}
