"""Prediction: slice probabilities → patient probabilities, for one slice stack or a whole cohort.

Patient rule: a patient's probability for a modality is the **mean of its slice probabilities** under that
modality's DMIF-Net; ``p_fused`` is the mean of the multimodal net's slice probabilities (its input is every
modality's slice stacked as channels; a single-modality model's fused net is its one DMIF-Net, so ``p_fused``
equals ``p_<modality>``). That mean is ``p_fused_raw``; ``p_fused`` is it mapped through the model file's
calibration (equal without one), and ``prediction`` = 1 (marker present) when ``p_fused >= cutoff``, the model
file's cut-off, chosen on calibrated training scores. ``p_fused_low``/``p_fused_high`` (90 % interval) and
``ood_warning`` come from :mod:`DMIFLib.trust` (docs/trust.md).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from DMIFLib.atomic import atomic_write_text
from DMIFLib.failures import FAILURES_NAME, write_failures
from DMIFLib.model_file import FUSED, LoadedModel, load_model
from DMIFLib.preprocessing.slices import central_slices
from DMIFLib.trust.interval import capture_members
from DMIFLib.trust.prediction import finish, trust_cells

PREDICTIONS_NAME = "predictions.tsv"
SLICE_PREDICTIONS_NAME = "slice_predictions.tsv"
TRUST_COLUMNS = ("p_fused_raw", "p_fused_low", "p_fused_high", "ood_warning")


@dataclass
class CasePrediction:
    """One patient's result; probabilities are P(marker present) in [0, 1].

    ``probabilities``: modality -> patient probability; ``slice_probabilities``: modality and ``"fused"`` ->
    (n_slices,) array; ``slice_indices``: (n_slices,) indices along the stack's slice axis.
    """

    patient_id: str | None
    probabilities: dict[str, float]
    p_fused: float
    prediction: int
    cutoff: float
    n_slices: int
    slice_probabilities: dict[str, np.ndarray]
    slice_indices: np.ndarray
    p_fused_raw: float = float("nan")
    p_fused_low: float = float("nan")
    p_fused_high: float = float("nan")
    ood_warning: str = ""


def predict_stack(model: LoadedModel, stack, batch_size: int = 64, *,
                  interval_and_warning: bool = True) -> CasePrediction:
    """Predict one patient from its ``SliceStack`` (images[modality] (n, S, S) float32, z-scored): the raw
    prediction (:func:`_predict_raw`), then calibration, interval and out-of-distribution warning
    (:func:`DMIFLib.trust.prediction.finish`; ``interval_and_warning`` False: calibration only)."""
    with capture_members(model.nets[FUSED]) as members:
        prediction = _predict_raw(model, stack, batch_size)
    return finish(model, stack, prediction, members, batch_size, interval_and_warning)


def _predict_raw(model: LoadedModel, stack, batch_size: int = 64) -> CasePrediction:
    """Predict one patient from its ``SliceStack`` without calibration (``p_fused`` = the raw mean of the slice
    probabilities; over the central ``model.patient_slices`` slices when the model file sets it, as the nets
    were trained on them, else over all; ``slice_probabilities`` holds every slice).

    Raises ``ValueError`` naming the patient when the stack lacks a modality, has no slice, or its slice size
    differs from the model's. Each modality's MI-Net scattering is computed once and shared by that modality's
    DMIF-Net and the fused net's branch (see :func:`_slice_logits`), under ``torch.inference_mode``.
    """
    from DMIFLib.training.stage import predict_proba

    who = stack.patient_id or "slice stack"
    x = stack_input(model, stack)
    if _shares_scattering(model):
        slices = _predict_shared(model, x, batch_size)
    else:
        slices = {m: predict_proba(model.nets[m], x[:, i:i + 1], batch_size, model.device)
                  for i, m in enumerate(model.modalities)}
        single = len(model.modalities) == 1 and model.nets[FUSED] is model.nets[model.modalities[0]]
        slices[FUSED] = (slices[model.modalities[0]] if single
                         else predict_proba(model.nets[FUSED], x, batch_size, model.device))
    central = central_slices(stack.n_slices, model.patient_slices)
    p_fused = float(np.mean(slices[FUSED][central]))
    if not all(np.isfinite(p).all() for p in slices.values()):
        raise ValueError(f"{who}: the model gives NaN/inf probabilities (non-finite input slices or weights)")
    return CasePrediction(
        patient_id=stack.patient_id,
        probabilities={m: float(np.mean(slices[m][central])) for m in model.modalities},
        p_fused=p_fused, prediction=int(p_fused >= model.cutoff), cutoff=model.cutoff, n_slices=stack.n_slices,
        slice_probabilities=slices, slice_indices=np.asarray(stack.slice_indices),
    )


def stack_input(model: LoadedModel, stack) -> torch.Tensor:
    """The model's input (n, M, S, S) float32 of a ``SliceStack``: its modalities stacked as channels in the
    model's order. Raises ``ValueError`` naming the patient for an empty stack or a slice size other than the
    model's."""
    who = stack.patient_id or "slice stack"
    if stack.n_slices == 0:
        raise ValueError(f"{who}: no slice inside the ROI box")
    x = torch.from_numpy(np.ascontiguousarray(stack.stacked(model.modalities), dtype=np.float32))
    size = model.settings.slice_size
    if tuple(x.shape[-2:]) != (size, size):
        raise ValueError(f"{who}: slices are {tuple(x.shape[-2:])}, the model needs {size}×{size}")
    return x


def predict_case(model: LoadedModel, case) -> CasePrediction:
    """One patient (a :class:`~DMIFLib.methods.CaseInput`) with any method's model: the model file's method
    decides how (DMIF-Net: :func:`predict_stack` on the case's slice stack; a cross-validation ensemble of another
    method: the mean of its fold models, :mod:`DMIFLib.methods.fold_ensemble`)."""
    from DMIFLib.methods.fold_ensemble import predict_members
    from DMIFLib.methods.registry import get_method

    method = get_method(model.method)
    return predict_members(model, case, method) if model.members else method.predict(model, case)


def _scattering_key(net: torch.nn.Module) -> tuple | None:
    """What a DMIF-Net's MI-Net scattering depends on (it has no weights), or None for a net without one."""
    c = getattr(getattr(net, "mi", None), "config", None)
    return None if c is None else (tuple(c.scales), c.L, c.max_order, tuple(c.input_shape), c.in_channels)


def _shares_scattering(model: LoadedModel) -> bool:
    """True when every modality's DMIF-Net and the fused net's branch for it compute the same scattering."""
    branches = getattr(model.nets[FUSED], "branches", None)
    return branches is not None and all(
        m in branches and _scattering_key(model.nets[m]) is not None
        and _scattering_key(model.nets[m]) == _scattering_key(branches[m]) for m in model.modalities)


def _slice_logits(model: LoadedModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Logits (B,) of every net on a (B, M, S, S) batch, each modality's scattering computed once.

    A modality's DMIF-Net and the fused net's branch for it get the same MI-Net scattering coefficients (the
    scattering has no weights, and :func:`_shares_scattering` checked that their configurations agree); the
    fused logit is the multimodal net's head on its branches' concatenated features, as
    ``MultimodalDMIF.forward`` computes it.
    """
    fused = model.nets[FUSED]
    logits, features = {}, []
    for i, m in enumerate(model.modalities):
        part = x[:, i:i + 1]
        coeffs = model.nets[m].mi.scatter(part)
        logits[m] = model.nets[m].forward_with_scattering(part, coeffs)
        features.append(fused.branches[m].features_with_scattering(part, coeffs))
    logits[FUSED] = fused.head(torch.cat(features, dim=1)).squeeze(1)
    return logits


def _predict_shared(model: LoadedModel, x: torch.Tensor, batch_size: int) -> dict[str, np.ndarray]:
    """Slice probabilities (N,) float64 per modality and ``"fused"`` for (N, M, S, S) slices, batch by batch.

    Same numerics as ``predict_proba`` per net (eval mode; float16 autocast on CUDA), in inference mode.
    """
    device = model.device
    for net in model.nets.values():
        net.eval()
    out: dict[str, list[np.ndarray]] = {name: [] for name in (*model.modalities, FUSED)}
    with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.float16,
                                                enabled=device.type == "cuda"):
        for start in range(0, x.shape[0], batch_size):
            logits = _slice_logits(model, x[start:start + batch_size].to(device))
            for name, value in logits.items():
                out[name].append(torch.sigmoid(value.float()).cpu().numpy().astype(np.float64))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def prediction_tables(predictions: list[CasePrediction], modalities: tuple[str, ...]) -> tuple[str, str]:
    """(predictions.tsv text, slice_predictions.tsv text) for ``predictions``.

    predictions.tsv: patient_id, p_<modality>..., p_fused, prediction, cutoff, n_slices, p_fused_raw,
    p_fused_low, p_fused_high, ood_warning (the last four: :mod:`DMIFLib.trust`; an unknown bound is "nan");
    slice_predictions.tsv: patient_id, slice_index, p_<modality>..., p_fused (raw slice probabilities).
    """
    p_cols = [f"p_{m}" for m in modalities]
    patient = ["\t".join(["patient_id", *p_cols, "p_fused", "prediction", "cutoff", "n_slices", *TRUST_COLUMNS])]
    slices = ["\t".join(["patient_id", "slice_index", *p_cols, "p_fused"])]
    for pred in predictions:
        patient.append("\t".join([str(pred.patient_id), *(f"{pred.probabilities[m]:.6f}" for m in modalities),
                                  f"{pred.p_fused:.6f}", str(pred.prediction), f"{pred.cutoff:.6f}",
                                  str(pred.n_slices), *trust_cells(pred)]))
        for row, index in enumerate(pred.slice_indices):
            slices.append("\t".join([str(pred.patient_id), str(int(index)),
                                     *(f"{pred.slice_probabilities[m][row]:.6f}" for m in (*modalities, FUSED))]))
    return "\n".join(patient) + "\n", "\n".join(slices) + "\n"


def predict_cohort(cohort_csv: str | os.PathLike, model_path: str | os.PathLike, out_dir: str | os.PathLike,
                   device: str = "auto", progress: Callable[[dict], None] | None = None,
                   cancel: threading.Event | None = None, after_case: Callable | None = None) -> Path:
    """Predict every patient of a cohort; returns ``out_dir/predictions.tsv`` (also writes slice_predictions.tsv).

    Cases are preprocessed with the model file's settings (``case_slices`` reuses a cohort that
    ``dmif preprocess`` already processed; its cases' provenance must show the model's settings, else
    ``CohortError``). ``progress`` gets ``{"stage": "predict", "case", "cases", "patient_id"}`` per case;
    ``cancel`` is checked before each case. A case that fails does not stop the others: it is listed in
    ``out_dir/failures.tsv`` (:mod:`DMIFLib.failures`; header only when none failed). The tables are written
    atomically at the end. Raises ``CohortError`` / ``ModelFileError`` naming the file.
    ``after_case(model, case, stack, prediction)`` runs after each case's prediction (saliency volumes, case
    reports: :class:`DMIFLib.casereport.case_outputs.CaseOutputs`); when it raises, the case fails as a whole.
    """
    from DMIFLib.cohort import read_cohort
    from DMIFLib.methods.case_input import CaseInput
    from DMIFLib.preprocessing.cohort_settings import check_model_settings
    from DMIFLib.training.errors import RunCancelledError

    model = load_model(model_path, device)
    cases = read_cohort(cohort_csv, require_modalities=model.modalities)
    check_model_settings(model.settings.to_dict(), cases, cohort_csv, model_path)
    predictions, failures = [], []
    for number, case in enumerate(cases, start=1):
        if cancel is not None and cancel.is_set():
            raise RunCancelledError(f"prediction cancelled before case {case.patient_id}")
        if progress is not None:
            progress({"stage": "predict", "case": number, "cases": len(cases), "patient_id": case.patient_id})
        try:
            case_input = CaseInput.from_case(case)
            prediction = predict_case(model, case_input)
            if after_case is not None:
                after_case(model, case.only(model.modalities), case_input.slices(model.settings, model.modalities),
                           prediction)
            predictions.append(prediction)
        except RunCancelledError:
            raise
        except Exception as error:  # one bad case must not throw the others' results away
            failures.append((case.patient_id, str(error) if isinstance(error, ValueError)
                             else f"{type(error).__name__}: {error}"))
    out_dir = Path(out_dir)
    write_failures(out_dir / FAILURES_NAME, failures)
    patient_text, slice_text = prediction_tables(predictions, model.modalities)
    atomic_write_text(out_dir / SLICE_PREDICTIONS_NAME, slice_text)
    atomic_write_text(out_dir / PREDICTIONS_NAME, patient_text)
    return out_dir / PREDICTIONS_NAME
