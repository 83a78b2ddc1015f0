"""The seed-001 rows of ``dmif compare --radiomics``: the radiomics-only baseline and DMIF-Net + radiomics.

Same features as method "radiomics" (:mod:`DMIFLib.methods.radiomics_features`: per modality, inside the label or
else the box, on the preprocessed volumes), standardised and selected by mutual information (SelectKBest) on the
training patients, then an L2 logistic regression (scikit-learn) fitted on the same training patients. The model
is kept as plain arrays (coefficients, intercept, standardisation), written to ``radiomics_baseline.tsv``. It is a
patient-level model: each slice of a patient gets the patient's probability (slice-level rows repeat it).

The fusion row (:func:`fusion_outcome`) is method "radiomics"'s fused head on the comparison's own multimodal
DMIF-Net (its features averaged over each patient's slices) and the same selected features, trained on the
comparison's training patients (validation patients for the kept epoch); patient-level as well.
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
FUSION = "DMIF-Net + radiomics"


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
                      cancel: threading.Event | None = None, also: Sequence[str] = ()):
    """``(ModelOutcome | None, info)``: the baseline trained on the patients of ``train_groups`` (slice-level
    patient ids) and applied to those of ``test_groups``; None with ``info["skipped"]`` (the reason) when a
    training or test patient has no features (e.g. the radiomics extra is not installed). ``also``: further
    patients whose features are computed (``info["features"]``), e.g. the validation patients of the fusion row."""
    from DMIFLib.evaluation.compare import ModelOutcome

    train_ids = list(dict.fromkeys(train_groups.tolist()))
    test_ids = list(dict.fromkeys(test_groups.tolist()))
    wanted = set(train_ids) | set(test_ids) | set(also)
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
    return outcome, {"model": model, "features": features, "region": "+".join(sorted(set(regions.values()))),
                     "params": params.to_dict(), "settings": settings.to_dict()}


def fusion_outcome(net, train, val, test, modalities: Sequence[str], labels: Mapping[str, int],
                   features: Mapping[str, Mapping[str, float]], model: LogisticModel, settings: RadiomicsSettings,
                   seed: int, device, cancel: threading.Event | None = None):
    """The DMIF-Net + radiomics row: ``net`` is the comparison's trained multimodal DMIF-Net; ``train`` / ``val``
    / ``test`` its ``SliceData``; ``features`` / ``model`` the baseline's radiomics and selection."""
    import torch

    from DMIFLib.evaluation.compare import ModelOutcome
    from DMIFLib.methods.radiomics import fused_probabilities, train_head

    started = time.perf_counter()
    net = net.to(device).eval()

    def patient_deep(data) -> dict[str, np.ndarray]:
        if not len(data.y):
            return {}
        x = data.stacked(modalities)
        with torch.no_grad():
            f = torch.cat([net.features(x[i:i + 64].to(device)).float().cpu() for i in range(0, len(x), 64)])
        f = f.numpy().astype(np.float64)
        return {pid: f[data.groups == pid] for pid in dict.fromkeys(data.groups.tolist())}

    deep = {**patient_deep(train), **patient_deep(val), **patient_deep(test)}
    fit_ids = list(dict.fromkeys(train.groups.tolist()))
    val_ids = list(dict.fromkeys(val.groups.tolist()))
    rows = fit_ids + val_ids
    means = np.stack([deep[p].mean(axis=0) for p in rows])
    deep_mean, deep_std = means[: len(fit_ids)].mean(axis=0), means[: len(fit_ids)].std(axis=0)
    deep_std[deep_std == 0] = 1.0
    radiomics = {p: model.standardise(features[p], p) for p in deep}
    head, history = train_head((means - deep_mean) / deep_std, np.stack([radiomics[p] for p in rows]),
                               np.array([labels[p] for p in rows], dtype=np.float64), np.arange(len(fit_ids)),
                               np.arange(len(fit_ids), len(rows)), settings, seed, cancel)
    state = {"deep_mean": torch.from_numpy(deep_mean), "deep_std": torch.from_numpy(deep_std)}
    patient = {p: fused_probabilities(head, state, deep[p], radiomics[p])[0] for p in deep}
    test_features = np.concatenate([np.hstack([deep[p], np.repeat(radiomics[p][None], len(deep[p]), axis=0)])
                                    for p in dict.fromkeys(test.groups.tolist())])
    return ModelOutcome(FUSION, "reference", np.array([patient[g] for g in test.groups]),
                        np.array([patient[g] for g in train.groups]), test_features, time.perf_counter() - started,
                        [{**h, "stage": FUSION} for h in history])
