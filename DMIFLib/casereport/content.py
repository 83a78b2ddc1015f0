"""What a case report holds, and how it is gathered from a prediction, the model file and the preprocessing.

The probability and its interval come from the case's ``predictions.tsv`` row, whatever columns it has: the
columns ``p_fused_raw``, ``p_fused_low``, ``p_fused_high`` and ``ood_warning`` are used when they hold numbers/text
and the report says "no interval" when they are absent or ``nan``; "calibrated" only when the model file holds a
calibration (``CaseReport.calibration``, the calibrator's kind).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk  # noqa: N813

from DMIFLib.preprocessing.roi import OrientedBox

RESEARCH_USE = ("Research use only. Not a medical device; not for diagnosis or treatment decisions. The model and "
                "its probability are only as good as the cohort it was trained on.")
METHOD_NOTES = {
    "gradcam": "Grad-CAM on DF-Net's last block (the CNN branch only; the wavelet-scattering branch is not seen); "
               "non-negative, coarse (8×8 at 128×128 slices).",
    "occlusion": "Occlusion (16×16 patches, stride 8, baseline 0) of the whole DMIF-Net; red = evidence for the "
                 "marker, blue = against.",
    "integrated_gradients": "Integrated gradients (baseline 0, 32 steps) of the whole DMIF-Net; red = evidence for "
                            "the marker, blue = against.",
}


@dataclass
class CaseReport:
    """Everything one case report shows. Images are SimpleITK (LPS); ``saliency`` maps lie on ``reference``'s grid.

    ``row``: the case's ``predictions.tsv`` row as text; ``model``: provenance label -> text; ``qa_png``: title ->
    PNG bytes (registration checkerboards, the box); ``qa_notes``: lines of text; ``warnings``: lines of text;
    ``calibration``: the model's calibrator ("temperature", "platt", "isotonic"), None when uncalibrated.
    """

    patient_id: str
    marker: str
    row: Mapping[str, str]
    reference_name: str
    reference: sitk.Image
    box: OrientedBox
    saliency: Mapping[str, sitk.Image]
    saliency_method: str | None
    model: Mapping[str, str]
    qa_png: Mapping[str, bytes] = field(default_factory=dict)
    qa_notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    calibration: str | None = None

    def number(self, column: str) -> float | None:
        """The row's ``column`` as a float, None when absent, empty, not a number or not finite ("nan")."""
        try:
            value = float(self.row[column])
        except (KeyError, TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None

    @property
    def interval(self) -> tuple[float, float] | None:
        low, high = self.number("p_fused_low"), self.number("p_fused_high")
        return None if low is None or high is None else (low, high)

    def probability_text(self) -> str:
        """'0.78 (0.64–0.88)', or '0.78 (no interval)'."""
        p = self.number("p_fused")
        interval = self.interval
        shown = "–" if p is None else f"{p:.2f}"
        return f"{shown} ({interval[0]:.2f}–{interval[1]:.2f})" if interval else f"{shown} (no interval)"

    def calibration_note(self) -> str:
        raw = self.number("p_fused_raw")
        if self.calibration is None or raw is None:
            return ("Not calibrated: the probability is the network's output (mean over slices); read it as a score "
                    "that ranks patients, not as a frequency.")
        return (f"Calibrated ({self.calibration}) on the model's validation patients (raw network score "
                f"{raw:.2f}).")

    def interval_note(self) -> str:
        if self.interval is None:
            return "No interval: the predictions of this model give none (no p_fused_low / p_fused_high)."
        return ("Interval p_fused_low–p_fused_high as the prediction gives it (docs/trust.md: how it is made and its "
                "measured coverage).")


def prediction_row(prediction: Any, modalities: tuple[str, ...]) -> dict[str, str]:
    """The ``predictions.tsv`` row of one CasePrediction as {column: text} (every column the tables write)."""
    from DMIFLib.inference import prediction_tables

    header, line = prediction_tables([prediction], modalities)[0].splitlines()[:2]
    return dict(zip(header.split("\t"), line.split("\t"), strict=True))


def model_provenance(model: Any) -> dict[str, str]:
    """Provenance of a LoadedModel for the report: name, version, marker, modalities, training date, cohort
    size, test metrics, preset, cohort hash, cut-off (what its ``info`` records; 'not recorded' otherwise)."""
    info = model.info or {}
    name = info.get("name") or (Path(model.path).stem if getattr(model, "path", None) else "DMIF-Net")
    patients = info.get("patients")
    cv = info.get("cross_validation") or {}
    if isinstance(patients, Mapping):
        size = ", ".join(f"{k} {v}" for k, v in patients.items()) + f" (total {sum(patients.values())})"
    elif cv:
        size = f"{cv.get('k')}-fold cross-validation × {cv.get('repeats')} (patients not recorded)"
    else:
        size = "not recorded"
    metrics = info.get("test_auc") or {f"out-of-fold/{k}": v for k, v in (cv.get("oof_auc") or {}).items()}
    metric_text = ", ".join(f"AUC {k} {float(v):.3f}" for k, v in metrics.items()
                            if isinstance(v, (int, float))) or "not recorded"
    return {"model": str(name), "version": str(info.get("version") or f"DMIFLib {model.package_version}"),
            "marker": str(model.marker), "modalities": ", ".join(model.modalities),
            "trained": str(info.get("trained_utc") or "not recorded"), "training cohort": size,
            "held-out metrics": metric_text, "preset": str(info.get("preset", "not recorded")),
            "cohort sha256": str(info.get("cohort_sha256", "not recorded"))[:16],
            "cut-off": f"{float(model.cutoff):.4f}"}


def qa_from_provenance(provenance_json: str | os.PathLike) -> tuple[dict[str, bytes], list[str]]:
    """QA images (registration checkerboards, then the box overlay) and notes (Mattes MI before → after, the
    brain volume) of a case that ``dmif preprocess`` wrote, from its ``provenance.json``."""
    path = Path(provenance_json)
    record = json.loads(path.read_text(encoding="utf-8"))
    images = {}
    for name in record.get("outputs", []):
        if name.startswith("qa_") and name.endswith(".png") and (path.parent / name).is_file():
            title = ("registration checkerboard " + name[len("qa_registration_"):-4]
                     if name.startswith("qa_registration_") else "ROI box over each modality")
            images[title] = (path.parent / name).read_bytes()
    images = dict(sorted(images.items(), key=lambda item: not item[0].startswith("registration")))
    notes = [f"registration {name} → {record.get('reference', 'reference')}: Mattes MI "
             f"{r['mattes_mi_before']:.3f} → {r['mattes_mi_after']:.3f} ({r.get('backend', '')})"
             for name, r in record.get("registration", {}).items()]
    mask = record.get("brain_mask", {})
    if mask:
        notes.append(f"brain mask: {mask.get('source', '?')}, {float(mask.get('volume_ml', 0)):.0f} ml")
    notes.append(f"preprocessed {record.get('created_utc', '?')} ({path})")
    return images, notes


def qa_from_stack(info: Mapping[str, Any]) -> tuple[dict[str, bytes], list[str]]:
    """QA notes of a case preprocessed on the fly (``SliceStack.info``): the registrations' Mattes MI; no images."""
    notes = [f"registration {name}: Mattes MI {r['mi_before']:.3f} → {r['mi_after']:.3f}"
             for name, r in (info.get("registration") or {}).items()]
    notes.append("No registration checkerboard: the case was preprocessed during prediction; `dmif preprocess` "
                 "writes the QA images.")
    return {}, notes


def case_warnings(report: CaseReport) -> list[str]:
    """The warnings a case report lists: out-of-distribution flags, no interval, no QA images, Grad-CAM's scope."""
    warnings = []
    ood = str(report.row.get("ood_warning", "")).strip()
    if ood and ood.lower() not in ("0", "false", "none", "no"):
        warnings.append(f"Outside what the model has seen: {ood}")
    if report.interval is None:
        warnings.append("No interval for this probability.")
    if not report.qa_png:
        warnings.append("No registration QA image for this case.")
    if report.saliency_method == "gradcam":
        warnings.append("Grad-CAM explains the CNN branch only and did not localise a known signal in the "
                        "sanity test (docs/trust.md); use occlusion for a closer look.")
    return warnings
