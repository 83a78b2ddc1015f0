"""`dmif demo` end to end on a very small synthetic cohort: every step runs and the tables are printed."""

import pytest
import torch

from DMIFLib.cli import main
from DMIFLib.evaluation.tables import read_tsv


@pytest.mark.slow
def test_demo_runs_every_step_and_a_rerun_reuses_them(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--patients", "4", "--scale", "0.4", "--epochs", "1", "--workers", "1",
            "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for step in ("1/5 synth", "2/5 preproc", "3/5 training", "4/5 predicting the 2 held-out", "5/5 evaluating"):
        assert step in printed
    assert "== table2:" in printed and "DMIF-Net (multimodal)" in printed
    for path in ("synth/cohort.csv", "preprocessed/cohort.csv", "train/model.pt", "predictions/predictions.tsv",
                 "evaluation/table2_metrics.tsv"):
        assert (out / path).is_file(), path
    # every row is judged at its own training cut-off, not at the fused patient-level one
    cutoffs = torch.load(out / "train" / "model.pt", weights_only=True)["info"]["cutoffs"]
    names = {"T1C DMIF-Net": "t1c", "T2W DMIF-Net": "t2w", "DMIF-Net (multimodal)": "fused"}
    rows = read_tsv(out / "evaluation" / "table2_metrics.tsv")
    assert {(r["level"], r["model"]) for r in rows} >= {("patient", "DMIF-Net (multimodal)"), ("slice", "T1C DMIF-Net")}
    for row in rows:
        assert float(row["cutoff"]) == pytest.approx(cutoffs[f"{row['level']}/{names[row['model']]}"], abs=1e-6)
    model_bytes = (out / "train" / "model.pt").read_bytes()
    assert main(args) == 0  # a second run reuses the cohort, the cached cases and the model
    printed = capsys.readouterr().out
    assert "reusing the synthetic cohort" in printed and "reusing the trained model" in printed
    assert (out / "train" / "model.pt").read_bytes() == model_bytes
