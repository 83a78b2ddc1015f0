"""`dmif compare` end to end on a tiny preprocessed cohort: real slice loading, patient split, training, tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from DMIFLib.cli import main
from DMIFLib.evaluation.compare import REFERENCE
from DMIFLib.evaluation.tables import TABLE2_COLUMNS, read_tsv

PAPER_COLUMNS = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "auc", "cutoff", "auc_ci_low", "auc_ci_high")
TINY = {"net_width": "tiny", "epochs": 1, "slice_size": 32, "batch_size": 16, "max_slices": 3, "mi_scales": [2],
        "augment": None, "test_fraction": 0.34, "val_fraction": 0.25}


def _cohort(folder, n=12, size=32, depth=5):
    """Co-registered, z-scored volumes (``preprocessed`` = 1): label 1 = oriented stripes in the tumour box."""
    rng = np.random.default_rng(0)
    lines = ["patient_id,t1c,t2w,roi,label,preprocessed"]
    xx = np.mgrid[:size, :size][1]
    for i in range(n):
        label = i % 2
        pid = f"C{i:02d}"
        box = np.zeros((depth, size, size), np.uint8)
        box[1:4, 6:26, 6:26] = 1
        for m, phase in (("t1c", 0.0), ("t2w", 1.0)):
            texture = np.sin(xx / 1.3 + phase) if label else rng.normal(size=(size, size))
            vol = rng.normal(size=(depth, size, size)) * 0.5 + box * (1.0 + 0.8 * texture)
            img = sitk.GetImageFromArray(vol.astype(np.float32))
            sitk.WriteImage(img, str(folder / f"{pid}_{m}.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(box), str(folder / f"{pid}_roi.nii.gz"))
        lines.append(f"{pid},{pid}_t1c.nii.gz,{pid}_t2w.nii.gz,{pid}_roi.nii.gz,{label},1")
    (folder / "cohort.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "cohort.csv"


@pytest.mark.slow
def test_compare_cli_quick_preset_tiny_cohort(tmp_path, capsys):
    cohort = _cohort(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", "--cohort", str(cohort), "--out", str(out), "--preset", "quick", "--device", "cpu",
                 "--set", json.dumps(TINY), "--n-boot", "20"]) == 0
    table3 = read_tsv(out / "table3_ablations.tsv")
    table2 = read_tsv(out / "table2_reference_cnns.tsv")
    for table in (table2, table3):
        assert tuple(table[0])[: len(TABLE2_COLUMNS)] == TABLE2_COLUMNS
        assert set(PAPER_COLUMNS) <= set(table[0]) and {r["level"] for r in table} == {"patient", "slice"}
    models = list(dict.fromkeys(r["model"] for r in table3))
    assert models == ["T1C DF-Net without SPP", "T1C DF-Net", "T1C MI-Net J=2", "T1C MI-Net J=2+3",
                      "T1C MI-Net J=2+3+4", "T1C DMIF-Net", "T2W DF-Net", "T2W MI-Net J=2", "T2W DMIF-Net", REFERENCE]
    assert list(dict.fromkeys(r["model"] for r in table2)) == ["ResNet34", "DenseNet121", "VGG", REFERENCE]
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    test_ids, train_ids = set(run["split"]["test"]), set(run["split"]["train"]) | set(run["split"]["validation"])
    assert not test_ids & train_ids and len(test_ids | train_ids) == 12 and len(test_ids) == 4
    patient_rows = [r for r in table3 if r["level"] == "patient"]
    assert all(int(r["n"]) == 4 for r in patient_rows)
    # DeLong against DMIF-Net: Bonferroni over the 9 other models of Table 3
    delong = [r for r in read_tsv(out / "delong_tests.tsv") if r["table"] == "ablation"]
    assert len(delong) == 9 and all(r["n_comparisons"] == "9" for r in delong)
    for r in delong:
        p, pb = float(r["p"]), float(r["p_bonferroni"])
        assert pb == pytest.approx(min(1.0, 9 * p)) or np.isnan(p)
    reference_row = next(r for r in patient_rows if r["model"] == REFERENCE)
    assert reference_row["delong_p"] == ""   # no test of DMIF-Net against itself
    sep = read_tsv(out / "separability.tsv")
    assert len(sep) == 13 and all(float(r["mmd_dist"]) > 0 for r in sep)
    scores = read_tsv(out / "scores_patient.tsv")
    assert {r["patient_id"] for r in scores} == test_ids
    assert {r["stage"] for r in read_tsv(out / "history.tsv")} == set(models) | {"ResNet34", "DenseNet121", "VGG"}
    assert "training T1C DF-Net without SPP" in capsys.readouterr().out


def test_compare_cli_reports_bad_cohort(tmp_path, capsys):
    (tmp_path / "cohort.csv").write_text("patient_id,t1c,roi\nA,a.nii.gz,b.nii.gz\n", encoding="utf-8")
    assert main(["compare", "--cohort", str(tmp_path / "cohort.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "'label' column" in capsys.readouterr().err
    assert main(["compare", "--cohort", str(tmp_path / "cohort.csv"), "--out", str(tmp_path / "o"),
                 "--set", "{bad"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_compare_refuses_to_overwrite_an_earlier_run(tmp_path, capsys):
    cohort = _cohort(tmp_path, n=4)
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "run.json").write_text("{}", encoding="utf-8")
    assert main(["compare", "--cohort", str(cohort), "--out", str(tmp_path / "cmp")]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "cmp" / "run.json").read_text(encoding="utf-8") == "{}"
