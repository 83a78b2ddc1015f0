"""Per-case extras of a prediction run: saliency volumes (``saliency/``) and case reports (``reports/``).

:class:`CaseOutputs` is called by :func:`DMIFLib.inference.predict_cohort` with each predicted case; what fails
here raises (the cohort run lists the case in failures.tsv and goes on with the others).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import SimpleITK as sitk  # noqa: N813

from DMIFLib.casereport.content import (
    CaseReport,
    case_warnings,
    model_provenance,
    prediction_row,
    qa_from_provenance,
    qa_from_stack,
)
from DMIFLib.casereport.document import REPORTS_DIR, write_case_report
from DMIFLib.explain.files import saliency_volumes, write_saliency

DEFAULT_REPORT_SALIENCY = "gradcam"
"""The saliency method a report uses when none is asked for (one forward and backward pass per batch on CPU)."""


def build_case_report(model: Any, stack: Any, prediction: Any, reference_name: str, reference: sitk.Image,
                      saliency: dict[str, sitk.Image], method: str | None,
                      provenance_json: str | os.PathLike | None = None) -> CaseReport:
    """The :class:`CaseReport` of one predicted case: ``stack`` (its SliceStack, with the box), ``prediction``
    (its CasePrediction), ``reference`` (the image the slices were cut from), ``saliency`` on its grid; the QA from
    the case's ``provenance.json`` when ``dmif preprocess`` wrote one, else from ``stack.info``."""
    if provenance_json is not None and Path(provenance_json).is_file():
        qa_png, qa_notes = qa_from_provenance(provenance_json)
    else:
        qa_png, qa_notes = qa_from_stack(stack.info)
    report = CaseReport(patient_id=str(prediction.patient_id), marker=str(model.marker),
                        row=prediction_row(prediction, tuple(model.modalities)), reference_name=reference_name,
                        reference=reference, box=stack.box, saliency=saliency, saliency_method=method,
                        model=model_provenance(model), qa_png=qa_png, qa_notes=qa_notes,
                        calibration=(getattr(model, "calibration", None) or {}).get("method"))
    report.warnings = case_warnings(report)
    return report


class CaseOutputs:
    """Saliency volumes (``saliency``: a method; None: none) and/or case reports (``report``) for each predicted
    case, under ``out_dir``. A report without a saliency method uses :data:`DEFAULT_REPORT_SALIENCY` for its
    overlay (not written as files; a model it cannot explain gets a report without overlay, with a warning).
    ``cohort_dir`` resolves a preprocessed case's ``provenance`` column (its QA images). ``written`` maps
    patient_id -> {"t1c": saliency path, ..., "html": path, "pdf": path}."""

    def __init__(self, out_dir: str | os.PathLike, saliency: str | None = None, report: bool = False,
                 pdf: bool = True, cohort_dir: str | os.PathLike | None = None) -> None:
        self.out_dir, self.method, self.report, self.pdf = Path(out_dir), saliency, report, pdf
        self.cohort_dir = Path(cohort_dir) if cohort_dir is not None else None
        self.written: dict[str, dict[str, Path]] = {}

    def _provenance(self, case: Any) -> Path | None:
        """A preprocessed case's provenance.json: its ``provenance`` column (relative to the cohort's folder), else
        beside its reference volume (a cohort copied elsewhere, as DMIFLib.preprocessing.cohort_settings finds it)."""
        from DMIFLib.preprocessing.pipeline import is_preprocessed

        if not is_preprocessed(case):
            return None
        relative = case.extra.get("provenance")
        candidates = [self.cohort_dir / relative] if relative and self.cohort_dir else []
        candidates.append(Path(case.images[case.reference]).parent / "provenance.json")
        return next((c for c in candidates if c.is_file()), None)

    def __call__(self, model: Any, case: Any, stack: Any, prediction: Any) -> None:
        """Write the outputs of one case: ``model`` the LoadedModel, ``case`` the CohortCase restricted to its
        modalities, ``stack`` the case's SliceStack, ``prediction`` its CasePrediction."""
        from DMIFLib.preprocessing.io import read_image

        reference_name = case.reference
        reference = read_image(case.images[reference_name], what=f"{reference_name} image", case=case.patient_id)
        method = self.method or DEFAULT_REPORT_SALIENCY
        missing = None
        try:
            volumes = saliency_volumes(model, stack, reference, method)
        except ValueError as error:  # e.g. Grad-CAM on a net without DF-Net: asked for, the case fails
            if self.method:
                raise
            volumes, missing = {}, f"No saliency map: {error}"
        paths: dict[str, Path] = {}
        if self.method:
            paths.update(write_saliency(volumes, case.patient_id, self.out_dir, method))
        if self.report:
            report = build_case_report(model, stack, prediction, reference_name, reference, volumes, method,
                                       self._provenance(case))
            if missing:
                report.warnings.insert(0, missing)
            paths.update(write_case_report(report, self.out_dir / REPORTS_DIR, pdf=self.pdf))
        self.written[case.patient_id] = paths
