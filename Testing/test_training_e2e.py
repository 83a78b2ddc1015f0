"""train_cohort end to end on a tiny synthetic cohort: outputs, patient-level split, model file, CLI, errors."""

import csv
import json
from pathlib import Path

import pytest

from DMIFLib.cli import main
from DMIFLib.model_file import load_model
from DMIFLib.training import TrainingError, train_cohort
from DMIFLib.training.algorithm import stage_names

TINY_OVERRIDES = {"net_width": "tiny", "epochs": 1, "slice_size": 32, "mi_scales": [2], "max_slices": 4,
                  "batch_size": 16, "preprocessing": {"register": False, "n4": False, "skull_strip": "none"}}


def make_tiny_cohort(base: Path) -> Path:
    """8 synthetic patients at half size (built once per test session)."""
    from DMIFLib.synth import synthesize_cohort

    csv_path = base / "tiny_cohort" / "cohort.csv"
    if not csv_path.is_file():
        synthesize_cohort(csv_path.parent, 8, seed=1, scale=0.5)
    return csv_path


def read_tsv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cohort = make_tiny_cohort(tmp_path_factory.getbasetemp())
    events = []
    result = train_cohort(cohort, tmp_path_factory.mktemp("run") / "out", preset="quick", device="cpu",
                          progress=events.append, overrides=TINY_OVERRIDES)
    return cohort, result, events


def test_outputs_and_no_patient_on_both_sides(tiny_run):
    _, result, events = tiny_run
    split = {row["patient_id"]: row for row in read_tsv(result.split_path)}
    assert len(split) == 8 and {row["split"] for row in split.values()} == {"train", "val", "test"}
    test_ids = {pid for pid, row in split.items() if row["split"] == "test"}
    predicted = read_tsv(result.predictions_path)
    assert {row["patient_id"] for row in predicted} == test_ids  # predictions.tsv: the test patients only
    metrics = {(row["level"], row["model"]): row for row in read_tsv(result.metrics_path)}
    assert set(metrics) == {(lv, m) for lv in ("patient", "slice") for m in ("t1c", "t2w", "fused")}
    assert int(metrics["patient", "fused"]["n"]) == len(test_ids)
    assert int(metrics["slice", "fused"]["n"]) == sum(int(split[pid]["n_slices"]) for pid in test_ids)
    slice_rows = read_tsv(result.out_dir / "slice_predictions.tsv")
    assert {row["patient_id"] for row in slice_rows} == test_ids
    history = read_tsv(result.history_path)
    assert [row["stage"] for row in history] == stage_names(("t1c", "t2w"))
    run = json.loads(result.run_path.read_text(encoding="utf-8"))
    assert run["preset"] == "quick" and run["config"]["net_width"] == "tiny" and len(run["cohort_sha256"]) == 64
    assert run["patients"]["test"] == len(test_ids) and "torch" in run["versions"]
    assert set(run["fusion_init"]) == {"stage2/t1c/dmifnet", "stage2/t2w/dmifnet", "stage3/fused"}
    for init in run["fusion_init"].values():  # None only when the validation patients are one class
        assert init is None or (init["slices"] > 0 and min(init["coefficients"]) >= 0)
    assert not (result.out_dir / "checkpoint.pt").exists()
    fractions = [e["fraction"] for e in events if "fraction" in e]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_model_file_predicts_like_the_run(tiny_run, tmp_path):
    cohort, result, _ = tiny_run
    model = load_model(result.model_path)
    assert model.modalities == ("t1c", "t2w") and model.settings.slice_size == 32
    assert float(read_tsv(result.predictions_path)[0]["cutoff"]) == pytest.approx(model.cutoff, abs=1e-6)
    out = tmp_path / "pred"
    assert main(["predict", "--cohort", str(cohort), "--model", str(result.model_path), "--out", str(out),
                 "--device", "cpu"]) == 0
    rows = {row["patient_id"]: row for row in read_tsv(out / "predictions.tsv")}
    assert len(rows) == 8
    for row in read_tsv(result.predictions_path):  # the same patients get the same probabilities
        assert float(rows[row["patient_id"]]["p_fused"]) == pytest.approx(float(row["p_fused"]), abs=1e-5)


def test_existing_run_is_not_overwritten_and_complete_run_does_not_resume(tiny_run):
    cohort, result, _ = tiny_run
    before = result.model_path.read_bytes()
    with pytest.raises(TrainingError, match="already holds a training run"):
        train_cohort(cohort, result.out_dir, overrides=TINY_OVERRIDES)
    with pytest.raises(TrainingError, match="already complete"):
        train_cohort(cohort, result.out_dir, resume=True)
    assert result.model_path.read_bytes() == before


@pytest.mark.parametrize("problem", ["no cohort", "no labels", "bad override"])
def test_user_errors_print_one_line_and_exit_2(tmp_path, capsys, problem):
    cohort = tmp_path / "cohort.csv"
    args = ["--cohort", str(cohort), "--out", str(tmp_path / "out")]
    if problem == "no labels":
        cohort.write_text("patient_id,t1c,roi\nA,a.nii.gz,a_roi.nii.gz\n", encoding="utf-8")
    elif problem == "bad override":
        cohort.write_text("patient_id,t1c,roi,label\nA,a.nii.gz,a_roi.nii.gz,1\n", encoding="utf-8")
        args += ["--overrides", '{"epoch": 3}']
    assert main(["train", *args]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("dmif train: error: ") and len(stderr.strip().splitlines()) == 1
    assert {"no cohort": "cohort file not found", "no labels": "'label' column",
            "bad override": "unknown training setting(s) ['epoch']"}[problem] in stderr
