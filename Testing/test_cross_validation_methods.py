"""Cross-validation runs of the methods other than DMIF-Net (`dmif train --cv K --method radiomics|transfer`):
each fold is that method's own run, out-of-fold rows for every patient and repeat, metrics that `dmif evaluate`
reproduces, a model file (the fold models averaged) that `dmif predict` uses, resume, and the refusal to resume a
run of another method."""

import json
import threading
from collections import Counter

import pytest
import torch
from test_method_radiomics import TINY as RADIOMICS_TINY
from test_training_e2e import make_tiny_cohort
from test_transfer_method import TINY as TRANSFER_TINY

from DMIFLib.cli import main
from DMIFLib.cohort import read_cohort
from DMIFLib.evaluation.tables import read_tsv
from DMIFLib.inference import predict_case
from DMIFLib.methods import CaseInput
from DMIFLib.model_file import load_model
from DMIFLib.training import RunCancelledError, TrainingError
from DMIFLib.training.cross_validation import cross_validate

K, REPEATS = 2, 2
TRANSFER = {**TRANSFER_TINY, "arch": "resnet18", "imagenet": False, "width_divisor": 16, "fusion": "mean"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_tiny_cohort(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def radiomics_cv(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("cv_radiomics") / "out"
    assert main(["train", "--cohort", str(cohort), "--out", str(out), "--method", "radiomics", "--device", "cpu",
                 "--cv", str(K), "--repeats", str(REPEATS), "--overrides", json.dumps(RADIOMICS_TINY)]) == 0
    return out


@pytest.fixture(scope="module")
def transfer_cv(cohort, tmp_path_factory):
    return cross_validate(cohort, tmp_path_factory.mktemp("cv_transfer") / "out", k=K, repeats=REPEATS,
                          device="cpu", overrides=TRANSFER, method="transfer")


def check_oof(cohort, out, method: str) -> list[dict]:
    """Every patient once per repeat, predicted by the fold run of ``method`` that held it out."""
    labels = {c.patient_id: c.label for c in read_cohort(cohort)}
    oof = read_tsv(out / "oof_predictions.tsv")
    assert Counter((r["patient_id"], int(r["repeat"])) for r in oof) == Counter(
        (p, r) for p in labels for r in range(1, REPEATS + 1))
    assert list(oof[0])[:7] == ["patient_id", "label", "repeat", "fold", "p_t1c", "p_t2w", "p_fused"]
    assert all(int(r["label"]) == labels[r["patient_id"]] and 0 <= float(r["p_fused"]) <= 1 for r in oof)
    assert json.loads((out / "cv.json").read_text(encoding="utf-8"))["method"] == method
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["method"] == method
    for r in range(1, REPEATS + 1):
        for f in range(1, K + 1):
            folder = out / "folds" / f"r{r}f{f}"
            assert json.loads((folder / "run.json").read_text(encoding="utf-8"))["method"] == method
            test = {row["patient_id"] for row in read_tsv(folder / "split.tsv") if row["split"] == "test"}
            assert test == {row["patient_id"] for row in oof if row["repeat"] == str(r) and row["fold"] == str(f)}
            fold_preds = {row["patient_id"]: row for row in read_tsv(folder / "predictions.tsv")}
            for row in oof:
                if row["repeat"] == str(r) and row["fold"] == str(f):
                    assert float(row["p_fused"]) == pytest.approx(float(fold_preds[row["patient_id"]]["p_fused"]))
    assert len(read_tsv(out / "cv_folds.tsv")) == K * REPEATS
    return oof


def check_evaluate(cohort, out, title: str, tmp_path) -> None:
    """`dmif evaluate` on the out-of-fold table gives metrics.tsv's pooled rows."""
    assert main(["evaluate", "--predictions", str(out / "oof_predictions.tsv"), "--cohort", str(cohort), "--out",
                 str(tmp_path / "eval"), "--n-boot", "0"]) == 0
    evaluated = {row["model"]: row for row in read_tsv(tmp_path / "eval" / "table2_metrics.tsv")}
    metrics = {row["model"]: row for row in read_tsv(out / "metrics.tsv")}
    assert set(metrics) == {"t1c", "t2w", "fused"} and int(metrics["fused"]["n"]) == 8
    for name, row in (("fused", evaluated[f"{title} (multimodal)"]), ("t1c", evaluated[f"T1C {title}"])):
        for column in ("n", "auc", "auc_ci_low", "auc_ci_high", "accuracy", "sensitivity", "specificity", "cutoff"):
            assert float(metrics[name][column]) == pytest.approx(float(row[column]), abs=1e-6), (name, column)


def check_model_file(cohort, out, method: str, tmp_path) -> None:
    """The model file holds the K·R fold models, `dmif predict` uses it, and a case's p is the fold models' mean."""
    content = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert content["method"] == method and content["format_version"] == 2
    assert len(content["method_state"]["members"]) == K * REPEATS
    assert main(["predict", "--cohort", str(cohort), "--model", str(out / "model.pt"), "--out",
                 str(tmp_path / "pred"), "--device", "cpu"]) == 0
    rows = {r["patient_id"]: r for r in read_tsv(tmp_path / "pred" / "predictions.tsv")}
    assert len(rows) == 8
    model = load_model(out / "model.pt")
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert model.method == method and model.cutoff == pytest.approx(run["cutoffs"]["patient/fused"])
    case = read_cohort(cohort)[0]
    folds = [load_model(out / "folds" / name / "model.pt") for name in run["cross_validation"]["members"]]
    preds = [predict_case(fold, CaseInput.from_case(case)) for fold in folds]
    expected = sum(p.p_fused for p in preds) / len(preds)
    assert float(rows[case.patient_id]["p_fused"]) == pytest.approx(expected, abs=1e-5)
    assert float(rows[case.patient_id]["p_t2w"]) == pytest.approx(
        sum(p.probabilities["t2w"] for p in preds) / len(preds), abs=1e-5)
    assert rows[case.patient_id]["prediction"] == str(int(expected >= model.cutoff))
    oof = [r for r in read_tsv(out / "oof_predictions.tsv") if r["patient_id"] == case.patient_id]
    for r in oof:  # the fold model that held the case out gives its out-of-fold probability
        index = run["cross_validation"]["members"].index(f"r{r['repeat']}f{r['fold']}")
        assert preds[index].p_fused == pytest.approx(float(r["p_fused"]), abs=1e-5)


def test_radiomics_cv_runs_the_method_in_every_fold(cohort, radiomics_cv, tmp_path):
    check_oof(cohort, radiomics_cv, "radiomics")
    assert any((radiomics_cv / "radiomics").iterdir())  # features computed once, shared by the folds
    assert not (radiomics_cv / "folds" / "r1f1" / "radiomics").exists()
    assert (radiomics_cv / "folds" / "r1f1" / "selected_features.tsv").is_file()
    check_evaluate(cohort, radiomics_cv, "DMIF-Net + radiomics", tmp_path)


def test_radiomics_cv_model_file_predicts(cohort, radiomics_cv, tmp_path):
    check_model_file(cohort, radiomics_cv, "radiomics", tmp_path)


def test_transfer_cv_runs_the_method_in_every_fold(cohort, transfer_cv, tmp_path):
    oof = check_oof(cohort, transfer_cv.out_dir, "transfer")
    assert all(r["p_fused_raw"] == "nan" for r in oof)  # as transfer's own predictions.tsv writes it
    assert [r["model"] for r in transfer_cv.metrics] == ["t1c", "t2w", "fused"]
    check_evaluate(cohort, transfer_cv.out_dir, "transfer-learning CNNs", tmp_path)


def test_transfer_cv_model_file_predicts(cohort, transfer_cv, tmp_path):
    check_model_file(cohort, transfer_cv.out_dir, "transfer", tmp_path)


def test_interrupted_transfer_cv_resumes_only_as_transfer(cohort, transfer_cv, tmp_path, capsys):
    out = tmp_path / "cv"
    cancel = threading.Event()

    def interrupt(event: dict) -> None:  # cancel in the second fold's first net: it stops in the second one
        if event.get("fold") == 2 and event.get("step") == 1:
            cancel.set()

    with pytest.raises(RunCancelledError):
        cross_validate(cohort, out, k=K, repeats=REPEATS, device="cpu", progress=interrupt, cancel=cancel,
                       overrides=TRANSFER, method="transfer")
    assert (out / "folds" / "r1f1" / "run.json").is_file() and (out / "folds" / "r1f2" / "checkpoint.pt").is_file()
    assert main(["train", "--cohort", str(cohort), "--out", str(out), "--cv", str(K), "--repeats", str(REPEATS),
                 "--resume", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"dmif train: error: {out}: a cross-validation run of method transfer, not "
                                        "dmif; resume it with --method transfer"]
    with pytest.raises(TrainingError, match="of method transfer, not radiomics"):
        cross_validate(cohort, out, k=K, repeats=REPEATS, device="cpu", resume=True, method="radiomics")
    events = []
    resumed = cross_validate(cohort, out, k=K, repeats=REPEATS, device="cpu", resume=True, progress=events.append,
                             overrides=TRANSFER, method="transfer")
    trained = {(e["repeat"], e["fold"]) for e in events if "fold" in e and "epoch" in e}
    assert (1, 1) not in trained and (1, 2) in trained  # the finished fold is not trained again
    expected, got = read_tsv(transfer_cv.oof_path), read_tsv(resumed.oof_path)
    assert [r["patient_id"] for r in got] == [r["patient_id"] for r in expected]
    for a, b in zip(got, expected, strict=True):
        assert float(a["p_fused"]) == pytest.approx(float(b["p_fused"]), abs=1e-5)


def test_worker_and_train_module_run_cv_of_a_method(cohort, tmp_path, capsys):
    from DMIFLib.worker import main as worker_main

    assert worker_main(["train", str(cohort), str(tmp_path / "cv"), "--device", "cpu", "--method", "transfer",
                        "--cv", "2", "--overrides", json.dumps(TRANSFER)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "done" and {e.get("fold") for e in events if e["event"] == "progress"} >= {1, 2}
    assert torch.load(tmp_path / "cv" / "model.pt", weights_only=True)["method"] == "transfer"
    import sys
    from pathlib import Path

    pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "DMIFTrain"))
    from DMIFTrainLib.logic import TrainLogic

    command = TrainLogic(pythonExecutable="PythonSlicer").workerCommand("c.csv", "out", cvFolds=5, cvRepeats=2,
                                                                         method="radiomics")
    assert command[command.index("--method") + 1] == "radiomics" and command[command.index("--cv") + 1] == "5"


def test_interrupted_radiomics_cv_resumes_its_fold(cohort, radiomics_cv, tmp_path):
    out = tmp_path / "cv"
    cancel = threading.Event()

    def interrupt(event: dict) -> None:  # cancel inside the second fold's DMIF-Net training
        if event.get("fold") == 2 and event.get("step") == 2:
            cancel.set()

    with pytest.raises(RunCancelledError):
        cross_validate(cohort, out, k=K, repeats=1, device="cpu", progress=interrupt, cancel=cancel,
                       overrides=RADIOMICS_TINY, method="radiomics")
    assert (out / "folds" / "r1f1" / "run.json").is_file()
    assert (out / "folds" / "r1f2" / "deep" / "checkpoint.pt").is_file()
    events = []
    resumed = cross_validate(cohort, out, k=K, repeats=1, device="cpu", resume=True, progress=events.append,
                             overrides=RADIOMICS_TINY, method="radiomics")
    trained = {e["fold"] for e in events if "fold" in e and "epoch" in e}
    assert trained == {2}  # the finished fold is not trained again
    expected = {r["patient_id"]: r for r in read_tsv(radiomics_cv / "oof_predictions.tsv") if r["repeat"] == "1"}
    got = read_tsv(resumed.oof_path)
    assert {r["patient_id"] for r in got} == set(expected)
    for row in got:  # repeat 1 of the uninterrupted run has the same folds and seed
        assert float(row["p_fused"]) == pytest.approx(float(expected[row["patient_id"]]["p_fused"]), abs=1e-5)
