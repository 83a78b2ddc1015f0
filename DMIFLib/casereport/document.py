"""A case report as a self-contained HTML page (PNG images inlined as base64) and as a PDF (matplotlib's
PdfPages: a text page, the saliency overlay, the QA images), written atomically."""

from __future__ import annotations

import base64
import datetime
import html
import os
from pathlib import Path

from DMIFLib import __version__
from DMIFLib.atomic import atomic_path, atomic_write_text
from DMIFLib.casereport.content import METHOD_NOTES, RESEARCH_USE, CaseReport
from DMIFLib.casereport.figures import image_figure, overlay_figure, png_bytes, probability_figure

REPORTS_DIR = "reports"

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:20px auto;max-width:1100px;color:#222}
h1{font-size:21px;margin-bottom:4px}h2{font-size:17px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:24px}
.ruo{background:#fbeaea;border:1px solid #d99;color:#822;padding:6px 10px;font-weight:600}
.big{font-size:24px;font-weight:700}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee}.note{color:#555;font-size:12px}li.warn{color:#a33}
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(pairs: dict[str, str]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs.items())
    return f"<table>{rows}</table>"


def _summary(report: CaseReport) -> dict[str, str]:
    """The prediction as label -> text (the same lines in the HTML table and on the PDF's first page)."""
    prediction = report.row.get("prediction", "")
    cutoff = report.number("cutoff")
    verdict = {"1": f"{report.marker} predicted present", "0": f"{report.marker} predicted absent"}.get(
        str(prediction), "–")
    out = {"P(" + report.marker + ")": report.probability_text(), "prediction": verdict
           + (f" (cut-off {cutoff:.2f})" if cutoff is not None else "")}
    for column, value in report.row.items():
        if column.startswith("p_") and column not in ("p_fused", "p_fused_low", "p_fused_high"):
            out[column] = value
    out["slices"] = str(report.row.get("n_slices", "–"))
    out["calibration"] = report.calibration_note()
    out["interval"] = report.interval_note()
    return out


def html_page(report: CaseReport) -> str:
    """The report as one self-contained HTML page."""
    p, cutoff = report.number("p_fused"), report.number("cutoff")
    interval = report.interval
    parts = [f"<h1>DMIF case report: {html.escape(report.patient_id)}</h1>",
             f'<p class="ruo">{html.escape(RESEARCH_USE)}</p>',
             "<h2>Prediction</h2>", f'<p class="big">P({html.escape(report.marker)}) = '
             f"{html.escape(report.probability_text())}</p>"]
    if p is not None and cutoff is not None:
        figure = probability_figure(p, cutoff, *(interval or (None, None)), marker=report.marker)
        parts.append(_img(png_bytes(figure), "probability and interval"))
    parts.append(_table(_summary(report)))
    parts.append("<h2>Where the model looked</h2>")
    if report.saliency:
        figure = overlay_figure(report.reference, report.box, report.saliency, report.saliency_method or "",
                                report.reference_name)
        parts.append(_img(png_bytes(figure), "saliency overlay"))
        method = report.saliency_method or ""
        parts.append(f'<p class="note">Method {html.escape(method)}: {html.escape(METHOD_NOTES.get(method, ""))} '
                     "Maps are scaled to their largest absolute value; faint values are not drawn.</p>")
    else:
        parts.append('<p class="note">no saliency map was computed for this case</p>')
    items = "".join(f'<li class="warn">{html.escape(w)}</li>' for w in report.warnings) or "<li>none</li>"
    parts.append(f"<h2>Warnings</h2><ul>{items}</ul>")
    parts.append("<h2>Model provenance</h2>" + _table(dict(report.model)))
    parts.append("<h2>Preprocessing QA</h2>")
    parts.extend(f"<h3>{html.escape(title)}</h3>{_img(png, title)}" for title, png in report.qa_png.items())
    parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report.qa_notes) + "</ul>")
    made = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    parts.append(f'<p class="note">Written {made} by DMIFLib {__version__}. {html.escape(RESEARCH_USE)}</p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>DMIF case report {html.escape(report.patient_id)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _text_page(report: CaseReport):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.27, 11.69))
    lines = [(f"DMIF case report: {report.patient_id}", 15, "bold"), (RESEARCH_USE, 8, "bold"), ("", 8, "normal"),
             *((f"{k}: {v}", 9, "normal") for k, v in _summary(report).items()), ("", 8, "normal"),
             ("Warnings", 11, "bold"), *((f"- {w}", 8, "normal") for w in (report.warnings or ["none"])),
             ("", 8, "normal"), ("Model provenance", 11, "bold"),
             *((f"{k}: {v}", 8, "normal") for k, v in report.model.items()), ("", 8, "normal"),
             ("Preprocessing QA", 11, "bold"), *((f"- {n}", 8, "normal") for n in report.qa_notes)]
    y = 0.96
    for text, size, weight in lines:
        figure.text(0.06, y, text, fontsize=size, fontweight=weight, wrap=True, va="top")
        y -= 0.012 + size * 0.0022 * (1 + len(text) // 110)
    p, cutoff = report.number("p_fused"), report.number("cutoff")
    if p is not None and cutoff is not None:
        ax = figure.add_axes((0.1, 0.04, 0.8, 0.06))
        interval = report.interval
        if interval:
            ax.plot(interval, [0, 0], color="#444", linewidth=4)
        ax.plot([p], [0], "o", color="#c0392b", markersize=9)
        ax.axvline(cutoff, color="#555", linestyle="--")
        ax.set_xlim(0, 1)
        ax.set_yticks([])
        ax.set_xlabel(f"probability of {report.marker} (dot), interval (bar), cut-off (dashed)", fontsize=8)
    return figure


def write_pdf(report: CaseReport, path: str | os.PathLike) -> Path:
    """The report as a PDF (A4 pages): the text page, the saliency overlay, each QA image."""
    from matplotlib.backends.backend_pdf import PdfPages

    figures = [_text_page(report)]
    if report.saliency:
        figures.append(overlay_figure(report.reference, report.box, report.saliency, report.saliency_method or "",
                                      report.reference_name))
    figures.extend(image_figure(png, title) for title, png in report.qa_png.items())
    path = Path(path)
    with atomic_path(path) as tmp, PdfPages(tmp, metadata={"Title": f"DMIF case report {report.patient_id}",
                                                           "Creator": f"DMIFLib {__version__}"}) as pdf:
        for figure in figures:
            pdf.savefig(figure)
    return path


def write_case_report(report: CaseReport, folder: str | os.PathLike, pdf: bool = True) -> dict[str, Path]:
    """Write ``folder/<patient_id>.html`` (and ``.pdf``; the id made file-system safe); returns {"html": path,
    "pdf": path}. ``dmif predict --report`` passes ``OUT/reports`` (:data:`REPORTS_DIR`)."""
    from DMIFLib.preprocessing.cohort_runner import case_folder_name

    stem = Path(folder) / case_folder_name(report.patient_id)
    paths = {"html": stem.with_name(stem.name + ".html")}
    atomic_write_text(paths["html"], html_page(report))
    if pdf:
        paths["pdf"] = write_pdf(report, stem.with_name(stem.name + ".pdf"))
    return paths
