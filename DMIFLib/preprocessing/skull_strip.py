"""Skull stripping: a user-supplied brain mask, or a built-in morphological fallback.

The fallback (:func:`fallback_brain_mask`) works on a T1-weighted image with skull: head = Otsu foreground;
brain tissue = head voxels brighter than a second Otsu threshold inside the head; an opening of ``erode_mm``
cuts the thin bridges to scalp and skull; the largest connected component is grown back, closed and
hole-filled. It is a fallback, not HD-BET: check the QA images. Inside 3D Slicer a backend may override
:meth:`DMIFLib.preprocessing.backend.PreprocessingBackend.brain_mask` to run HD-BET or SwissSkullStripper
(see docs/preprocessing.md).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk  # noqa: N813


def _radius(image: sitk.Image, mm: float) -> list[int]:
    """A structuring-element radius of ``mm`` in voxels per axis (at least 0)."""
    return [round(mm / s) for s in image.GetSpacing()]


def _largest_component(mask: sitk.Image) -> sitk.Image:
    components = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True)
    return sitk.Cast(components == 1, sitk.sitkUInt8)


def fallback_brain_mask(image: sitk.Image, erode_mm: float = 5.0, low: float = 0.55, high: float = 1.45
                        ) -> sitk.Image:
    """A uint8 0/1 brain mask on ``image``'s grid (a bias-corrected T1-weighted image with skull).

    Brain tissue is taken as the voxels within [``low``, ``high``] × the median intensity of a 25 mm sphere at
    the head's centre (dark bone and CSF and bright scalp fat fall outside); see the module docstring.
    """
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), sigma=1.0)
    head = sitk.BinaryFillhole(_largest_component(sitk.OtsuThreshold(smooth, 0, 1, 256)))
    head_array = sitk.GetArrayViewFromImage(head) > 0
    values = sitk.GetArrayViewFromImage(smooth)
    index = np.argwhere(head_array)  # (k, j, i)
    spacing = np.asarray(image.GetSpacing())[::-1]
    centre = index.mean(axis=0)
    near = np.linalg.norm((index - centre) * spacing, axis=1) <= 25.0
    reference = float(np.median(values[tuple(index[near].T)])) if near.any() else float(np.median(values[head_array]))
    tissue = sitk.Cast((smooth > low * reference) * (smooth < high * reference) * head, sitk.sitkUInt8)
    radius = _radius(image, erode_mm)
    core = _largest_component(sitk.BinaryErode(tissue, radius, sitk.sitkBall))
    brain = sitk.BinaryDilate(core, radius, sitk.sitkBall) * tissue
    brain = sitk.BinaryMorphologicalClosing(brain, _radius(image, 3.0), sitk.sitkBall)
    brain = _fill_holes_per_slice(sitk.BinaryFillhole(brain))
    return sitk.Cast(brain * head, sitk.sitkUInt8)


def _otsu(histogram: np.ndarray, edges: np.ndarray) -> float:
    """Otsu's threshold of a histogram (bin centres from ``edges``)."""
    centres = (edges[:-1] + edges[1:]) / 2.0
    weight = np.cumsum(histogram).astype(float)
    total = weight[-1]
    cum_mean = np.cumsum(histogram * centres)
    mean_low = cum_mean / np.maximum(weight, 1e-12)
    mean_high = (cum_mean[-1] - cum_mean) / np.maximum(total - weight, 1e-12)
    between = weight * (total - weight) * (mean_low - mean_high) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def _fill_holes_per_slice(mask: sitk.Image) -> sitk.Image:
    """Fill holes in every slice along the thickest axis (ventricles open to the edge in 3-D are closed in 2-D)."""
    from scipy import ndimage

    array = sitk.GetArrayFromImage(mask) > 0  # (k, j, i)
    axis = 2 - int(np.argmax(mask.GetSpacing()))
    filled = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(array, axis, 0)], axis=0)
    out = sitk.GetImageFromArray(np.moveaxis(filled, 0, axis).astype(np.uint8))
    out.CopyInformation(mask)
    return out


def check_mask(mask: sitk.Image) -> str | None:
    """The problem with a user brain mask (not 0/1, or empty), or None when it is usable."""
    array = sitk.GetArrayViewFromImage(mask)
    values = np.unique(array)
    if not np.all(np.isin(values, (0, 1))):
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        return f"the brain mask has values {shown}; a 0/1 mask is needed"
    if not np.any(array):
        return "the brain mask is empty"
    return None
