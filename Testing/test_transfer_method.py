"""Method "transfer" end to end on a tiny synthetic cohort: training, model file, `dmif predict`, the batch,
DMIF Predict's logic, resume, and the one-line errors (missing ImageNet file, too small slices)."""

import csv
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from DMIFLib.methods import get_method
from DMIFLib.model_file import load_model
from DMIFLib.nets.late_fusion import LateFusionNet
from DMIFLib.nets.transfer import IMAGENET_FILES, WEIGHTS_DIR_ENV, TransferConfig, TransferNet
from DMIFLib.training import RunCancelledError, TrainingError

ROOT = Path(__file__).resolve().parents[1]
TINY = {"epochs": 1, "slice_size": 32, "max_slices": 2, "batch_size": 8,
        "preprocessing": {"register": False, "n4": False, "skull_strip": "none"}}


def read_tsv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def run_cli(*args, script=None, env=None):
    command = [sys.executable, str(script)] if script else [sys.executable, "-m", "DMIFLib"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   **(env or {})}
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=environment)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """8 synthetic patients at half size with T1C, T2W and FLAIR."""
    from DMIFLib.synth import synthesize_cohort

    return synthesize_cohort(tmp_path_factory.mktemp("cohort"), 8, seed=1, scale=0.5,
                             modalities=("t1c", "t2w", "flair"))


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
    """A ResNet18 weight file as torchvision writes it (random values, 1000-class head), written by the test."""
    folder = tmp_path_factory.mktemp("imagenet")
    torch.manual_seed(5)
    state = {k: v.clone() for k, v in TransferNet(TransferConfig(in_channels=3)).body.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    torch.save(state, folder / IMAGENET_FILES["resnet18"][0])
    return folder


@pytest.fixture(scope="module")
def late_run(cohort, imagenet_dir, tmp_path_factory):
    """ResNet18 from the (test-written) ImageNet file per modality, fused by logistic regression."""
    out = tmp_path_factory.mktemp("late") / "run"
    result = get_method("transfer").train(cohort, out, device="cpu", overrides={
        **TINY, "arch": "resnet18", "fusion": "logistic", "weights": str(imagenet_dir)})
    return result


def test_late_fusion_run_outputs_and_model_file(late_run, imagenet_dir):
    metrics = {(r["level"], r["model"]) for r in read_tsv(late_run.metrics_path)}
    assert metrics == {(lv, m) for lv in ("patient", "slice") for m in ("t1c", "t2w", "flair", "fused")}
    assert [r["stage"] for r in read_tsv(late_run.history_path)] == ["transfer/t1c", "transfer/t2w", "transfer/flair"]
    run = json.loads(late_run.run_path.read_text())
    assert run["method"] == "transfer" and run["transfer"]["fusion"] == "logistic"
    assert run["combiner"]["method"] == "logistic" and len(run["combiner"]["weights"]) == 3
    raw = torch.load(late_run.model_path, weights_only=True)
    assert raw["method"] == "transfer" and raw["format_version"] == 2
    assert set(raw["nets"]) == {"t1c", "t2w", "flair"}  # the combiner is plain numbers in method_state
    assert raw["method_state"]["combiner"] == run["combiner"]
    model = load_model(late_run.model_path)
    assert model.method == "transfer" and model.modalities == ("t1c", "t2w", "flair")
    assert isinstance(model.nets["fused"], LateFusionNet)
    file = torch.load(imagenet_dir / IMAGENET_FILES["resnet18"][0], weights_only=True)
    assert not torch.equal(model.nets["t1c"].body.layer1[0].conv1.weight, file["layer1.0.conv1.weight"])  # tuned
    assert model.nets["t1c"].body.layer1[0].conv1.weight.shape == file["layer1.0.conv1.weight"].shape


def test_predict_and_batch_reproduce_the_training_predictions(late_run, cohort, tmp_path):
    trained = {r["patient_id"]: r for r in read_tsv(late_run.predictions_path)}
    with open(cohort, newline="", encoding="utf-8") as handle:  # the test patients, paths made absolute
        rows = [r for r in csv.DictReader(handle) if r["patient_id"] in trained]
    for row in rows:
        row.update({k: str(cohort.parent / row[k]) for k in ("t1c", "t2w", "flair", "roi")})
    subset = tmp_path / "test_patients.csv"
    with open(subset, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    done = run_cli("predict", "--cohort", subset, "--model", late_run.model_path, "--out", tmp_path / "pred",
                   "--device", "cpu")
    assert done.returncode == 0, done.stderr
    predicted = {r["patient_id"]: r for r in read_tsv(tmp_path / "pred" / "predictions.tsv")}
    assert set(predicted) == set(trained)
    assert list(next(iter(predicted.values())))[:5] == ["patient_id", "p_t1c", "p_t2w", "p_flair", "p_fused"]
    for pid, row in trained.items():
        for column in ("p_t1c", "p_t2w", "p_flair", "p_fused", "prediction"):
            assert float(predicted[pid][column]) == pytest.approx(float(row[column]), abs=2e-6)
    done = run_cli("evaluate", "--predictions", tmp_path / "pred" / "predictions.tsv", "--cohort", cohort,
                   "--out", tmp_path / "eval", "--model", late_run.model_path)
    assert done.returncode == 0, done.stderr  # the rows are named after the model's method, not DMIF-Net
    names = {r["model"] for r in read_tsv(tmp_path / "eval" / "table2_metrics.tsv")}
    assert "transfer-learning CNNs (multimodal)" in names and "T1C transfer-learning CNNs" in names
    assert not any("DMIF-Net" in name for name in names)
    pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed")
    done = run_cli(subset, late_run.model_path, tmp_path / "batch", "--device", "cpu", script=ROOT / "DMIFBatch.py")
    assert done.returncode == 0, done.stderr
    batch = {r["patient_id"]: r for r in read_tsv(tmp_path / "batch" / "predictions.tsv")}
    assert batch == predicted and (tmp_path / "batch" / "DMIF_predictions.mrml").is_file()


def test_dmif_predict_logic_gives_result_tables(late_run, cohort):
    slicer = pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed")
    sys.path[:0] = [str(ROOT / "DMIFPredict")]
    from DMIFPredictLib.logic import PredictLogic

    from DMIFLib.cohort import read_cohort
    from DMIFLib.mrml.roi import box_to_roi_node, fit_box_to_labelmap
    from DMIFLib.mrml.scene import load_volume, new_scene

    case = read_cohort(cohort)[0]
    scene = new_scene()
    volumes = {m: load_volume(scene, case.images[m], m.upper()) for m in ("t1c", "t2w", "flair")}
    roi = box_to_roi_node(fit_box_to_labelmap(load_volume(scene, case.roi, "tumour", labelmap=True)), scene)
    prediction, results, slices = PredictLogic().predict(scene, volumes=volumes, roi=roi,
                                                         modelPath=str(late_run.model_path), device="cpu",
                                                         register=False, biasCorrection=False, skullStrip=False)
    assert isinstance(results, slicer.vtkMRMLTableNode) and results.GetNumberOfRows() == 1
    assert slices.GetNumberOfRows() == prediction.n_slices > 0 and 0 <= prediction.p_fused <= 1
    assert set(prediction.probabilities) == {"t1c", "t2w", "flair"}


def test_channel_fusion_resumes_to_the_same_model(cohort, tmp_path):
    """FC fusion (FLAIR + T1CE as channels) with a narrow VGG11 from scratch; a run cancelled in its second net
    and resumed ends with the weights of an uninterrupted run."""
    overrides = {**TINY, "modalities": ["t1c", "flair"], "arch": "vgg11", "fusion": "channels", "imagenet": False,
                 "width_divisor": 16}
    method = get_method("transfer")
    whole = method.train(cohort, tmp_path / "whole", device="cpu", overrides=overrides)
    cancel = threading.Event()

    def stop_in_flair(event):
        if event.get("stage") == "transfer/flair" and "batch" in event:
            cancel.set()

    with pytest.raises(RunCancelledError):
        method.train(cohort, tmp_path / "cut", device="cpu", overrides=overrides, progress=stop_in_flair,
                     cancel=cancel)
    assert (tmp_path / "cut" / "checkpoint.pt").is_file() and not (tmp_path / "cut" / "model.pt").exists()
    with pytest.raises(TrainingError, match="a transfer run, not a dmif run; resume it with --method transfer"):
        get_method("dmif").train(cohort, tmp_path / "cut", device="cpu", resume=True)
    resumed = method.train(cohort, tmp_path / "cut", device="cpu", resume=True)
    a, b = (torch.load(r.model_path, weights_only=True) for r in (whole, resumed))
    assert set(a["nets"]) == {"t1c", "flair", "fused"}
    assert a["nets"]["fused"]["spec"]["config"]["in_channels"] == 2 and a["method_state"]["combiner"] is None
    for name in a["nets"]:
        for key, tensor in a["nets"][name]["state_dict"].items():
            assert torch.equal(tensor, b["nets"][name]["state_dict"][key]), (name, key)
    assert a["cutoff"] == b["cutoff"]
    assert read_tsv(whole.predictions_path) == read_tsv(resumed.predictions_path)


def test_missing_imagenet_file_and_small_slices_are_one_line_errors(cohort, tmp_path):
    done = run_cli("train", "--cohort", cohort, "--out", tmp_path / "run", "--method", "transfer",
                   "--overrides", json.dumps(TINY), env={"TORCH_HOME": str(tmp_path / "torch"), WEIGHTS_DIR_ENV: ""})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr
    assert "ImageNet weights for resnet18 not found: put resnet18-f37072fd.pth" in lines[0]
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in lines[0]
    method = get_method("transfer")
    with pytest.raises(TrainingError, match="alexnet needs slices of at least 63 px, got 32"):
        method.train(cohort, tmp_path / "run2", device="cpu",
                     overrides={**TINY, "arch": "alexnet", "imagenet": False, "width_divisor": 16})
    with pytest.raises(TrainingError, match="fusion 'vote': choose one of mean, logistic, svm, channels"):
        method.train(cohort, tmp_path / "run3", device="cpu", overrides={**TINY, "fusion": "vote"})
    with pytest.raises(TrainingError, match="ImageNet weights need width_divisor 1"):
        method.train(cohort, tmp_path / "run4", device="cpu", overrides={**TINY, "width_divisor": 4})
