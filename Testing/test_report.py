"""`dmif report`: a self-contained HTML page from whatever a run folder holds; missing pieces are skipped."""

from __future__ import annotations

import base64
import json
import re

import numpy as np

from DMIFLib.cli import main
from DMIFLib.evaluation.report import build_report, ci_pivot
from DMIFLib.evaluation.tables import write_tsv


def _run_folder(folder):
    rng = np.random.default_rng(0)
    ids = [f"P{i:02d}" for i in range(12)]
    y = np.arange(12) % 2
    p = np.clip(0.3 + 0.4 * y + 0.2 * rng.normal(size=12), 0.01, 0.99)
    write_tsv(folder / "scores_patient.tsv",
              [{"patient_id": i, "label": label, "DMIF-Net (multimodal)": a, "ResNet34": b}
               for i, label, a, b in zip(ids, y, p, rng.uniform(size=12), strict=True)],
              ("patient_id", "label", "DMIF-Net (multimodal)", "ResNet34"))
    write_tsv(folder / "table2_metrics.tsv",
              [{"model": "DMIF-Net (multimodal)", "level": "patient", "n": 12, "auc": 0.8123456, "ppv": float("nan")}],
              ("model", "level", "n", "auc", "ppv"))
    write_tsv(folder / "metrics_ci.tsv",
              [{"model": "DMIF-Net (multimodal)", "level": "slice", "metric": "auc", "value": 0.8, "ci_low": 0.7,
                "ci_high": 0.9}], ("model", "level", "metric", "value", "ci_low", "ci_high"))
    write_tsv(folder / "history.tsv",
              [{"stage": s, "epoch": e, "loss": 1 / e, "val_loss": 1.1 / e, "val_auc": 0.5 + 0.1 * e}
               for s in ("stage1", "stage2") for e in (1, 2, 3)], ("stage", "epoch", "loss", "val_loss", "val_auc"))
    write_tsv(folder / "tsne.tsv", [{"model": "DMIF-Net (multimodal)", "label": i % 2, "x": rng.normal(),
                                     "y": rng.normal()} for i in range(20)], ("model", "label", "x", "y"))
    (folder / "run.json").write_text('{"command": "dmif compare", "preset": "quick <tiny>"}', encoding="utf-8")


def test_report_inlines_every_figure_and_table(tmp_path):
    _run_folder(tmp_path)
    path = build_report(tmp_path)
    page = path.read_text(encoding="utf-8")
    assert path == tmp_path / "report.html"
    for heading in ("Metrics", "ROC curves", "Training curves", "Feature t-SNE", "Per-patient predictions",
                    "Provenance"):
        assert f"<h2>{heading}" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3   # ROC, training curves, t-SNE
    assert all(base64.b64decode(img).startswith(b"\x89PNG") for img in images)
    assert not re.search(r'(src|href)="(?!data:)', page)   # nothing fetched from outside the page
    assert "0.8123" in page and "quick &lt;tiny&gt;" in page   # numbers to 4 decimals; provenance escaped
    assert "0.800 [0.700, 0.900]" in page
    assert "scikit-learn" in page and "torch" in page


def test_report_degrades_gracefully_and_cli(tmp_path, capsys):
    assert main(["report", "--run", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "no metric tables in this folder" in page and "no labelled scores" in page
    assert "<h2>Training curves" not in page and "<h2>Provenance" in page
    assert main(["report", "--run", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_report_labels_predictions_from_cohort(tmp_path):
    (tmp_path / "cohort.csv").write_text("patient_id,t1c,roi,label\n" +
                                         "".join(f"P{i},a.nii.gz,b.nii.gz,{i % 2}\n" for i in range(6)),
                                         encoding="utf-8")
    write_tsv(tmp_path / "predictions.tsv",
              [{"patient_id": f"P{i}", "p_t1c": 0.1 + 0.15 * i, "p_fused": 0.2 + 0.1 * (i % 2), "prediction": i % 2,
                "cutoff": 0.5, "n_slices": 3} for i in range(6)],
              ("patient_id", "p_t1c", "p_fused", "prediction", "cutoff", "n_slices"))
    page = build_report(tmp_path, cohort_csv=tmp_path / "cohort.csv").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 1 and "p_fused: AUC 1.000" not in page  # legend is in the PNG
    assert "<h2>Per-patient predictions" in page


def test_train_folder_takes_its_labels_from_the_recorded_cohort(tmp_path):
    cohort = tmp_path / "data" / "cohort.csv"
    cohort.parent.mkdir()
    cohort.write_text("patient_id,t1c,roi,label\n" + "".join(f"P{i},a.nii.gz,b.nii.gz,{i % 2}\n" for i in range(6)),
                      encoding="utf-8")
    run = tmp_path / "run"
    run.mkdir()
    write_tsv(run / "predictions.tsv",
              [{"patient_id": f"P{i}", "p_t1c": 0.1 + 0.15 * i, "p_fused": 0.2 + 0.1 * (i % 2), "prediction": i % 2,
                "cutoff": 0.5, "n_slices": 3} for i in range(6)],
              ("patient_id", "p_t1c", "p_fused", "prediction", "cutoff", "n_slices"))
    (run / "run.json").write_text(json.dumps({"cohort": str(cohort.resolve()), "preset": "quick"}), encoding="utf-8")
    page = build_report(run).read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 1 and f"labels from {cohort.resolve()}" in page
    cohort.unlink()  # the recorded cohort is gone: no labels, no error
    page = build_report(run).read_text(encoding="utf-8")
    assert "no labelled scores" in page
    rows = [{"patient_id": f"P{i}", "label": i % 2, "p_fused": 0.2 + 0.1 * (i % 2)} for i in range(6)]
    write_tsv(run / "predictions.tsv", rows, ("patient_id", "label", "p_fused"))  # labels of its own
    page = build_report(run).read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 1 and "labels from" not in page


def test_ci_pivot():
    rows = [{"model": "A", "level": "patient", "metric": m, "value": "0.5", "ci_low": "0.25", "ci_high": "0.75"}
            for m in ("auc", "ppv")]
    assert ci_pivot(rows) == [{"model": "A", "level": "patient", "auc": "0.500 [0.250, 0.750]",
                               "ppv": "0.500 [0.250, 0.750]"}]
