"""Radiomics features of a cohort: every case and modality, inside the tumour label or else the ROI box.

The region is the case's label image when its cohort ``roi`` is one (all non-zero voxels: a BraTS-style
multi-label segmentation counts as one tumour region), otherwise the ROI box (inline ``ras:``/``ijk:`` text or a
``.mrk.json`` markup) rasterised on the modality's grid; each row says which (``region`` = ``label`` or ``box``).
A case that cannot be read is reported in the failures and the other cases go on.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Callable, Sequence

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.atomic import atomic_write_text
from DMIFLib.cohort import CohortCase
from DMIFLib.preprocessing.errors import PreprocessingError
from DMIFLib.preprocessing.geometry import index_to_lps, lps_to_ras
from DMIFLib.preprocessing.roi import OrientedBox, load_roi
from DMIFLib.radiomics.extractor import extract_features
from DMIFLib.radiomics.params import RadiomicsError, RadiomicsParams, load_params


def roi_is_box(roi: str) -> bool:
    """True when a cohort ``roi`` value is a box (inline text or a markups file), False for a label image."""
    return roi.startswith(("ras:", "ijk:")) or roi.lower().endswith(".json")


def box_mask(box: OrientedBox, reference: sitk.Image) -> sitk.Image:
    """uint8 {0, 1} mask on ``reference``'s grid: 1 where the voxel centre lies inside the (RAS) box."""
    lo, hi = box.ijk_bounds(reference)
    grid = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1)
    ras = lps_to_ras(index_to_lps(reference, grid.reshape(-1, 3)))  # (N, 3) voxel centres
    inside = box.contains_ras(ras).reshape(grid.shape[:3])  # (i, j, k)
    array = np.zeros(reference.GetSize()[::-1], dtype=np.uint8)  # (z, y, x)
    array[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = inside.transpose(2, 1, 0)
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(reference)
    return mask


def case_region(case: CohortCase, reference: sitk.Image) -> tuple[sitk.Image, str]:
    """``(mask, "label" | "box")``: the case's tumour region as a uint8 {0, 1} mask on ``reference``'s grid.

    A label image on another grid is resampled onto ``reference`` (nearest neighbour, physical space).
    """
    from DMIFLib.preprocessing.io import read_image

    if roi_is_box(case.roi):
        return box_mask(load_roi(case.roi, reference, case=case.patient_id), reference), "box"
    label = read_image(case.roi, what="ROI label", case=case.patient_id)
    label = sitk.Resample(label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())
    mask = sitk.Cast(sitk.NotEqual(label, 0), sitk.sitkUInt8)
    mask.CopyInformation(reference)
    return mask, "label"


def extract_cohort_features(cases: Sequence[CohortCase], params: RadiomicsParams | None = None,
                            modalities: Sequence[str] | None = None,
                            progress: Callable[[dict], None] | None = None,
                            cancel: threading.Event | None = None) -> tuple[list[dict], list[tuple[str, str]]]:
    """Features of each case: ``(rows, failures)``.

    A row is ``{"patient_id", "region", "<modality>_<feature>": value, ...}`` (e.g. ``t1c_original_glcm_Idmn``);
    ``modalities`` defaults to each case's own. ``failures`` lists ``(patient_id, one-line message)``.
    ``progress`` gets ``{"case", "index", "total"}`` after each case; ``cancel`` is checked between cases.
    """
    from DMIFLib.preprocessing.io import read_image

    params = params or load_params()
    rows, failures = [], []
    for index, case in enumerate(cases):
        if cancel is not None and cancel.is_set():
            break
        try:
            wanted = list(modalities) if modalities is not None else list(case.images)
            missing = [m for m in wanted if m not in case.images]
            if missing:
                raise RadiomicsError(f"case {case.patient_id}: no image for modality {', '.join(missing)}")
            row: dict = {"patient_id": case.patient_id}
            for modality in wanted:
                image = read_image(case.images[modality], what=f"{modality} image", case=case.patient_id)
                mask, row["region"] = case_region(case, image)
                features = extract_features(image, mask, params, name=f"case {case.patient_id} ({modality})")
                row.update({f"{modality}_{name}": value for name, value in features.items()})
            rows.append(row)
        except (PreprocessingError, RadiomicsError) as error:
            failures.append((case.patient_id, str(error)))
        except (ValueError, RuntimeError) as error:  # SimpleITK or MIRP on an input they cannot use
            first_line = (str(error).strip().splitlines() or [""])[0]
            failures.append((case.patient_id, f"case {case.patient_id}: {type(error).__name__}: {first_line}"))
        if progress is not None:
            progress({"case": case.patient_id, "index": index + 1, "total": len(cases)})
    return rows, failures


def write_features_csv(rows: Sequence[dict], path: str | os.PathLike) -> None:
    """Write rows (one per case, columns of the first row) as CSV, atomically; values with full precision."""
    if not rows:
        raise RadiomicsError(f"{path}: no case produced features; nothing to write")
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="", extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())
