"""`dmif compare --transfer`: the seed-002 transfer-learning CNNs as Table 2 rows with DeLong p vs DMIF-Net."""

from __future__ import annotations

import json

import numpy as np
import pytest

from DMIFLib.cli import main
from DMIFLib.evaluation.compare import REFERENCE
from DMIFLib.evaluation.tables import read_tsv
from DMIFLib.nets.transfer import WEIGHTS_DIR_ENV
from Testing.test_compare import TINY, _cohort

FAST_TRANSFER = {"archs": ["resnet18"], "imagenet": False, "width_divisor": 16}
ROWS = ["ResNet18 T1C", "ResNet18 T2W", "ResNet18 late mean", "ResNet18 late LR", "ResNet18 late SVM",
        "ResNet18 TC-fusion"]


@pytest.mark.slow
def test_compare_transfer_rows_with_delong_against_dmif_net(tmp_path, capsys):
    cohort = _cohort(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", "--cohort", str(cohort), "--out", str(out), "--preset", "quick", "--device", "cpu",
                 "--set", json.dumps({**TINY, "transfer": FAST_TRANSFER}), "--n-boot", "20", "--transfer"]) == 0
    table2 = read_tsv(out / "table2_reference_cnns.tsv")
    assert list(dict.fromkeys(r["model"] for r in table2)) == ["ResNet34", "DenseNet121", "VGG", *ROWS, REFERENCE]
    delong = {r["model"]: r for r in read_tsv(out / "delong_tests.tsv") if r["table"] == "reference"}
    assert set(ROWS) <= set(delong) and {r["n_comparisons"] for r in delong.values()} == {"9"}
    for name in ROWS:
        p = float(delong[name]["p"])
        assert np.isnan(p) or float(delong[name]["p_bonferroni"]) == pytest.approx(min(1.0, 9 * p))
        row = next(r for r in table2 if r["model"] == name and r["level"] == "patient")
        assert int(row["n"]) == 4 and row["delong_p_bonferroni"] == delong[name]["p_bonferroni"]
    scores = read_tsv(out / "scores_slice.tsv")
    mean = np.array([(float(r["ResNet18 T1C"]) + float(r["ResNet18 T2W"])) / 2 for r in scores])
    assert np.allclose([float(r["ResNet18 late mean"]) for r in scores], mean, atol=2e-6)  # 6-digit TSV values
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["transfer"]["skipped"] == [] and run["transfer"]["settings"]["archs"] == ["resnet18"]
    history = {r["stage"] for r in read_tsv(out / "history.tsv")}
    assert {"ResNet18 T1C", "ResNet18 T2W", "ResNet18 TC-fusion"} <= history
    assert "training ResNet18 TC-fusion" in capsys.readouterr().out


def test_transfer_rows_need_the_imagenet_file_or_imagenet_off(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    cohort = _cohort(tmp_path, n=4)
    assert main(["compare", "--cohort", str(cohort), "--out", str(tmp_path / "o"), "--transfer", "--set",
                 json.dumps({**TINY, "transfer": {"archs": ["vgg11"], "weights": str(tmp_path / "none")}})]) == 2
    err = capsys.readouterr().err
    assert "ImageNet weights for vgg11: " in err and "none not found (give torchvision's file vgg11-8a719046.pth" in err
    assert "Traceback" not in err
    assert main(["compare", "--cohort", str(cohort), "--out", str(tmp_path / "o"),
                 "--set", json.dumps({"transfer": FAST_TRANSFER})]) == 2
    assert "dmif compare --transfer" in capsys.readouterr().err
    assert not (tmp_path / "o" / "run.json").exists()
