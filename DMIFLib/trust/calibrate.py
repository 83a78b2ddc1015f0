"""Calibration of ``p_fused``: fitted on validation patients at training, stored in the model file, applied at
prediction.

The model file's ``calibration`` entry is a calibrator's ``to_dict()`` (:mod:`DMIFLib.stats.calibration`:
temperature, Platt or isotonic), plain types only. Absent (``None``: old model files, a run with
``calibration: "none"``, or too few validation patients) means uncalibrated: ``p_fused`` = ``p_fused_raw``.
Only the patient-level ``p_fused`` is calibrated; per-modality and slice probabilities stay raw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from DMIFLib.stats.calibration import (
    CALIBRATION_METHODS,
    brier_score,
    calibrator_from_dict,
    expected_calibration_error,
    fit_calibrator,
)

NO_CALIBRATION = "none"
MIN_PER_CLASS = 2
"""Fewest validation patients of each class a calibrator is fitted on (below that: no calibration)."""


def calibration_problem(method: Any) -> str | None:
    """Why ``method`` is not a calibration choice (``"temperature"``, ``"platt"``, ``"isotonic"``, ``"none"``)."""
    if method in (*CALIBRATION_METHODS, NO_CALIBRATION):
        return None
    return f"calibration = {method!r}: choose one of {', '.join((*CALIBRATION_METHODS, NO_CALIBRATION))}"


def fit_validation_calibration(method: str, raw_scores: Sequence[float], labels: Sequence[int]) -> dict | None:
    """The model file's ``calibration`` entry fitted on validation patients' raw ``p_fused`` (n,) and 0/1 labels.

    None for ``method == "none"`` or fewer than :data:`MIN_PER_CLASS` validation patients of a class (a fit on
    one class only would push every probability to that class). The entry also records ``n_val``, the number of
    patients fitted on (and, for a cross-validation ensemble, ``fitted_on``).
    """
    y = np.asarray(labels, dtype=int)
    if method == NO_CALIBRATION or min(int(y.sum()), int(len(y) - y.sum())) < MIN_PER_CLASS:
        return None
    entry = fit_calibrator(method, raw_scores, y).to_dict()
    return {**entry, "n_val": len(y)}


def calibrated(entry: dict | None, raw: Any) -> np.ndarray:
    """``raw`` probabilities mapped through the model's calibration entry (unchanged when it is None)."""
    raw = np.asarray(raw, dtype=float)
    if entry is None:
        return raw
    fields = {k: v for k, v in entry.items() if k not in ("n_val", "fitted_on")}
    return np.asarray(calibrator_from_dict(fields)(raw), dtype=float)


def check_entry(entry: Any) -> dict | None:
    """A model file's calibration entry, checked (ValueError naming the problem); None stays None."""
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ValueError(f"calibration entry is a {type(entry).__name__}, not a dict")
    calibrated(entry, [0.25, 0.5, 0.75])  # rebuilds it: unknown methods and missing fields fail here
    return entry


def add_calibration_columns(rows: list[dict], test_preds: Sequence, test_labels: Sequence[int],
                            modalities: Sequence[str]) -> list[dict]:
    """metrics.tsv rows of a training run with ``ece``/``brier`` (each row's own probabilities, test patients)
    and, on the patient-level fused row, ``ece_raw``/``brier_raw`` of the uncalibrated ``p_fused_raw``."""
    y = np.asarray(test_labels, dtype=int)
    for row in rows:
        name = row["model"]
        if row["level"] == "patient":
            p = np.array([pred.p_fused if name == "fused" else pred.probabilities[name] for pred in test_preds])
            labels = y
        else:
            p = np.concatenate([pred.slice_probabilities[name] for pred in test_preds])
            labels = np.concatenate([np.full(pred.n_slices, label) for pred, label in zip(test_preds, y, strict=True)])
        row.update(ece=expected_calibration_error(p, labels), brier=brier_score(p, labels))
        if row["level"] == "patient" and name == "fused":
            raw = np.array([pred.p_fused_raw for pred in test_preds])
            row.update(ece_raw=expected_calibration_error(raw, y), brier_raw=brier_score(raw, y))
    return rows
