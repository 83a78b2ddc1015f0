"""Headless batch prediction over a cohort CSV: ``predictions.tsv`` (the ``dmif predict`` columns) plus a
``.mrml`` scene holding the same results as table nodes, one subject per patient.

Runs inside Slicer (``Slicer --no-main-window --python-script DMIFBatch.py -- ARGS``) and under plain Python with
the PyPI package slicer-core (``python DMIFBatch.py ARGS``): same code, same outputs.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import slicer

from DMIFLib.mrml import tables
from DMIFLib.mrml.scene import in_slicer_application, new_scene, save_scene

COHORT_TABLE_NAME = "DMIF predictions"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="DMIFBatch.py",
        description="DMIF-Net batch prediction over a cohort CSV -> predictions.tsv and a Slicer scene "
                    "(research use only).")
    parser.add_argument("cohort", type=Path, help="cohort.csv (patient_id, t1c, t2w[, flair], roi, ...)")
    parser.add_argument("model", type=Path, help="DMIF model file (.pt) from DMIF Train or 'dmif train'")
    parser.add_argument("out", type=Path, help="output folder (predictions.tsv, the scene and its tables)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the network runs (default: auto)")
    parser.add_argument("--scene-name", default="DMIF_predictions.mrml", help="scene file name in OUT")
    return parser


def _read_tsv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        return list(reader.fieldnames or []), list(reader)


def _typed(value: str):
    """'0.25' -> 0.25, '1' -> 1, other text unchanged (so numeric columns become numeric table columns)."""
    for convert in (int, float):
        try:
            return convert(value)
        except (TypeError, ValueError):
            pass
    return value


def predictions_to_scene(predictions_tsv: Path, scene: slicer.vtkMRMLScene, model_info: dict | None = None):
    """Table nodes for a ``predictions.tsv``: the cohort table (same columns) and one results table per patient,
    placed under the patient's subject item. Returns (cohort table, {patient_id: table})."""
    columns, rows = _read_tsv(predictions_tsv)
    if "patient_id" not in columns:
        raise ValueError(f"{predictions_tsv}: no patient_id column")
    typed = [{c: _typed(row[c]) for c in columns} for row in rows]
    cohort = tables.table_from_rows(scene, COHORT_TABLE_NAME, typed, columns)
    per_patient = {}
    extra = {k: v for k, v in (model_info or {}).items() if k not in columns}
    for row in typed:
        patient = str(row["patient_id"])
        table = tables.table_from_rows(scene, f"{patient} DMIF results", [{**row, **extra}], [*columns, *extra])
        tables.place_under(scene, tables.patient_item(scene, patient), [table])
        per_patient[patient] = table
    return cohort, per_patient


def _progress(event: dict) -> None:
    message = event.get("message") or " ".join(f"{k}={v}" for k, v in event.items())
    print(f"DMIFBatch: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> Path:
    """Predict, then write the scene; returns the scene path."""
    from DMIFLib.inference import predict_cohort
    from DMIFLib.model_file import load_model

    model_info = load_model(args.model).table_info()
    predictions = Path(predict_cohort(args.cohort, args.model, args.out, device=args.device, progress=_progress))
    scene = slicer.mrmlScene if in_slicer_application() else new_scene()
    predictions_to_scene(predictions, scene, model_info)
    scene_path = save_scene(scene, Path(args.out) / args.scene_name)
    _progress({"message": f"wrote {predictions} and {scene_path}"})
    return scene_path


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # Slicer --python-script passes what follows '--' through
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"DMIFBatch: error: {error}", file=sys.stderr)
        return 1
    return 0
