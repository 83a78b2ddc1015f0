"""Radiomics features of one image inside one region, computed by MIRP with pyradiomics' definitions and names.

The result is a flat ``{"<image type>_<class>_<Feature>": value}`` dict with pyradiomics' names, e.g.
``original_shape_MeshVolume`` (mm^3), ``wavelet-LHL_glcm_DifferenceEntropy``: the names the seed-001 paper reports.
MIRP (IBSI-compliant) computes the matrices and features; this module prepares the image as pyradiomics does
(normalisation, resampling, crop around the region, wavelet decompositions) and maps the names. Where MIRP and
pyradiomics define a feature differently, the pyradiomics definition is applied here: Kurtosis is not excess
kurtosis (MIRP's + 3); Energy, TotalEnergy and RootMeanSquared add ``voxel_array_shift`` to the intensities
(pyradiomics' voxelArrayShift) and are computed in float64; the PCA axis lengths use the covariance over N voxels,
not N - 1 (MIRP's x sqrt((N - 1) / N)). pyradiomics' Maximum2DDiameterSlice/Column/Row and glcm_MCC are not
produced (``names.NOT_COMPUTED``: MIRP's features of those names are other quantities).
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.radiomics.names import MIRP_TO_PYRADIOMICS, mirp_stem
from DMIFLib.radiomics.params import RadiomicsError, RadiomicsParams, load_params
from DMIFLib.radiomics.wavelet import wavelet_decompositions

MIRP_FAMILIES = {
    "shape": ["morphology"],
    "firstorder": ["statistics", "intensity_histogram"],
    "glcm": ["cm"],
    "gldm": ["ngldm"],
    "glrlm": ["rlm"],
    "glszm": ["szm"],
    "ngtdm": ["ngtdm"],
}
_INTERPOLATORS = {"bspline": sitk.sitkBSpline, "linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}
_GEOMETRY_TOL = 1e-4


def extract_features(image: sitk.Image, mask: sitk.Image, params: RadiomicsParams | None = None,
                     name: str = "image") -> dict[str, float]:
    """Features of ``image`` inside ``mask == params.label``: original (+ 8 wavelet decompositions if set).

    ``image`` and ``mask`` are 3D SimpleITK images on the same grid (LPS geometry, any spacing in mm); ``name``
    (a file or case) is used in error messages. Shape features are computed once, on the original image.
    Raises :class:`RadiomicsError` for a non-3D image, a mask on another grid or an empty region.
    """
    params = params or load_params()
    volume, region = _prepare(image, mask, params, name)
    images = {"original": volume}
    if params.wavelet:
        arrays = wavelet_decompositions(sitk.GetArrayFromImage(volume), params.wavelet)
        for type_name, array in arrays.items():
            filtered = sitk.GetImageFromArray(array)
            filtered.CopyInformation(volume)
            images[type_name] = filtered
    features: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dmif-radiomics-") as tmp:
        mask_path = str(Path(tmp) / "mask.nrrd")
        sitk.WriteImage(region, mask_path)
        for type_name, filtered in images.items():
            classes = [c for c in params.feature_classes if c != "shape" or type_name == "original"]
            features.update(_image_type_features(filtered, region, mask_path, type_name, classes, params, tmp))
    return features


def _prepare(image: sitk.Image, mask: sitk.Image, params: RadiomicsParams, name: str) -> tuple[sitk.Image, sitk.Image]:
    """float64 image and uint8 {0, 1} region, normalised / resampled as set, cropped to the region + padding."""
    if image.GetDimension() != 3 or mask.GetDimension() != 3:
        raise RadiomicsError(f"{name}: radiomics needs 3D image and mask, got {image.GetDimension()}D and "
                             f"{mask.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise RadiomicsError(f"{name}: radiomics needs a single-channel image")
    if not _same_grid(image, mask):
        raise RadiomicsError(
            f"{name}: the mask is not on the image's grid (size {mask.GetSize()} vs {image.GetSize()}, spacing "
            f"{np.round(mask.GetSpacing(), 4).tolist()} vs {np.round(image.GetSpacing(), 4).tolist()} mm); "
            "resample the mask to the image first")
    volume = sitk.Cast(image, sitk.sitkFloat64)
    region = sitk.Cast(sitk.Equal(mask, params.label), sitk.sitkUInt8)
    region.CopyInformation(volume)
    if params.normalize:
        volume = sitk.Normalize(volume) * params.normalize_scale
    if params.resampled_spacing_mm is not None:
        volume, region = _resample(volume, region, params)
    return _crop(volume, region, params.pad_voxels, name)


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=_GEOMETRY_TOL)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=_GEOMETRY_TOL)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=_GEOMETRY_TOL))


def _bounding_box(region: sitk.Image) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive (x, y, z) index bounds of the region's voxels, or None when it is empty."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(region)
    if not stats.HasLabel(1):
        return None
    box = np.asarray(stats.GetBoundingBox(1))
    return box[:3], box[:3] + box[3:] - 1


def _resample(volume: sitk.Image, region: sitk.Image, params: RadiomicsParams) -> tuple[sitk.Image, sitk.Image]:
    """Resample onto a ``resampled_spacing_mm`` grid covering the region's bounding box (+ padding), same axes."""
    bounds = _bounding_box(region)
    if bounds is None:
        return volume, region
    lo, hi = bounds
    old = np.asarray(volume.GetSpacing())
    new = np.asarray(params.resampled_spacing_mm, dtype=float)
    extent = (hi - lo + 1) * old  # mm along the image axes, voxel edges included
    size = np.ceil(extent / new).astype(int) + 2 * params.pad_voxels
    centre_index = (lo + hi) / 2.0
    direction = np.asarray(volume.GetDirection()).reshape(3, 3)
    centre = np.asarray(volume.TransformContinuousIndexToPhysicalPoint(centre_index.tolist()))
    origin = centre - direction @ ((size - 1) / 2.0 * new)
    reference = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    reference.SetSpacing(new.tolist())
    reference.SetDirection(volume.GetDirection())
    reference.SetOrigin(origin.tolist())
    identity = sitk.Transform()
    out_volume = sitk.Resample(volume, reference, identity, _INTERPOLATORS[params.interpolator], 0.0,
                               sitk.sitkFloat64)
    out_region = sitk.Resample(region, reference, identity, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return out_volume, out_region


def _crop(volume: sitk.Image, region: sitk.Image, pad: int, name: str) -> tuple[sitk.Image, sitk.Image]:
    bounds = _bounding_box(region)
    if bounds is None:
        raise RadiomicsError(f"{name}: the tumour region is empty (no voxel with the region's label)")
    size = np.asarray(volume.GetSize())
    lo = np.maximum(bounds[0] - pad, 0)
    hi = np.minimum(bounds[1] + pad, size - 1)
    crop_size = (hi - lo + 1).tolist()
    return (sitk.RegionOfInterest(volume, crop_size, lo.tolist()),
            sitk.RegionOfInterest(region, crop_size, lo.tolist()))


def _image_type_features(image: sitk.Image, region: sitk.Image, mask_path: str, type_name: str,
                         classes: list[str], params: RadiomicsParams, tmp: str) -> dict[str, float]:
    """One MIRP call on one (filtered) image; returns pyradiomics-named features of ``classes``."""
    try:
        from mirp import extract_features as mirp_extract_features
    except ImportError:
        raise RadiomicsError("radiomics features need the package mirp, which is not installed "
                             "(pip install mirp==2.5.0)") from None

    image_path = str(Path(tmp) / "image.nrrd")
    sitk.WriteImage(image, image_path)
    families = [family for c in classes for family in MIRP_FAMILIES[c]]
    with _quiet_mirp():
        table = mirp_extract_features(
            image=image_path, mask=mask_path, base_feature_families=families,
            base_discretisation_method="fixed_bin_size_pyradiomics",
            base_discretisation_bin_width=float(params.bin_width), ibsi_compliant=False,
            glcm_distance=1.0, glcm_spatial_method="3d_average", glrlm_spatial_method="3d_average",
            glszm_spatial_method="3d", ngtdm_spatial_method="3d", ngldm_spatial_method="3d",
            ngldm_distance=1.0, ngldm_difference_level=0.0)[0]
    row = table.iloc[0]
    out = {}
    for column in table.columns:
        stem = mirp_stem(column)
        if stem is None:
            continue
        feature_class, feature = MIRP_TO_PYRADIOMICS[stem]
        if feature_class in classes:
            out[f"{type_name}_{feature_class}_{feature}"] = float(row[column])
    if "firstorder" in classes:
        out.update(_shifted_energy(image, region, type_name, params.voxel_array_shift))
        out[f"{type_name}_firstorder_Kurtosis"] += 3.0
    if "shape" in classes:
        n_voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(region)))
        for axis in ("MajorAxisLength", "MinorAxisLength", "LeastAxisLength"):
            out[f"{type_name}_shape_{axis}"] *= math.sqrt((n_voxels - 1) / n_voxels)
    return out


@contextlib.contextmanager
def _quiet_mirp() -> Iterator[None]:
    """Keep MIRP off stdout: its ``logging.basicConfig(level=INFO, stream=sys.stdout)`` is a no-op while the root
    logger has a handler, and its INFO messages are below the temporarily raised root level. MIRP's warning that
    MR intensities are not calibrated (it suggests IBSI binning) is expected with pyradiomics binning."""
    root = logging.getLogger()
    handler = logging.NullHandler() if not root.handlers else None
    level = root.level
    if handler is not None:
        root.addHandler(handler)
    root.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*do not represent calibrated values.*")
            yield
    finally:
        root.setLevel(level)
        if handler is not None:
            root.removeHandler(handler)


def _shifted_energy(image: sitk.Image, region: sitk.Image, type_name: str, shift: float) -> dict[str, float]:
    """pyradiomics' Energy, TotalEnergy (x voxel volume, mm^3) and RootMeanSquared with voxelArrayShift."""
    values = sitk.GetArrayViewFromImage(image)[sitk.GetArrayViewFromImage(region) > 0].astype(np.float64) + shift
    energy = float(np.sum(values ** 2))
    voxel_volume = float(np.prod(image.GetSpacing()))
    prefix = f"{type_name}_firstorder_"
    return {prefix + "Energy": energy, prefix + "TotalEnergy": energy * voxel_volume,
            prefix + "RootMeanSquared": math.sqrt(energy / values.size)}
