"""`dmif compare --radiomics`: seed 001's radiomics-only baseline and DMIF-Net + radiomics as Table 2 rows with
DeLong p against DMIF-Net."""

from __future__ import annotations

import json

import numpy as np
import pytest

from DMIFLib.cli import main
from DMIFLib.evaluation.compare import REFERENCE
from DMIFLib.evaluation.radiomics_baseline import BASELINE, FUSION, fit_baseline
from DMIFLib.evaluation.tables import read_tsv
from DMIFLib.methods.radiomics_features import RadiomicsSettings
from Testing.test_compare import TINY, _cohort

FAST_RADIOMICS = {"params": {"feature_classes": ["firstorder"], "wavelet": None}, "k": 3}


def test_baseline_is_fitted_on_the_training_patients_as_plain_arrays():
    rng = np.random.default_rng(1)
    labels = {f"p{i}": i % 2 for i in range(30)}
    features = {p: {"t1c_original_firstorder_Mean": 3.0 * y + rng.normal(), "t1c_original_firstorder_Noise":
                    rng.normal()} for p, y in labels.items()}
    train = [f"p{i}" for i in range(20)]
    model = fit_baseline(features, labels, train, RadiomicsSettings(k=1), seed=0)
    assert model.features == ["t1c_original_firstorder_Mean"] and model.coefficients.shape == (1,)
    assert isinstance(model.coefficients, np.ndarray) and isinstance(model.intercept, float)
    assert model.mean[0] == pytest.approx(np.mean([features[p]["t1c_original_firstorder_Mean"] for p in train]))
    test = [f"p{i}" for i in range(20, 30)]
    p = model.probabilities(np.stack([model.standardise(features[q], q) for q in test]))
    positives = [q for q in test if labels[q]]
    assert min(p[test.index(q)] for q in positives) > max(p[test.index(q)] for q in test if q not in positives)
    assert model.rows()[-1]["feature"] == "(intercept)"


@pytest.mark.slow
def test_compare_radiomics_rows_with_delong_against_dmif_net(tmp_path, capsys):
    cohort = _cohort(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", "--cohort", str(cohort), "--out", str(out), "--preset", "quick", "--device", "cpu",
                 "--set", json.dumps({**TINY, "radiomics": FAST_RADIOMICS}), "--n-boot", "20", "--radiomics"]) == 0
    table2 = read_tsv(out / "table2_reference_cnns.tsv")
    assert list(dict.fromkeys(r["model"] for r in table2)) == [BASELINE, FUSION, "ResNet34", "DenseNet121", "VGG",
                                                               REFERENCE]
    delong = {r["model"]: r for r in read_tsv(out / "delong_tests.tsv") if r["table"] == "reference"}
    for name in (BASELINE, FUSION):
        row = next(r for r in table2 if r["model"] == name and r["level"] == "patient")
        assert int(row["n"]) == 4 and 0.0 <= float(row["auc"]) <= 1.0
        assert delong[name]["n_comparisons"] == "5"
        p = float(delong[name]["p"])
        assert np.isnan(p) or float(delong[name]["p_bonferroni"]) == pytest.approx(min(1.0, 5 * p))
        assert row["delong_p_bonferroni"] == delong[name]["p_bonferroni"]
    assert FUSION in {r["stage"] for r in read_tsv(out / "history.tsv")}
    coefficients = read_tsv(out / "radiomics_baseline.tsv")
    assert len(coefficients) == 4 and coefficients[-1]["feature"] == "(intercept)"
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["radiomics_baseline"]["region"] == "label" and "skipped" not in run["radiomics_baseline"]
    scores = read_tsv(out / "scores_patient.tsv")
    assert {r["patient_id"] for r in scores} == set(run["split"]["test"]) and FUSION in scores[0]


def test_radiomics_settings_without_the_row_are_refused(tmp_path, capsys):
    cohort = _cohort(tmp_path, n=4)
    assert main(["compare", "--cohort", str(cohort), "--out", str(tmp_path / "o"),
                 "--set", json.dumps({"radiomics": FAST_RADIOMICS})]) == 2
    assert "dmif compare --radiomics" in capsys.readouterr().err
