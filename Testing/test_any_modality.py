"""Models on any modality set: T1C + FLAIR + native T1 in a non-canonical channel order, and one modality alone.

Tiny synthetic cohorts (8 patients, half size, tiny nets, one epoch) through train → predict → evaluate.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from DMIFLib.cli import main
from DMIFLib.cohort import CohortError, read_cohort, write_cohort
from DMIFLib.inference import predict_cohort
from DMIFLib.model_file import FUSED, load_model
from DMIFLib.synth import synthesize_cohort
from DMIFLib.training import train_cohort
from DMIFLib.training.algorithm import stage_names

TINY = {"net_width": "tiny", "epochs": 1, "slice_size": 32, "mi_scales": [2], "max_slices": 4, "batch_size": 16,
        "preprocessing": {"register": False, "n4": False, "skull_strip": "none"}}


def read_tsv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """T1C + FLAIR + T1 cohort; the model's channel order is FLAIR, T1, T1C (given), seed 2."""
    base = tmp_path_factory.mktemp("three")
    cohort = synthesize_cohort(base / "synth", 8, seed=3, scale=0.5, modalities=("t1c", "flair", "t1"))
    result = train_cohort(cohort, base / "run", device="cpu",
                          overrides={**TINY, "seed": 2, "modalities": ["flair", "t1", "t1c"]})
    return base, cohort, result


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """FLAIR only: no T1C anywhere, so FLAIR is the reference grid too."""
    base = tmp_path_factory.mktemp("single")
    cohort = synthesize_cohort(base / "synth", 8, seed=4, scale=0.5, modalities=("flair",))
    result = train_cohort(cohort, base / "run", device="cpu", overrides=TINY)
    return base, cohort, result


def test_synthetic_cohort_has_the_asked_modalities(three, single):
    assert [c.modalities for c in read_cohort(three[1])] == [("t1c", "flair", "t1")] * 8
    cases = read_cohort(single[1])
    assert [c.modalities for c in cases] == [("flair",)] * 8 and cases[0].reference == "flair"
    assert not (cases[0].images["flair"].parent / "t1c.nii.gz").exists()


def test_three_modality_model_trains_and_predicts_in_its_channel_order(three):
    base, cohort, result = three
    model = load_model(result.model_path)
    assert model.modalities == ("flair", "t1", "t1c") and tuple(model.nets[FUSED].modalities) == model.modalities
    assert [r["stage"] for r in read_tsv(result.history_path)] == stage_names(("flair", "t1", "t1c"))
    assert main(["predict", "--cohort", str(cohort), "--model", str(result.model_path), "--out",
                 str(base / "pred")]) == 0
    rows = read_tsv(base / "pred" / "predictions.tsv")
    assert list(rows[0])[:5] == ["patient_id", "p_flair", "p_t1", "p_t1c", "p_fused"] and len(rows) == 8
    assert all(0.0 <= float(r["p_fused"]) <= 1.0 for r in rows)
    assert main(["evaluate", "--predictions", str(base / "pred" / "predictions.tsv"), "--cohort", str(cohort),
                 "--out", str(base / "eval"), "--model", str(result.model_path), "--n-boot", "20"]) == 0
    assert any((base / "eval").glob("*.tsv"))


def test_single_modality_model_fused_is_its_dmif_net(single):
    base, cohort, result = single
    model = load_model(result.model_path)
    assert model.modalities == ("flair",) and model.nets[FUSED] is model.nets["flair"]
    assert "stage3/fused" not in {r["stage"] for r in read_tsv(result.history_path)}
    assert {r["model"] for r in read_tsv(result.metrics_path)} == {"flair", "fused"}
    out = predict_cohort(cohort, result.model_path, base / "pred", device="cpu")
    rows = read_tsv(out)
    assert len(rows) == 8 and list(rows[0])[:3] == ["patient_id", "p_flair", "p_fused"]
    assert np.allclose([float(r["p_flair"]) for r in rows], [float(r["p_fused"]) for r in rows])


def test_other_images_of_a_case_do_not_change_a_models_input(three, single, tmp_path):
    """The FLAIR-only model on the T1C + FLAIR + T1 cohort: T1C is not read and is not the reference grid."""
    cases = read_cohort(three[1])
    flair_only = write_cohort([c.only(("flair",)) for c in cases], tmp_path / "flair_only.csv")
    with_others = read_tsv(predict_cohort(three[1], single[2].model_path, tmp_path / "all", device="cpu"))
    alone = read_tsv(predict_cohort(flair_only, single[2].model_path, tmp_path / "alone", device="cpu"))
    assert [r["p_fused"] for r in with_others] == [r["p_fused"] for r in alone]
    assert [r["n_slices"] for r in with_others] == [r["n_slices"] for r in alone]
    with pytest.raises(CohortError, match=r"SYN001: no t2w image \(needed: flair, t2w\)"):
        cases[0].only(("flair", "t2w"))


def test_model_refuses_a_cohort_without_its_modalities(three, single, capsys):
    base, _, result = three
    with pytest.raises(CohortError, match=r"the model needs modalities flair, t1, t1c; column\(s\) t1, t1c missing"):
        predict_cohort(single[1], result.model_path, base / "refused", device="cpu")
    assert main(["predict", "--cohort", str(single[1]), "--model", str(result.model_path), "--out",
                 str(base / "refused_cli")]) == 2
    err = capsys.readouterr().err
    assert "the model needs modalities flair, t1, t1c" in err and "Traceback" not in err


def test_synth_and_demo_refuse_unknown_modalities(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "s"), "--patients", "2", "--modalities", "t1c,dwi"]) == 2
    assert main(["demo", "--out", str(tmp_path / "d"), "--modalities", "t2w,t2w"]) == 2
    err = capsys.readouterr().err
    assert err.count("give distinct ones of t1c, t2w, flair, t1") == 2
