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
        from DMIFLib.mrml.scene import new_scene

        self.final_status, self.error_text, self.polls_busy = final_status, error_text, polls_busy
        self.scene = new_scene()
        self.node = self.scene.AddNode(slicer.vtkMRMLCommandLineModuleNode())  # in the scene, as slicer.cli.run does
        self.started_with = None

    def cli_nodes_left(self) -> int:
        return self.scene.GetNumberOfNodesByClass("vtkMRMLCommandLineModuleNode")

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
    run_cli("BRAINSFit", {"useRigid": True}, start=runner.start, process_events=runner.process_events, poll_s=0)
    assert runner.started_with == ("BRAINSFit", {"useRigid": True})
    assert runner.node.GetStatus() == runner.node.Completed and runner.cli_nodes_left() == 0


def test_run_cli_raises_with_the_error_text():
    runner = _Runner("CompletedWithErrors", "itk::ExceptionObject: images do not overlap")
    with pytest.raises(CLIError, match=r"BRAINSFit failed .*images do not overlap"):
        run_cli("BRAINSFit", {}, start=runner.start, process_events=runner.process_events, poll_s=0)
    assert runner.cli_nodes_left() == 0


def test_run_cli_cancels():
    runner = _Runner("Completed", polls_busy=100)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(InterruptedError):
        run_cli("N4ITKBiasFieldCorrection", {}, cancel=cancel, start=runner.start,
                process_events=runner.process_events, poll_s=0)
    assert runner.node.GetStatus() == runner.node.Cancelled and runner.cli_nodes_left() == 0


def test_missing_cli_module_is_a_clear_error():
    with pytest.raises(CLIError, match="not available"):
        run_cli("BRAINSFit", {}, process_events=lambda: None)


def test_transform_node_becomes_the_itk_resampling_transform():
    import vtk

    from DMIFLib.mrml.cli_backend import transform_node_to_sitk
    from DMIFLib.mrml.scene import new_scene

    scene = new_scene()
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    to_parent = vtk.vtkMatrix4x4()  # moving RAS -> fixed RAS: 10 deg about S, then 5 mm to the Right
    angle = 10.0
    transform = vtk.vtkTransform()
    transform.Translate(5.0, 0.0, 0.0)
    transform.RotateZ(angle)
    to_parent.DeepCopy(transform.GetMatrix())
    node.SetMatrixTransformToParent(to_parent)
    itk = transform_node_to_sitk(node)
    # a moving point p (RAS) lands on fixed point q = T p; ITK maps q (LPS) back to p (LPS)
    p_ras = [12.0, -7.0, 3.0]
    q_ras = transform.TransformPoint(p_ras)
    lps = lambda v: (-v[0], -v[1], v[2])  # noqa: E731
    assert itk.TransformPoint(lps(q_ras)) == pytest.approx(lps(p_ras), abs=1e-6)


def test_backend_runs_brainsfit_on_temporary_nodes_and_removes_them():
    import numpy as np
    import SimpleITK as sitk  # noqa: N813
    import vtk

    from DMIFLib.mrml.cli_backend import SlicerCLIBackend
    from DMIFLib.mrml.scene import new_scene
    from DMIFLib.preprocessing.settings import PreprocessSettings

    scene = new_scene()
    nodes_before = scene.GetNumberOfNodes()
    seen = {}

    def start(name, parameters):  # stands in for the BRAINSFit process: writes a 3 mm shift to the output node
        seen[name] = parameters
        shift = vtk.vtkMatrix4x4()
        shift.SetElement(1, 3, 3.0)
        scene.GetNodeByID(parameters["linearTransform"]).SetMatrixTransformToParent(shift)
        assert scene.GetNodeByID(parameters["fixedVolume"]).GetImageData() is not None
        node = slicer.vtkMRMLCommandLineModuleNode()
        node.SetStatus(node.Completed)
        return node

    rng = np.random.default_rng(0)
    fixed = sitk.GetImageFromArray(rng.random((6, 16, 16)).astype(np.float32))
    moving = sitk.GetImageFromArray(rng.random((6, 16, 16)).astype(np.float32))
    settings = PreprocessSettings(registration_bins=16, registration_sampling=0.5, registration_iterations=20)
    result = SlicerCLIBackend(scene, start=start, process_events=lambda: None).register_rigid(fixed, moving,
                                                                                             settings)
    parameters = seen["BRAINSFit"]
    assert (parameters["numberOfHistogramBins"], parameters["samplingPercentage"],
            parameters["numberOfIterations"]) == (16, 0.5, 20)
    assert result.backend == "slicer-cli" and np.isfinite(result.mi_after)
    # fixed -> moving is 3 mm Posterior: LPS +y
    assert result.transform.TransformPoint((0.0, 0.0, 0.0)) == pytest.approx((0.0, 3.0, 0.0))
    assert scene.GetNumberOfNodes() == nodes_before, "temporary nodes left in the scene"
