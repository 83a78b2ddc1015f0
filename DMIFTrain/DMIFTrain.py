"""DMIF Train: train a DMIF-Net model on your own cohort, in a separate process, with progress and Cancel.

Thin Slicer module over DMIFLib: the worker is ``PythonSlicer -m DMIFLib.worker train ...`` (JSON-lines progress
on stdout, see ``DMIFTrainLib.process``); cohort building and the result nodes are in
``DMIFTrainLib.logic.TrainLogic`` (Qt-free, tested under slicer-core). Like DMIF Predict, it imports no DMIFLib
at start-up, so that a Slicer older than 5.10 shows a message instead of a traceback.
"""

import os
from typing import Annotated

import qt
import slicer
import vtk
from DMIFPredictLib.dependencies import DependencyError, unsupportedSlicerMessage
from DMIFPredictLib.logic import hasPath
from DMIFTrainLib.logic import DEVICES, METHODS, PRESETS, TrainLogic
from slicer import vtkMRMLPlotChartNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

DOCUMENTATION_URL = "https://github.com/dmif-slicer/SlicerDMIF/blob/main/docs/slicer.md"

PATH_PARAMETERS = (("cohortPathLineEdit", "cohortPath", True), ("outputFolderLineEdit", "outputFolder", False))
"""(path widget, parameter, must be an existing file): ctkPathLineEdit emits currentPathChanged only for text
its filter accepts (a cleared path would be missed), so these paths are kept in the parameter node by hand."""


class DMIFTrain(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DMIF Train")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = ["DMIFPredict"]  # shares its dependency installer
        self.parent.contributors = ["DMIF for 3D Slicer contributors (SlicerDMIF project)"]
        self.parent.helpText = _(
            "Trains a DMIF-Net model (DF-Net + MI-Net per modality, fused; the paper's Algorithm 1) on a cohort "
            "with a binary label (e.g. 1p/19q co-deleted = 1). Choose a cohort CSV or build one from the patients "
            "loaded in the scene, an output folder and a preset, then click Train. Training runs in a separate "
            "process; Cancel stops it and Resume continues from the last checkpoint. At the end the test-set "
            "metrics (the paper's Table 2 columns), the training history and the ROC curve appear as tables and "
            "plots, and the model file can be used in DMIF Predict. With cross-validation folds set, every patient "
            "is predicted by a fold model that never saw it: the metrics, per-fold AUCs and ROC curve are then "
            "out-of-fold, and the model file is the ensemble of the fold models. Research use only. "
            'Supported: 3D Slicer 5.10 and 5.12. See the <a href="{url}">documentation</a>.'
        ).format(url=DOCUMENTATION_URL)
        self.parent.acknowledgementText = _(
            "DMIF-Net: Chen et al., Journal of Software 2022. Built on 3D Slicer, PyTorch, kymatio and SimpleITK.")


@parameterNodeWrapper
class DMIFTrainParameterNode:
    cohortPath: str = ""
    cohortTable: vtkMRMLTableNode
    marker: str = "1p/19q co-deletion"
    preset: Annotated[str, Choice(list(PRESETS))] = "quick"
    method: Annotated[str, Choice(list(METHODS))] = "dmif"
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    outputFolder: str = ""
    resume: bool = False
    cvFolds: Annotated[int, WithinRange(0, 20)] = 0
    cvRepeats: Annotated[int, WithinRange(1, 10)] = 1
    overridePreset: bool = False
    epochs: Annotated[int, WithinRange(1, 1000)] = 150
    batchSize: Annotated[int, WithinRange(1, 1024)] = 64
    learningRate: Annotated[float, WithinRange(1e-6, 1.0)] = 1e-3
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    metricsTable: vtkMRMLTableNode
    historyTable: vtkMRMLTableNode
    rocChart: vtkMRMLPlotChartNode


class DMIFTrainWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._worker = None
        self._timer = qt.QTimer()
        self._timer.setInterval(250)
        self._timer.connect("timeout()", self._poll)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        problem = unsupportedSlicerMessage()
        if problem:
            label = qt.QLabel(problem)
            label.wordWrap = True
            self.layout.addWidget(label)
            self.layout.addStretch(1)
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DMIFTrain.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DMIFTrainLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.buildCohortButton.connect("clicked(bool)", self.onBuildCohort)
        self.ui.cohortTableSelector.connect("currentNodeChanged(vtkMRMLNode*)",
                                            self.ui.cohortTableView.setMRMLTableNode)
        for widgetName, _parameter, _isFile in PATH_PARAMETERS:
            widget = getattr(self.ui, widgetName)
            widget.connect("currentPathChanged(QString)", self.onPathEdited)
            widget.connect("validInputChanged(bool)", self.onPathEdited)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._timer.stop()
        if self._worker is not None:
            self._worker.cancel()
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
        for widgetName, parameter, _isFile in PATH_PARAMETERS:
            widget = getattr(self.ui, widgetName)
            value = getattr(self._parameterNode, parameter)
            if hasPath(value) and widget.currentPath != value:
                widget.currentPath = value
        self.onPathEdited()  # empty parameters take the widgets' most recent history entry

    def onPathEdited(self, _value=None) -> None:
        """Each path parameter = its widget's path (for the cohort: only when it names a file), else ''."""
        if self._parameterNode is None:
            return
        for widgetName, parameter, isFile in PATH_PARAMETERS:
            path = getattr(self.ui, widgetName).currentPath
            if not hasPath(path) or (isFile and not os.path.isfile(path)):
                path = ""
            if getattr(self._parameterNode, parameter) != path:
                setattr(self._parameterNode, parameter, path)

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
        if self._worker is not None or self._parameterNode is None:
            return  # running: the button is the Cancel button
        parameters = self._parameterNode
        haveCohort = hasPath(parameters.cohortPath) or parameters.cohortTable is not None
        self.ui.applyButton.enabled = haveCohort and hasPath(parameters.outputFolder)
        self.ui.applyButton.text = _("Resume") if parameters.resume else _("Train")
        for widget in (self.ui.epochsSpinBox, self.ui.batchSizeSpinBox, self.ui.learningRateSpinBox,
                       self.ui.seedSpinBox):
            widget.enabled = parameters.overridePreset
        self.ui.cvRepeatsSpinBox.enabled = parameters.cvFolds > 0

    def onBuildCohort(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to build a cohort from the scene."), waitCursor=True):
            table = self.logic.cohortTableFromScene(slicer.mrmlScene, self._parameterNode.cohortTable)
            self._parameterNode.cohortTable = table
            self.ui.cohortTableView.setMRMLTableNode(table)
            self.ui.statusLabel.text = _("{count} patient(s) found; fill in the label column (0/1).").format(
                count=table.GetNumberOfRows())

    def onApplyButton(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self.ui.statusLabel.text = _("Cancelled; click Resume (with Resume checked) to continue later.")
            self._finish()
            return
        try:
            DMIFTrainLogic.ensureDependencies()
        except DependencyError as error:
            slicer.util.errorDisplay(str(error), windowTitle=_("DMIF Train"))
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start training."), waitCursor=True):
            parameters = self._parameterNode
            cohortCsv = self.logic.cohortCsvFromParameters(slicer.mrmlScene, parameters)
            self._worker = self.logic.startTraining(
                cohortCsv, str(parameters.outputFolder), preset=parameters.preset, device=parameters.device,
                resume=parameters.resume, overrides=self.logic.overridesFromParameters(parameters),
                marker=parameters.marker, method=parameters.method, cvFolds=parameters.cvFolds or None,
                cvRepeats=parameters.cvRepeats)
            self.ui.cohortPathLineEdit.addCurrentPathToHistory()
            self.ui.outputFolderLineEdit.addCurrentPathToHistory()
            self.ui.applyButton.text = _("Cancel")
            self.ui.progressBar.visible = True
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = _("Training started...")
            self._timer.start()

    def _poll(self) -> None:
        worker = self._worker
        if worker is None:
            return
        for event in worker.events():
            text, fraction = self.logic.describeEvent(event)
            if fraction is not None:
                self.ui.progressBar.value = int(100 * fraction)
            if text:
                self.ui.statusLabel.text = text
        if worker.running():
            return
        code = worker.wait()
        self._finish()
        if worker.cancelled:
            return
        if code != 0:
            slicer.util.errorDisplay(_("Training failed (exit code {code}).").format(code=code),
                                     detailedText=worker.stderr_tail(60))
            return
        with slicer.util.tryWithErrorDisplay(_("Training finished but its results could not be loaded."),
                                             waitCursor=True):
            parameters = self._parameterNode
            nodes = self.logic.loadResults(slicer.mrmlScene, str(parameters.outputFolder),
                                           metricsTable=parameters.metricsTable,
                                           historyTable=parameters.historyTable, rocChart=parameters.rocChart)
            parameters.metricsTable = nodes.metrics
            parameters.historyTable = nodes.history
            parameters.rocChart = nodes.roc
            self.ui.modelFileLabel.text = str(nodes.modelPath)
            self.ui.statusLabel.text = _("Done. Use the model file in DMIF Predict.")
            slicer.modules.plots.logic().ShowChartInLayout(nodes.roc)

    def _finish(self) -> None:
        self._timer.stop()
        self._worker = None
        self.ui.progressBar.visible = False
        self._checkCanApply()


class DMIFTrainLogic(ScriptedLoadableModuleLogic, TrainLogic):
    """The module's logic: the parameter node plus :class:`DMIFTrainLib.logic.TrainLogic`."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        TrainLogic.__init__(self)

    def getParameterNode(self):
        return DMIFTrainParameterNode(super().getParameterNode())

    @staticmethod
    def ensureDependencies(askConfirmation: bool = True, forceCpu=None) -> None:
        """The Slicer version, PyTorch (PyTorch extension) and DMIFLib/requirements.txt; DependencyError if not."""
        from DMIFPredictLib.dependencies import ensureDependencies

        ensureDependencies(askConfirmation, forceCpu)

    def cohortCsvFromParameters(self, scene, parameters):
        """The cohort CSV to train on: the scene cohort table (written to the output folder) or the chosen file."""
        if parameters.cohortTable is not None:
            return self.writeCohortFromTable(scene, parameters.cohortTable, str(parameters.outputFolder))
        return str(parameters.cohortPath)

    @staticmethod
    def overridesFromParameters(parameters) -> dict:
        if not parameters.overridePreset:
            return {"seed": parameters.seed} if parameters.seed else {}
        return {"epochs": parameters.epochs, "batch_size": parameters.batchSize,
                "lr": {"stage1": parameters.learningRate}, "seed": parameters.seed}


class DMIFTrainTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: trains on a tiny synthetic cohort in the worker process and loads the result nodes.
    It installs what it needs first (CPU PyTorch through the PyTorch extension, DMIFLib/requirements.txt):
    Slicer's testing mode does not install packages by itself."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        problem = unsupportedSlicerMessage()
        if problem:
            self.skipTest(problem)
        DMIFTrainLogic.ensureDependencies(askConfirmation=False, forceCpu=True)
        self.test_TrainSynthetic()

    def test_TrainSynthetic(self):
        import tempfile

        from DMIFTrainLib.logic import selfTest

        with tempfile.TemporaryDirectory() as folder:
            nodes = selfTest(slicer.mrmlScene, folder)
        self.assertGreater(nodes.metrics.GetNumberOfRows(), 0)
        self.assertGreater(nodes.history.GetNumberOfRows(), 0)
        self.assertGreater(nodes.roc.GetNumberOfPlotSeriesNodes(), 0)
        self.delayDisplay(_("Test passed"))
