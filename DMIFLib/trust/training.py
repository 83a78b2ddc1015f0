"""What a training run stores for trust at prediction: the calibration and the training cohort's profile.

Plain run (:func:`~DMIFLib.training.train_cohort`): the profile of the training patients (train + validation)
is set before the run's own predictions (so that the test patients get their warnings); the calibrator is fitted
on the **validation patients' raw p_fused only** and then applied to the run's predictions, before the cut-off is
chosen on the calibrated training scores.

Cross-validation (:func:`~DMIFLib.training.cross_validation.cross_validate`): the ensemble's calibrator is fitted
on the **out-of-fold raw p_fused** (a patient's mean over repeats): every patient once, each scored by fold models
that never saw it, instead of one fold's 20 % validation split. Caveat: those scores come from single fold
models, while the ensemble averages their logits (when members disagree its scores are somewhat less extreme).
The profile is the union of the fold models' profiles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from DMIFLib.trust.calibrate import calibrated, fit_validation_calibration
from DMIFLib.trust.ood import case_features, cohort_profile, merge_profiles


def set_training_cohort(model, stacks: Sequence) -> None:
    """``model.training_cohort`` = the profile of the training patients' slice stacks."""
    model.training_cohort = cohort_profile(case_features(stack) for stack in stacks)


def calibrate_run(model, method: str, val_preds: Sequence, val_labels: Sequence[int], preds: Sequence) -> None:
    """Fit ``model.calibration`` with ``method`` on the validation patients' raw ``p_fused`` (``val_preds``,
    predicted while the model had no calibration) and map every CasePrediction in ``preds`` (raw, made before)
    onto the calibrated scale: ``p_fused``, ``p_fused_low``, ``p_fused_high``; ``p_fused_raw`` stays."""
    model.calibration = fit_validation_calibration(method, [p.p_fused_raw for p in val_preds], val_labels)
    for pred in preds:
        pred.p_fused, pred.p_fused_low, pred.p_fused_high = (float(v) for v in calibrated(
            model.calibration, [pred.p_fused_raw, pred.p_fused_low, pred.p_fused_high]))
        pred.prediction = int(pred.p_fused >= model.cutoff)


def ensemble_trust(model, fold_models: Sequence, method: str, oof: Sequence[dict]) -> None:
    """Set a cross-validation ensemble's ``calibration`` (fitted on the out-of-fold raw p_fused, mean over
    repeats; rows of oof_predictions.tsv with ``patient_id``, ``label`` and ``p_fused_raw``, or ``p_fused`` for
    folds trained before the raw column existed) and ``training_cohort`` (union of the fold models')."""
    ids = sorted({row["patient_id"] for row in oof})
    raw = {pid: float(np.mean([row.get("p_fused_raw", row["p_fused"]) for row in oof if row["patient_id"] == pid]))
           for pid in ids}
    labels = {row["patient_id"]: int(row["label"]) for row in oof}
    model.calibration = fit_validation_calibration(method, [raw[pid] for pid in ids], [labels[pid] for pid in ids])
    if model.calibration is not None:
        model.calibration["fitted_on"] = "out-of-fold predictions"
    profiles = [m.training_cohort for m in fold_models]
    model.training_cohort = merge_profiles(profiles) if all(profiles) else None
