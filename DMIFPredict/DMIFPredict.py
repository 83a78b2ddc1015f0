"""DMIF Predict: a glioma's molecular status (e.g. 1p/19q co-deletion) from T1C + T2W MRI and a tumour box.

Thin Slicer module over DMIFLib: the computation is in ``DMIFPredictLib.logic.PredictLogic`` (Qt-free, tested
under slicer-core) and ``DMIFLib.mrml``; this file holds the GUI, the parameter node and the dependency prompts.
"""

import importlib.util
import threading
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from DMIFPredictLib.logic import DEVICES, PredictLogic, hasPath
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLMarkupsROINode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODEL_PATH_SETTING = "DMIF/ModelPath"


class DMIFPredict(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DMIF Predict")
        self.parent.categories = [_("Machine Learning")]
        self.parent.dependencies = []
        self.parent.contributors = ["DMIF for 3D Slicer contributors"]
        self.parent.helpText = _(
            "Predicts a glioma's molecular status (1p/19q co-deletion, or the marker a model was trained for) from "
            "T1C and T2W MRI and a box around the tumour, with DMIF-Net. Load a model file (.pt) trained with "
            "DMIF Train or <code>dmif train</code>, select the volumes, place the box and click Apply. "
            "Research use only: no clinical model ships with the extension.")
        self.parent.acknowledgementText = _(
            "DMIF-Net: Chen et al., Journal of Software 2022. Built on 3D Slicer, PyTorch, kymatio and SimpleITK.")


@parameterNodeWrapper
class DMIFPredictParameterNode:
    t1cVolume: vtkMRMLScalarVolumeNode
    t2wVolume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    tumourBox: vtkMRMLMarkupsROINode
    segmentation: vtkMRMLSegmentationNode
    registerToT1C: bool = True
    biasCorrection: bool = True
    skullStrip: bool = True
    brainMask: vtkMRMLLabelMapVolumeNode
    modelPath: Path
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    resultsTable: vtkMRMLTableNode
    slicesTable: vtkMRMLTableNode


class DMIFPredictWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cancel = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DMIFPredict.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DMIFPredictLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.placeBoxButton.connect("clicked(bool)", self.onPlaceBox)
        self.ui.fitBoxButton.connect("clicked(bool)", self.onFitBox)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathChanged)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        parameters = self._parameterNode
        if not hasPath(parameters.modelPath) and qt.QSettings().value(MODEL_PATH_SETTING, ""):
            parameters.modelPath = Path(qt.QSettings().value(MODEL_PATH_SETTING))
        for name, modality in (("t1cVolume", "t1c"), ("t2wVolume", "t2w")):
            if not getattr(parameters, name):
                node = self.logic.guessVolume(slicer.mrmlScene, modality)
                if node:
                    setattr(parameters, name, node)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self._cancel is not None:
            return  # running: the button is the Cancel button
        parameters = self._parameterNode
        missing = [label for label, value in ((_("T1C volume"), parameters.t1cVolume),
                                              (_("T2W volume"), parameters.t2wVolume),
                                              (_("tumour box"), parameters.tumourBox),
                                              (_("model file"), hasPath(parameters.modelPath))) if not value]
        self.ui.applyButton.enabled = not missing
        self.ui.applyButton.toolTip = _("Run the prediction; click again to cancel.") if not missing \
            else _("Select: ") + ", ".join(missing)
        self.ui.fitBoxButton.enabled = parameters.segmentation is not None

    def onModelPathChanged(self, path: str) -> None:
        if not path:
            self.ui.modelInfoLabel.text = _("No model loaded")
            return
        qt.QSettings().setValue(MODEL_PATH_SETTING, path)
        if importlib.util.find_spec("torch") is None:
            self.ui.modelInfoLabel.text = _("Model details appear once PyTorch is installed (on Apply).")
            return
        try:
            self.ui.modelInfoLabel.text = self.logic.describeModelFile(path)
        except Exception as error:  # a wrong file must not break the panel: show why
            self.ui.modelInfoLabel.text = _("Cannot read model: ") + str(error)

    def onPlaceBox(self) -> None:
        roi = self._parameterNode.tumourBox
        if roi is None:
            roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", _("Tumour box"))
            roi.CreateDefaultDisplayNodes()
            self._parameterNode.tumourBox = roi
        roi.RemoveAllControlPoints()  # placed anew: click the centre, then a corner
        appLogic = slicer.app.applicationLogic()
        selectionNode = appLogic.GetSelectionNode()
        selectionNode.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsROINode")
        selectionNode.SetActivePlaceNodeID(roi.GetID())
        appLogic.GetInteractionNode().SetCurrentInteractionMode(slicer.vtkMRMLInteractionNode.Place)

    def onFitBox(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to fit the box to the segmentation."), waitCursor=True):
            parameters = self._parameterNode
            parameters.tumourBox = self.logic.fitBoxToSegmentation(
                slicer.mrmlScene, parameters.segmentation, parameters.t1cVolume, parameters.tumourBox)

    def onApplyButton(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.ui.statusLabel.text = _("Cancelling...")
            return
        with slicer.util.tryWithErrorDisplay(_("Prediction failed."), waitCursor=False):
            self.logic.ensureDependencies()
            from DMIFLib.training.errors import RunCancelledError

            self._setRunning(True)
            try:
                parameters = self._parameterNode
                prediction, results, slices = self.logic.predictFromParameters(
                    slicer.mrmlScene, parameters, progress=self._onProgress, cancel=self._cancel)
            except (InterruptedError, RunCancelledError):
                self.ui.statusLabel.text = _("Cancelled.")
                return
            finally:
                self._setRunning(False)
            parameters.resultsTable = results
            parameters.slicesTable = slices
            self.ui.resultLabel.text = self.logic.summary(prediction)
            self.ui.statusLabel.text = _("Done: see the results table under the patient in the Data module.")
            appLogic = slicer.app.applicationLogic()
            appLogic.GetSelectionNode().SetActiveTableID(results.GetID())
            appLogic.PropagateTableSelection()

    def _setRunning(self, running: bool) -> None:
        self._cancel = threading.Event() if running else None
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.progressBar.visible = running
        self.ui.progressBar.value = 0
        for box in (self.ui.inputsCollapsibleButton, self.ui.modelCollapsibleButton,
                    self.ui.preprocessingCollapsibleButton, self.ui.outputsCollapsibleButton):
            box.enabled = not running
        if not running:
            self._checkCanApply()

    def _onProgress(self, event: dict) -> None:
        """Progress from DMIFLib ({'step', 'fraction', 'message'}); keeps the GUI (and Cancel) responsive."""
        if "fraction" in event:
            self.ui.progressBar.value = int(100 * float(event["fraction"]))
        if event.get("message"):
            self.ui.statusLabel.text = str(event["message"])
        slicer.app.processEvents()


class DMIFPredictLogic(ScriptedLoadableModuleLogic, PredictLogic):
    """The module's logic: the parameter node plus :class:`DMIFPredictLib.logic.PredictLogic`."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        PredictLogic.__init__(self, backendFactory=self.slicerBackend)

    def getParameterNode(self):
        return DMIFPredictParameterNode(super().getParameterNode())

    @staticmethod
    def ensureDependencies() -> None:
        from DMIFPredictLib.dependencies import ensureDependencies

        ensureDependencies()

    @staticmethod
    def slicerBackend(cancel=None, progress=None):
        """Preprocessing with Slicer's own BRAINSFit and N4ITKBiasFieldCorrection CLI modules."""
        from DMIFLib.mrml.cli_backend import SlicerCLIBackend

        return SlicerCLIBackend(cancel=cancel, progress=progress)

    def predictFromParameters(self, scene, parameters, progress=None, cancel=None):
        return self.predict(
            scene, t1c=parameters.t1cVolume, t2w=parameters.t2wVolume, flair=parameters.flairVolume,
            roi=parameters.tumourBox, modelPath=str(parameters.modelPath), device=parameters.device,
            register=parameters.registerToT1C, biasCorrection=parameters.biasCorrection,
            skullStrip=parameters.skullStrip, brainMask=parameters.brainMask,
            resultsTable=parameters.resultsTable, slicesTable=parameters.slicesTable,
            progress=progress, cancel=cancel)


class DMIFPredictTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (ctest / Reload and Test): the real logic on a synthetic case and a tiny trained model."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_PredictSynthetic()

    def test_PredictSynthetic(self):
        import tempfile

        from DMIFPredictLib.logic import selfTestCase

        with tempfile.TemporaryDirectory() as folder:
            prediction, results, slices = selfTestCase(slicer.mrmlScene, folder,
                                                       backendFactory=DMIFPredictLogic.slicerBackend)
        self.assertTrue(0.0 <= prediction.p_fused <= 1.0)
        self.assertGreater(results.GetNumberOfRows(), 0)
        self.assertGreater(slices.GetNumberOfRows(), 0)
        self.delayDisplay(_("Test passed"))
