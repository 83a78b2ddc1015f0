"""Headless batch prediction over a cohort CSV: ``predictions.tsv`` (the ``dmif predict`` columns) plus a
``.mrml`` scene holding the same results as table nodes, one subject per patient; with ``--saliency`` the saliency
volumes (and each case's reference volume and box) under the patient, with ``--report`` one case report each.

Runs inside Slicer (``Slicer --no-main-window --python-script DMIFBatch.py -- ARGS``) and under plain Python with
the PyPI package slicer-core (``python DMIFBatch.py ARGS``): same code, same outputs. DMIFBatch.py checks (and,
inside Slicer, installs) the dependencies before it imports this module, and turns any failure into one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import slicer

from DMIFLib.casereport.case_outputs import CaseOutputs
from DMIFLib.cohort import MODALITIES
from DMIFLib.mrml import tables
from DMIFLib.mrml.case_scene import add_case_nodes
from DMIFLib.mrml.predict import model_info, result_columns
from DMIFLib.mrml.results import read_table_file
from DMIFLib.mrml.scene import in_slicer_application, new_scene, save_scene

COHORT_TABLE_NAME = "DMIF predictions"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="DMIFBatch.py",
        description="DMIF-Net batch prediction over a cohort CSV -> predictions.tsv and a Slicer scene "
                    "(research use only).")
    parser.add_argument("cohort", type=Path,
                        help="cohort.csv (patient_id, one column per modality the model needs, roi, ...)")
    parser.add_argument("model", type=Path, help="DMIF model file (.pt) from DMIF Train or 'dmif train'")
    parser.add_argument("out", type=Path, help="output folder (predictions.tsv, the scene and its tables)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the network runs (default: auto)")
    parser.add_argument("--scene-name", default="DMIF_predictions.mrml", help="scene file name in OUT")
    parser.add_argument("--saliency", nargs="?", const="gradcam", default=None,
                        choices=("gradcam", "occlusion", "integrated_gradients"),
                        help="saliency/<patient_id>_<modality>.nii.gz per case (as dmif predict --saliency), also "
                             "as volumes under each patient in the scene")
    parser.add_argument("--report", action="store_true",
                        help="reports/<patient_id>.html and .pdf per case (as dmif predict --report)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the scene files of an earlier run in OUT (refused otherwise)")
    parser.add_argument("--install-dependencies", action="store_true",
                        help="inside Slicer: install missing packages first (PyTorch through the PyTorch extension, "
                             "the CPU build with --device cpu); without it a missing package is an error")
    return parser


def predictions_to_scene(predictions_tsv: Path, scene: slicer.vtkMRMLScene, model_info: dict | None = None):
    """Table nodes for a ``predictions.tsv``: the cohort table (same columns) and one results table per patient
    (the columns of DMIF Predict's results table, with ``model_info``'s marker/model_name/model_version), placed
    under the patient's subject item. Returns (cohort table, {patient_id: table})."""
    columns, typed = read_table_file(predictions_tsv)
    if "patient_id" not in columns:
        raise ValueError(f"{predictions_tsv}: no patient_id column")
    cohort = tables.table_from_rows(scene, COHORT_TABLE_NAME, typed, columns)
    per_patient = {}
    modalities = [c[2:] for c in columns if c.startswith("p_") and c[2:] in MODALITIES]
    patient_columns = [c for c in result_columns(modalities) if c in columns or c in (model_info or {})]
    for row in typed:
        patient = str(row["patient_id"])
        table = tables.table_from_rows(scene, f"{patient} DMIF results", [{**row, **(model_info or {})}],
                                       patient_columns)
        tables.place_under(scene, tables.patient_item(scene, patient), [table])
        per_patient[patient] = table
    return cohort, per_patient


def _progress(event: dict) -> None:
    message = event.get("message") or " ".join(f"{k}={v}" for k, v in event.items())
    print(f"DMIFBatch: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> Path:
    """Predict, then write the scene; returns the scene path."""
    from DMIFLib.cohort import read_cohort
    from DMIFLib.inference import predict_cohort
    from DMIFLib.model_file import load_model

    read_cohort(args.cohort)  # a bad table fails here, before the model is loaded
    scene_path = Path(args.out) / args.scene_name
    if scene_path.exists() and not args.overwrite:
        raise FileExistsError(f"{scene_path}: already exists (an earlier run?); use --overwrite or another OUT")
    model = load_model(args.model)
    info = model_info(model)
    read_cohort(args.cohort, require_modalities=info["modalities"])  # the images of the model's modalities
    about_model = {k: info[k] for k in ("marker", "model_name", "model_version")}
    extras = None
    if args.saliency or args.report:
        extras = CaseOutputs(args.out, saliency=args.saliency, report=args.report,
                             cohort_dir=Path(args.cohort).resolve().parent)
    predictions = Path(predict_cohort(args.cohort, args.model, args.out, device=args.device, progress=_progress,
                                      after_case=extras))
    scene = slicer.mrmlScene if in_slicer_application() else new_scene()
    predictions_to_scene(predictions, scene, about_model)
    if args.saliency:
        cases = {c.patient_id: c for c in read_cohort(args.cohort)}
        for patient, paths in extras.written.items():
            saliency = {m: p for m, p in paths.items() if m in info["modalities"]}
            add_case_nodes(scene, cases[patient].only(info["modalities"]), saliency, args.saliency,
                           model.settings.margin_mm)
    scene_path = save_scene(scene, scene_path, overwrite=args.overwrite)
    _progress({"message": f"wrote {predictions} and {scene_path}"})
    return scene_path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the batch; 0 on success, 2 with one line on stderr for bad input (cohort, images, model file,
    output folder), 1 with one line for any other failure."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # Slicer --python-script passes what follows '--' through
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    from DMIFLib.failures import FAILURES_NAME, read_failures
    from DMIFLib.run_folder import OutputFolderError, run_folder
    from DMIFLib.training.errors import user_errors

    try:
        with run_folder(args.out, "batch", overwrite=args.overwrite, protect=(args.cohort, args.model)):
            run(args)
    # the user's input (cohort, model, files; an output folder in use or holding another run): exit 2, as `dmif`
    except (OutputFolderError, *user_errors(), OSError) as error:
        print(f"DMIFBatch: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # RuntimeError, torch errors, ...: still one line
        print(f"DMIFBatch: error: {error or type(error).__name__}", file=sys.stderr)
        return 1
    failures = read_failures(args.out / FAILURES_NAME)
    if failures:  # the other patients' results are written
        print(f"DMIFBatch: {len(failures)} case(s) failed; see {args.out / FAILURES_NAME}", file=sys.stderr)
        return 1
    return 0
