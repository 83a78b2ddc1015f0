"""Preprocessing inside 3D Slicer with Slicer's own CLI modules: BRAINSFit (rigid, Mattes mutual information,
T2W/FLAIR -> T1C) and N4ITKBiasFieldCorrection, run through ``slicer.cli.run``.

The parameter mapping (:func:`brainsfit_parameters`, :func:`n4_parameters`) is plain Python; running needs the
Slicer application (the CLI modules are not part of slicer-core): headless runs keep the SimpleITK backend.
Each CLI run is polled so that the GUI stays responsive and ``cancel`` stops it; a run that ends with errors
raises with the module's error text.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import slicer

from DMIFLib.mrml.scene import MRMLError


class CLIError(MRMLError):
    """A Slicer CLI module that failed or is missing; the message holds the module's error text."""


def brainsfit_parameters(fixed_id: str, moving_id: str, output_id: str, transform_id: str | None = None, *,
                         histogram_bins: int = 50, sampling_fraction: float = 0.05,
                         iterations: int = 1500) -> dict:
    """BRAINSFit parameters for a rigid (6 DOF) Mattes-MI registration of ``moving`` to ``fixed``.

    The moving volume is resampled (linear) onto the fixed volume's grid into ``output_id``; the rigid transform
    (moving -> fixed, RAS) goes to ``transform_id`` when given. Initialised by aligning the centres of mass.
    """
    parameters = {
        "fixedVolume": fixed_id,
        "movingVolume": moving_id,
        "outputVolume": output_id,
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
    Returns the finished vtkMRMLCommandLineModuleNode.
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
    return node
