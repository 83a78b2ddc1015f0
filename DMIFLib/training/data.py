"""A cohort's slice stacks and labels for training, cached as ``.npz`` so that resumes and reruns skip the work."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from DMIFLib.cohort import CohortCase, read_cohort
from DMIFLib.preprocessing.errors import PreprocessingError
from DMIFLib.training.errors import RunCancelledError

if TYPE_CHECKING:
    from DMIFLib.preprocessing.slices import SliceStack


@dataclass
class PatientSlices:
    """One labelled patient: its ``SliceStack`` (images[modality] (n, S, S) float32) and label (0/1); ``split``
    and ``subject`` come from the cohort row."""

    patient_id: str
    label: int
    stack: SliceStack
    split: str | None = None
    subject: str | None = None


def _file_stamp(path: Path) -> list:
    try:
        stat = path.stat()
        return [str(path), stat.st_size, stat.st_mtime_ns]
    except OSError:
        return [str(path)]


def cache_key(case: CohortCase, settings) -> str:
    """SHA-256 of the preprocessing settings and the case's input files (path, size, modification time)."""
    files = [*(case.images[m] for m in case.modalities), *([case.brain_mask] if case.brain_mask else [])]
    if not case.roi_is_inline():
        files.append(Path(case.roi))
    blob = json.dumps({"settings": settings.to_dict(), "files": [_file_stamp(f) for f in files], "roi": case.roi,
                       **({"roi_labels": case.roi_labels} if case.roi_labels else {})},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cache_file(cache_dir: Path, patient_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", patient_id)[:60]
    return cache_dir / f"{safe}-{hashlib.sha1(patient_id.encode()).hexdigest()[:8]}.npz"


def unreadable_inputs(cases: Sequence[CohortCase]) -> list[str]:
    """One line per case whose input files (images, brain mask, ROI file) are missing or cannot be read, checked
    before any slow work: each file is opened, and an image's header is read (``ImageFileReader``)."""
    import SimpleITK as sitk  # noqa: N813

    from DMIFLib.preprocessing.roi import is_markups_file

    problems = []
    for case in cases:
        files = {m: Path(case.images[m]) for m in case.modalities}
        if case.brain_mask is not None:
            files["brain_mask"] = Path(case.brain_mask)
        if not case.roi_is_inline():
            files["roi"] = Path(case.roi)
        for name, path in files.items():
            try:
                if path.is_dir():  # a DICOM series folder: listing it is the check here
                    next(iter(path.iterdir()), None)
                    continue
                with open(path, "rb") as handle:
                    handle.read(1)
                if name != "roi" or not is_markups_file(path.name):  # a label image, as load_roi reads it
                    reader = sitk.ImageFileReader()
                    reader.SetFileName(str(path))
                    reader.ReadImageInformation()
            except (OSError, RuntimeError) as error:
                reason = "not found" if isinstance(error, FileNotFoundError) else (
                    getattr(error, "strerror", None) or str(error).strip().splitlines()[-1])
                problems.append(f"case {case.patient_id}: {name} {path}: {reason}")
    return problems


def load_cohort_slices(cohort: str | os.PathLike | Sequence[CohortCase], settings,
                       progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
                       cache_dir: str | os.PathLike | None = None,
                       modalities: Sequence[str] = ()) -> list[PatientSlices]:
    """Slice stacks of every labelled patient, in cohort order.

    ``cohort``: a cohort.csv path or its cases (every case needs a label and the ``modalities`` asked for).
    ``settings``: ``PreprocessSettings``. With ``cache_dir``, each stack is saved there as ``.npz`` keyed by
    :func:`cache_key` and reused while the settings and input files are unchanged. ``progress`` gets
    ``{"stage": "slices", "case", "cases", "patient_id"}``; ``cancel`` is checked before each case.
    A case that fails does not stop the others' extraction (their stacks are cached); then one
    ``PreprocessingError`` names every failed case. Raises ``CohortError`` for an unusable table.
    """
    from DMIFLib.preprocessing.pipeline import case_slices
    from DMIFLib.preprocessing.slices import SliceStack

    cases = (read_cohort(cohort, require_labels=True, require_modalities=modalities)
             if isinstance(cohort, (str, os.PathLike)) else list(cohort))
    if modalities:  # other images of a case are not read and do not pick the reference grid
        cases = [case.only(modalities) for case in cases]
    cache = Path(cache_dir) if cache_dir is not None else None
    out, failed = [], []
    for number, case in enumerate(cases, start=1):
        if cancel is not None and cancel.is_set():
            raise RunCancelledError(f"slice extraction cancelled before case {case.patient_id}")
        if progress is not None:
            progress({"stage": "slices", "case": number, "cases": len(cases), "patient_id": case.patient_id})
        key = cache_key(case, settings)
        path = _cache_file(cache, case.patient_id) if cache is not None else None
        stack = None
        if path is not None and path.is_file():
            cached = SliceStack.load(path)
            if cached.info.get("cache_key") == key:
                stack = cached
        if stack is None:
            try:
                stack = case_slices(case, settings)
            except PreprocessingError as error:
                failed.append(str(error.with_case(case.patient_id)))
                continue
            stack.patient_id = case.patient_id
            if path is not None:
                stack.info = {**stack.info, "cache_key": key}
                stack.save(path)
        out.append(PatientSlices(case.patient_id, int(case.label), stack, case.split, case.subject))
    if failed:
        kept = " (the others' slices are cached)" if cache is not None else ""
        raise PreprocessingError(f"{len(failed)} of {len(cases)} cases failed{kept}: " + "; ".join(failed))
    return out
