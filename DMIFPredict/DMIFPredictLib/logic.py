"""DMIFPredict's logic, free of Qt: model loading, the tumour box, prediction into table nodes.

Importable under slicer-core (the tests run it there); the module file DMIFPredict.py adds the GUI and the
Slicer-CLI preprocessing backend.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import slicer

from DMIFLib.mrml.scene import MRMLError
from DMIFLib.mrml.subjects import guess_modality, patient_name

DEVICES = ("auto", "cpu", "cuda")


def hasPath(path) -> bool:
    """True for a chosen path; an empty path widget gives '' or Path('.')."""
    return bool(path) and str(path) not in ("", ".")


class PredictLogic:
    """Prediction for one patient from MRML nodes; ``backendFactory(cancel=, progress=)`` gives the
    preprocessing backend (None: DMIFLib's SimpleITK backend)."""

    def __init__(self, backendFactory: Callable | None = None) -> None:
        self.backendFactory = backendFactory
        self._models: dict[tuple, object] = {}

    @staticmethod
    def guessVolume(scene: slicer.vtkMRMLScene, modality: str) -> slicer.vtkMRMLScalarVolumeNode | None:
        """The first scalar volume whose name looks like ``modality`` ('t1c', 't2w', 'flair')."""
        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
            if not node.IsA("vtkMRMLLabelMapVolumeNode") and guess_modality(node.GetName() or "") == modality:
                return node
        return None

    def loadModel(self, path: str, device: str = "auto"):
        """The LoadedModel of ``path`` on ``device`` (cached while the file is unchanged)."""
        from DMIFLib.model_file import load_model
        from DMIFLib.training.device import resolve_device

        file = Path(path)
        if not file.is_file():
            raise MRMLError(f"{file}: model file not found")
        resolved = str(resolve_device(device))
        key = (str(file.resolve()), file.stat().st_mtime_ns, resolved)
        if key not in self._models:
            self._models.clear()
            self._models[key] = load_model(file, device=resolved)
        return self._models[key]

    def describeModelFile(self, path: str) -> str:
        """One line for the panel: marker, modalities, model name/version, cut-off."""
        from DMIFLib.mrml.predict import model_info

        info = model_info(self.loadModel(path, "cpu"))
        return (f"{info['marker']} · {', '.join(m.upper() for m in info['modalities'])} · {info['model_name']} "
                f"{info['model_version']} · cut-off {info['cutoff']:.2f}")

    @staticmethod
    def fitBoxToSegmentation(scene: slicer.vtkMRMLScene, segmentation: slicer.vtkMRMLSegmentationNode,
                             reference: slicer.vtkMRMLScalarVolumeNode | None,
                             roi: slicer.vtkMRMLMarkupsROINode | None = None,
                             margin_mm: float = 0.0) -> slicer.vtkMRMLMarkupsROINode:
        """Set ``roi`` (or a new ROI) to the box around the segmentation's visible segments, aligned with the
        ``reference`` volume's voxel grid (the T1C), so that the box follows the slices."""
        from DMIFLib.mrml.roi import box_to_roi_node, fit_box_to_labelmap

        if segmentation is None:
            raise MRMLError("select a segmentation to fit the box to")
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "DMIF box fit (temporary)")
        try:
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportVisibleSegmentsToLabelmapNode(
                    segmentation, labelmap, reference):
                raise MRMLError(f"segmentation '{segmentation.GetName()}' could not be exported to a labelmap")
            box = fit_box_to_labelmap(labelmap, margin_mm)
        finally:
            scene.RemoveNode(labelmap)
        return box_to_roi_node(box, scene, "Tumour box", roi)

    def predict(self, scene: slicer.vtkMRMLScene, *, t1c, t2w, roi, modelPath: str, flair=None,
                device: str = "auto", register: bool = True, biasCorrection: bool = True, skullStrip: bool = True,
                brainMask=None, resultsTable=None, slicesTable=None, patientName: str | None = None,
                progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None):
        """Predict one patient; returns (CasePrediction, results table node, per-slice table node), the tables
        placed under the patient (the subject holding the T1C volume) in the subject hierarchy."""
        from DMIFLib.mrml.predict import predict_nodes, prediction_tables, settings_for

        if progress:
            progress({"step": "model", "fraction": 0.0, "message": "Loading the model"})
        model = self.loadModel(modelPath, device)
        settings = settings_for(model, register=register, bias_correction=biasCorrection, skull_strip=skullStrip)
        backend = self.backendFactory(cancel=cancel, progress=progress) if self.backendFactory else None
        patient = patientName or patient_name(scene, t1c)
        prediction = predict_nodes(model, {"t1c": t1c, "t2w": t2w, "flair": flair}, roi, settings,
                                   brain_mask=brainMask, backend=backend, progress=progress, cancel=cancel,
                                   patient_name=patient)
        results, slices = prediction_tables(scene, prediction, model, patient, reference_node=t1c,
                                            results_node=resultsTable, slices_node=slicesTable)
        return prediction, results, slices

    @staticmethod
    def summary(prediction) -> str:
        """'0.734 → positive (cut-off 0.45)' for the panel."""
        verdict = "positive" if prediction.prediction else "negative"
        return f"{prediction.p_fused:.3f} → {verdict} (cut-off {prediction.cutoff:.2f})"


def selfTestCase(scene: slicer.vtkMRMLScene, folder, backendFactory: Callable | None = None,
                 modelPath: str | None = None):
    """The module's built-in test: one synthetic patient loaded into the scene, its box fitted to its tumour
    label, predicted with ``modelPath`` (default: a tiny model trained here on a tiny synthetic cohort) and
    ``backendFactory``'s preprocessing (Slicer's CLI modules in DMIFPredictTest). Returns (prediction, results
    table, slices table)."""
    from DMIFTrainLib.logic import SELF_TEST_OVERRIDES

    from DMIFLib.cohort import read_cohort
    from DMIFLib.mrml.roi import box_to_roi_node, fit_box_to_labelmap
    from DMIFLib.mrml.scene import load_volume
    from DMIFLib.synth import synthesize_cohort

    folder = Path(folder)
    cohort = synthesize_cohort(folder / "cohort", 6, 0, scale=0.5)
    if modelPath is None:
        from DMIFLib.training import train_cohort

        modelPath = str(train_cohort(cohort, folder / "run", preset="quick", device="cpu",
                                     overrides=SELF_TEST_OVERRIDES).model_path)
    case = read_cohort(cohort)[0]
    t1c = load_volume(scene, case.images["t1c"], "T1C")
    t2w = load_volume(scene, case.images["t2w"], "T2W")
    label = load_volume(scene, case.roi, "tumour", labelmap=True)
    roi = box_to_roi_node(fit_box_to_labelmap(label), scene)
    logic = PredictLogic(backendFactory=backendFactory)
    return logic.predict(scene, t1c=t1c, t2w=t2w, roi=roi, modelPath=modelPath, device="cpu",
                         patientName=case.patient_id)
