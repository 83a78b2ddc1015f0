"""`dmif evaluate`: metric tables for a predictions table against the cohort's labels.

Reads ``predictions.tsv`` (patient_id, p_<modality>..., p_fused, prediction, cutoff, n_slices; written by
``dmif predict``) and, when it lies next to it, ``slice_predictions.tsv`` (patient_id, slice_index,
p_<modality>..., p_fused) for slice-level rows. Writes, in ``out_dir``:

- ``table2_metrics.tsv``: the paper's Table 2 layout, one row per score column and level;
- ``metrics_ci.tsv``: 95% CIs of every metric (patient-clustered bootstrap);
- ``delong_tests.tsv``: paired DeLong tests (patient level) of each single-modality score against the fused one.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from DMIFLib.cohort import MODALITIES, CohortError, read_cohort
from DMIFLib.evaluation.tables import (
    CI_COLUMNS,
    DELONG_COLUMNS,
    TABLE2_COLUMNS,
    delong_rows,
    metric_rows,
    read_tsv,
    write_tsv,
)

SLICE_PREDICTIONS = "slice_predictions.tsv"


def score_columns(header) -> list[str]:
    """Score columns present in a predictions table: p_<modality> in MODALITIES order, then p_fused."""
    return [f"p_{m}" for m in MODALITIES if f"p_{m}" in header] + (["p_fused"] if "p_fused" in header else [])


def model_name(column: str, n_modalities: int, title: str = "DMIF-Net") -> str:
    """Row name for a score column of a ``title`` model (the method's title), e.g. ``p_t1c`` -> ``T1C DMIF-Net``,
    ``p_fused`` -> ``DMIF-Net (multimodal)``."""
    if column == "p_fused":
        return f"{title} (multimodal)" if n_modalities > 1 else title
    return f"{column[2:].upper()} {title}"


def method_title(method: str) -> str:
    """The title of the method named in a model file or run.json (``"dmif"`` -> ``"DMIF-Net"``); the name itself
    for a method this DMIFLib does not know."""
    from DMIFLib.methods.registry import UnknownMethodError, get_method

    try:
        return get_method(method).title
    except UnknownMethodError:
        return method


def _read_scores(path: Path, rows: list[dict[str, str]], labels: dict[str, int],
                 columns: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    ids, scores = [], {c: [] for c in columns}
    for line, row in enumerate(rows, start=2):
        pid = row.get("patient_id", "")
        if pid not in labels:
            raise CohortError(f"{path}, line {line}: patient '{pid}' has no label in the cohort table")
        ids.append(pid)
        for c in columns:
            try:
                value = float(row[c])
            except (TypeError, ValueError):
                raise CohortError(f"{path}, line {line} ({pid}): '{c}' = {row.get(c)!r} is not a number") from None
            if not math.isfinite(value):
                raise CohortError(f"{path}, line {line} ({pid}): '{c}' is not finite")
            scores[c].append(value)
    return ids, {c: np.asarray(v) for c, v in scores.items()}


def mean_over_repeats(ids: list[str], scores: dict[str, np.ndarray]) -> tuple[list[str], dict[str, np.ndarray]]:
    """One score per patient: the mean of its rows (a cross-validation's out-of-fold predictions of R repeats).

    Returns the patients sorted and each column's (n_patients,) means."""
    unique = sorted(set(ids))
    index = {pid: i for i, pid in enumerate(unique)}
    rows = np.array([index[pid] for pid in ids])
    counts = np.bincount(rows, minlength=len(unique))
    return unique, {c: np.bincount(rows, weights=s, minlength=len(unique)) / counts for c, s in scores.items()}


def training_record(predictions_tsv: Path, model_path: str | os.PathLike | None = None) -> tuple[dict[str, float], str]:
    """The training cut-offs by ``"<level>/<model>"`` (e.g. ``"slice/t1c"``, ``"patient/fused"``) and the method.

    Read from the model file (``info["cutoffs"]``, its method) when ``model_path`` is given, else from the
    ``run.json`` that ``dmif train`` writes next to predictions.tsv; ``({}, "dmif")`` when neither is there.
    """
    if model_path is not None:
        from DMIFLib.model_file import load_model

        model = load_model(model_path)
        return {k: float(v) for k, v in model.info.get("cutoffs", {}).items()}, model.method
    run_json = predictions_tsv.parent / "run.json"
    if run_json.is_file():
        try:
            run = json.loads(run_json.read_text(encoding="utf-8"))
            cutoffs = run.get("cutoffs") or {}
        except (json.JSONDecodeError, AttributeError) as error:
            raise CohortError(f"{run_json}: not a run description ({error})") from None
        return {k: float(v) for k, v in cutoffs.items()}, str(run.get("method", "dmif"))
    return {}, "dmif"


def evaluate_predictions(predictions_tsv: str | os.PathLike, cohort_csv: str | os.PathLike,
                         out_dir: str | os.PathLike, cutoff: float | None = None, n_boot: int = 1000,
                         model_path: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write the metric tables for ``predictions_tsv`` against the labels in ``cohort_csv``.

    ``cutoff``: one decision threshold for every probability column and level (positive if p >= cutoff).
    By default each level and column gets its own cut-off chosen on the training data (see
    :func:`training_record`), falling back to the table's ``cutoff`` column (the model's patient-level cut-off
    on p_fused) — never one tuned on these cases. Returns ``{"table2": path, "ci": path, "delong": path}``
    (``delong`` only with two or more score columns).
    """
    predictions_tsv, out_dir = Path(predictions_tsv), Path(out_dir)
    if not predictions_tsv.is_file():
        raise CohortError(f"{predictions_tsv}: predictions table not found")
    labels = {c.patient_id: c.label for c in read_cohort(cohort_csv) if c.label is not None}
    rows = read_tsv(predictions_tsv)
    if not rows:
        raise CohortError(f"{predictions_tsv}: no rows")
    columns = score_columns(rows[0])
    if not columns:
        raise CohortError(f"{predictions_tsv}: no probability columns (p_t1c, p_t2w, p_flair, p_fused)")
    recorded, method = training_record(predictions_tsv, model_path)
    trained = {} if cutoff is not None else recorded
    title = method_title(method)
    if cutoff is None:
        values = {row.get("cutoff") or "" for row in rows}
        if len(values) != 1 or "" in values:
            raise CohortError(f"{predictions_tsv}: expected one model cut-off in the 'cutoff' column, found "
                              f"{sorted(values)}; pass --cutoff")
        cutoff = float(values.pop())

    def cut(level: str, column: str) -> float:
        return trained.get(f"{level}/{column.removeprefix('p_')}", cutoff)

    n_mod = len([c for c in columns if c != "p_fused"])
    ids, scores = _read_scores(predictions_tsv, rows, labels, columns)
    if "repeat" in rows[0]:  # oof_predictions.tsv of `dmif train --cv`: a patient's score is its repeats' mean
        ids, scores = mean_over_repeats(ids, scores)
    y = np.array([labels[pid] for pid in ids])
    # a single-modality model's fused score is its modality's score: keep one row
    if "p_fused" in scores:
        columns = [c for c in columns if c == "p_fused" or not np.array_equal(scores[c], scores["p_fused"])]
    table2, ci = [], []
    for c in columns:
        row, ci_rows = metric_rows(model_name(c, n_mod, title), "patient", y, scores[c], cut("patient", c),
                                   n_boot=n_boot)
        table2.append(row)
        ci += ci_rows
    slice_path = predictions_tsv.parent / SLICE_PREDICTIONS
    slice_rows = read_tsv(slice_path) if slice_path.is_file() else []
    if slice_rows:  # slice-level rows; the patients' labels and columns as above
        slice_ids, slice_scores = _read_scores(slice_path, slice_rows, labels,
                                               [c for c in columns if c in slice_rows[0]])
        y_slice = np.array([labels[pid] for pid in slice_ids])
        for c, s in slice_scores.items():
            row, ci_rows = metric_rows(model_name(c, n_mod, title), "slice", y_slice, s, cut("slice", c),
                                       groups=slice_ids, n_boot=n_boot)
            table2.append(row)
            ci += ci_rows
    out = {"table2": write_tsv(out_dir / "table2_metrics.tsv", table2, TABLE2_COLUMNS),
           "ci": write_tsv(out_dir / "metrics_ci.tsv", ci, CI_COLUMNS)}
    if len(columns) > 1 and "p_fused" in columns and min(y.sum(), len(y) - y.sum()) >= 2:
        rows = delong_rows(y, {model_name(c, n_mod, title): scores[c] for c in columns},
                           model_name("p_fused", n_mod, title))
        out["delong"] = write_tsv(out_dir / "delong_tests.tsv", rows, DELONG_COLUMNS)
    return out
