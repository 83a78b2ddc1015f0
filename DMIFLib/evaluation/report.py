"""`dmif report`: one self-contained HTML page for a training, evaluation or comparison run folder.

Reads what is there and skips what is not: ``run.json`` / ``model.pt`` metadata (provenance), ``history.tsv``
(training curves), ``metrics.tsv`` / ``table2_metrics.tsv`` / ``metrics_ci.tsv`` / ``delong_tests.tsv`` /
``separability.tsv`` (tables), ``scores_patient.tsv`` / ``scores_slice.tsv`` (ROC curves: patient_id, label,
one probability column per model), ``predictions.tsv`` (per-patient predictions; ROC too when it has a label
column or a cohort is given), ``tsne.tsv`` (model, label, x, y); a reliability diagram when ``predictions.tsv``
has ``p_fused_raw`` and labels. Figures are PNGs inlined as base64.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from DMIFLib import __version__
from DMIFLib.atomic import atomic_write_text
from DMIFLib.evaluation.tables import read_tsv

TABLE_FILES = (
    ("table2_metrics.tsv", "Classification metrics (paper Table 2 layout)"),
    ("table2_reference_cnns.tsv", "Table 2: DMIF-Net against reference CNNs (DeLong p vs DMIF-Net, patient level)"),
    ("table3_ablations.tsv", "Table 3: ablations (DeLong p vs multimodal DMIF-Net, patient level)"),
    ("metrics.tsv", "Training run metrics"),
    ("cv_repeats.tsv", "Cross-validation: pooled out-of-fold AUC of each repeat (DeLong CI)"),
    ("cv_folds.tsv", "Cross-validation: each fold's held-out metrics (patients per side, AUCs, cut-off)"),
    ("delong_tests.tsv", "Paired DeLong tests of AUC against the reference model (Bonferroni within each table)"),
    ("separability.tsv", "Feature separability: MMD and cosine Dist (paper eq. 9–11; larger = better separated)"),
    ("selected_features.tsv", "Radiomics features selected by mutual information (SelectKBest, training patients)"),
    ("radiomics_baseline.tsv", "Radiomics-only baseline: selected features, MI, logistic-regression coefficients"),
)
PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "kymatio", "SimpleITK", "monai", "matplotlib")

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
table{border-collapse:collapse;font-size:12px;margin:6px 0 14px}td,th{border:1px solid #ccc;padding:3px 7px}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}caption{text-align:left;
font-weight:600;padding:4px 0}img{max-width:100%;border:1px solid #eee}.note{color:#666;font-size:12px}
.warn{color:#a33}pre{background:#f7f7f7;padding:8px;font-size:11px;overflow-x:auto}
"""


def _cell(value: str) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"<td>{html.escape(str(value))}</td>"
    if number.is_integer() and "." not in str(value) and "e" not in str(value).lower():
        return f'<td class="num">{int(number)}</td>'
    return f'<td class="num">{number:.4f}</td>' if np.isfinite(number) else '<td class="num">–</td>'


def html_table(rows: Sequence[Mapping[str, str]], caption: str = "", max_rows: int = 500) -> str:
    """An HTML table of TSV rows (numbers to 4 decimals); longer tables are cut with a note."""
    if not rows:
        return f'<p class="note">{html.escape(caption)}: empty</p>'
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(r.get(c, "")) for c in columns) + "</tr>" for r in rows[:max_rows])
    more = f'<p class="note">… {len(rows) - max_rows} more rows in the TSV file</p>' if len(rows) > max_rows else ""
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>{more}"


def ci_pivot(rows: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """metrics_ci.tsv (one row per model, level and metric) as one row per model and level: "value [low, high]"."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for r in rows:
        key = (r["model"], r["level"])
        row = out.setdefault(key, {"model": r["model"], "level": r["level"]})
        try:
            row[r["metric"]] = f"{float(r['value']):.3f} [{float(r['ci_low']):.3f}, {float(r['ci_high']):.3f}]"
        except ValueError:
            row[r["metric"]] = r["value"]
    return list(out.values())


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _versions() -> dict[str, str]:
    out = {"DMIFLib": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _model_metadata(path: Path) -> dict:
    """The model file's metadata (marker, modalities, cut-off, preprocessing, provenance), or why it is unreadable."""
    from DMIFLib.model_file import ModelFileError, load_model

    try:
        model = load_model(path, device="cpu")
    except (ModelFileError, OSError) as error:  # the report still renders, with the reason
        return {"error": f"could not read {path.name}: {error}"}
    settings = model.settings.to_dict() if hasattr(model.settings, "to_dict") else model.settings
    return {"marker": model.marker, "modalities": list(model.modalities), "cutoff": model.cutoff,
            "package_version": model.package_version, "preprocessing": settings, "info": model.info}


def _labelled_scores(rows: Sequence[Mapping[str, str]], labels: Mapping[str, int] | None
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """(labels (n,), {column: probabilities (n,)}) from a scores/predictions table, or None without labels."""
    if not rows:
        return None
    skip = {"patient_id", "label", "split", "prediction", "cutoff", "n_slices", "slice_index", "level", "repeat",
            "fold", "p_fused_raw", "p_fused_low", "p_fused_high"}  # raw p_fused: see _reliability
    if "label" in rows[0]:
        kept = [r for r in rows if r["label"] in ("0", "1")]
        y = np.array([int(r["label"]) for r in kept])
    elif labels is not None:
        kept = [r for r in rows if r.get("patient_id") in labels]
        y = np.array([labels[r["patient_id"]] for r in kept])
    else:
        return None
    if len(kept) < 2 or len(set(y.tolist())) < 2:
        return None
    columns = [c for c in rows[0] if c not in skip]
    scores = {}
    for c in columns:
        try:
            scores[c] = np.array([float(r[c]) for r in kept])
        except ValueError:
            continue
    return y, scores


def _oof_scores(run_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """A cross-validation run's out-of-fold scores: labels (n,) and each model's mean over repeats (n,)."""
    from DMIFLib.evaluation.evaluate import mean_over_repeats, model_name

    path = run_dir / "oof_predictions.tsv"
    rows = read_tsv(path) if path.is_file() else []
    data = _labelled_scores(rows, None)
    if data is None:
        return None
    kept = [r["patient_id"] for r in rows if r["label"] in ("0", "1")]
    ids, scores = mean_over_repeats(kept, data[1])
    label = dict(zip(kept, data[0], strict=True))
    n_mod = len([c for c in scores if c != "p_fused"])
    return np.array([label[pid] for pid in ids]), {model_name(c, n_mod): s for c, s in scores.items()}


def _reliability(rows: Sequence[Mapping[str, str]], labels: Mapping[str, int] | None) -> str:
    """Reliability diagram (HTML image) of the calibrated p_fused and the raw p_fused_raw of labelled
    predictions, with ECE and Brier score in the legend; "" when the table has no raw column or labels."""
    from DMIFLib.evaluation.plots import _png
    from DMIFLib.stats.calibration import brier_score, expected_calibration_error, reliability_curve, reliability_figure

    if not rows or "p_fused_raw" not in rows[0]:
        return ""
    if "label" in rows[0]:
        kept = [(r, int(r["label"])) for r in rows if r["label"] in ("0", "1")]
    else:
        kept = [(r, int(labels[r["patient_id"]])) for r in rows if labels and r["patient_id"] in labels]
    if len(kept) < 2:
        return ""
    y = np.array([label for _, label in kept])
    curves = {}
    for column, name in (("p_fused", "calibrated p_fused"), ("p_fused_raw", "raw p_fused")):
        p = np.array([float(r[column]) for r, _ in kept])
        ece, brier = expected_calibration_error(p, y), brier_score(p, y)
        curves[f"{name} (ECE {ece:.3f}, Brier {brier:.3f})"] = reliability_curve(p, y)
    figure = reliability_figure(curves, title=f"Reliability, patient level (n = {len(y)})")
    return "<h2>Calibration</h2>" + _img(_png(figure), "reliability diagram") + (
        '<p class="note">10 equal-width bins; ECE = Σ (n_bin/N)·|fraction positive − mean p|. The calibration was '
        "fitted on validation patients only (docs/trust.md); few patients per bin make both curves noisy.</p>")


def recorded_cohort(run_dir: Path) -> Path | None:
    """The cohort CSV that ``dmif train`` recorded in ``run_dir/run.json``, when that file still exists."""
    try:
        recorded = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("cohort")
    except (OSError, ValueError, AttributeError):
        return None
    path = Path(recorded) if isinstance(recorded, str) and recorded else None
    return path if path is not None and path.is_file() else None


def build_report(run_dir: str | os.PathLike, out_path: str | os.PathLike | None = None,
                 cohort_csv: str | os.PathLike | None = None) -> Path:
    """Write ``report.html`` (default: ``run_dir/report.html``) for ``run_dir``; returns its path.

    ``cohort_csv`` supplies labels for a ``predictions.tsv`` that has none (ROC curves then appear); by default
    the cohort a ``dmif train`` folder records in its run.json (:func:`recorded_cohort`).
    Raises FileNotFoundError when ``run_dir`` is not a folder.
    """
    from DMIFLib.evaluation.plots import history_figure, roc_figure, tsne_figure

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run folder not found")
    out_path = Path(out_path) if out_path else run_dir / "report.html"
    labels = None
    cohort_csv = cohort_csv or recorded_cohort(run_dir)
    if cohort_csv:
        from DMIFLib.cohort import read_cohort

        labels = {c.patient_id: c.label for c in read_cohort(cohort_csv) if c.label is not None}
    parts: list[str] = []
    missing: list[str] = []

    def tsv(name: str) -> list[dict[str, str]]:
        path = run_dir / name
        if not path.is_file():
            missing.append(name)
            return []
        return read_tsv(path)

    # metric tables
    section = [html_table(rows, caption) for name, caption in TABLE_FILES if (rows := tsv(name))]
    parts.append("<h2>Metrics</h2>" + ("".join(section) or '<p class="note">no metric tables in this folder</p>'))
    if section:
        parts.append('<p class="note">level = patient: one probability per patient (mean over its slices); '
                     "level = slice: every slice counted, CIs from a bootstrap that resamples whole patients. "
                     "PPV = TP/(TP+FP), NPV = TN/(TN+FN). The cut-off was chosen on the training data.</p>")
    if (ci := tsv("metrics_ci.tsv")):
        parts.append(html_table(ci_pivot(ci), "Every metric with its 95% CI (percentile bootstrap resampling whole "
                                "patients; value [low, high])"))
    # ROC curves
    figures = []
    for name, level in (("scores_patient.tsv", "patient"), ("scores_slice.tsv", "slice")):
        if (data := _labelled_scores(tsv(name), None)) is not None:
            title = f"ROC, {level} level, test set" + ("" if level == "patient" else " (CIs in the tables)")
            figures.append(_img(roc_figure(*data, title=title, delong_ci=level == "patient"), f"ROC {level}"))
    if (oof := _oof_scores(run_dir)) is not None:
        figures.append(_img(roc_figure(*oof, title="ROC, patient level, out-of-fold (mean over repeats)"),
                            "ROC out-of-fold"))
    predictions = tsv("predictions.tsv")
    if not figures:  # a train / predict folder: probabilities per modality and fused, labels from the cohort
        from DMIFLib.evaluation.evaluate import model_name

        slice_rows = tsv("slice_predictions.tsv")
        labelled_by_cohort = False
        for rows, level in ((predictions, "patient"), (slice_rows, "slice")):
            if (data := _labelled_scores(rows, labels)) is not None:
                labelled_by_cohort |= "label" not in rows[0]
                n_mod = len([c for c in data[1] if c.startswith("p_") and c != "p_fused"])
                named = {model_name(c, n_mod) if c.startswith("p_") else c: s for c, s in data[1].items()}
                title = f"ROC, {level} level ({'predictions' if level == 'patient' else 'slice_predictions'}.tsv)"
                figures.append(_img(roc_figure(data[0], named, title=title, delong_ci=level == "patient"),
                                    f"ROC {level}"))
        if labelled_by_cohort:
            figures.append(f'<p class="note">labels from {html.escape(str(cohort_csv))}</p>')
    parts.append("<h2>ROC curves</h2>" + ("".join(figures) or '<p class="note">no labelled scores in this folder '
                                          "(pass --cohort to label predictions.tsv)</p>"))
    parts.append(_reliability(predictions, labels))
    # training curves
    history = tsv("history.tsv")
    if history:
        parts.append("<h2>Training curves</h2>" + _img(history_figure(history), "training curves"))
    # t-SNE
    tsne_rows = tsv("tsne.tsv")
    if tsne_rows:
        embeddings = {}
        for model in dict.fromkeys(r["model"] for r in tsne_rows):
            part = [r for r in tsne_rows if r["model"] == model]
            embeddings[model] = (np.array([[float(r["x"]), float(r["y"])] for r in part]),
                                 np.array([int(r["label"]) for r in part]))
        parts.append("<h2>Feature t-SNE (test set)</h2>" + _img(tsne_figure(embeddings), "t-SNE"))
    # per-patient predictions
    if predictions:
        parts.append("<h2>Per-patient predictions</h2>" + html_table(predictions, "predictions.tsv"))
    elif (scores := tsv("scores_patient.tsv")):
        parts.append("<h2>Per-patient predictions</h2>" + html_table(scores, "test-set probabilities per model"))
    # provenance
    provenance = []
    run_json = run_dir / "run.json"
    if run_json.is_file():
        provenance.append(f"<h3>run.json</h3><pre>{html.escape(run_json.read_text(encoding='utf-8'))}</pre>")
    if (run_dir / "model.pt").is_file():
        meta = _model_metadata(run_dir / "model.pt")
        provenance.append("<h3>model.pt metadata</h3><pre>"
                          f"{html.escape(json.dumps(meta, indent=1, default=str))}</pre>")
    versions = [{"package": k, "version": v} for k, v in _versions().items()]
    provenance.append(html_table(versions, "Software versions when this report was made"))
    parts.append("<h2>Provenance</h2>" + "".join(provenance))
    if missing:
        parts.append(f'<p class="note">Not in this folder (sections skipped): {html.escape(", ".join(missing))}</p>')
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>DMIF report: '
            f"{html.escape(run_dir.name)}</title><style>{_CSS}</style></head><body>"
            f"<h1>DMIF-Net report: {html.escape(run_dir.name)}</h1>"
            f'<p class="note">Folder {html.escape(str(run_dir.resolve()))} · generated {now} · research use only, '
            "not for clinical decisions.</p>" + "".join(parts) + "</body></html>")
    atomic_write_text(out_path, page)
    return out_path
