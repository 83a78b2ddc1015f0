"""Probability calibration fitted on validation patients, and how well calibrated a score is.

Calibrators map a raw probability p ∈ [0, 1] (e.g. ``p_fused``) to a calibrated one; they are fitted on the
*validation* patients' scores and labels only and applied unchanged to new patients. Each is a small object whose
``to_dict()`` holds only str/float/list values (it can go into a model file loaded with
``torch.load(weights_only=True)``); :func:`calibrator_from_dict` rebuilds it and gives bit-identical outputs.

- ``"temperature"``: p' = σ(logit(p) / T), one parameter T > 0 (Guo et al. 2017); keeps the ranking and p = 0.5.
- ``"platt"``: p' = σ(a · logit(p) + b) (Platt 1999).
Both are fitted to Platt's smoothed targets (N₊ + 1)/(N₊ + 2) and 1/(N₋ + 2), which keep a small validation set
from driving the fit to infinity: on 8 perfectly separated validation patients, plain 0/1 targets drove T to its
bound e⁻⁵ and the calibrated p_fused of new patients to 1e-23 … 1 − 1e-6.
- ``"isotonic"``: scikit-learn's ``IsotonicRegression`` (monotone step function, linear between its
  thresholds, clipped outside); stored as its threshold pairs and applied with ``numpy.interp``. Needs more
  validation patients than the parametric two (ties and plateaus in small sets).

logit(p) clips p to [1e-6, 1 − 1e-6].

Measures: :func:`expected_calibration_error` (equal-width bins), :func:`brier_score`,
:func:`reliability_curve` (the data of a reliability diagram) and :func:`reliability_figure` (a matplotlib
``Figure``, no pyplot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

CALIBRATION_METHODS = ("temperature", "platt", "isotonic")
_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def _check(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels, dtype=float).ravel()
    if len(p) != len(y) or len(p) == 0:
        raise ValueError(f"scores ({len(p)}) and labels ({len(y)}) must be non-empty and of equal length")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("scores must be probabilities in [0, 1]")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError("labels must be 0 or 1")
    return p, y


def _platt_targets(y: np.ndarray) -> np.ndarray:
    """Platt's smoothed targets for 0/1 labels ``y``: (N₊ + 1)/(N₊ + 2) for positives, 1/(N₋ + 2) for negatives."""
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    return np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))


def _nll(z: np.ndarray, target: np.ndarray) -> float:
    """Mean binary cross-entropy of logits ``z`` against (possibly smoothed) targets."""
    return float(np.mean(np.logaddexp(0.0, z) - target * z))


@dataclass(frozen=True)
class TemperatureCalibrator:
    """p' = σ(logit(p) / temperature)."""

    temperature: float
    method = "temperature"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {self.temperature}")

    @classmethod
    def fit(cls, scores: Any, labels: Any) -> TemperatureCalibrator:
        p, y = _check(scores, labels)
        z, target = _logit(p), _platt_targets(y)
        result = minimize(lambda v: _nll(z / np.exp(v[0]), target), x0=[0.0], method="L-BFGS-B",
                          bounds=[(-5.0, 5.0)])
        return cls(temperature=float(np.exp(result.x[0])))

    def __call__(self, scores: Any) -> np.ndarray:
        return expit(_logit(scores) / self.temperature)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "temperature": float(self.temperature)}


@dataclass(frozen=True)
class PlattCalibrator:
    """p' = σ(slope · logit(p) + intercept)."""

    slope: float
    intercept: float
    method = "platt"

    @classmethod
    def fit(cls, scores: Any, labels: Any) -> PlattCalibrator:
        p, y = _check(scores, labels)
        z, target = _logit(p), _platt_targets(y)
        result = minimize(lambda v: _nll(v[0] * z + v[1], target), x0=[1.0, 0.0], method="L-BFGS-B")
        return cls(slope=float(result.x[0]), intercept=float(result.x[1]))

    def __call__(self, scores: Any) -> np.ndarray:
        return expit(self.slope * _logit(scores) + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "slope": float(self.slope), "intercept": float(self.intercept)}


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Monotone piecewise-linear map through the points (``x[i]``, ``y[i]``), constant beyond the ends."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    method = "isotonic"

    def __post_init__(self) -> None:
        if not self.x or len(self.x) != len(self.y) or np.any(np.diff(self.x) < 0):
            raise ValueError("isotonic calibration needs as many y as x values, x non-decreasing and non-empty")

    @classmethod
    def fit(cls, scores: Any, labels: Any) -> IsotonicCalibrator:
        from sklearn.isotonic import IsotonicRegression

        p, y = _check(scores, labels)
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return cls(x=tuple(float(v) for v in model.X_thresholds_), y=tuple(float(v) for v in model.y_thresholds_))

    def __call__(self, scores: Any) -> np.ndarray:
        return np.interp(np.asarray(scores, dtype=float), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": list(self.x), "y": list(self.y)}


Calibrator = TemperatureCalibrator | PlattCalibrator | IsotonicCalibrator
_CLASSES = {c.method: c for c in (TemperatureCalibrator, PlattCalibrator, IsotonicCalibrator)}


def fit_calibrator(method: str, scores: Any, labels: Any) -> Calibrator:
    """Fit ``method`` (one of ``CALIBRATION_METHODS``) on validation ``scores`` (probabilities) and 0/1 ``labels``."""
    if method not in _CLASSES:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    return _CLASSES[method].fit(scores, labels)


def calibrator_from_dict(data: dict[str, Any]) -> Calibrator:
    """Rebuild a calibrator from its ``to_dict()`` (raises ValueError for an unknown or incomplete entry)."""
    method = data.get("method") if isinstance(data, dict) else None
    if method not in _CLASSES:
        raise ValueError(f"unknown calibration method {method!r}; known: {', '.join(CALIBRATION_METHODS)}")
    fields = {k: v for k, v in data.items() if k != "method"}
    try:
        if method == "isotonic":
            return IsotonicCalibrator(x=tuple(float(v) for v in fields["x"]), y=tuple(float(v) for v in fields["y"]))
        return _CLASSES[method](**{k: float(v) for k, v in fields.items()})
    except (KeyError, TypeError) as error:
        raise ValueError(f"incomplete or unknown fields in the {method} calibration entry ({error})") from None


# -- measures ------------------------------------------------------------------------------------------------

def brier_score(scores: Any, labels: Any) -> float:
    """Mean squared difference between probability and 0/1 outcome (0 = perfect; 0.25 = always 0.5)."""
    p, y = _check(scores, labels)
    return float(np.mean((p - y) ** 2))


def reliability_curve(scores: Any, labels: Any, n_bins: int = 10) -> dict[str, list]:
    """Reliability-diagram data over ``n_bins`` equal-width bins of [0, 1].

    Bin b is [b/n, (b+1)/n), the last one closed ([.., 1]). Returns lists of length n_bins: ``edges`` (n+1),
    ``count``, ``mean_score`` and ``fraction_positive`` (NaN for empty bins).
    """
    p, y = _check(scores, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    index = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(index, weights=p, minlength=n_bins) / count
        fraction = np.bincount(index, weights=y, minlength=n_bins) / count
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(), "count": count.tolist(),
            "mean_score": mean_score.tolist(), "fraction_positive": fraction.tolist()}


def expected_calibration_error(scores: Any, labels: Any, n_bins: int = 10) -> float:
    """ECE = Σ_b (n_b / N) · |fraction positive in b − mean score in b| over ``n_bins`` equal-width bins
    (:func:`reliability_curve`'s bins; empty bins contribute 0)."""
    curve = reliability_curve(scores, labels, n_bins)
    count = np.asarray(curve["count"], dtype=float)
    gap = np.abs(np.asarray(curve["fraction_positive"]) - np.asarray(curve["mean_score"]))
    return float(np.sum(count[count > 0] * gap[count > 0]) / count.sum())


def reliability_figure(curves: dict[str, dict[str, list]], title: str = "Reliability diagram") -> Any:
    """A matplotlib ``Figure`` (no pyplot) with one line per entry of ``curves`` (name → :func:`reliability_curve`)
    and the diagonal; save with ``figure.savefig(path)``."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5, 4.5), dpi=100)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    for name, curve in curves.items():
        used = np.asarray(curve["count"]) > 0
        axes.plot(np.asarray(curve["mean_score"])[used], np.asarray(curve["fraction_positive"])[used], marker="o",
                  label=name)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability (bin)", ylabel="fraction positive",
             title=title)
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return figure
