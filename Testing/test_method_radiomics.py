"""Method "radiomics" (seed 001) end to end on a tiny synthetic cohort: CLI training, model file, CLI / MRML
prediction, refusals. Radiomics uses the reduced first-order set (original image only) to stay fast."""

import csv
import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from DMIFLib.cli import main
from DMIFLib.methods.radiomics_features import RadiomicsSettings, params_for, select_features
from DMIFLib.model_file import load_model

TINY = {"net_width": "tiny", "epochs": 1, "slice_size": 32, "mi_scales": [2], "max_slices": 4, "batch_size": 16,
        "preprocessing": {"register": False, "n4": False, "skull_strip": "none"},
        "radiomics": {"params": {"feature_classes": ["firstorder"], "wavelet": None}, "k": 4, "epochs": 40}}


def read_tsv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def radiomics_run(tmp_path_factory):
    from DMIFLib.synth import synthesize_cohort

    base = tmp_path_factory.mktemp("radiomics")
    cohort = synthesize_cohort(base / "cohort", 8, seed=1, scale=0.5)
    out = base / "run"
    assert main(["train", "--cohort", str(cohort), "--out", str(out), "--method", "radiomics", "--device", "cpu",
                 "--overrides", json.dumps(TINY)]) == 0
    return cohort, out


def test_selection_uses_the_training_patients_only():
    rng = np.random.default_rng(0)
    labels = [0, 1] * 10
    features = {f"p{i}": {"t1c_original_firstorder_Mean": float(y * 5 + rng.normal()),
                          "t1c_original_firstorder_Noise": float(rng.normal()),
                          "t1c_original_firstorder_Constant": 1.0,
                          "t1c_original_firstorder_Broken": math.nan if i == 0 else 0.5 * i}
                for i, y in enumerate(labels)}
    features["test"] = {"t1c_original_firstorder_Mean": 1e6, "t1c_original_firstorder_Noise": 1e6}
    ids = [f"p{i}" for i in range(20)]
    selection = select_features(features, ids, labels, k=1, seed=0)
    assert selection.names == ["t1c_original_firstorder_Mean"] and selection.mi[0] > 0.3
    raw = [features[p]["t1c_original_firstorder_Mean"] for p in ids]
    assert selection.mean[0] == pytest.approx(np.mean(raw)) and selection.std[0] == pytest.approx(np.std(raw))
    both = select_features(features, ids, labels, k=5, seed=0)  # the NaN and the constant feature are left out
    assert set(both.names) == {"t1c_original_firstorder_Mean", "t1c_original_firstorder_Noise"}
    assert both.mi == sorted(both.mi, reverse=True)
    with pytest.raises(ValueError, match="p3: radiomics feature"):
        selection.transform({}, "p3")


def test_settings_and_prediction_parameters():
    with pytest.raises(ValueError, match="unknown radiomics setting"):
        RadiomicsSettings.from_dict({"kk": 3})
    full = RadiomicsSettings().radiomics_params()
    assert full.wavelet == "coif1" and len(full.feature_classes) == 7  # the set by default
    only = params_for(["t2w_original_glcm_Idmn", "t1c_original_firstorder_Mean"], full)
    assert only.feature_classes == ("firstorder", "glcm") and only.wavelet is None
    assert params_for(["t1c_wavelet-LHL_glszm_ZoneEntropy"], full).wavelet == "coif1"


def test_training_outputs_model_file_and_selected_features(radiomics_run):
    _, out = radiomics_run
    selected = read_tsv(out / "selected_features.tsv")
    assert [int(r["rank"]) for r in selected] == [1, 2, 3, 4]
    assert [float(r["mi"]) for r in selected] == sorted((float(r["mi"]) for r in selected), reverse=True)
    raw = torch.load(out / "model.pt", weights_only=True)
    assert raw["method"] == "radiomics" and raw["format_version"] == 2
    state = raw["method_state"]
    assert state["features"] == [r["feature"] for r in selected] and state["region"] == "label"
    assert raw["info"]["selected_features"][0]["feature"] == selected[0]["feature"]
    # standardisation fitted on the training patients (train + val) only, never the test patients
    split = {r["patient_id"]: r["split"] for r in read_tsv(out / "split.tsv")}
    with open(out / "radiomics_features.csv", newline="", encoding="utf-8") as handle:
        rows = {r["patient_id"]: r for r in csv.DictReader(handle)}
    assert {r["region"] for r in rows.values()} == {"label"}
    train = [p for p, s in split.items() if s != "test"]
    for i, name in enumerate(state["features"]):
        values = [float(rows[p][name]) for p in train]
        assert float(state["radiomics_mean"][i]) == pytest.approx(np.mean(values), rel=1e-9)
    metrics = {(r["level"], r["model"]) for r in read_tsv(out / "metrics.tsv")}
    assert ("patient", "fused") in metrics and ("slice", "t2w") in metrics
    assert any(r["stage"] == "radiomics/head" for r in read_tsv(out / "history.tsv"))
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["method"] == "radiomics" and run["radiomics_region"] == "label" and run["patients"]["failed"] == 0
    model = load_model(out / "model.pt")
    assert model.method == "radiomics" and model.modalities == ("t1c", "t2w")


def test_cli_prediction_matches_the_run_and_refuses_a_cohort_without_t2w(radiomics_run, tmp_path):
    cohort, out = radiomics_run
    assert main(["predict", "--cohort", str(cohort), "--model", str(out / "model.pt"), "--out",
                 str(tmp_path / "pred"), "--device", "cpu"]) == 0
    predicted = {r["patient_id"]: r for r in read_tsv(tmp_path / "pred" / "predictions.tsv")}
    assert len(predicted) == 8
    for row in read_tsv(out / "predictions.tsv"):  # the test patients get the run's probabilities
        for key in ("p_t1c", "p_t2w", "p_fused"):
            assert float(predicted[row["patient_id"]][key]) == pytest.approx(float(row[key]), abs=1e-5)
    from DMIFLib.cohort import read_cohort, write_cohort

    write_cohort([c.only(("t1c",)) for c in read_cohort(cohort)], tmp_path / "t1c_only.csv")
    done = subprocess.run([sys.executable, "-m", "DMIFLib", "predict", "--cohort", str(tmp_path / "t1c_only.csv"),
                           "--model", str(out / "model.pt"), "--out", str(tmp_path / "refused"), "--device", "cpu"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "t2w" in done.stderr
    assert not (tmp_path / "refused" / "predictions.tsv").exists()


def test_mrml_prediction_from_volume_nodes_and_a_box_matches_the_cohort_route(radiomics_run, tmp_path):
    pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed")
    import SimpleITK as sitk  # noqa: N813

    from DMIFLib.cohort import read_cohort, write_cohort
    from DMIFLib.mrml.predict import predict_nodes, prediction_tables, settings_for
    from DMIFLib.mrml.roi import box_to_roi_node
    from DMIFLib.mrml.scene import load_volume, new_scene
    from DMIFLib.preprocessing.roi import OrientedBox

    cohort, out = radiomics_run
    case = read_cohort(cohort)[0]
    around = OrientedBox.from_label(sitk.ReadImage(str(case.roi)), margin_mm=2.0)
    box = OrientedBox.axis_aligned(around.center_ras, around.size_mm)  # an inline ras: box can say the same
    scene = new_scene()
    volumes = {m: load_volume(scene, case.images[m], m.upper()) for m in ("t1c", "t2w")}
    roi = box_to_roi_node(box, scene, "Tumour box")
    model = load_model(out / "model.pt")
    settings = settings_for(model, register=False, bias_correction=False, skull_strip=False)
    prediction = predict_nodes(model, volumes, roi, settings, patient_name=case.patient_id)
    results, slices = prediction_tables(scene, prediction, model, case.patient_id, reference_node=volumes["t1c"])
    assert results.GetNumberOfRows() == 1 and slices.GetNumberOfRows() == prediction.n_slices
    assert results.GetTable().GetColumnByName("p_fused").GetValue(0) == pytest.approx(prediction.p_fused, abs=1e-6)

    centre, size = box.center_ras, box.size_mm  # the same box as an inline cohort ROI, predicted by dmif predict
    inline = "ras:" + ",".join(f"{v:.17g}" for v in (*centre, *size))
    write_cohort([dataclasses.replace(case, roi=inline)], tmp_path / "box.csv")
    assert main(["predict", "--cohort", str(tmp_path / "box.csv"), "--model", str(out / "model.pt"), "--out",
                 str(tmp_path / "pred"), "--device", "cpu"]) == 0
    row = read_tsv(tmp_path / "pred" / "predictions.tsv")[0]
    assert float(row["p_fused"]) == pytest.approx(prediction.p_fused, abs=1e-5)
    assert float(row["p_t1c"]) == pytest.approx(prediction.probabilities["t1c"], abs=1e-5)


def test_report_shows_the_selected_features(radiomics_run, tmp_path):
    from DMIFLib.evaluation.report import build_report

    _, out = radiomics_run
    page = build_report(out, tmp_path / "report.html").read_text(encoding="utf-8")
    first = read_tsv(out / "selected_features.tsv")[0]["feature"]
    assert "selected by mutual information" in page and first in page
