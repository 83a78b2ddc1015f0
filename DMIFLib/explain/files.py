"""Saliency volumes as files: ``saliency/<patient_id>_<modality>.nii.gz`` on the reference (T1C) grid."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import SimpleITK as sitk  # noqa: N813

from DMIFLib.explain.saliency import saliency_volume
from DMIFLib.preprocessing.slices import SliceStack

SALIENCY_DIR = "saliency"


def saliency_file_name(patient_id: str, modality: str) -> str:
    """``<patient_id>_<modality>.nii.gz``, the id made file-system safe as the case folders are."""
    from DMIFLib.preprocessing.cohort_runner import case_folder_name

    return f"{case_folder_name(str(patient_id))}_{modality}.nii.gz"


def saliency_volumes(model: Any, stack: SliceStack, reference_image: sitk.Image, method: str = "gradcam",
                     **options: Any) -> dict[str, sitk.Image]:
    """modality -> float32 saliency image on ``reference_image``'s grid, for every modality of ``model``
    (a :class:`~DMIFLib.model_file.LoadedModel`); see :func:`~DMIFLib.explain.saliency.saliency_volume`."""
    return {m: saliency_volume(model, stack, reference_image, m, method, **options) for m in model.modalities}


def write_saliency(volumes: dict[str, sitk.Image], patient_id: str, out_dir: str | os.PathLike,
                   method: str) -> dict[str, Path]:
    """Write each volume atomically to ``out_dir/saliency/<patient_id>_<modality>.nii.gz`` (the method in the
    NIfTI description field); returns modality -> path."""
    from DMIFLib.preprocessing.io import write_image

    paths = {}
    for modality, image in volumes.items():
        image = sitk.Image(image)
        image.SetMetaData("descrip", f"DMIF saliency {method} {modality}"[:79])
        paths[modality] = write_image(image, Path(out_dir) / SALIENCY_DIR / saliency_file_name(patient_id, modality))
    return paths
