"""Preprocessing inside 3D Slicer with Slicer's own CLI modules: BRAINSFit (rigid, Mattes mutual information,
T2W/FLAIR -> T1C) and N4ITKBiasFieldCorrection, run through ``slicer.cli.run``.

The parameter mapping (:func:`brainsfit_parameters`, :func:`n4_parameters`) is plain Python; running needs the
Slicer application (the CLI modules are not part of slicer-core): headless runs keep the SimpleITK backend.
Each CLI run is polled so that the GUI stays responsive and ``cancel`` stops it; a run that ends with errors
raises with the module's error text. The CLI node ``slicer.cli.run`` adds to the scene (slicer/cli.py createNode:
``CreateNodeInScene``) is removed when the run ends, so that no run leaves a node saved with the scene.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import SimpleITK as sitk  # noqa: N813
import slicer
import vtk

from DMIFLib.mrml.scene import MRMLError
from DMIFLib.mrml.volumes import LPS_FROM_RAS, image_to_volume, volume_to_image
from DMIFLib.preprocessing.backend import PreprocessingBackend, RegistrationResult, mattes_mi


class CLIError(MRMLError):
    """A Slicer CLI module that failed or is missing; the message holds the module's error text."""


def brainsfit_parameters(fixed_id: str, moving_id: str, output_id: str | None = None,
                         transform_id: str | None = None, *,
                         histogram_bins: int = 50, sampling_fraction: float = 0.05,
                         iterations: int = 1500) -> dict:
    """BRAINSFit parameters for a rigid (6 DOF) Mattes-MI registration of ``moving`` to ``fixed``.

    The moving volume is resampled (linear) onto the fixed volume's grid into ``output_id`` and/or the rigid
    transform goes to the linear transform node ``transform_id`` (at least one of them). Initialised by aligning
    the centres of mass.
    """
    if not output_id and not transform_id:
        raise ValueError("BRAINSFit needs an output volume or an output transform")
    parameters = {
        "fixedVolume": fixed_id,
        "movingVolume": moving_id,
        "useRigid": True,
        "useAffine": False,
        "useBSpline": False,
        "initializeTransformMode": "useMomentsAlign",
        "costMetric": "MMI",
        "numberOfHistogramBins": int(histogram_bins),
        "samplingPercentage": float(sampling_fraction),
        "numberOfIterations": int(iterations),
        "interpolationMode": "Linear",
        "outputVolumePixelType": "float",
        "maskProcessingMode": "NOMASK",
    }
    if output_id:
        parameters["outputVolume"] = output_id
    if transform_id:
        parameters["linearTransform"] = transform_id
    return parameters


def n4_parameters(input_id: str, output_id: str, mask_id: str | None = None, *, shrink_factor: int = 4,
                  iterations: Sequence[int] = (50, 40, 30), convergence_threshold: float = 1e-4,
                  mesh_resolution: Sequence[float] = (1, 1, 1)) -> dict:
    """N4ITKBiasFieldCorrection parameters; ``iterations`` has one entry per resolution level."""
    parameters = {
        "inputImageName": input_id,
        "outputImageName": output_id,
        "shrinkFactor": int(shrink_factor),
        "numberOfIterations": ",".join(str(int(n)) for n in iterations),
        "convergenceThreshold": float(convergence_threshold),
        "initialMeshResolution": ",".join(f"{float(r):g}" for r in mesh_resolution),
    }
    if mask_id:
        parameters["maskImageName"] = mask_id
    return parameters


def run_cli(module_name: str, parameters: dict, cancel: threading.Event | None = None,
            progress: Callable[[dict], None] | None = None, poll_s: float = 0.1,
            start: Callable | None = None, process_events: Callable[[], None] | None = None):
    """Run the CLI module ``module_name`` (e.g. "BRAINSFit") with ``parameters`` and wait for it.

    ``start(module, parameters)`` defaults to ``slicer.cli.run(..., wait_for_completion=False)`` and
    ``process_events`` to ``slicer.app.processEvents`` (both injectable for tests). Raises
    :class:`InterruptedError` when cancelled and :class:`CLIError` with the module's error text on failure.
    The vtkMRMLCommandLineModuleNode is removed from its scene when the run has ended, whatever the outcome.
    """
    if start is None:
        module = getattr(slicer.modules, module_name.lower(), None) if hasattr(slicer, "modules") else None
        if module is None:
            raise CLIError(f"Slicer's {module_name} module is not available (it ships with 3D Slicer, not with "
                           "slicer-core); use the SimpleITK preprocessing backend")

        def start(_name, params):
            return slicer.cli.run(module, None, params, wait_for_completion=False, update_display=False)
    if process_events is None:
        process_events = slicer.app.processEvents
    node = start(module_name, parameters)
    try:
        cancelled = False
        while node.IsBusy():
            if cancel is not None and cancel.is_set() and not cancelled:
                node.Cancel()
                cancelled = True
            if progress is not None:
                progress({"step": module_name, "message": f"{module_name}: {node.GetStatusString()}"})
            process_events()
            time.sleep(poll_s)
        status = node.GetStatus()
        if status == node.Cancelled or cancelled:
            raise InterruptedError(f"{module_name} cancelled")
        if status != node.Completed:
            error = (node.GetErrorText() or "").strip() or "no error text"
            raise CLIError(f"{module_name} failed ({node.GetStatusString()}): {error}")
    finally:
        if not node.IsBusy() and node.GetScene() is not None:
            node.GetScene().RemoveNode(node)


def transform_node_to_sitk(node: slicer.vtkMRMLTransformNode) -> sitk.Transform:
    """The registration result of a linear transform node (moving -> fixed in RAS, as BRAINSFit writes it) as an
    ITK transform mapping fixed LPS points to moving LPS points (the resampling convention of SimpleITK)."""
    if not node.IsLinear():
        raise CLIError(f"transform '{node.GetName()}' is not linear")
    from_parent = vtk.vtkMatrix4x4()
    node.GetMatrixTransformFromParent(from_parent)  # fixed RAS -> moving RAS
    ras = np.array([[from_parent.GetElement(r, c) for c in range(4)] for r in range(4)])
    flip = np.eye(4)
    flip[:3, :3] = LPS_FROM_RAS
    lps = flip @ ras @ flip
    transform = sitk.Euler3DTransform()
    try:
        transform.SetMatrix(lps[:3, :3].ravel().tolist(), 1e-5)
    except RuntimeError:  # not a rotation within tolerance: keep the general linear map
        transform = sitk.AffineTransform(3)
        transform.SetMatrix(lps[:3, :3].ravel().tolist())
    transform.SetTranslation(lps[:3, 3].tolist())
    return transform


class SlicerCLIBackend(PreprocessingBackend):
    """Registration with BRAINSFit and N4 with N4ITKBiasFieldCorrection (Slicer's CLI modules), on temporary
    hidden nodes of ``scene`` (default ``slicer.mrmlScene``) that are removed afterwards. Skull stripping keeps
    DMIFLib's default. ``start``/``process_events`` are passed to :func:`run_cli` (injectable for tests)."""

    name = "slicer-cli"

    def __init__(self, scene: slicer.vtkMRMLScene | None = None, cancel: threading.Event | None = None,
                 progress: Callable[[dict], None] | None = None, start: Callable | None = None,
                 process_events: Callable[[], None] | None = None) -> None:
        self.scene = scene if scene is not None else slicer.mrmlScene
        self.cancel, self.progress = cancel, progress
        self._start, self._process_events = start, process_events

    def _run(self, module_name: str, parameters: dict):
        return run_cli(module_name, parameters, cancel=self.cancel, progress=self.progress, start=self._start,
                       process_events=self._process_events)

    def _temporary(self, image: sitk.Image | None, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
        node = self.scene.AddNewNodeByClass(class_name, f"DMIF temporary {name}")
        node.SetHideFromEditors(True)
        if image is not None:
            image_to_volume(image, self.scene, node.GetName(), node)
        return node

    def _remove(self, *nodes) -> None:
        for node in nodes:
            if node is None:
                continue
            for index in range(node.GetNumberOfDisplayNodes() if hasattr(node, "GetNumberOfDisplayNodes") else 0):
                self.scene.RemoveNode(node.GetNthDisplayNode(index))
            self.scene.RemoveNode(node)

    def register_rigid(self, fixed: sitk.Image, moving: sitk.Image, settings) -> RegistrationResult:
        fixed_node = self._temporary(sitk.Cast(fixed, sitk.sitkFloat32), "fixed")
        moving_node = self._temporary(sitk.Cast(moving, sitk.sitkFloat32), "moving")
        transform_node = self._temporary(None, "registration", "vtkMRMLLinearTransformNode")
        try:
            parameters = brainsfit_parameters(
                fixed_node.GetID(), moving_node.GetID(), transform_id=transform_node.GetID(),
                # BRAINSFit registers at full resolution: the finest level's fraction applies
                histogram_bins=settings.registration_bins, sampling_fraction=settings.registration_sampling[-1],
                iterations=settings.registration_iterations)
            self._run("BRAINSFit", parameters)
            transform = transform_node_to_sitk(transform_node)
        finally:
            self._remove(fixed_node, moving_node, transform_node)
        bins = settings.registration_bins
        fixed_f, moving_f = sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32)
        return RegistrationResult(transform=transform, backend=self.name,
                                  mi_before=mattes_mi(fixed_f, moving_f, sitk.Euler3DTransform(), bins),
                                  mi_after=mattes_mi(fixed_f, moving_f, transform, bins),
                                  details={"parameters": parameters})

    def bias_correct(self, image: sitk.Image, settings, mask: sitk.Image | None = None) -> sitk.Image:
        levels = settings.n4_fitting_levels
        iterations = list(settings.n4_iterations)[:levels]
        iterations += [iterations[-1]] * (levels - len(iterations))
        input_node = self._temporary(sitk.Cast(image, sitk.sitkFloat32), "n4 input")
        mask_node = self._temporary(sitk.Cast(mask > 0, sitk.sitkUInt8), "n4 mask", "vtkMRMLLabelMapVolumeNode") \
            if mask is not None else None
        output_node = self._temporary(None, "n4 output")
        try:
            self._run("N4ITKBiasFieldCorrection", n4_parameters(
                input_node.GetID(), output_node.GetID(), mask_node.GetID() if mask_node else None,
                shrink_factor=settings.n4_shrink, iterations=iterations))
            corrected = volume_to_image(output_node)
        finally:
            self._remove(input_node, mask_node, output_node)
        corrected = sitk.Cast(corrected, sitk.sitkFloat32)
        corrected.CopyInformation(image)  # same grid; drop round-off of the RAS/LPS round trip
        return corrected
