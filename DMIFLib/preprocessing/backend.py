"""The registration / bias-correction / skull-stripping backend: one small interface, two implementations.

:class:`PreprocessingBackend` is what the pipeline calls; :class:`SimpleITKBackend` runs everywhere (the
default). Inside 3D Slicer the module layer may supply a backend that runs BRAINSFit / N4ITKBiasFieldCorrection
(and, when installed, HD-BET or SwissSkullStripper) through ``slicer.cli``: subclass
:class:`PreprocessingBackend`, implement :meth:`~PreprocessingBackend.register_rigid` and
:meth:`~PreprocessingBackend.bias_correct` (and optionally override :meth:`~PreprocessingBackend.brain_mask`),
and pass it as ``backend=`` to :func:`DMIFLib.preprocessing.pipeline.image_slices` / ``case_slices`` /
``preprocess_cohort``. All images are SimpleITK images in LPS physical space.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.preprocessing.settings import PreprocessSettings


@dataclass
class RegistrationResult:
    """A rigid registration of ``moving`` onto ``fixed``.

    ``transform`` maps fixed-image LPS points to moving-image LPS points (ITK's convention: resampling
    ``moving`` with it onto the fixed grid aligns it). ``mi_before`` / ``mi_after`` are the Mattes mutual
    information (nats, higher = better aligned; ITK's metric value negated) with the scanner geometry
    (identity transform) and with ``transform``, both over all fixed voxels where the images overlap.
    """

    transform: sitk.Transform
    mi_before: float
    mi_after: float
    backend: str
    details: dict = field(default_factory=dict)

    def rigid_parameters(self) -> dict[str, list[float]]:
        """Rotation (degrees about LPS x, y, z), translation (mm, LPS) and centre (mm, LPS) of the transform."""
        euler = sitk.Euler3DTransform()
        euler.SetCenter(getattr(self.transform, "GetCenter", lambda: (0.0, 0.0, 0.0))())
        matrix = np.asarray(self.transform.GetMatrix() if hasattr(self.transform, "GetMatrix") else np.eye(3).ravel())
        euler.SetMatrix(tuple(matrix.ravel()))
        euler.SetTranslation(self.transform.GetTranslation() if hasattr(self.transform, "GetTranslation")
                             else (0.0, 0.0, 0.0))
        return {"rotation_deg": [math.degrees(a) for a in (euler.GetAngleX(), euler.GetAngleY(), euler.GetAngleZ())],
                "translation_mm": list(euler.GetTranslation()), "center_mm": list(euler.GetCenter()),
                "rotation_angle_deg": rotation_angle_deg(matrix.reshape(3, 3))}


def rotation_angle_deg(matrix: np.ndarray) -> float:
    """The angle (degrees) of a 3×3 rotation matrix."""
    return math.degrees(math.acos(float(np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0))))


def mattes_mi(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, bins: int = 50) -> float:
    """Mattes mutual information (nats, ≥ 0 up to estimator noise) of ``moving`` resampled by ``transform``.

    Evaluated over every fixed voxel (no random sampling), so before/after figures are comparable.
    """
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    method.SetMetricSamplingStrategy(method.NONE)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(transform)
    return -float(method.MetricEvaluate(sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32)))


class PreprocessingBackend(ABC):
    """What the pipeline needs from a registration / N4 / skull-stripping implementation."""

    name: str = "abstract"

    @abstractmethod
    def register_rigid(self, fixed: sitk.Image, moving: sitk.Image, settings: PreprocessSettings) -> RegistrationResult:
        """Rigidly register ``moving`` (T2W, FLAIR) to ``fixed`` (T1C) by Mattes MI; see :class:`RegistrationResult`."""

    @abstractmethod
    def bias_correct(self, image: sitk.Image, settings: PreprocessSettings,
                     mask: sitk.Image | None = None) -> sitk.Image:
        """N4 bias-field correction; returns a float32 image on ``image``'s grid (``mask``: where to fit)."""

    def brain_mask(self, image: sitk.Image, settings: PreprocessSettings) -> sitk.Image:
        """A brain mask (uint8 0/1 on ``image``'s grid) from a T1-weighted image with skull.

        The default is the built-in fallback (:func:`DMIFLib.preprocessing.skull_strip.fallback_brain_mask`);
        a Slicer backend may override it with HD-BET or SwissSkullStripper.
        """
        from DMIFLib.preprocessing.skull_strip import fallback_brain_mask

        return fallback_brain_mask(image)


def _axis_shrink(image: sitk.Image, factor: int) -> list[int]:
    """Per-axis shrink factors giving roughly isotropic voxels: ``factor`` on the finest axis, less on thick ones."""
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    return [max(1, round(factor * spacing.min() / s)) for s in spacing]


class SimpleITKBackend(PreprocessingBackend):
    """SimpleITK (ITKv4) registration and N4; runs headless on any platform."""

    name = "simpleitk"

    def register_rigid(self, fixed: sitk.Image, moving: sitk.Image, settings: PreprocessSettings) -> RegistrationResult:
        fixed_f = sitk.Cast(fixed, sitk.sitkFloat32)
        moving_f = sitk.Cast(moving, sitk.sitkFloat32)
        initial = sitk.CenteredTransformInitializer(fixed_f, moving_f, sitk.Euler3DTransform(),
                                                    sitk.CenteredTransformInitializerFilter.GEOMETRY)
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.registration_bins)
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentagePerLevel(list(settings.registration_sampling), settings.registration_seed)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-4,
                                                        numberOfIterations=settings.registration_iterations,
                                                        relaxationFactor=0.7, gradientMagnitudeTolerance=1e-8)
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetShrinkFactorsPerLevel(list(settings.registration_shrink))
        method.SetSmoothingSigmasPerLevel(list(settings.registration_smoothing_mm))
        method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        method.SetInitialTransform(initial, inPlace=False)
        transform = method.Execute(fixed_f, moving_f)
        if isinstance(transform, sitk.CompositeTransform) and transform.GetNumberOfTransforms() == 1:
            transform = transform.GetNthTransform(0)
        transform = sitk.Euler3DTransform(transform)
        bins = settings.registration_bins
        return RegistrationResult(
            transform=transform, backend=self.name,
            mi_before=mattes_mi(fixed_f, moving_f, sitk.Euler3DTransform(), bins),
            mi_after=mattes_mi(fixed_f, moving_f, transform, bins),
            details={"iterations": method.GetOptimizerIteration(),
                     "stop_condition": method.GetOptimizerStopConditionDescription(),
                     "mi_start": mattes_mi(fixed_f, moving_f, initial, bins)})

    def bias_correct(self, image: sitk.Image, settings: PreprocessSettings,
                     mask: sitk.Image | None = None) -> sitk.Image:
        image_f = sitk.Cast(image, sitk.sitkFloat32)
        positive = sitk.Threshold(image_f, lower=0.0, upper=float("inf"), outsideValue=0.0)  # N4 needs ≥ 0
        if mask is None:
            mask = sitk.OtsuThreshold(positive, 0, 1, 200)
        # N4 works on log intensities: near-zero voxels (e.g. the blurred edge of a skull-stripped brain) would
        # stretch its histogram over many decades and stall the fit, so the fit ignores them
        values = sitk.GetArrayViewFromImage(positive)[sitk.GetArrayViewFromImage(mask) > 0]
        floor = 0.01 * float(np.percentile(values, 99)) if values.size else 0.0
        mask = sitk.Cast((mask > 0) * (positive > floor), sitk.sitkUInt8)
        shrink = _axis_shrink(image_f, settings.n4_shrink)
        small = sitk.Shrink(positive, shrink)
        small_mask = sitk.Shrink(mask, shrink)
        corrector = sitk.N4BiasFieldCorrectionImageFilter()
        iterations = list(settings.n4_iterations)[: settings.n4_fitting_levels]
        iterations += [iterations[-1]] * (settings.n4_fitting_levels - len(iterations))
        corrector.SetMaximumNumberOfIterations(iterations)
        corrector.Execute(small, small_mask)
        log_bias = corrector.GetLogBiasFieldAsImage(image_f)
        return sitk.Cast(image_f / sitk.Exp(log_bias), sitk.sitkFloat32)


def default_backend() -> PreprocessingBackend:
    """The SimpleITK backend."""
    return SimpleITKBackend()
