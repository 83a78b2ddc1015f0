"""TCIA LGG-1p19qDeletion in every form it is downloaded, to unlabelled :class:`~DMIFLib.cohort.CohortCase` lists.

Everything under ``root`` is searched, so ``root`` may be the retriever's output, ``manifest-<ts>/``, the
collection folder ``LGG-1p19qDeletion/``, ``DOI/`` or a single patient's folder; ``metadata/`` folders are skipped.

- DICOM (NBIA Data Retriever with descriptive names, the TCIA data retriever CLI, the 2017 NBIA classic
  ``DOI/<PatientID>/<StudyUID>/<SeriesUID>/``): series are found and classified by their headers
  (:mod:`DMIFLib.datasets.dicom_series`), the patient by PatientID. A patient with several studies takes the study
  holding the tumour DICOM SEG; the SEG (:mod:`DMIFLib.datasets.dicom_seg`) becomes ``<image_dir>/<ID>/roi.nii.gz``
  on the grid of the series it references, and the case's ``roi_space`` column names that series' modality
  (``t2w``: the preprocessing carries the mask to the T1C through the registration). The collection holds T2 and
  post-contrast T1 only, so a T1 series without a contrast mark is taken as T1C (noted in the ``note`` column).
- NIfTI (2017 ``NiFTiSegmentationsEdited/<ID>/<ID>_T1.nii.gz`` = post-contrast T1 registered to T2, ``_T2``,
  ``_Segmentation``): the mask is told by content (a mask has at most :data:`MASK_MAX_VALUES` integer values), so
  swapped files such as LGG-223's (``LGG-223_Segnimentation.nii.gz`` is the T2, ``LGG-223-T2.nii.gz`` the mask) are
  caught and noted (should a mask share the T2's grid but not the T1's, ``roi_space`` = t2w). A patient present as
  NIfTI and as DICOM uses the NIfTI files (one grid, edited masks).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.cohort import MODALITIES, CohortCase, CohortError
from DMIFLib.datasets.dicom_seg import referenced_series_uid, seg_to_label
from DMIFLib.datasets.dicom_series import (
    SKIPPED_FOLDERS,
    DicomSeries,
    choose,
    classify_series,
    echo_files,
    read_series,
    retriever_descriptions,
    scan_dicom,
    series_image,
)
from DMIFLib.preprocessing.cohort_runner import case_folder_name
from DMIFLib.preprocessing.errors import PreprocessingError
from DMIFLib.preprocessing.io import write_image

MASK_MAX_VALUES = 10
"""A NIfTI whose voxels are integers with at most this many distinct values is a mask."""

_NIFTI = (".nii.gz", ".nii")
_IMAGE_MODALITIES = ("t1c", "t2w", "flair")


def _nifti_files(root: Path) -> dict[Path, list[Path]]:
    groups: dict[Path, list[Path]] = defaultdict(list)
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d.lower() not in SKIPPED_FOLDERS)
        for name in sorted(files):
            if name.lower().endswith(_NIFTI) and not name.startswith("."):
                groups[Path(folder)].append(Path(folder) / name)
    return groups


def is_mask(path: Path) -> bool:
    """True when the image's voxels are integers with at most :data:`MASK_MAX_VALUES` distinct values."""
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
        return False
    return len(np.unique(array)) <= MASK_MAX_VALUES


def _name_tag(path: Path, patient: str) -> str:
    stem = path.name.lower()
    stem = stem[len(patient):] if stem.startswith(patient.lower()) else stem
    if re.search(r"seg", stem):
        return "seg"
    if re.search(r"t1", stem):
        return "t1"
    if re.search(r"t2", stem):
        return "t2"
    return ""


def nifti_case(folder: Path, files: list[Path]) -> CohortCase:
    """The 2017 NIfTI triplet of one patient folder; raises :class:`CohortError` with the reason."""
    patient = folder.name
    if len(files) != 3:
        raise CohortError(f"{patient}: {len(files)} NIfTI files in {folder} (T1, T2 and Segmentation expected)")
    try:
        masks = [f for f in files if is_mask(f)]
    except RuntimeError as error:
        raise CohortError(f"{patient}: cannot read a NIfTI file in {folder} ({error})") from error
    if len(masks) != 1:
        raise CohortError(f"{patient}: {len(masks)} of the NIfTI files look like a mask (one expected) in {folder}")
    mask = masks[0]
    rest = [f for f in files if f != mask]
    tags = {f: _name_tag(f, patient) for f in rest}
    t1 = [f for f in rest if tags[f] == "t1"]
    if len(t1) != 1:
        raise CohortError(f"{patient}: cannot tell the T1 file among {', '.join(f.name for f in rest)}")
    t2 = next(f for f in rest if f != t1[0])
    extra = {}
    if _name_tag(mask, patient) != "seg" or tags[t2] != "t2":
        extra["note"] = f"files swapped: mask is {mask.name}, T2 is {t2.name} (by content)"
    grids = {f: _grid(f) for f in (mask, t1[0], t2)}
    if grids[mask] != grids[t1[0]] and grids[mask] == grids[t2]:
        extra["roi_space"] = "t2w"  # the mask lies on the T2 grid only: carried to the T1C by the registration
    return CohortCase(patient, {"t1c": t1[0], "t2w": t2}, str(mask), extra=extra)


def _grid(path: Path) -> tuple:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return (reader.GetSize(), *(tuple(round(v, 4) for v in values) for values in
                                (reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection())))


def _study_of(series: list[DicomSeries]) -> tuple[str, list[DicomSeries], DicomSeries] | None:
    studies: dict[str, list[DicomSeries]] = defaultdict(list)
    for s in series:
        studies[s.study_uid].append(s)
    for uid in sorted(studies):
        segs = [s for s in studies[uid] if s.is_seg]
        if segs:
            return uid, studies[uid], segs[0]
    return None


def dicom_case(patient: str, series: list[DicomSeries], image_dir: Path) -> CohortCase:
    """One patient's case from its DICOM series; raises :class:`CohortError` / :class:`PreprocessingError`."""
    found = _study_of(series)
    if found is None:
        descriptions = ", ".join(s.label() for s in series)
        raise CohortError(f"{patient}: no DICOM SEG (tumour segmentation) in any study (series {descriptions}); "
                          "for the 2017 release unzip NiFTiSegmentationsEdited.zip under the same folder")
    _, study, seg = found
    kinds = {s.uid: classify_series(s) for s in study}
    referenced_uid = referenced_series_uid(seg.files[0])
    referenced = next((s for s in study if s.uid == referenced_uid), None)
    if referenced is None:
        raise CohortError(f"{patient}: the SEG {seg.label()} references series {referenced_uid}, which is not in "
                          "the download")
    extra: dict[str, str] = {}
    chosen: dict[str, DicomSeries] = {}
    for modality in _IMAGE_MODALITIES:
        pick = choose((s for s in study if kinds[s.uid] == modality), referenced_uid)
        if pick is not None:
            chosen[modality] = pick
    if "t1c" not in chosen:
        native = choose(s for s in study if kinds[s.uid] == "t1")
        if native is None:
            listed = ", ".join(f"{s.label()} ({kinds[s.uid] or '?'})" for s in study if not s.is_seg)
            raise CohortError(f"{patient}: no T1C series (series: {listed})")
        chosen["t1c"] = native
        extra["note"] = (f"T1 series {native.label()} has no contrast mark; taken as T1C (the collection's T1 is "
                         "post-contrast)")
        kinds[native.uid] = "t1c"
    roi_space = kinds[referenced.uid]
    if roi_space not in chosen or chosen[roi_space].uid != referenced.uid:
        raise CohortError(f"{patient}: the SEG is drawn on series {referenced.label()} ({roi_space or 'unknown'}), "
                          "which is not one of the images used")
    case_dir = image_dir / case_folder_name(patient)
    images = {m: series_image(s, m, case_dir / f"{m}.nii.gz") for m, s in chosen.items()}
    echo = max(referenced.echo_times) if len(referenced.echo_times) > 1 else None
    grid = read_series(echo_files(referenced, echo))
    label = seg_to_label(seg.files[0], grid, referenced.frame_of_reference_uid, case=patient)
    roi = write_image(label, case_dir / "roi.nii.gz")
    extra.update({f"{m}_series": s.description for m, s in chosen.items()})
    if roi_space != "t1c":
        extra["roi_space"] = roi_space
    return CohortCase(patient, {m: images[m] for m in MODALITIES if m in images}, str(roi), extra=extra)


def tcia_cases(root: str | os.PathLike, image_dir: str | os.PathLike) -> tuple[list[CohortCase], list[str]]:
    """Unlabelled cases of a TCIA LGG-1p19qDeletion download under ``root`` and one line per skipped patient.

    Images written for the cohort (a SEG as a label image, one echo of a dual-echo series, a series sharing its
    folder) go to ``image_dir/<PatientID>/`` (made file-system safe). Raises :class:`CohortError` when ``root`` is
    missing or holds no usable patient.
    """
    root = Path(root)
    if not root.is_dir():
        raise CohortError(f"{root}: folder not found")
    image_dir = Path(image_dir)
    cases: dict[str, CohortCase] = {}
    skipped: dict[str, str] = {}
    for folder, files in sorted(_nifti_files(root).items()):
        if image_dir.resolve() in (folder.resolve(), *folder.resolve().parents):
            continue
        try:
            case = nifti_case(folder, files)
        except CohortError as error:
            skipped[folder.name] = str(error)
            continue
        cases[case.patient_id] = case
    by_patient: dict[str, list[DicomSeries]] = defaultdict(list)
    for series in scan_dicom(root, retriever_descriptions(root)):
        by_patient[series.patient_id or "(no PatientID)"].append(series)
    for patient, series in sorted(by_patient.items()):
        if patient in cases:
            continue
        try:
            cases[patient] = dicom_case(patient, series, image_dir)
            skipped.pop(patient, None)
        except (CohortError, PreprocessingError) as error:
            text = str(error)
            skipped[patient] = text if text.startswith(patient) else f"{patient}: {text}"
        except Exception as error:  # a malformed file of one patient must not stop the others
            skipped[patient] = f"{patient}: {type(error).__name__}: {error}"
    if not cases:
        reasons = "; ".join(list(skipped.values())[:5]) or "no DICOM series and no NIfTI files"
        raise CohortError(f"{root}: no usable patient ({reasons})")
    return [cases[p] for p in sorted(cases)], [skipped[p] for p in sorted(skipped) if p not in cases]
