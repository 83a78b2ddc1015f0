"""The trust part of one prediction: calibrated ``p_fused`` beside the raw one, the interval and the warning.

Columns (predictions.tsv, the Slicer results table): ``p_fused_raw`` (the mean of the fused net's slice
probabilities, over the model's ``patient_slices`` central slices when it sets them), ``p_fused`` (it,
calibrated), ``p_fused_low``/``p_fused_high`` (90 % interval, calibrated scale, :mod:`DMIFLib.trust.interval`),
``ood_warning`` (empty, or what lies outside the training cohort,
:mod:`DMIFLib.trust.ood`).
"""

from __future__ import annotations

import numpy as np
import torch

from DMIFLib.preprocessing.slices import central_slices
from DMIFLib.trust.calibrate import calibrated
from DMIFLib.trust.interval import format_interval, interval, member_probabilities, tta_probabilities
from DMIFLib.trust.ood import case_features, ood_warning


def finish(model, stack, prediction, members: list, batch_size: int = 64, interval_and_warning: bool = True):
    """Fill ``prediction`` (a raw CasePrediction of ``stack``): ``p_fused_raw``, calibrated ``p_fused`` and its
    ``prediction`` at the model's cut-off, ``p_fused_low``/``p_fused_high``, ``ood_warning``. ``members``: what
    :func:`~DMIFLib.trust.interval.capture_members` captured (empty lists for a single model).
    ``interval_and_warning`` False leaves the interval ``nan`` and the warning empty (a training run's own
    training patients, whose scores only choose the cut-off and calibration: no test-time augmentation)."""
    raw = prediction.p_fused
    prediction.p_fused_raw = raw
    prediction.p_fused = float(calibrated(model.calibration, raw))
    prediction.prediction = int(prediction.p_fused >= model.cutoff)
    if not interval_and_warning:
        return prediction
    central = central_slices(prediction.n_slices, model.patient_slices)  # the slices p_fused averages
    probabilities = member_probabilities(members, prediction.n_slices, central)
    if probabilities is None:
        x = torch.from_numpy(np.ascontiguousarray(stack.stacked(model.modalities)[central], dtype=np.float32))
        probabilities = tta_probabilities(model, x, raw, batch_size)
    prediction.p_fused_low, prediction.p_fused_high = interval(model, raw, probabilities)
    prediction.ood_warning = ood_warning(case_features(stack), model.training_cohort)
    return prediction


def trust_cells(prediction) -> list[str]:
    """The predictions.tsv cells of :data:`DMIFLib.inference.TRUST_COLUMNS` (tabs and line breaks in the
    warning become spaces)."""
    warning = " ".join(str(prediction.ood_warning).split())
    return [f"{prediction.p_fused_raw:.6f}", f"{prediction.p_fused_low:.6f}", f"{prediction.p_fused_high:.6f}",
            warning]


def summary(p: float, low: float, high: float, prediction: int, cutoff: float, warning: str = "") -> str:
    """'0.78 (0.64–0.88) → positive (cut-off 0.45)', plus '; WARNING: …' when ``warning`` is not empty."""
    verdict = "positive" if prediction else "negative"
    text = f"{format_interval(p, low, high)} → {verdict} (cut-off {cutoff:.2f})"
    return f"{text}; WARNING: {warning}" if warning else text
