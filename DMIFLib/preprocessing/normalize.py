"""Per-patient z-score over brain voxels (paper §1.1 step 5)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk  # noqa: N813


def zscore(image: sitk.Image, mask: sitk.Image, zero_outside: bool = True) -> tuple[sitk.Image, dict[str, float]]:
    """(image − mean) / SD, with mean and SD over the voxels where ``mask`` > 0; float32 on ``image``'s grid.

    With ``zero_outside`` the voxels outside the mask are set to 0 (the brain mean: the background of a
    skull-stripped volume). Returns the image and ``{"mean", "sd", "n_voxels"}`` of the input over the mask.
    """
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    inside = sitk.GetArrayViewFromImage(mask) > 0
    values = array[inside]
    if values.size < 2:
        raise ValueError("z-score: fewer than 2 voxels in the mask")
    mean, sd = float(values.mean()), float(values.std())
    if not sd > 0:
        raise ValueError("z-score: the image is constant over the mask")
    out = (array - mean) / sd
    if zero_outside:
        out[~inside] = 0.0
    result = sitk.GetImageFromArray(out.astype(np.float32))
    result.CopyInformation(image)
    return result, {"mean": mean, "sd": sd, "n_voxels": int(values.size)}


def foreground_mask(image: sitk.Image) -> sitk.Image:
    """Non-background voxels (Otsu foreground), uint8 0/1: the z-score region when there is no brain mask."""
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), sigma=1.0)
    return sitk.Cast(sitk.OtsuThreshold(smooth, 0, 1, 256), sitk.sitkUInt8)
