"""The Slicer-CLI preprocessing backend: parameter mapping onto BRAINSFit / N4ITKBiasFieldCorrection, and the
status/error handling of a CLI run (on real vtkMRMLCommandLineModuleNode objects from slicer-core)."""

from __future__ import annotations

import threading

import pytest

slicer = pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed")

from DMIFLib.mrml.cli_backend import CLIError, brainsfit_parameters, n4_parameters, run_cli  # noqa: E402

# Parameter names and types from the modules' XML descriptions (BRAINSTools BRAINSFit/BRAINSFit.xml,
# Slicer Modules/CLI/N4ITKBiasFieldCorrection/N4ITKBiasFieldCorrection.xml).
BRAINSFIT_XML = {
    "fixedVolume": str, "movingVolume": str, "outputVolume": str, "linearTransform": str, "useRigid": bool,
    "useAffine": bool, "useBSpline": bool, "initializeTransformMode": str, "costMetric": str,
    "numberOfHistogramBins": int, "samplingPercentage": float, "numberOfIterations": int, "interpolationMode": str,
    "outputVolumePixelType": str, "maskProcessingMode": str,
}
BRAINSFIT_ENUMS = {
    "initializeTransformMode": {"Off", "useMomentsAlign", "useCenterOfHeadAlign", "useGeometryAlign",
                                "useCenterOfROIAlign"},
    "costMetric": {"MMI", "MSE", "NC", "MC"},
    "interpolationMode": {"NearestNeighbor", "Linear", "ResampleInPlace", "BSpline", "WindowedSinc"},
    "outputVolumePixelType": {"float", "short", "ushort", "int", "uint", "uchar"},
    "maskProcessingMode": {"NOMASK", "ROIAUTO", "ROI"},
}
N4_XML = {
    "inputImageName": str, "maskImageName": str, "outputImageName": str, "outputBiasFieldName": str,
    "initialMeshResolution": str, "splineDistance": float, "bfFWHM": float, "numberOfIterations": str,
    "convergenceThreshold": float, "bsplineOrder": int, "shrinkFactor": int, "weightImageName": str,
    "wienerFilterNoise": float, "nHistogramBins": int,
}


def _check_against_xml(parameters: dict, xml: dict) -> None:
    for name, value in parameters.items():
        assert name in xml, f"'{name}' is not a parameter of the CLI module"
        assert isinstance(value, xml[name]), f"'{name}' = {value!r} should be {xml[name].__name__}"


def test_brainsfit_mapping_is_a_rigid_mattes_mi_registration_of_moving_onto_fixed():
    parameters = brainsfit_parameters("vtkMRMLScalarVolumeNode1", "vtkMRMLScalarVolumeNode2",
                                      "vtkMRMLScalarVolumeNode3", "vtkMRMLLinearTransformNode4",
                                      histogram_bins=32, sampling_fraction=0.1, iterations=200)
    _check_against_xml(parameters, BRAINSFIT_XML)
    for name, allowed in BRAINSFIT_ENUMS.items():
        assert parameters[name] in allowed
    assert parameters["fixedVolume"] == "vtkMRMLScalarVolumeNode1"  # T1C: the reference grid
    assert parameters["movingVolume"] == "vtkMRMLScalarVolumeNode2"  # T2W / FLAIR
    assert parameters["outputVolume"] == "vtkMRMLScalarVolumeNode3"
    assert parameters["linearTransform"] == "vtkMRMLLinearTransformNode4"
    assert parameters["useRigid"] and not parameters["useAffine"] and not parameters["useBSpline"]
    assert parameters["costMetric"] == "MMI"
    assert (parameters["numberOfHistogramBins"], parameters["samplingPercentage"],
            parameters["numberOfIterations"]) == (32, 0.1, 200)
    assert "linearTransform" not in brainsfit_parameters("a", "b", "c")


def test_n4_mapping():
    parameters = n4_parameters("in", "out", "mask", shrink_factor=2, iterations=(20, 10),
                               convergence_threshold=1e-3)
    _check_against_xml(parameters, N4_XML)
    assert parameters["inputImageName"] == "in" and parameters["outputImageName"] == "out"
    assert parameters["maskImageName"] == "mask"
    assert parameters["numberOfIterations"] == "20,10"  # integer-vector: comma-separated
    assert parameters["initialMeshResolution"] == "1,1,1"
    assert (parameters["shrinkFactor"], parameters["convergenceThreshold"]) == (2, 1e-3)
    assert "maskImageName" not in n4_parameters("in", "out")


class _Runner:
    """Starts a real vtkMRMLCommandLineModuleNode and moves its status along as the CLI process would."""

    def __init__(self, final_status: str, error_text: str = "", polls_busy: int = 2) -> None:
        self.final_status, self.error_text, self.polls_busy = final_status, error_text, polls_busy
        self.node = slicer.vtkMRMLCommandLineModuleNode()
        self.started_with = None

    def start(self, name, parameters):
        self.started_with = (name, parameters)
        self.node.SetStatus(self.node.Running)
        return self.node

    def process_events(self):
        if self.node.GetStatus() == self.node.Cancelling:
            self.node.SetStatus(self.node.Cancelled)
            return
        self.polls_busy -= 1
        if self.polls_busy <= 0 and self.node.IsBusy():
            if self.error_text:
                self.node.SetErrorText(self.error_text)
            self.node.SetStatus(getattr(self.node, self.final_status))


def test_run_cli_returns_on_completion():
    runner = _Runner("Completed")
    node = run_cli("BRAINSFit", {"useRigid": True}, start=runner.start, process_events=runner.process_events,
                   poll_s=0)
    assert node is runner.node and runner.started_with == ("BRAINSFit", {"useRigid": True})


def test_run_cli_raises_with_the_error_text():
    runner = _Runner("CompletedWithErrors", "itk::ExceptionObject: images do not overlap")
    with pytest.raises(CLIError, match=r"BRAINSFit failed .*images do not overlap"):
        run_cli("BRAINSFit", {}, start=runner.start, process_events=runner.process_events, poll_s=0)


def test_run_cli_cancels():
    runner = _Runner("Completed", polls_busy=100)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(InterruptedError):
        run_cli("N4ITKBiasFieldCorrection", {}, cancel=cancel, start=runner.start,
                process_events=runner.process_events, poll_s=0)
    assert runner.node.GetStatus() == runner.node.Cancelled


def test_missing_cli_module_is_a_clear_error():
    with pytest.raises(CLIError, match="not available"):
        run_cli("BRAINSFit", {}, process_events=lambda: None)
