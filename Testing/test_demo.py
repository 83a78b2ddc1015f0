"""`dmif demo` end to end on a very small synthetic cohort: every step runs and the tables are printed."""

from pathlib import Path

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
    # the demo ends with the cohort report, one case report (HTML + PDF) and a Slicer scene, their paths printed
    listed = printed.split("reports and scene (research use only):\n")[1].split("\n\n")[0].splitlines()
    outputs = dict(line.rsplit(": ", 1) for line in listed)
    assert outputs["cohort report"] == str(out / "evaluation" / "report.html")
    case_reports = [name for name in outputs if name.startswith("case report ")]
    assert len(case_reports) == 2 and {outputs[n].rsplit(".", 1)[1] for n in case_reports} == {"html", "pdf"}
    assert all(Path(path).is_file() for path in outputs.values())
    patient = case_reports[0].split()[2]
    assert "data:image/png;base64," in Path(outputs[f"case report {patient} (html)"]).read_text(encoding="utf-8")
    assert sorted(p.name for p in (out / "predictions" / "saliency").iterdir()) == [
        f"{patient}_t1c.nii.gz", f"{patient}_t2w.nii.gz"]
    if "Slicer scene" in outputs:  # slicer-core installed (the [slicer] extra)
        from DMIFLib.mrml.scene import load_scene

        scene = load_scene(outputs["Slicer scene"])
        assert scene.GetFirstNodeByName(f"{patient} saliency t1c") is not None
        assert scene.GetFirstNodeByName("DMIF predictions") is not None
    model_bytes = (out / "train" / "model.pt").read_bytes()
    assert main(args) == 0  # a second run reuses the cohort, the cached cases and the model
    printed = capsys.readouterr().out
    assert "reusing the synthetic cohort" in printed and "reusing the trained model" in printed
    assert (out / "train" / "model.pt").read_bytes() == model_bytes
