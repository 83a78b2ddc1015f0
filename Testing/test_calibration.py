"""Calibration (DMIFLib.stats.calibration): fitted on validation scores only, it lowers the expected calibration
error of a known miscalibrated model on held-out patients; to_dict/from_dict round trips are exact."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from scipy.special import expit

from DMIFLib.stats.calibration import (
    CALIBRATION_METHODS,
    brier_score,
    calibrator_from_dict,
    expected_calibration_error,
    fit_calibrator,
    reliability_curve,
    reliability_figure,
)


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True P(y=1) = σ(z), z ~ N(0, 1.5²); the model reports σ(3z + 1): overconfident and shifted."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=n)
    labels = (rng.random(n) < expit(z)).astype(float)
    return expit(3.0 * z + 1.0), labels


def test_ece_and_brier_by_hand():
    scores = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    labels = np.array([0, 1, 0, 1, 0])
    # bins of 0.2: [0, .2) holds 0.05, 0.15, 0.15 (mean 0.1167, fraction 1/3); [.8, 1] holds 0.95, 1.0 (0.975, 1/2)
    expected = 3 / 5 * abs(1 / 3 - 0.35 / 3) + 2 / 5 * abs(0.5 - 0.975)
    assert expected_calibration_error(scores, labels, n_bins=5) == pytest.approx(expected, abs=1e-12)
    assert brier_score(scores, labels) == pytest.approx(np.mean((scores - labels) ** 2), abs=1e-15)
    curve = reliability_curve(scores, labels, n_bins=5)
    assert curve["count"] == [3, 0, 0, 0, 2]
    assert np.isnan(curve["mean_score"][1])


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_calibration_lowers_ece_on_held_out_patients(method):
    val_scores, val_labels = _miscalibrated(300, seed=1)
    test_scores, test_labels = _miscalibrated(5000, seed=2)
    calibrator = fit_calibrator(method, val_scores, val_labels)
    calibrated = calibrator(test_scores)
    raw_ece = expected_calibration_error(test_scores, test_labels)
    cal_ece = expected_calibration_error(calibrated, test_labels)
    raw_brier, cal_brier = brier_score(test_scores, test_labels), brier_score(calibrated, test_labels)
    print(f"{method}: ECE {raw_ece:.3f} -> {cal_ece:.3f}, Brier {raw_brier:.3f} -> {cal_brier:.3f}")
    assert cal_ece < 0.5 * raw_ece
    assert cal_brier < raw_brier


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_few_separated_validation_patients_do_not_push_probabilities_to_0_or_1(method):
    # 4 + 4 validation patients, perfectly separated: with plain 0/1 targets the temperature fell to its bound
    # e^-5 and a new patient's 0.4 became 1e-26; Platt's smoothed targets keep the fit finite
    calibrator = fit_calibrator(method, [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9], [0, 0, 0, 0, 1, 1, 1, 1])
    p = calibrator(np.array([0.01, 0.4, 0.6, 0.99]))
    assert p[0] > 0.005 and p[-1] < 0.995 and 0.05 < p[1] < 0.5 < p[2] < 0.95


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_round_trip_is_exact_and_loads_with_weights_only(method):
    scores, labels = _miscalibrated(200, seed=3)
    calibrator = fit_calibrator(method, scores, labels)
    entry = calibrator.to_dict()
    buffer = io.BytesIO()
    torch.save({"calibration": entry}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["calibration"]
    assert loaded == entry
    assert all(isinstance(v, (str, float, list)) for v in loaded.values())
    rebuilt = calibrator_from_dict(loaded)
    assert rebuilt == calibrator
    grid = np.linspace(0.0, 1.0, 1001)
    assert np.array_equal(rebuilt(grid), calibrator(grid))


def test_bad_entries_are_refused():
    with pytest.raises(ValueError, match="unknown calibration method"):
        calibrator_from_dict({"method": "beta"})
    with pytest.raises(ValueError, match="platt calibration entry"):
        calibrator_from_dict({"method": "platt", "slope": 1.0})
    with pytest.raises(ValueError, match="positive"):
        calibrator_from_dict({"method": "temperature", "temperature": -1.0})
    with pytest.raises(ValueError, match="as many y as x"):
        calibrator_from_dict({"method": "isotonic", "x": [0.1, 0.2], "y": [0.5]})
    with pytest.raises(ValueError, match="probabilities"):
        fit_calibrator("platt", [0.2, 1.5], [0, 1])


def test_reliability_figure_is_a_figure(tmp_path):
    scores, labels = _miscalibrated(500, seed=4)
    calibrated = fit_calibrator("platt", scores, labels)(scores)
    figure = reliability_figure({"raw": reliability_curve(scores, labels),
                                 "Platt": reliability_curve(calibrated, labels)})
    path = tmp_path / "reliability.png"
    figure.savefig(path)
    assert path.stat().st_size > 1000
    assert len(figure.axes[0].lines) == 3
