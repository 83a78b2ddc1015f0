"""DMIFPredict's logic, free of Qt: model loading, the tumour box, prediction into table nodes.

Importable under slicer-core (the tests run it there); the module file DMIFPredict.py adds the GUI and the
Slicer-CLI preprocessing backend. DMIFLib is imported inside the functions: the module file imports this file at
Slicer start-up, where it must load even on a Slicer too old for DMIFLib (to say so instead of a traceback).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import slicer

DEVICES = ("auto", "cpu", "cuda")

VOLUME_MODALITIES = ("t1c", "t1", "t2w", "flair")
"""The modality keys a model file can list, each with a volume selector (``<key>Selector``, parameter
``<key>Volume``) in DMIF Predict; only those of the loaded model are shown and asked for."""

MODALITY_TITLES = {"t1c": "T1C", "t1": "T1", "t2w": "T2W", "flair": "FLAIR"}


def hasPath(path) -> bool:
    """True for a chosen path; an empty path widget gives '' or Path('.')."""
    return bool(path) and str(path) not in ("", ".")


class PredictLogic:
    """Prediction for one patient from MRML nodes; ``backendFactory(cancel=, progress=)`` gives the
    preprocessing backend (None: DMIFLib's SimpleITK backend)."""

    def __init__(self, backendFactory: Callable | None = None) -> None:
        self.backendFactory = backendFactory
        self._models: dict[tuple, object] = {}
        self.lastCase: dict | None = None  # the last prediction's model, stack, reference, ... (saliency, report)

    @staticmethod
    def guessVolume(scene: slicer.vtkMRMLScene, modality: str) -> slicer.vtkMRMLScalarVolumeNode | None:
        """The first scalar volume whose name looks like ``modality`` ('t1c', 't1', 't2w', 'flair')."""
        from DMIFLib.mrml.subjects import guess_modality

        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
            if not node.IsA("vtkMRMLLabelMapVolumeNode") and guess_modality(node.GetName() or "") == modality:
                return node
        return None

    def loadModel(self, path: str, device: str = "auto"):
        """The LoadedModel of ``path`` on ``device`` (cached while the file is unchanged)."""
        from DMIFLib.model_file import load_model
        from DMIFLib.mrml.scene import MRMLError
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

    def modelInfo(self, path: str) -> dict:
        """marker, modalities (the volumes the model needs, in its order), model_name, model_version, cutoff."""
        from DMIFLib.mrml.predict import model_info

        return model_info(self.loadModel(path, "cpu"))

    @staticmethod
    def describeModel(info: dict) -> str:
        """One line for the panel: marker, modalities, model name/version, cut-off."""
        modalities = ", ".join(MODALITY_TITLES.get(m, m.upper()) for m in info["modalities"])
        return (f"{info['marker']} · needs {modalities} · {info['model_name']} {info['model_version']} · "
                f"cut-off {info['cutoff']:.2f}")

    @staticmethod
    def fitBoxToSegmentation(scene: slicer.vtkMRMLScene, segmentation: slicer.vtkMRMLSegmentationNode,
                             reference: slicer.vtkMRMLScalarVolumeNode | None,
                             roi: slicer.vtkMRMLMarkupsROINode | None = None,
                             margin_mm: float = 0.0) -> slicer.vtkMRMLMarkupsROINode:
        """Set ``roi`` (or a new ROI) to the box around the segmentation's visible segments, aligned with the
        ``reference`` volume's voxel grid (the model's reference volume), so that the box follows the slices."""
        from DMIFLib.mrml.roi import box_to_roi_node, fit_box_to_labelmap
        from DMIFLib.mrml.scene import MRMLError

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

    def predict(self, scene: slicer.vtkMRMLScene, *, volumes: dict, roi, modelPath: str, device: str = "auto",
                register: bool = True, biasCorrection: bool = True, skullStrip: bool = True, brainMask=None,
                resultsTable=None, slicesTable=None, patientName: str | None = None,
                progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None):
        """Predict one patient from ``volumes`` (modality key -> volume node; the model's modalities must be
        there, others are ignored); returns (CasePrediction, results table node, per-slice table node), the
        tables placed under the patient (the subject holding the model's first modality's volume)."""
        from DMIFLib.cohort import reference_modality
        from DMIFLib.mrml.predict import predict_nodes, prediction_tables, settings_for
        from DMIFLib.mrml.scene import MRMLError
        from DMIFLib.mrml.subjects import patient_name

        if progress:
            progress({"step": "model", "fraction": 0.0, "message": "Loading the model"})
        model = self.loadModel(modelPath, device)
        missing = [MODALITY_TITLES.get(m, m.upper()) for m in model.modalities if volumes.get(m) is None]
        if missing:
            raise MRMLError(f"the model needs the {', '.join(missing)} volume(s); select them")
        reference = volumes[model.modalities[0]]
        settings = settings_for(model, register=register, bias_correction=biasCorrection, skull_strip=skullStrip)
        backend = self.backendFactory(cancel=cancel, progress=progress) if self.backendFactory else None
        patient = patientName or patient_name(scene, reference)
        stacks = []
        prediction = predict_nodes(model, {m: volumes[m] for m in model.modalities}, roi, settings,
                                   brain_mask=brainMask, backend=backend, progress=progress, cancel=cancel,
                                   patient_name=patient, on_stack=stacks.append)
        results, slices = prediction_tables(scene, prediction, model, patient, reference_node=reference,
                                            results_node=resultsTable, slices_node=slicesTable)
        gridName = reference_modality(model.modalities)  # the grid the slices were cut from
        self.lastCase = {"model": model, "stack": stacks[0], "prediction": prediction, "patient": patient,
                         "referenceName": gridName, "referenceNode": volumes[gridName], "saliency": None,
                         "method": None}
        return prediction, results, slices

    def _last(self) -> dict:
        from DMIFLib.mrml.scene import MRMLError

        if self.lastCase is None:
            raise MRMLError("predict a patient first (Apply)")
        return self.lastCase

    def showSaliency(self, scene: slicer.vtkMRMLScene, method: str = "gradcam") -> dict:
        """Saliency maps of the last prediction (``method``: gradcam, occlusion, integrated_gradients): one volume
        node per modality on the reference grid, under the patient, the first shown as foreground over the
        reference volume. Returns modality -> node."""
        from DMIFLib.explain.files import saliency_volumes
        from DMIFLib.mrml.saliency import saliency_node_name, saliency_nodes, show_as_foreground
        from DMIFLib.mrml.volumes import volume_to_image

        last = self._last()
        model, reference = last["model"], last["referenceNode"]
        images = saliency_volumes(model, last["stack"], volume_to_image(reference), method)
        existing = {m: scene.GetFirstNodeByName(saliency_node_name(last["patient"], m)) for m in images}
        nodes = saliency_nodes(scene, images, last["patient"], method, reference_node=reference,
                               nodes={m: n for m, n in existing.items() if n is not None})
        show_as_foreground(scene, nodes[model.modalities[0]], reference)
        last.update(saliency=images, method=method)
        return nodes

    def saveReport(self, folder: str, method: str = "gradcam") -> dict:
        """The last prediction's case report: ``folder/<patient>.html`` and ``.pdf`` (the saliency maps shown,
        else ``method``'s). Returns {"html": path, "pdf": path}."""
        from DMIFLib.casereport.case_outputs import build_case_report
        from DMIFLib.casereport.document import write_case_report
        from DMIFLib.explain.files import saliency_volumes
        from DMIFLib.mrml.volumes import volume_to_image

        last = self._last()
        reference = volume_to_image(last["referenceNode"])
        if last["saliency"] is None:
            last.update(saliency=saliency_volumes(last["model"], last["stack"], reference, method), method=method)
        report = build_case_report(last["model"], last["stack"], last["prediction"], last["referenceName"],
                                   reference, last["saliency"], last["method"])
        return write_case_report(report, folder)

    @staticmethod
    def summary(prediction) -> str:
        """'0.78 (0.64–0.88) → positive (cut-off 0.45)' for the panel: calibrated probability, its 90 % interval
        and, for a case unlike the training cohort, the warning (DMIFLib.trust)."""
        from DMIFLib.trust.prediction import summary

        return summary(prediction.p_fused, prediction.p_fused_low, prediction.p_fused_high, prediction.prediction,
                       prediction.cutoff, prediction.ood_warning)


def selfTestCase(scene: slicer.vtkMRMLScene, folder, backendFactory: Callable | None = None,
                 modelPath: str | None = None):
    """The module's built-in test: one synthetic patient loaded into the scene, its box fitted to its tumour
    label, predicted with ``modelPath`` (default: a tiny model trained here on a tiny synthetic cohort) and
    ``backendFactory``'s preprocessing (Slicer's CLI modules in DMIFPredictTest). The volumes loaded are those
    the model lists. Returns (prediction, results table, slices table)."""
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
    logic = PredictLogic(backendFactory=backendFactory)
    modalities = logic.modelInfo(modelPath)["modalities"]
    absent = [m for m in modalities if m not in case.images]
    if absent:
        raise ValueError(f"{modelPath}: the model needs {', '.join(absent)}, which the synthetic cohort lacks")
    volumes = {m: load_volume(scene, case.images[m], MODALITY_TITLES.get(m, m.upper())) for m in modalities}
    label = load_volume(scene, case.roi, "tumour", labelmap=True)
    roi = box_to_roi_node(fit_box_to_labelmap(label), scene)
    return logic.predict(scene, volumes=volumes, roi=roi, modelPath=modelPath, device="cpu",
                         patientName=case.patient_id)
