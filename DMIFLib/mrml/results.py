"""Training results as MRML nodes: the metrics table (paper Table 2 columns), the training history with its plot,
and the ROC curve plot chart."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import slicer

from DMIFLib.mrml import tables

HISTORY_CURVES = ("loss", "val_loss", "val_auc")
"""History columns that are plotted when present."""


def _typed(value: str):
    for convert in (int, float):
        try:
            return convert(value)
        except (TypeError, ValueError):
            pass
    return value


def read_table_file(path: str | os.PathLike) -> tuple[list[str], list[dict]]:
    """A TSV (or CSV, by extension) with a header -> (columns, rows with numbers converted; identifiers such as
    ``patient_id`` stay text, so that '007' is not read as 7)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: results file not found")
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = list(reader.fieldnames or [])
        rows = [{c: row.get(c, "") if c.endswith("_id") else _typed(row.get(c, "")) for c in columns}
                for row in reader]
    return columns, rows


def table_from_file(scene: slicer.vtkMRMLScene, path: str | os.PathLike, name: str,
                    node: slicer.vtkMRMLTableNode | None = None) -> slicer.vtkMRMLTableNode:
    """A table node with the file's columns and rows (numeric columns numeric)."""
    columns, rows = read_table_file(path)
    return tables.table_from_rows(scene, name, rows, columns, node)


def history_nodes(scene: slicer.vtkMRMLScene, history_path: str | os.PathLike, name: str = "DMIF history",
                  table: slicer.vtkMRMLTableNode | None = None, chart: slicer.vtkMRMLPlotChartNode | None = None):
    """The per-epoch history table (plus a running ``step`` column across stages) and its loss/AUC chart."""
    columns, rows = read_table_file(history_path)
    if not rows:
        raise ValueError(f"{history_path}: empty training history")
    for step, row in enumerate(rows, start=1):
        row["step"] = step
    table = tables.table_from_rows(scene, name, rows, ["step", *columns], table)
    curves = [c for c in HISTORY_CURVES if c in columns and isinstance(rows[0][c], (int, float))]
    chart = tables.plot_chart(scene, f"{name} plot", table, "step", curves, "epoch (all stages)", "value", chart)
    return table, chart


def roc_nodes(scene: slicer.vtkMRMLScene, y_true: Sequence[int], score: Sequence[float], name: str = "DMIF ROC",
              table: slicer.vtkMRMLTableNode | None = None, chart: slicer.vtkMRMLPlotChartNode | None = None):
    """ROC curve of ``score`` against 0/1 ``y_true``: a table (fpr, tpr, threshold, chance) and a plot chart.

    Raises ValueError when ``y_true`` lacks one of the classes (no ROC curve exists then).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(y_true).astype(int)
    s = np.asarray(score, dtype=float)
    if len(np.unique(y)) != 2:
        raise ValueError(f"{name}: a ROC curve needs both classes among the test cases, got {sorted(set(y))}")
    fpr, tpr, thresholds = roc_curve(y, s)
    thresholds = np.where(np.isfinite(thresholds), thresholds, 1.0)
    table = tables.table_from_columns(scene, f"{name} table", {
        "fpr": fpr.tolist(), "tpr": tpr.tolist(), "threshold": thresholds.tolist(), "chance": fpr.tolist()}, table)
    auc = roc_auc_score(y, s)
    chart = tables.plot_chart(scene, name, table, "fpr", ["tpr", "chance"], "1 - specificity", "sensitivity", chart)
    chart.SetTitle(f"{name} (AUC {auc:.3f}, n = {len(y)})")
    chart.SetAttribute("DMIF.auc", f"{auc:.6f}")
    return table, chart
