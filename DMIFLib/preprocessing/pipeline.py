"""The pipeline: images → registered, bias-corrected, skull-stripped, z-scored volumes on the reference grid
(T1C when present, see :func:`DMIFLib.cohort.reference_modality`) → slices.

:func:`preprocess_volumes` runs the volume steps (the part ``dmif preprocess`` saves);
:func:`image_slices` adds the ROI crop; :func:`case_slices` does both for a :class:`~DMIFLib.cohort.CohortCase`,
or only the crop when the case was already preprocessed (``preprocessed`` column set by ``dmif preprocess``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.cohort import MODALITIES, CohortCase, reference_modality
from DMIFLib.preprocessing.backend import PreprocessingBackend, RegistrationResult, default_backend
from DMIFLib.preprocessing.errors import PreprocessingError
from DMIFLib.preprocessing.io import image_problem, read_image
from DMIFLib.preprocessing.normalize import foreground_mask, zscore
from DMIFLib.preprocessing.roi import OrientedBox, load_roi
from DMIFLib.preprocessing.roi_space import label_on_reference, roi_space
from DMIFLib.preprocessing.settings import PreprocessSettings
from DMIFLib.preprocessing.skull_strip import check_mask
from DMIFLib.preprocessing.slices import SliceStack, extract_slices

MIN_OVERLAP = 0.5
"""Least fraction of the reference's foreground that a registered modality must cover."""


@dataclass
class PreprocessedVolumes:
    """Every modality on the reference grid (:func:`~DMIFLib.cohort.reference_modality`), float32, after the
    steps ``settings`` asked for.

    ``mask`` is the brain mask (or the foreground mask when skull stripping is off), uint8 0/1.
    ``registrations[modality]`` holds each registered modality's result; ``stats`` the z-score statistics;
    ``timings`` seconds per step.
    """

    volumes: dict[str, sitk.Image]
    mask: sitk.Image
    reference: str
    registrations: dict[str, RegistrationResult] = field(default_factory=dict)
    stats: dict[str, dict] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    mask_source: str = ""


def _ordered(images: Mapping[str, sitk.Image]) -> list[str]:
    known = [m for m in MODALITIES if m in images]
    return known + [m for m in images if m not in known]


def _coverage(reference: sitk.Image, moving: sitk.Image, transform: sitk.Transform, region: sitk.Image) -> float:
    """Fraction of ``region`` voxels (on the reference grid) that ``transform`` maps inside ``moving``."""
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    inside = sitk.Resample(ones, reference, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    region_array = sitk.GetArrayViewFromImage(region) > 0
    return float(np.mean(sitk.GetArrayViewFromImage(inside)[region_array] > 0)) if region_array.any() else 0.0


def _extent_lps(image: sitk.Image) -> str:
    """The LPS bounding box of ``image``'s voxel centres, e.g. ``[-90..90, -120..100, -70..80]`` (mm)."""
    size = np.asarray(image.GetSize()) - 1
    corners = [image.TransformContinuousIndexToPhysicalPoint([float(c) for c in size * np.array(bits)])
               for bits in np.ndindex(2, 2, 2)]
    low, high = np.min(corners, axis=0), np.max(corners, axis=0)
    return "[" + ", ".join(f"{lo:.0f}..{hi:.0f}" for lo, hi in zip(low, high, strict=True)) + "]"


def preprocess_volumes(images: Mapping[str, sitk.Image], settings: PreprocessSettings,
                       brain_mask: sitk.Image | None = None, backend: PreprocessingBackend | None = None,
                       case: str | None = None) -> PreprocessedVolumes:
    """Register every modality to the reference (T1C, else native T1, T2W, FLAIR), resample onto its grid, N4,
    skull strip, z-score. Images are SimpleITK images in LPS; the result is on the reference's grid.

    Raises :class:`PreprocessingError` (naming ``case``) for modalities that do not overlap, an unusable brain
    mask, or a constant image.
    """
    if not images:
        raise PreprocessingError("no image given", case=case)
    for name, image in images.items():
        problem = image_problem(image, f"{name} image")
        if problem:
            raise PreprocessingError(problem, case=case)
    backend = backend or default_backend()
    names = _ordered(images)
    reference_name = reference_modality(names)
    reference = sitk.Cast(images[reference_name], sitk.sitkFloat32)
    timings: dict[str, float] = {}
    head = foreground_mask(reference)
    volumes: dict[str, sitk.Image] = {reference_name: reference}
    registrations: dict[str, RegistrationResult] = {}
    for name in names:
        if name == reference_name:
            continue
        moving = sitk.Cast(images[name], sitk.sitkFloat32)
        if _coverage(reference, moving, sitk.Euler3DTransform(), head) == 0.0:
            raise PreprocessingError(f"{name} and {reference_name} do not overlap in physical space: "
                                     f"{name} spans {_extent_lps(moving)}, {reference_name} spans "
                                     f"{_extent_lps(reference)} mm LPS (check the image headers' origin and "
                                     "direction)", case=case)
        transform: sitk.Transform = sitk.Euler3DTransform()
        if settings.register:
            start = time.perf_counter()
            result = backend.register_rigid(reference, moving, settings)
            timings[f"register_{name}"] = time.perf_counter() - start
            registrations[name] = result
            transform = result.transform
        covered = _coverage(reference, moving, transform, head)
        if covered < MIN_OVERLAP:
            raise PreprocessingError(f"after registration {name} covers only {covered:.0%} of the {reference_name} "
                                     f"head (at least {MIN_OVERLAP:.0%} needed): the modalities do not overlap",
                                     case=case)
        volumes[name] = sitk.Resample(moving, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    if settings.n4:
        for name in names:
            start = time.perf_counter()
            volumes[name] = backend.bias_correct(volumes[name], settings, head)
            timings[f"n4_{name}"] = time.perf_counter() - start
    start = time.perf_counter()
    if brain_mask is not None and settings.skull_strip != "none":
        mask = sitk.Resample(brain_mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        problem = check_mask(mask)
        if problem:
            raise PreprocessingError(f"{problem} (after resampling onto the {reference_name} grid)", case=case)
        mask_source = "user"
    elif settings.skull_strip == "mask":
        raise PreprocessingError("skull_strip='mask' needs a brain mask (cohort column brain_mask)", case=case)
    elif settings.skull_strip == "auto":
        mask = backend.brain_mask(volumes[reference_name], settings)
        mask_source = f"{backend.name} fallback"
        if not sitk.GetArrayViewFromImage(mask).any():
            raise PreprocessingError("skull stripping found no brain; give a brain mask", case=case)
    else:
        mask, mask_source = head, "foreground (no skull stripping)"
    timings["skull_strip"] = time.perf_counter() - start
    stats: dict[str, dict] = {}
    if settings.zscore:
        start = time.perf_counter()
        stripped = mask_source != "foreground (no skull stripping)"
        for name in names:
            try:
                volumes[name], stats[name] = zscore(volumes[name], mask, zero_outside=stripped)
            except ValueError as error:
                raise PreprocessingError(f"{name}: {error}", case=case) from error
        timings["zscore"] = time.perf_counter() - start
    return PreprocessedVolumes(volumes={n: volumes[n] for n in names}, mask=mask, reference=reference_name,
                               registrations=registrations, stats=stats, timings=timings, mask_source=mask_source)


def background_value(image: sitk.Image) -> float:
    """The value outside the head: the median of the 8 corner voxels (0 for a skull-stripped z-scored volume)."""
    array = sitk.GetArrayViewFromImage(image)
    return float(np.median([array[k, j, i] for k in (0, -1) for j in (0, -1) for i in (0, -1)]))


def _box(roi: OrientedBox | sitk.Image | str, reference: sitk.Image, settings: PreprocessSettings,
         case: str | None, roi_labels: tuple[int, ...] | None = None) -> OrientedBox:
    if isinstance(roi, OrientedBox):
        return roi
    if isinstance(roi, sitk.Image):
        try:
            return OrientedBox.from_label(roi, settings.margin_mm, values=roi_labels)
        except PreprocessingError as error:
            raise (error.with_case(case) if case else error) from None
    return load_roi(roi, reference, settings.margin_mm, case=case, labels=roi_labels)


def slices_from_volumes(prepared: Mapping[str, sitk.Image], roi: OrientedBox | sitk.Image | str,
                        settings: PreprocessSettings, reference: str | None = None,
                        case: str | None = None, roi_labels: tuple[int, ...] | None = None) -> SliceStack:
    """The ROI's slices from volumes already on one grid (``reference`` names it; default:
    :func:`~DMIFLib.cohort.reference_modality`). ``roi_labels``: the label values of a label-image ROI that form
    the box (None: every non-zero voxel)."""
    names = _ordered(prepared)
    reference_name = reference or reference_modality(names)
    ordered = {reference_name: prepared[reference_name], **{n: prepared[n] for n in names if n != reference_name}}
    box = _box(roi, prepared[reference_name], settings, case, roi_labels)
    try:
        stack = extract_slices(ordered, box, settings.slice_size, settings.resize_mode,
                               fill={n: background_value(v) for n, v in ordered.items()}, patient_id=case)
    except PreprocessingError as error:
        raise (error.with_case(case) if case else error) from None
    stack.images = {n: stack.images[n] for n in names}
    return stack


def image_slices(images: Mapping[str, sitk.Image], roi: OrientedBox | sitk.Image, settings: PreprocessSettings,
                 brain_mask: sitk.Image | None = None, backend: PreprocessingBackend | None = None,
                 case: str | None = None) -> SliceStack:
    """Preprocess ``images`` (modality → SimpleITK image, LPS) and cut the slices of ``roi``.

    ``roi`` is an :class:`OrientedBox` (RAS) or a label image (its non-zero bounding box, grown by
    ``settings.margin_mm``). Returns a :class:`SliceStack` of (n, S, S) float32 per modality.
    """
    prepared = preprocess_volumes(images, settings, brain_mask, backend, case)
    stack = slices_from_volumes(prepared.volumes, roi, settings, prepared.reference, case)
    stack.info["timings_s"] = prepared.timings
    stack.info["registration"] = {n: {"mi_before": r.mi_before, "mi_after": r.mi_after, **r.rigid_parameters()}
                                  for n, r in prepared.registrations.items()}
    return stack


def is_preprocessed(case: CohortCase) -> bool:
    """True when ``case`` comes from a cohort written by ``dmif preprocess`` (its ``preprocessed`` column)."""
    return case.extra.get("preprocessed", "").strip().lower() in ("1", "true", "yes")


def read_case_images(case: CohortCase) -> dict[str, sitk.Image]:
    """Read every modality of ``case`` (errors name the case and the file; a blank image is refused)."""
    images = {}
    for m in case.modalities:
        images[m] = read_image(case.images[m], what=f"{m} image", case=case.patient_id)
        problem = image_problem(images[m], f"{m} image")
        if problem:
            raise PreprocessingError(problem, case=case.patient_id, file=case.images[m])
    return images


def case_slices(case: CohortCase, settings: PreprocessSettings, backend: PreprocessingBackend | None = None
                ) -> SliceStack:
    """The slice stack of one cohort case: preprocessed volumes are only cropped; raw ones go through the steps."""
    images = read_case_images(case)
    if is_preprocessed(case):
        return slices_from_volumes(images, case.roi, settings, case=case.patient_id, roi_labels=case.roi_labels)
    mask = None
    if case.brain_mask is not None:
        mask = read_image(case.brain_mask, what="brain mask", case=case.patient_id)
    reference_name = case.reference
    try:
        space = roi_space(case, reference_name)
    except ValueError as error:
        raise PreprocessingError(str(error), case=case.patient_id) from None
    if space is not None:  # a label drawn on another modality: carried through that modality's registration
        prepared = preprocess_volumes(images, settings, mask, backend, case.patient_id)
        label = label_on_reference(read_image(case.roi, what="ROI label", case=case.patient_id),
                                   prepared.volumes[prepared.reference], getattr(prepared.registrations.get(space),
                                                                                 "transform", None))
        return slices_from_volumes(prepared.volumes, label, settings, prepared.reference, case.patient_id)
    box = load_roi(case.roi, images[reference_name], settings.margin_mm, case=case.patient_id,
                   labels=case.roi_labels)
    return image_slices(images, box, settings, brain_mask=mask, backend=backend, case=case.patient_id)
