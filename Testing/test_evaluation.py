"""`dmif evaluate` tables (Table 2/3 layout, levels, cut-off from the model) and separability (eq. 9–11)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from DMIFLib.cli import main
from DMIFLib.cohort import CohortError
from DMIFLib.evaluation.evaluate import evaluate_predictions
from DMIFLib.evaluation.tables import DELONG_COLUMNS, TABLE2_COLUMNS, read_tsv
from DMIFLib.stats import auc_ci, binary_metrics, delong_test
from DMIFLib.stats.separability import class_distances, cosine_distance, mmd_linear


def _write_run(folder, n=30, seed=0, slices=True):
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    y = np.arange(n) % 2
    with open(folder / "cohort.csv", "w", encoding="utf-8") as f:
        f.write("patient_id,t1c,t2w,roi,label\n")
        f.writelines(f"{pid},{pid}_t1c.nii.gz,{pid}_t2w.nii.gz,{pid}_seg.nii.gz,{label}\n"
                     for pid, label in zip(ids, y, strict=True))
    p = {}
    with (open(folder / "predictions.tsv", "w", encoding="utf-8") as f,
          open(folder / "slice_predictions.tsv", "w", encoding="utf-8") as g):
        f.write("patient_id\tp_t1c\tp_t2w\tp_fused\tprediction\tcutoff\tn_slices\n")
        g.write("patient_id\tslice_index\tp_t1c\tp_t2w\tp_fused\n")
        for pid, label in zip(ids, y, strict=True):
            ns = int(rng.integers(2, 6))
            sl = 1 / (1 + np.exp(-(rng.normal() + label + 0.5 * rng.normal(size=(3, ns)))))
            p[pid] = sl.mean(axis=1)
            f.write(f"{pid}\t" + "\t".join(f"{float(v)!r}" for v in p[pid]) + f"\t{int(p[pid][2] >= 0.4)}\t0.4\t{ns}\n")
            if slices:
                g.writelines(f"{pid}\t{k}\t" + "\t".join(repr(float(v)) for v in sl[:, k]) + "\n" for k in range(ns))
    if not slices:
        (folder / "slice_predictions.tsv").unlink()
    return y, np.array([p[pid] for pid in ids])


def test_evaluate_writes_table2_and_delong_tables_with_levels(tmp_path):
    y, p = _write_run(tmp_path)
    paths = evaluate_predictions(tmp_path / "predictions.tsv", tmp_path / "cohort.csv", tmp_path / "out", n_boot=50)
    rows = read_tsv(paths["table2"])
    assert tuple(rows[0]) == TABLE2_COLUMNS
    assert [(r["model"], r["level"]) for r in rows] == [
        ("T1C DMIF-Net", "patient"), ("T2W DMIF-Net", "patient"), ("DMIF-Net (multimodal)", "patient"),
        ("T1C DMIF-Net", "slice"), ("T2W DMIF-Net", "slice"), ("DMIF-Net (multimodal)", "slice")]
    fused = rows[2]
    expected = binary_metrics(y, p[:, 2], 0.4)   # the model's cut-off from predictions.tsv, not re-tuned
    for key in ("accuracy", "sensitivity", "specificity", "ppv", "npv", "auc", "cutoff"):
        assert float(fused[key]) == pytest.approx(expected[key], rel=1e-9)
    _, low, high = auc_ci(y, p[:, 2])
    assert (float(fused["auc_ci_low"]), float(fused["auc_ci_high"]), fused["ci_method"]) == (
        pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9), "DeLong")
    assert rows[5]["ci_method"] == "patient bootstrap" and int(rows[5]["n"]) > len(y)
    delong = read_tsv(paths["delong"])
    assert tuple(delong[0]) == DELONG_COLUMNS
    z, pv, _, _ = delong_test(y, p[:, 0], p[:, 2])
    assert float(delong[0]["z"]) == pytest.approx(z, rel=1e-9)
    assert float(delong[0]["p_bonferroni"]) == pytest.approx(min(2 * pv, 1), rel=1e-9)
    ci = read_tsv(paths["ci"])
    assert {r["metric"] for r in ci} == {"accuracy", "sensitivity", "specificity", "ppv", "npv", "auc"}


def test_evaluate_cli_cutoff_override_and_no_slice_file(tmp_path, capsys):
    y, p = _write_run(tmp_path, slices=False)
    assert main(["evaluate", "--predictions", str(tmp_path / "predictions.tsv"), "--cohort",
                 str(tmp_path / "cohort.csv"), "--out", str(tmp_path / "out"), "--cutoff", "0.6",
                 "--n-boot", "20"]) == 0
    rows = read_tsv(tmp_path / "out" / "table2_metrics.tsv")
    assert {r["level"] for r in rows} == {"patient"}
    assert float(rows[0]["accuracy"]) == pytest.approx(binary_metrics(y, p[:, 0], 0.6)["accuracy"])
    assert "DMIF-Net (multimodal)" in capsys.readouterr().out


def test_evaluate_names_unlabelled_patient(tmp_path, capsys):
    _write_run(tmp_path)
    text = (tmp_path / "cohort.csv").read_text(encoding="utf-8").replace("P007,", "Q007,")
    (tmp_path / "cohort.csv").write_text(text, encoding="utf-8")
    with pytest.raises(CohortError, match=r"predictions.tsv, line 9: patient 'P007' has no label"):
        evaluate_predictions(tmp_path / "predictions.tsv", tmp_path / "cohort.csv", tmp_path / "out", n_boot=5)
    assert main(["evaluate", "--predictions", str(tmp_path / "missing.tsv"), "--cohort", str(tmp_path / "cohort.csv"),
                 "--out", str(tmp_path / "out")]) == 2
    assert "missing.tsv: predictions table not found" in capsys.readouterr().err


def test_separability_dist_grows_with_class_separation():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(150), np.ones(150)]
    direction = np.r_[np.ones(4), np.zeros(28)]
    dists = []
    for shift in (0.0, 1.0, 3.0):
        x = rng.normal(size=(300, 32)) + 1.0 + shift * np.outer(y, direction)
        d = class_distances(x, y, n=50, m=20, seed=1)
        dists.append((d["mmd"]["dist"], d["cosine"]["dist"]))
    assert dists[0][0] < dists[1][0] < dists[2][0]
    assert dists[0][1] < dists[1][1] < dists[2][1]
    assert dists[0][0] == pytest.approx(2.0, abs=0.8)   # same distribution: f_AB ≈ f_AA ≈ f_BB, Dist ≈ 2


def test_separability_linear_mmd_and_cosine_distance_exact():
    a = np.tile([1.0, 0.0], (4, 1))
    b = np.tile([1.0, 3.0], (5, 1))
    d = class_distances(np.vstack([a, b]), [0] * 4 + [1] * 5, n=100, m=3)
    assert d["mmd"]["n"] == 2   # n shrinks to half the smaller class
    assert d["mmd"]["ab"] == pytest.approx(9.0) and d["mmd"]["aa"] == 0.0   # linear kernel: |mean A - mean B|^2
    assert d["cosine"]["ab"] == pytest.approx(1 - 1 / np.sqrt(10)) and d["cosine"]["aa"] == pytest.approx(0.0)
    assert np.isnan(d["mmd"]["dist"])   # no within-class spread: Dist undefined, not infinite
    with pytest.raises(ValueError, match="at least 4 rows per class"):
        class_distances(np.zeros((7, 2)), [0, 0, 0, 1, 1, 1, 1])


def test_evaluate_uses_training_cutoffs_per_level_and_model_from_run_json(tmp_path):
    y, p = _write_run(tmp_path)
    cutoffs = {"patient/t1c": 0.31, "patient/t2w": 0.42, "patient/fused": 0.53, "slice/t1c": 0.64,
               "slice/t2w": 0.75, "slice/fused": 0.86}
    (tmp_path / "run.json").write_text(json.dumps({"cutoffs": cutoffs}), encoding="utf-8")
    paths = evaluate_predictions(tmp_path / "predictions.tsv", tmp_path / "cohort.csv", tmp_path / "out", n_boot=5)
    rows = read_tsv(paths["table2"])
    assert [float(r["cutoff"]) for r in rows] == [0.31, 0.42, 0.53, 0.64, 0.75, 0.86]
    assert float(rows[1]["specificity"]) == pytest.approx(binary_metrics(y, p[:, 1], 0.42)["specificity"])
    paths = evaluate_predictions(tmp_path / "predictions.tsv", tmp_path / "cohort.csv", tmp_path / "out2",
                                 cutoff=0.5, n_boot=5)
    assert {float(r["cutoff"]) for r in read_tsv(paths["table2"])} == {0.5}


def test_separability_closed_forms_equal_the_papers_double_sums():
    from sklearn.metrics.pairwise import cosine_similarity, linear_kernel

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(30, 12)) + 0.3, rng.normal(size=(25, 12))
    b[3] = 0.0   # a zero feature vector
    eq9 = abs(linear_kernel(a, a).mean() - 2 * linear_kernel(a, b).mean() + linear_kernel(b, b).mean())
    assert mmd_linear(a, b) == pytest.approx(eq9, rel=1e-10)
    assert cosine_distance(a, b) == pytest.approx(1 - cosine_similarity(a, b).mean(), rel=1e-10)
