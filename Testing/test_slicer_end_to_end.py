"""The Slicer modules' logic end to end under slicer-core (no GUI), on real data where there is some.

One tiny DMIF-Net is trained on a tiny synthetic cohort by DMIFTrain's logic, in the training worker
subprocess (``python -m DMIFLib.worker train``, i.e. ``train_cohort`` — the code behind ``dmif train``); then

- the Train logic turns the run into the metrics, history and ROC nodes;
- the Predict logic runs that model on the real TCGA-FG-6692 case loaded into MRML volume nodes, with a
  Markups ROI around the tumour, and yields the documented tables; the scene is saved and reloaded;
- the headless batch entry point (plain Python, slicer-core) writes predictions.tsv and a scene.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "DMIFPredict"), str(ROOT / "DMIFTrain")]

from DMIFPredictLib.logic import PredictLogic, selfTestCase  # noqa: E402
from DMIFTrainLib.logic import SELF_TEST_OVERRIDES, TrainLogic  # noqa: E402

from DMIFLib.mrml import tables  # noqa: E402
from DMIFLib.mrml.predict import result_columns, slice_columns  # noqa: E402
from DMIFLib.mrml.scene import load_scene, load_volume, new_scene, save_scene  # noqa: E402
from DMIFLib.preprocessing.slices import central_slices  # noqa: E402

# The tumour of TCGA-FG-6692 in its native T1C scanner space, RAS mm (axis-aligned Markups ROI). Found by
# rigidly (+ affinely) registering the SRI24-space T1C (sri24/TCGA-FG-6692_t1c_bet.nii.gz) to native T1C with
# SimpleITK Mattes MI, mapping sri24/TCGA-FG-6692_seg_auto.nii.gz (labels > 0) through the transform, and taking
# the RAS bounds of its bounding box (native T1C voxels i 58-105, j 108-172, k 12-21 in file order); checked by
# eye on slice k = 16 of T1C and registered T2W: the box encloses the enhancing lesion and its T2 hyperintensity.
TCGA_BOX_CENTER_RAS = (35.0, 44.3, 48.5)
TCGA_BOX_SIZE_MM = (45.2, 61.2, 56.1)


@pytest.fixture(scope="module")
def synthetic_cohort(tmp_path_factory) -> Path:
    from DMIFLib.synth import synthesize_cohort

    return Path(synthesize_cohort(tmp_path_factory.mktemp("synth"), 6, 0, scale=0.5))


@pytest.fixture(scope="module")
def trained_run(synthetic_cohort, tmp_path_factory) -> Path:
    events: list[dict] = []
    out = TrainLogic(pythonExecutable=sys.executable).train(
        synthetic_cohort, tmp_path_factory.mktemp("run") / "run", progress=events.append, preset="quick",
        device="cpu", overrides=SELF_TEST_OVERRIDES, poll_s=0.1)
    assert any("stage" in e for e in events), f"no progress events from the worker: {events[:5]}"
    return out


def test_train_logic_makes_metrics_history_and_roc_nodes(trained_run):
    scene = new_scene()
    nodes = TrainLogic().loadResults(scene, trained_run)
    metrics = tables.table_columns(nodes.metrics)
    for column in ("model", "level", "accuracy", "sensitivity", "specificity", "ppv", "npv", "auc", "cutoff",
                   "auc_ci_low", "auc_ci_high"):
        assert column in metrics, f"metrics table lacks the Table 2 column {column}"
    assert set(metrics["level"]) == {"patient", "slice"}
    history = tables.table_columns(nodes.history)
    assert nodes.history.GetNumberOfRows() >= 5  # one epoch per stage: 2x2 stage 1, 2 stage 2, 1 stage 3
    assert np.all(np.isfinite(history["loss"]))
    assert nodes.historyChart.GetNumberOfPlotSeriesNodes() >= 1
    assert nodes.roc.IsA("vtkMRMLPlotChartNode") and nodes.roc.GetNumberOfPlotSeriesNodes() == 2
    roc = tables.table_columns(nodes.rocTable)
    assert roc["fpr"][0] == 0 and roc["tpr"][-1] == 1 and roc["fpr"][-1] == 1
    assert nodes.modelPath.is_file()


def test_predict_logic_on_the_real_tcga_case_and_scene_round_trip(shared_data, trained_run, tmp_path):
    from DMIFLib.mrml.roi import box_to_roi_node
    from DMIFLib.preprocessing.roi import OrientedBox

    native = shared_data / "TCGA-FG-6692" / "native"
    scene = new_scene()
    t1c = load_volume(scene, native / "TCGA-FG-6692_t1c.nii.gz", "T1C")
    t2w = load_volume(scene, native / "TCGA-FG-6692_t2.nii.gz", "T2")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "TCGA-FG-6692")
    tables.place_under(scene, patient, [t1c, t2w])
    roi = box_to_roi_node(OrientedBox.axis_aligned(TCGA_BOX_CENTER_RAS, TCGA_BOX_SIZE_MM), scene, "Tumour box")

    logic = PredictLogic()
    assert logic.guessVolume(scene, "t1c") is t1c and logic.guessVolume(scene, "t2w") is t2w
    events: list[dict] = []
    prediction, results, slices = logic.predict(
        scene, volumes={"t1c": t1c, "t2w": t2w}, roi=roi, modelPath=str(trained_run / "model.pt"), device="cpu",
        register=True, biasCorrection=False, skullStrip=True, progress=events.append)
    assert events[-1]["fraction"] == 1.0

    row = {k: v[0] for k, v in tables.table_columns(results).items()}
    assert list(row) == result_columns(("t1c", "t2w"))
    assert row["patient_id"] == "TCGA-FG-6692" and row["marker"] == "1p/19q co-deletion"
    for key in ("p_t1c", "p_t2w", "p_fused", "cutoff"):
        assert 0.0 <= row[key] <= 1.0
    assert row["prediction"] == int(row["p_fused"] >= row["cutoff"])
    # 10 tumour slices of 5.5 mm: the box covers them (plus its partial-slice edges)
    assert 10 <= row["n_slices"] <= 13 and slices.GetNumberOfRows() == row["n_slices"]
    assert list(tables.table_columns(slices)) == slice_columns(("t1c", "t2w"))
    # p_fused_raw: the mean over the central max_slices slices the nets were trained on (model file's
    # patient_slices); the slices table lists every slice of the box
    central = central_slices(row["n_slices"], SELF_TEST_OVERRIDES["max_slices"])
    assert len(central) < row["n_slices"]
    slice_p_fused = np.asarray(tables.table_columns(slices)["p_fused"])
    assert row["p_fused_raw"] == pytest.approx(np.mean(slice_p_fused[central]), abs=1e-9)
    assert row["p_fused_low"] <= row["p_fused"] <= row["p_fused_high"]
    assert logic.summary(prediction).startswith(f"{row['p_fused']:.2f} ({row['p_fused_low']:.2f}–")
    for node in (results, slices):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == patient

    again = load_scene(save_scene(scene, tmp_path / "scene" / "TCGA-FG-6692.mrml"))
    reloaded = {k: v[0] for k, v in tables.table_columns(again.GetFirstNodeByName(results.GetName())).items()}
    assert list(reloaded) == list(row)
    for key, value in row.items():  # Slicer's table storage (TSV) keeps 6 significant digits
        assert reloaded[key] == (pytest.approx(value, abs=1e-6) if isinstance(value, float) else value), key
    sh_again = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(again)
    parent = sh_again.GetItemParent(sh_again.GetItemByDataNode(again.GetFirstNodeByName(results.GetName())))
    assert sh_again.GetItemName(parent) == "TCGA-FG-6692"
    assert again.GetFirstNodeByName("T1C").GetImageData().GetDimensions() == (256, 224, 26)


def _first_patients(cohort_csv: Path, n: int, folder: Path) -> Path:
    from DMIFLib.cohort import read_cohort, write_cohort

    return write_cohort(read_cohort(cohort_csv)[:n], folder / "cohort.csv")


def test_headless_batch_writes_predictions_and_scene_under_plain_python(synthetic_cohort, trained_run, tmp_path):
    cohort = _first_patients(synthetic_cohort, 3, tmp_path)
    out = tmp_path / "batch"
    done = subprocess.run([sys.executable, str(ROOT / "DMIFBatch.py"), str(cohort),
                           str(trained_run / "model.pt"), str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open(out / "predictions.tsv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert list(rows[0]) == ["patient_id", "p_t1c", "p_t2w", "p_fused", "prediction", "cutoff", "n_slices",
                             "p_fused_raw", "p_fused_low", "p_fused_high", "ood_warning"]
    assert [r["patient_id"] for r in rows] == ["SYN001", "SYN002", "SYN003"]

    scene = load_scene(out / "DMIF_predictions.mrml")
    cohort_table = tables.table_columns(scene.GetFirstNodeByName("DMIF predictions"))
    assert cohort_table["patient_id"] == [r["patient_id"] for r in rows]
    assert cohort_table["p_fused"] == pytest.approx([float(r["p_fused"]) for r in rows], abs=1e-6)  # TSV: 6 digits
    first = tables.table_columns(scene.GetFirstNodeByName("SYN001 DMIF results"))
    assert list(first) == result_columns(("t1c", "t2w"))
    assert first["marker"] == ["1p/19q co-deletion"]
    assert first["p_fused"][0] == pytest.approx(float(rows[0]["p_fused"]), abs=1e-6)
    assert first["p_fused_low"][0] <= first["p_fused"][0] <= first["p_fused_high"][0]
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.GetItemByDataNode(scene.GetFirstNodeByName("SYN001 DMIF results"))
    assert sh.GetItemName(sh.GetItemParent(item)) == "SYN001"


def test_batch_reports_a_bad_cohort_clearly(trained_run, tmp_path, capsys):
    from DMIFLib.mrml.batch import main

    code = main(["--", str(tmp_path / "missing.csv"), str(trained_run / "model.pt"), str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2 and "missing.csv: cohort file not found" in error and "Traceback" not in error
    assert not (tmp_path / "out" / "predictions.tsv").exists()


def test_module_self_test_case_runs_with_a_given_model(trained_run, tmp_path):
    scene = new_scene()
    prediction, results, slices = selfTestCase(scene, tmp_path, modelPath=str(trained_run / "model.pt"))
    assert results.GetCellText(0, 0) == "SYN001" and slices.GetNumberOfRows() == prediction.n_slices > 0


def test_train_logic_cancel_stops_the_worker(synthetic_cohort, tmp_path):
    import threading

    cancel = threading.Event()
    events: list[dict] = []

    def on_event(event: dict) -> None:
        events.append(event)
        cancel.set()  # at the worker's first line

    with pytest.raises(InterruptedError):
        TrainLogic(pythonExecutable=sys.executable).train(
            synthetic_cohort, tmp_path / "run", progress=on_event, cancel=cancel, preset="quick", device="cpu",
            overrides=SELF_TEST_OVERRIDES, poll_s=0.05)
    assert events[0]["event"] == "start"
    with pytest.raises(ProcessLookupError):
        os.kill(events[0]["pid"], 0)
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.gpu
def test_predict_logic_on_cuda_matches_cpu(synthetic_cohort, trained_run):
    from DMIFLib.cohort import read_cohort
    from DMIFLib.mrml.roi import box_to_roi_node, fit_box_to_labelmap

    case = read_cohort(synthetic_cohort)[0]
    scene = new_scene()
    t1c, t2w = load_volume(scene, case.images["t1c"], "T1C"), load_volume(scene, case.images["t2w"], "T2W")
    roi = box_to_roi_node(fit_box_to_labelmap(load_volume(scene, case.roi, "tumour", labelmap=True)), scene)
    model = str(trained_run / "model.pt")
    on = {device: PredictLogic().predict(scene, volumes={"t1c": t1c, "t2w": t2w}, roi=roi, modelPath=model,
                                          device=device)[0]
          for device in ("cpu", "cuda")}
    assert on["cuda"].p_fused == pytest.approx(on["cpu"].p_fused, abs=1e-4)
