"""Cross-validation runs (`dmif train --cv`): folds by patient/subject, out-of-fold predictions, metrics that
`dmif evaluate` reproduces, resume after an interrupted fold, the ensemble model file."""

import json
import threading
from collections import Counter

import pytest
import torch
from test_training_e2e import TINY_OVERRIDES, make_tiny_cohort

from DMIFLib.cli import main
from DMIFLib.cohort import read_cohort
from DMIFLib.evaluation.tables import read_tsv
from DMIFLib.model_file import load_model
from DMIFLib.training import RunCancelledError, TrainingError
from DMIFLib.training.cross_validation import cross_validate, cv_folds

K, REPEATS = 2, 2


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    cohort = make_tiny_cohort(tmp_path_factory.getbasetemp())
    events = []
    result = cross_validate(cohort, tmp_path_factory.mktemp("cv") / "out", k=K, repeats=REPEATS, device="cpu",
                            progress=events.append, overrides=TINY_OVERRIDES)
    return cohort, result, events


def test_folds_are_stratified_partitions_by_patient_and_subject():
    labels = {f"p{i:02d}": int(i % 3 == 0) for i in range(30)}  # 10 positives, 20 negatives
    for seed in (0, 1):
        folds = cv_folds(labels, 5, seed)
        assert sorted(pid for fold in folds for pid in fold) == sorted(labels)  # each patient in exactly one fold
        assert [sum(labels[p] for p in fold) for fold in folds] == [2] * 5  # stratified: 2 positives each
        assert all(len(fold) == 6 for fold in folds)
    assert cv_folds(labels, 5, 0) != cv_folds(labels, 5, 1)  # repeats differ
    subjects = {pid: f"s{int(pid[1:]) // 2}" for pid in labels}  # two scans per subject
    folds = cv_folds(labels, 5, 0, subjects)
    fold_of = {pid: i for i, fold in enumerate(folds) for pid in fold}
    assert all(fold_of[a] == fold_of[b] for a in labels for b in labels if subjects[a] == subjects[b])
    with pytest.raises(ValueError, match="class 1 has 1"):
        cv_folds({"a": 1, "b": 0, "c": 0, "d": 0}, 2, 0)


def test_every_patient_gets_one_oof_prediction_per_repeat(cv_run):
    cohort, result, events = cv_run
    labels = {c.patient_id: c.label for c in read_cohort(cohort)}
    oof = read_tsv(result.oof_path)
    counts = Counter((r["patient_id"], r["repeat"]) for r in oof)
    assert set(counts) == {(p, str(r)) for p in labels for r in range(1, REPEATS + 1)}
    assert set(counts.values()) == {1}
    assert len(oof) == len(labels) * REPEATS
    assert all(int(r["label"]) == labels[r["patient_id"]] for r in oof)
    assert set(oof[0]) >= {"patient_id", "label", "repeat", "fold", "p_t1c", "p_t2w", "p_fused"}
    for r in range(1, REPEATS + 1):  # each fold's test patients are stratified, and were not trained on
        for f in range(1, K + 1):
            test = {row["patient_id"] for row in oof if row["repeat"] == str(r) and row["fold"] == str(f)}
            assert {labels[p] for p in test} == {0, 1}
            split = read_tsv(result.out_dir / "folds" / f"r{r}f{f}" / "split.tsv")
            assert {row["patient_id"] for row in split if row["split"] == "test"} == test
            assert {row["split"] for row in split if row["patient_id"] not in test} == {"train", "val"}
    fractions = [e["fraction"] for e in events if "fraction" in e]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {(e["repeat"], e["fold"]) for e in events if "fold" in e} == {(r, f) for r in (1, 2) for f in (1, 2)}
    assert len(read_tsv(result.folds_path)) == K * REPEATS


def test_oof_metrics_equal_dmif_evaluate_on_the_oof_file(cv_run, tmp_path, capsys):
    cohort, result, _ = cv_run
    assert main(["evaluate", "--predictions", str(result.oof_path), "--cohort", str(cohort), "--out",
                 str(tmp_path), "--n-boot", "0"]) == 0
    evaluated = {row["model"]: row for row in read_tsv(tmp_path / "table2_metrics.tsv")}
    metrics = {row["model"]: row for row in read_tsv(result.metrics_path)}
    assert set(metrics) == {"t1c", "t2w", "fused"}
    for name, row in (("fused", evaluated["DMIF-Net (multimodal)"]), ("t2w", evaluated["T2W DMIF-Net"])):
        for column in ("n", "auc", "auc_ci_low", "auc_ci_high", "accuracy", "sensitivity", "specificity", "cutoff"):
            assert float(metrics[name][column]) == pytest.approx(float(row[column]), abs=1e-6), (name, column)
    assert int(metrics["fused"]["n"]) == 8 and metrics["fused"]["ci_method"] == "DeLong"
    repeats = [float(r["auc"]) for r in read_tsv(result.repeats_path) if r["model"] == "fused"]
    assert float(metrics["fused"]["auc_repeat_min"]) == min(repeats)
    assert float(metrics["fused"]["auc_repeat_max"]) == max(repeats)


def test_report_shows_the_cross_validation(cv_run, tmp_path):
    from DMIFLib.evaluation.report import build_report

    page = build_report(cv_run[1].out_dir, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "out-of-fold" in page and "Cross-validation: each fold" in page and "auc_repeat_sd" in page


def test_cv_model_file_is_an_ensemble_that_predicts(cv_run, tmp_path):
    cohort, result, _ = cv_run
    content = torch.load(result.model_path, map_location="cpu", weights_only=True)
    assert content["nets"]["fused"]["spec"]["kind"] == "ensemble"
    assert len(content["nets"]["fused"]["spec"]["config"]["members"]) == K * REPEATS
    model = load_model(result.model_path)
    assert model.info["cross_validation"]["k"] == K
    assert main(["predict", "--cohort", str(cohort), "--model", str(result.model_path), "--out", str(tmp_path)]) == 0
    rows = read_tsv(tmp_path / "predictions.tsv")
    assert len(rows) == 8 and all(0.0 <= float(r["p_fused"]) <= 1.0 for r in rows)
    # the ensemble's p_fused is the mean over the central slices the folds trained on (max_slices) of
    # sigmoid(mean of the members' logits)
    from DMIFLib.inference import predict_stack
    from DMIFLib.preprocessing.slices import central_slices
    from DMIFLib.training.data import load_cohort_slices

    stack = load_cohort_slices(cohort, model.settings, cache_dir=result.out_dir / "slices")[0].stack
    members = [load_model(result.out_dir / "folds" / name / "model.pt")
               for name in model.info["cross_validation"]["members"]]
    x = torch.from_numpy(stack.stacked(model.modalities))
    with torch.no_grad():
        logits = torch.stack([m.nets["fused"].eval()(x) for m in members]).mean(0)
    pred = predict_stack(model, stack)
    central = central_slices(stack.n_slices, model.patient_slices)
    assert model.patient_slices == members[0].patient_slices == members[0].info["config"]["max_slices"]
    assert pred.p_fused_raw == pytest.approx(float(torch.sigmoid(logits)[central].mean()), abs=1e-5)
    # calibration fitted on the out-of-fold raw p_fused; the interval from the fold models (docs/trust.md)
    assert content["calibration"]["fitted_on"] == "out-of-fold predictions" and content["calibration"]["n_val"] == 8
    assert pred.p_fused_low < pred.p_fused < pred.p_fused_high
    assert all(float(r["p_fused_low"]) <= float(r["p_fused"]) <= float(r["p_fused_high"]) for r in rows)


def test_resume_after_an_interrupted_fold_gives_the_uninterrupted_result(cv_run, tmp_path):
    cohort, full, _ = cv_run
    out = tmp_path / "cv"
    cancel = threading.Event()

    def interrupt(event: dict) -> None:  # cancel inside the second fold's second stage
        if event.get("fold") == 2 and event.get("step") == 2:
            cancel.set()

    with pytest.raises(RunCancelledError):
        cross_validate(cohort, out, k=K, repeats=REPEATS, device="cpu", progress=interrupt, cancel=cancel,
                       overrides=TINY_OVERRIDES)
    assert (out / "folds" / "r1f1" / "run.json").is_file() and (out / "folds" / "r1f2" / "checkpoint.pt").is_file()
    with pytest.raises(TrainingError, match="already holds"):
        cross_validate(cohort, out, k=K, repeats=REPEATS, device="cpu", overrides=TINY_OVERRIDES)
    events = []
    resumed = cross_validate(cohort, out, k=K, repeats=REPEATS, device="cpu", resume=True, progress=events.append,
                             overrides=TINY_OVERRIDES)
    trained = {(e["repeat"], e["fold"]) for e in events if "fold" in e and "epoch" in e}
    assert (1, 1) not in trained and (1, 2) in trained  # the finished fold is not trained again
    expected = read_tsv(full.oof_path)
    got = read_tsv(resumed.oof_path)
    assert [r["patient_id"] for r in got] == [r["patient_id"] for r in expected]
    for a, b in zip(got, expected, strict=True):
        assert float(a["p_fused"]) == pytest.approx(float(b["p_fused"]), abs=1e-5)
    with pytest.raises(TrainingError, match="already complete"):
        cross_validate(cohort, out, k=K, repeats=REPEATS, device="cpu", resume=True, overrides=TINY_OVERRIDES)


def test_cli_rejects_too_many_folds(tmp_path, tmp_path_factory, capsys):
    cohort = make_tiny_cohort(tmp_path_factory.getbasetemp())
    assert main(["train", "--cohort", str(cohort), "--out", str(tmp_path / "bad"), "--cv", "5",
                 "--overrides", json.dumps(TINY_OVERRIDES)]) == 2
    err = capsys.readouterr().err
    assert "5-fold cross-validation needs at least 5 patients of each class" in err and "Traceback" not in err
    assert main(["train", "--cohort", str(cohort), "--out", str(tmp_path / "bad2"), "--repeats", "2"]) == 2
    assert "--repeats needs --cv K" in capsys.readouterr().err


def test_worker_runs_cross_validation(tmp_path, tmp_path_factory, capsys):
    from DMIFLib.worker import main as worker_main

    cohort = make_tiny_cohort(tmp_path_factory.getbasetemp())
    assert worker_main(["train", str(cohort), str(tmp_path / "cv"), "--device", "cpu", "--cv", "2",
                        "--overrides", json.dumps(TINY_OVERRIDES)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "done" and events[-1]["oof_predictions"].endswith("oof_predictions.tsv")
    assert {e.get("fold") for e in events if e["event"] == "progress"} >= {1, 2}
    assert len(read_tsv(tmp_path / "cv" / "oof_predictions.tsv")) == 8


def test_train_module_command_takes_the_cv_option():
    import sys
    from pathlib import Path

    pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "DMIFTrain"))
    from DMIFTrainLib.logic import TrainLogic

    logic = TrainLogic(pythonExecutable="PythonSlicer")
    command = logic.workerCommand("c.csv", "out", cvFolds=5, cvRepeats=2)
    assert command[command.index("--cv") + 1] == "5" and command[command.index("--repeats") + 1] == "2"
    assert "--cv" not in logic.workerCommand("c.csv", "out")
    text, _ = logic.describeEvent({"stage": "stage1/t1c/dfnet", "epoch": 1, "epochs": 4, "repeat": 1, "repeats": 2,
                                   "fold": 3, "folds": 5, "fraction": 0.3})
    assert text.startswith("repeat 1/2 fold 3/5 · stage1/t1c/dfnet")


def test_train_module_loads_a_cross_validation_run(cv_run):
    import sys
    from pathlib import Path

    pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "DMIFTrain"))
    from DMIFTrainLib.logic import TrainLogic

    from DMIFLib.mrml import tables
    from DMIFLib.mrml.scene import new_scene

    _, result, _ = cv_run
    scene = new_scene()
    nodes = TrainLogic().loadResults(scene, result.out_dir)
    pooled = {row["model"]: float(row["auc"]) for row in read_tsv(result.metrics_path)}
    shown = tables.table_columns(nodes.metrics)
    fused = shown["model"].index("DMIF-Net (multimodal)")
    assert float(shown["auc"][fused]) == pytest.approx(pooled["fused"], abs=1e-6)
    assert float(nodes.roc.GetAttribute("DMIF.auc")) == pytest.approx(pooled["fused"], abs=1e-6)
    assert "out-of-fold" in nodes.roc.GetTitle()
    assert nodes.history.GetNumberOfRows() == K * REPEATS
    assert nodes.historyChart.GetNumberOfPlotSeriesNodes() == 3  # t1c, t2w, fused per fold
    assert nodes.modelPath == result.model_path
