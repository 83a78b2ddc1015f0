"""Metric tables in the layout of the paper's Table 2 (one row per model and level) and Table 3 (DeLong tests).

Every row says its ``level``: ``patient`` (one score per patient) or ``slice`` (one score per slice). AUC CIs
are DeLong at patient level; at slice level DeLong would treat a patient's correlated slices as independent
cases, so the CI there is a patient-clustered bootstrap (``ci_method`` names which).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from DMIFLib.atomic import atomic_write_text
from DMIFLib.stats import METRIC_NAMES, auc_ci, binary_metrics, bonferroni, cluster_bootstrap_ci, delong_test

LEVELS = ("patient", "slice")

TABLE2_COLUMNS = ("model", "level", "n", "n_pos", "n_neg", "accuracy", "sensitivity", "specificity", "ppv", "npv",
                  "auc", "cutoff", "auc_ci_low", "auc_ci_high", "ci_method", "ece", "brier")
"""Paper Table 2: acc, sens, spec, PPV, NPV, AUC, cut-off, 95% CI — plus the level, counts and CI method, and the
calibration measures ECE (10 equal-width bins) and Brier score (DMIFLib.stats.calibration)."""

CI_COLUMNS = ("model", "level", "metric", "value", "ci_low", "ci_high", "ci_method", "n_boot")
"""Long table of 95% CIs for every metric (patient-clustered bootstrap)."""

DELONG_COLUMNS = ("model", "reference", "level", "n", "auc", "auc_reference", "auc_diff", "diff_ci_low",
                  "diff_ci_high", "z", "p", "p_bonferroni", "n_comparisons")
"""Each model's AUC against the reference model (DMIF-Net), paired DeLong test."""


def format_value(value) -> str:
    """TSV cell text: floats with 10 significant digits, NaN as ``nan``, None as empty."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{float(value):.10g}"
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)


def write_tsv(path: str | os.PathLike, rows: Iterable[Mapping], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts) as a tab-separated table with a header, atomically; returns the path."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_value(row.get(c)) for c in columns])
    atomic_write_text(path, out.getvalue())
    return Path(path)


def read_tsv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a tab-separated table with a header into a list of dicts (cells as text)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [dict(row) for row in csv.DictReader(handle, delimiter="\t")]


def calibration_measures(y_true, score) -> dict[str, float]:
    """``{"ece", "brier"}`` of probabilities ``score`` (n,) against 0/1 ``y_true`` (n,); NaN when ``score`` is not
    a probability everywhere."""
    from DMIFLib.stats.calibration import brier_score, expected_calibration_error

    try:
        return {"ece": expected_calibration_error(score, y_true), "brier": brier_score(score, y_true)}
    except ValueError:
        return {"ece": math.nan, "brier": math.nan}


def metric_rows(model: str, level: str, y_true, score, cutoff: float, groups=None, n_boot: int = 1000,
                seed: int = 0) -> tuple[dict, list[dict]]:
    """One Table 2 row and its CI rows for ``score`` (n,) against 0/1 ``y_true`` (n,) at ``cutoff``.

    ``groups`` (n,) gives each row's patient (needed at slice level; at patient level each row is its own
    patient). AUC CI: DeLong at patient level, patient-clustered bootstrap at slice level.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    y = np.asarray(y_true).astype(int)
    s = np.asarray(score, dtype=float)
    g = np.arange(len(y)) if groups is None else np.asarray(groups)
    m = binary_metrics(y, s, cutoff)
    row = {"model": model, "level": level, **{k: m[k] for k in ("n", "n_pos", "n_neg", *METRIC_NAMES, "cutoff")},
           **calibration_measures(y, s)}
    enough = m["n_pos"] >= 2 and m["n_neg"] >= 2
    boot = cluster_bootstrap_ci(y, s, g, cutoff, n_boot=n_boot, seed=seed) if enough and n_boot > 0 else {}
    if level == "patient" and enough:
        _, low, high = auc_ci(y, s)
        row.update(auc_ci_low=low, auc_ci_high=high, ci_method="DeLong")
    elif boot:
        row.update(auc_ci_low=boot["auc"][0], auc_ci_high=boot["auc"][1], ci_method="patient bootstrap")
    else:
        row.update(auc_ci_low=float("nan"), auc_ci_high=float("nan"), ci_method="too few cases")
    ci_rows = [{"model": model, "level": level, "metric": name, "value": m[name], "ci_low": boot[name][0],
                "ci_high": boot[name][1], "ci_method": "patient bootstrap (percentile)", "n_boot": n_boot}
               for name in METRIC_NAMES if name in boot]
    return row, ci_rows


def delong_rows(y_true, scores: Mapping[str, np.ndarray], reference: str, level: str = "patient") -> list[dict]:
    """Table 3 rows: paired DeLong test of every model in ``scores`` against ``reference`` on the same cases.

    p-values are Bonferroni-corrected over the number of comparisons (models other than the reference).
    Only meaningful at patient level (independent cases); the level is written in each row.
    """
    y = np.asarray(y_true).astype(int)
    ref = np.asarray(scores[reference], dtype=float)
    rows = []
    for name, score in scores.items():
        if name == reference:
            continue
        z, p, low, high = delong_test(y, score, ref)
        rows.append({"model": name, "reference": reference, "level": level, "n": len(y),
                     "auc": auc_ci(y, score)[0], "auc_reference": auc_ci(y, ref)[0], "z": z, "p": p,
                     "diff_ci_low": low, "diff_ci_high": high})
    corrected = bonferroni([r["p"] for r in rows]) if rows else []
    for r, pc in zip(rows, corrected, strict=True):
        r.update(auc_diff=r["auc"] - r["auc_reference"], p_bonferroni=float(pc), n_comparisons=len(rows))
    return rows
