"""DMIFTrain's logic, free of Qt: cohort from the scene, the training worker process, results as MRML nodes.

Importable under slicer-core (the tests run it there); the module file DMIFTrain.py adds the GUI. DMIFLib is
imported inside the functions: the module file imports this file at Slicer start-up, where it must load even on a
Slicer too old for DMIFLib (to say so instead of a traceback).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import slicer
import vtk

from DMIFTrainLib.process import WorkerProcess

DEVICES = ("auto", "cpu", "cuda")
PRESETS = ("quick", "paper")
"""Training presets of DMIFLib.training (quick: CPU-sized; paper: the paper's settings)."""
METHODS = ("dmif", "radiomics", "transfer")
"""The methods of DMIFLib.methods offered in the module (docs/methods.md); the worker refuses one that this
DMIFLib does not provide with a one-line error."""

SELF_TEST_OVERRIDES = {
    "net_width": "tiny", "epochs": 1, "slice_size": 32, "max_slices": 4, "mi_scales": [2], "batch_size": 16,
    "seed": 0, "preprocessing": {"n4": False, "registration_iterations": 30, "registration_sampling": 0.1,
                                 "registration_shrink": [4, 2], "registration_smoothing_mm": [2.0, 1.0],
                                 "skull_strip": "none"}}
"""A tiny, fast training run (tiny nets, 32x32 slices, one epoch per stage, no N4, a coarse registration) for the
self-tests; its preprocessing settings go into the model file."""



def cohortColumns(modalities) -> list[str]:
    """Columns of the scene cohort table: patient_id, one per modality (node IDs), roi, label, split."""
    return ["patient_id", *modalities, "roi", "label", "split"]


@dataclass
class TrainNodes:
    """The MRML results of a finished training run."""

    metrics: slicer.vtkMRMLTableNode
    history: slicer.vtkMRMLTableNode
    historyChart: slicer.vtkMRMLPlotChartNode
    roc: slicer.vtkMRMLPlotChartNode
    rocTable: slicer.vtkMRMLTableNode
    modelPath: Path
    folderItem: int


class TrainLogic:
    """Cohort building, the worker process and the result nodes (no GUI)."""

    def __init__(self, pythonExecutable: str | None = None) -> None:
        self.pythonExecutable = pythonExecutable or shutil.which("PythonSlicer") or sys.executable

    # --- cohort from the scene ---------------------------------------------------------------------------
    def cohortTableFromScene(self, scene: slicer.vtkMRMLScene,
                             table: slicer.vtkMRMLTableNode | None = None) -> slicer.vtkMRMLTableNode:
        """One row per subject (patient) in the subject hierarchy: its volumes of the modalities DMIFLib knows
        (recognised by name: T1C, T1, T2W, FLAIR) and its Markups ROI, as node IDs, one column per modality any
        patient has; labels/splits already typed into ``table`` are kept. Raises MRMLError when the scene has no
        subject with a recognised volume and a ROI."""
        from DMIFLib.cohort import MODALITIES
        from DMIFLib.mrml import tables
        from DMIFLib.mrml.scene import MRMLError
        from DMIFLib.mrml.subjects import guess_modality

        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        kept = {}
        if table is not None and table.GetNumberOfRows():
            columns = tables.table_columns(table)
            for index, patient in enumerate(columns.get("patient_id", [])):
                kept[patient] = {c: str(columns[c][index]) for c in ("label", "split") if c in columns}
        patients = vtk.vtkIdList()
        sh.GetItemChildren(sh.GetSceneItemID(), patients, True)
        rows, problems = [], []
        for index in range(patients.GetNumberOfIds()):
            item = patients.GetId(index)
            if sh.GetItemLevel(item) != "Patient":
                continue
            name = sh.GetItemName(item)
            children = vtk.vtkIdList()
            sh.GetItemChildren(item, children, True)
            row = {"patient_id": name, **{c: "" for c in cohortColumns(MODALITIES)[1:]}}
            for child_index in range(children.GetNumberOfIds()):
                node = sh.GetItemDataNode(children.GetId(child_index))
                if node is None:
                    continue
                if node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode"):
                    modality = guess_modality(node.GetName())
                    if modality in MODALITIES and not row[modality]:
                        row[modality] = node.GetID()
                elif node.IsA("vtkMRMLMarkupsROINode") and not row["roi"]:
                    row["roi"] = node.GetID()
            if not any(row[m] for m in MODALITIES):
                problems.append(f"{name}: no recognised volume")
                continue
            if not row["roi"]:
                problems.append(f"{name}: no tumour box (Markups ROI)")
                continue
            label = sh.GetItemAttribute(item, "DMIF.label")
            row.update({"label": label or "", **kept.get(name, {})})
            rows.append(row)
        if not rows:
            detail = ("; ".join(problems)) if problems else "no subjects in the subject hierarchy"
            raise MRMLError(f"no usable patient in the scene ({detail}). Each patient needs a subject with its "
                            "volumes (names containing T1C/T1 post, T1, T2 or FLAIR) and a Markups ROI")
        columns = cohortColumns([m for m in MODALITIES if any(r[m] for r in rows)])
        return tables.table_from_rows(scene, "DMIF cohort", rows, columns, table)

    def writeCohortFromTable(self, scene: slicer.vtkMRMLScene, table: slicer.vtkMRMLTableNode,
                             outputFolder: str | os.PathLike) -> Path:
        """Write the scene cohort's volumes (NRRD), boxes (.mrk.json) and cohort.csv under
        ``outputFolder/cohort``; returns the CSV path. Raises MRMLError naming the patient on bad rows."""
        import SimpleITK as sitk  # noqa: N813

        from DMIFLib.atomic import atomic_path
        from DMIFLib.cohort import MODALITIES, CohortCase, write_cohort
        from DMIFLib.mrml import tables
        from DMIFLib.mrml.scene import MRMLError
        from DMIFLib.mrml.volumes import volume_to_image

        folder = Path(outputFolder) / "cohort"
        columns = tables.table_columns(table)
        cases = []
        for index, patient in enumerate(columns["patient_id"]):
            label = str(columns["label"][index]).strip()
            if label not in ("0", "1"):
                raise MRMLError(f"cohort table '{table.GetName()}', patient {patient}: label '{label}' is not 0 or 1")
            safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(patient))
            images = {}
            for modality in MODALITIES:
                node_id = columns.get(modality, [""] * (index + 1))[index]
                if not node_id:
                    continue
                node = scene.GetNodeByID(node_id)
                if node is None:
                    raise MRMLError(f"patient {patient}: the {modality.upper()} volume {node_id} is no longer in the "
                                    "scene; build the cohort again")
                path = folder / safe / f"{modality}.nrrd"
                with atomic_path(path) as tmp:
                    sitk.WriteImage(volume_to_image(node), str(tmp), useCompression=True)
                images[modality] = path
            roi = scene.GetNodeByID(columns["roi"][index])
            if roi is None:
                raise MRMLError(f"patient {patient}: its tumour box is no longer in the scene; build the cohort again")
            roi_path = folder / safe / "roi.mrk.json"
            roi_path.parent.mkdir(parents=True, exist_ok=True)
            storage = slicer.vtkMRMLMarkupsROIJsonStorageNode()
            scene.AddNode(storage)
            try:
                with atomic_path(roi_path) as tmp:
                    storage.SetFileName(str(tmp))
                    if not storage.WriteData(roi):
                        raise MRMLError(f"patient {patient}: could not write its tumour box to {roi_path}")
            finally:
                scene.RemoveNode(storage)
            split = str(columns.get("split", [""] * (index + 1))[index]).strip() or None
            cases.append(CohortCase(patient_id=str(patient), images=images, roi=str(roi_path), label=int(label),
                                    split=split))
        return write_cohort(cases, folder / "cohort.csv")

    # --- the worker --------------------------------------------------------------------------------------
    def workerCommand(self, cohortCsv, outputFolder, preset: str = "quick", device: str = "auto",
                      resume: bool = False, overrides: Mapping | None = None, marker: str | None = None,
                      cvFolds: int | None = None, cvRepeats: int = 1, method: str = "dmif") -> list[str]:
        """``PythonSlicer -m DMIFLib.worker train COHORT OUT --preset P --device D [--method M] [--resume]
        [--overrides JSON] [--cv K --repeats R]`` (``cvFolds``: a cross-validation run, docs/training.md;
        ``method``: one of :data:`METHODS`)."""
        command = [self.pythonExecutable, "-m", "DMIFLib.worker", "train", str(cohortCsv), str(outputFolder),
                   "--preset", preset, "--device", device]
        if method != "dmif":
            command += ["--method", method]
        if resume:
            command.append("--resume")
        if overrides:
            command += ["--overrides", json.dumps(dict(overrides))]
        if marker:
            command += ["--marker", marker]
        if cvFolds:
            command += ["--cv", str(int(cvFolds)), "--repeats", str(int(cvRepeats))]
        return command

    def startTraining(self, cohortCsv, outputFolder, **options) -> WorkerProcess:
        """Start the worker; DMIFLib is put on its PYTHONPATH (it lies next to the modules, or in the source)."""
        import DMIFLib
        from DMIFLib.mrml.scene import MRMLError

        if not cohortCsv or not Path(cohortCsv).is_file():
            raise MRMLError(f"{cohortCsv}: cohort file not found")
        Path(outputFolder).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        library_parent = str(Path(DMIFLib.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (library_parent, env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return WorkerProcess(self.workerCommand(cohortCsv, outputFolder, **options), env=env).start()

    def train(self, cohortCsv, outputFolder, progress: Callable[[dict], None] | None = None,
              cancel: threading.Event | None = None, poll_s: float = 0.2, **options) -> Path:
        """Blocking training run in the worker (headless use and tests): forwards the events to ``progress``,
        kills the worker when ``cancel`` is set. Returns the output folder; raises on failure/cancel."""
        worker = self.startTraining(cohortCsv, outputFolder, **options)
        errors: list[str] = []

        def forward(events: list[dict]) -> None:
            for event in events:
                if event.get("event") == "error":
                    errors.append(str(event.get("message")))
                if progress:
                    progress(event)

        try:
            while worker.running():
                if cancel is not None and cancel.is_set():
                    worker.cancel()
                    raise InterruptedError("training cancelled")
                forward(worker.events())
                time.sleep(poll_s)
            code = worker.wait()
            forward(worker.events())
        finally:
            if worker.running():
                worker.cancel()
        if code != 0:
            detail = errors[-1] if errors else worker.stderr_tail()
            raise RuntimeError(f"training worker failed (exit code {code}): {detail}")
        return Path(outputFolder)

    @staticmethod
    def describeEvent(event: Mapping) -> tuple[str, float | None]:
        """A status line and a 0..1 fraction (or None) for one worker event."""
        fraction = event.get("fraction")
        if event.get("event") == "error":
            return f"Error: {event.get('message')}", None
        if event.get("message"):
            text = str(event["message"])
        else:
            parts = [str(event[k]) for k in ("stage", "modality") if event.get(k)]
            if event.get("fold"):
                parts.insert(0, f"repeat {event['repeat']}/{event['repeats']} fold {event['fold']}/{event['folds']}")
            if "epoch" in event:
                parts.append(f"epoch {event['epoch']}" + (f"/{event['epochs']}" if event.get("epochs") else ""))
            for key in ("loss", "val_loss", "val_auc"):
                if isinstance(event.get(key), (int, float)):
                    parts.append(f"{key} {event[key]:.3f}")
            text = " · ".join(parts)
        return text, (float(fraction) if isinstance(fraction, (int, float)) else None)

    # --- results -----------------------------------------------------------------------------------------
    def loadResults(self, scene: slicer.vtkMRMLScene, outputFolder, metricsTable=None, historyTable=None,
                    rocChart=None) -> TrainNodes:
        """The nodes of a finished run in ``outputFolder``: the test-set metrics in the paper's Table 2 columns
        (patient and slice level, 95% CIs; ``dmif evaluate`` on the run's test predictions), the history table
        and chart, the ROC chart of the test patients (fused probability), grouped in a subject-hierarchy
        folder. A cross-validation run (``--cv``) gives the pooled out-of-fold metrics, its folds table
        (``cv_folds.tsv``, with a chart of each fold's test AUCs) in place of the history, and the out-of-fold ROC
        (see :meth:`loadCrossValidationResults`). Raises MRMLError when the run is not finished."""
        from DMIFLib.evaluation.evaluate import evaluate_predictions
        from DMIFLib.mrml.results import history_nodes, read_table_file, roc_nodes, table_from_file
        from DMIFLib.mrml.scene import MRMLError
        from DMIFLib.training.algorithm import HISTORY_NAME, MODEL_NAME, RUN_NAME, SPLIT_NAME
        from DMIFLib.training.cross_validation import CV_PLAN

        out = Path(outputFolder)
        if (out / CV_PLAN).is_file():
            return self.loadCrossValidationResults(scene, out, metricsTable, historyTable, rocChart)
        missing = [n for n in (MODEL_NAME, RUN_NAME, HISTORY_NAME, SPLIT_NAME, "predictions.tsv")
                   if not (out / n).is_file()]
        if missing:
            raise MRMLError(f"{out}: no finished training run ({', '.join(missing)} missing)")
        run = json.loads((out / RUN_NAME).read_text(encoding="utf-8"))
        tables_out = evaluate_predictions(out / "predictions.tsv", run["cohort"], out / "evaluation")
        metrics = table_from_file(scene, tables_out["table2"], "DMIF metrics (test set)", metricsTable)
        history, historyChart = history_nodes(scene, out / HISTORY_NAME, "DMIF history", historyTable)
        _, split_rows = read_table_file(out / SPLIT_NAME)
        labels = {str(r["patient_id"]): int(r["label"]) for r in split_rows if r["split"] == "test"}
        _, predictions = read_table_file(out / "predictions.tsv")
        tested = [r for r in predictions if str(r["patient_id"]) in labels]
        rocTable, roc = roc_nodes(scene, [labels[str(r["patient_id"])] for r in tested],
                                  [float(r["p_fused"]) for r in tested], "DMIF ROC (test patients)",
                                  chart=rocChart)
        return self._grouped(scene, out, metrics, history, historyChart, rocTable, roc)

    def loadCrossValidationResults(self, scene: slicer.vtkMRMLScene, outputFolder, metricsTable=None,
                                   historyTable=None, rocChart=None) -> TrainNodes:
        """The nodes of a finished cross-validation run: the pooled out-of-fold metrics (Table 2 columns;
        ``dmif evaluate`` on ``oof_predictions.tsv``: a patient's score is the mean of its repeats, cut-offs from
        the folds' training patients), the folds table ``cv_folds.tsv`` (plus a running ``fold_index``) with a
        chart of each fold's patient-level test AUCs, and the out-of-fold ROC of p_fused."""
        from DMIFLib.evaluation.evaluate import evaluate_predictions, mean_over_repeats
        from DMIFLib.mrml import tables
        from DMIFLib.mrml.results import read_table_file, roc_nodes, table_from_file
        from DMIFLib.mrml.scene import MRMLError
        from DMIFLib.training.algorithm import MODEL_NAME, RUN_NAME
        from DMIFLib.training.cross_validation import FOLDS_NAME, OOF_NAME

        out = Path(outputFolder)
        missing = [n for n in (MODEL_NAME, RUN_NAME, OOF_NAME, FOLDS_NAME) if not (out / n).is_file()]
        if missing:
            raise MRMLError(f"{out}: no finished cross-validation run ({', '.join(missing)} missing)")
        run = json.loads((out / RUN_NAME).read_text(encoding="utf-8"))
        tables_out = evaluate_predictions(out / OOF_NAME, run["cohort"], out / "evaluation")
        metrics = table_from_file(scene, tables_out["table2"], "DMIF metrics (cross-validation, out-of-fold)",
                                  metricsTable)
        columns, folds = read_table_file(out / FOLDS_NAME)
        for index, row in enumerate(folds, start=1):
            row["fold_index"] = index
        history = tables.table_from_rows(scene, "DMIF cross-validation folds", folds, ["fold_index", *columns],
                                         historyTable)
        curves = [c for c in columns if c.startswith("auc_patient_")]
        historyChart = tables.plot_chart(scene, "DMIF cross-validation folds plot", history, "fold_index", curves,
                                         "fold (repeat by repeat)", "test AUC (patient level)")
        _, oof = read_table_file(out / OOF_NAME)
        _, scores = mean_over_repeats([str(r["patient_id"]) for r in oof],
                                      {"label": [float(r["label"]) for r in oof],
                                       "p_fused": [float(r["p_fused"]) for r in oof]})
        rocTable, roc = roc_nodes(scene, scores["label"].astype(int), scores["p_fused"],
                                  "DMIF ROC (out-of-fold)", chart=rocChart)
        return self._grouped(scene, out, metrics, history, historyChart, rocTable, roc)

    @staticmethod
    def _grouped(scene, out: Path, metrics, history, historyChart, rocTable, roc) -> TrainNodes:
        """The result nodes under one subject-hierarchy folder ``DMIF training <run folder name>``."""
        from DMIFLib.mrml import tables
        from DMIFLib.training.algorithm import MODEL_NAME

        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        folder = sh.CreateFolderItem(sh.GetSceneItemID(), f"DMIF training {out.name}")
        tables.place_under(scene, folder, [metrics, history, historyChart, rocTable, roc])
        for chart in (roc, historyChart):
            for index in range(chart.GetNumberOfPlotSeriesNodes()):
                tables.place_under(scene, folder, [chart.GetNthPlotSeriesNode(index)])
        return TrainNodes(metrics=metrics, history=history, historyChart=historyChart, roc=roc, rocTable=rocTable,
                          modelPath=out / MODEL_NAME, folderItem=folder)


def selfTest(scene: slicer.vtkMRMLScene, folder, patients: int = 6) -> TrainNodes:
    """Synthesize a tiny cohort in ``folder``, train on it in the worker process and load the result nodes
    (the module's built-in test inside Slicer)."""
    from DMIFLib.synth import synthesize_cohort

    cohort = synthesize_cohort(Path(folder) / "cohort", patients, 0, scale=0.5)
    logic = TrainLogic()
    out = logic.train(cohort, Path(folder) / "run", preset="quick", device="auto", overrides=SELF_TEST_OVERRIDES)
    return logic.loadResults(scene, out)
