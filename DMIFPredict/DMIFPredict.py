"""DMIF Predict: a glioma's molecular status (e.g. 1p/19q co-deletion) from the MRI volumes a model asks for
(T1C, T1, T2W and/or FLAIR) and a tumour box.

Thin Slicer module over DMIFLib: the computation is in ``DMIFPredictLib.logic.PredictLogic`` (Qt-free, tested
under slicer-core) and ``DMIFLib.mrml``; this file holds the GUI, the parameter node and the dependency prompts.
At start-up it imports only Slicer, DMIFPredictLib.logic and DMIFPredictLib.dependencies (DMIFLib comes later),
so that a Slicer older than 5.10 shows a message instead of a traceback.
"""

import threading
from typing import Annotated

import qt
import slicer
import vtk
from DMIFPredictLib.dependencies import DependencyError, unsupportedSlicerMessage
from DMIFPredictLib.logic import DEVICES, MODALITY_TITLES, VOLUME_MODALITIES, PredictLogic, hasPath
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLMarkupsROINode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

DOCUMENTATION_URL = "https://github.com/dmif-slicer/SlicerDMIF/blob/main/docs/slicer.md"


class DMIFPredict(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DMIF Predict")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["DMIF for 3D Slicer contributors (SlicerDMIF project)"]
        self.parent.helpText = _(
            "Predicts a glioma's molecular status (1p/19q co-deletion, or the marker a model was trained for) from "
            "the MRI volumes the model was trained on (T1C, T1, T2W and/or FLAIR: the panel asks for exactly "
            "those) and a box around the tumour, with DMIF-Net. Load a model file (.pt) trained with DMIF Train or "
            "<code>dmif train</code>, select the volumes, place the box and click Apply. Research use only: no "
            "clinical model ships with the extension. Supported: 3D Slicer 5.10 and 5.12. See the "
            '<a href="{url}">documentation</a>.').format(url=DOCUMENTATION_URL)
        self.parent.acknowledgementText = _(
            "DMIF-Net: Chen et al., Journal of Software 2022. Built on 3D Slicer, PyTorch, kymatio and SimpleITK.")


@parameterNodeWrapper
class DMIFPredictParameterNode:
    t1cVolume: vtkMRMLScalarVolumeNode
    t1Volume: vtkMRMLScalarVolumeNode
    t2wVolume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    tumourBox: vtkMRMLMarkupsROINode
    segmentation: vtkMRMLSegmentationNode
    registerToT1C: bool = True
    biasCorrection: bool = True
    skullStrip: bool = True
    brainMask: vtkMRMLLabelMapVolumeNode
    modelPath: str = ""
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
        self._modelModalities = None  # the loaded model's modality keys; None: no model read yet

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        problem = unsupportedSlicerMessage()
        if problem:
            label = qt.QLabel(problem)
            label.wordWrap = True
            self.layout.addWidget(label)
            self.layout.addStretch(1)
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DMIFPredict.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DMIFPredictLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self._addSaliencyAndReportRow()
        self.ui.placeBoxButton.connect("clicked(bool)", self.onPlaceBox)
        self.ui.fitBoxButton.connect("clicked(bool)", self.onFitBox)
        # ctkPathLineEdit emits currentPathChanged only for text its name filter accepts, and validInputChanged
        # when that acceptance changes (ctkPathLineEdit::updateHasValidInput): both are needed to see a cleared
        # path. The model path is therefore kept in the parameter node by hand, not by connectGui.
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathEdited)
        self.ui.modelPathLineEdit.connect("validInputChanged(bool)", self.onModelPathEdited)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        if self.logic is not None:
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
        lineEdit = self.ui.modelPathLineEdit
        if not hasPath(parameters.modelPath):
            self.onModelPathEdited()  # the widget shows the most recent path of its history
        elif lineEdit.currentPath != parameters.modelPath:
            lineEdit.currentPath = parameters.modelPath
        self._readModel(askToInstall=False)

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
        if self._cancel is not None or self._parameterNode is None:
            return  # running: the button is the Cancel button
        parameters = self._parameterNode
        required = [(_("model file"), hasPath(parameters.modelPath)), (_("tumour box"), parameters.tumourBox)]
        required += [(_("{modality} volume").format(modality=MODALITY_TITLES[m]), getattr(parameters, f"{m}Volume"))
                     for m in self._modelModalities or ()]
        missing = [label for label, value in required if not value]
        self.ui.applyButton.enabled = not missing
        if missing:
            self.ui.applyButton.toolTip = _("Select: ") + ", ".join(missing)
        elif self._modelModalities is None:
            self.ui.applyButton.toolTip = _("Install the missing Python packages and read the model file.")
        else:
            self.ui.applyButton.toolTip = _("Run the prediction; click again to cancel.")
        self.ui.fitBoxButton.enabled = parameters.segmentation is not None

    def onModelPathEdited(self, _value=None) -> None:
        """Keep the parameter node's model path equal to the widget's path when it names a file, else ''."""
        import os

        if self._parameterNode is None:
            return
        path = self.ui.modelPathLineEdit.currentPath
        path = path if path and os.path.isfile(path) else ""
        if path != self._parameterNode.modelPath:
            self._parameterNode.modelPath = path
            self._readModel(askToInstall=False)

    def _readModel(self, askToInstall: bool) -> None:
        """Read the chosen model file: show what it is and the volume selectors of its modalities. Without
        PyTorch the file cannot be read: Apply installs the dependencies (``askToInstall``) first."""
        import importlib.util

        self._modelModalities = None
        path = self._parameterNode.modelPath
        if not hasPath(path):
            self.ui.modelInfoLabel.text = _("No model loaded: choose a model file (.pt).")
        elif importlib.util.find_spec("torch") is None and not askToInstall:
            self.ui.modelInfoLabel.text = _("Click Apply to install PyTorch and the other packages DMIF needs; "
                                            "then the model's details and the volumes it needs appear here.")
        else:
            try:
                info = self.logic.modelInfo(path)
                self._modelModalities = tuple(info["modalities"])
                self.ui.modelInfoLabel.text = self.logic.describeModel(info)
            except Exception as error:  # a wrong file must not break the panel: show why
                self.ui.modelInfoLabel.text = _("Cannot read the model: ") + str(error)
        self._showModalitySelectors()
        self._checkCanApply()

    def _showModalitySelectors(self) -> None:
        """One volume selector per modality of the model; the others hidden. Empty selectors get a volume whose
        name matches the modality."""
        modalities = self._modelModalities or ()
        for modality in VOLUME_MODALITIES:
            visible = modality in modalities
            getattr(self.ui, f"{modality}Selector").visible = visible
            getattr(self.ui, f"{modality}Label").visible = visible
            name = f"{modality}Volume"
            if visible and getattr(self._parameterNode, name) is None:
                node = self.logic.guessVolume(slicer.mrmlScene, modality)
                if node:
                    setattr(self._parameterNode, name, node)

    def onPlaceBox(self) -> None:
        from DMIFLib.mrml.roi import reset_roi_for_placement

        roi = self._parameterNode.tumourBox
        if roi is None:
            roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", _("Tumour box"))
            roi.CreateDefaultDisplayNodes()
            self._parameterNode.tumourBox = roi
        reset_roi_for_placement(roi)  # placed anew: two clicks at opposite corners
        appLogic = slicer.app.applicationLogic()
        selectionNode = appLogic.GetSelectionNode()
        selectionNode.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsROINode")
        selectionNode.SetActivePlaceNodeID(roi.GetID())
        appLogic.GetInteractionNode().SetCurrentInteractionMode(slicer.vtkMRMLInteractionNode.Place)

    def onFitBox(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to fit the box to the segmentation."), waitCursor=True):
            parameters = self._parameterNode
            parameters.tumourBox = self.logic.fitBoxToSegmentation(
                slicer.mrmlScene, parameters.segmentation, self._referenceVolume(), parameters.tumourBox)

    def _referenceVolume(self):
        """The volume of the model's first modality (the reference grid), else the first selected volume."""
        parameters = self._parameterNode
        order = list(self._modelModalities or ()) + list(VOLUME_MODALITIES)
        return next((getattr(parameters, f"{m}Volume") for m in order if getattr(parameters, f"{m}Volume")), None)

    def onApplyButton(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.ui.statusLabel.text = _("Cancelling...")
            return
        try:
            self.logic.ensureDependencies()
        except DependencyError as error:
            slicer.util.errorDisplay(str(error), windowTitle=_("DMIF Predict"))
            return
        if self._modelModalities is None:  # the model could not be read before PyTorch was there
            self._readModel(askToInstall=True)
            self.ui.statusLabel.text = _("Select the volumes the model needs, then click Apply.") \
                if self._modelModalities is not None else self.ui.modelInfoLabel.text
            return
        with slicer.util.tryWithErrorDisplay(_("Prediction failed."), waitCursor=False):
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
            self.ui.modelPathLineEdit.addCurrentPathToHistory()
            parameters.resultsTable = results
            parameters.slicesTable = slices
            self.ui.resultLabel.text = self.logic.summary(prediction)
            self.ui.resultLabel.styleSheet = "color: #b00000" if prediction.ood_warning else ""
            self.ui.statusLabel.text = _("Done: see the results table under the patient in the Data module.")
            appLogic = slicer.app.applicationLogic()
            appLogic.GetSelectionNode().SetActiveTableID(results.GetID())
            appLogic.PropagateTableSelection()

    def _addSaliencyAndReportRow(self) -> None:
        """Outputs: a saliency method, 'Show saliency' (volumes under the patient, foreground) and 'Save report'."""
        row = qt.QHBoxLayout()
        self.saliencyMethodCombo = qt.QComboBox()
        self.saliencyMethodCombo.addItems(["gradcam", "occlusion", "integrated_gradients"])
        self.saliencyMethodCombo.toolTip = _("gradcam: fast, CNN branch only; occlusion / integrated_gradients: "
                                             "the whole net, minutes on a CPU (docs/trust.md)")
        self.showSaliencyButton = qt.QPushButton(_("Show saliency"))
        self.saveReportButton = qt.QPushButton(_("Save report"))
        for widget in (self.saliencyMethodCombo, self.showSaliencyButton, self.saveReportButton):
            row.addWidget(widget)
        self.ui.outputsCollapsibleButton.layout().addRow(_("Explain:"), row)
        self.showSaliencyButton.connect("clicked(bool)", self.onShowSaliency)
        self.saveReportButton.connect("clicked(bool)", self.onSaveReport)

    def onShowSaliency(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Saliency failed."), waitCursor=True):
            self.logic.showSaliency(slicer.mrmlScene, self.saliencyMethodCombo.currentText)
            self.ui.statusLabel.text = _("Saliency shown as foreground; the volumes are under the patient.")

    def onSaveReport(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(None, _("Folder for the case report"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("Report failed."), waitCursor=True):
            paths = self.logic.saveReport(folder, self.saliencyMethodCombo.currentText)
            self.ui.statusLabel.text = _("Report written: ") + str(paths["html"])

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
    def ensureDependencies(askConfirmation: bool = True, forceCpu=None) -> None:
        """The Slicer version, PyTorch (PyTorch extension) and DMIFLib/requirements.txt; DependencyError if not."""
        from DMIFPredictLib.dependencies import ensureDependencies

        ensureDependencies(askConfirmation, forceCpu)

    @staticmethod
    def slicerBackend(cancel=None, progress=None):
        """Preprocessing with Slicer's own BRAINSFit and N4ITKBiasFieldCorrection CLI modules."""
        from DMIFLib.mrml.cli_backend import SlicerCLIBackend

        return SlicerCLIBackend(cancel=cancel, progress=progress)

    def predictFromParameters(self, scene, parameters, progress=None, cancel=None):
        volumes = {m: getattr(parameters, f"{m}Volume") for m in VOLUME_MODALITIES}
        return self.predict(
            scene, volumes=volumes, roi=parameters.tumourBox, modelPath=parameters.modelPath,
            device=parameters.device, register=parameters.registerToT1C, biasCorrection=parameters.biasCorrection,
            skullStrip=parameters.skullStrip, brainMask=parameters.brainMask, resultsTable=parameters.resultsTable,
            slicesTable=parameters.slicesTable, progress=progress, cancel=cancel)


class DMIFPredictTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (ctest / Reload and Test): the real logic on a synthetic case and a tiny trained model.
    It installs what it needs first (CPU PyTorch through the PyTorch extension, DMIFLib/requirements.txt):
    Slicer's testing mode does not install packages by itself."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        problem = unsupportedSlicerMessage()
        if problem:
            self.skipTest(problem)
        DMIFPredictLogic.ensureDependencies(askConfirmation=False, forceCpu=True)
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
