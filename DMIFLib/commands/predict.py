"""`dmif predict`: a trained model on every patient of a cohort -> predictions.tsv (+ slice_predictions.tsv)."""

from __future__ import annotations

import argparse
import sys

HELP = "predict the marker for every patient of a cohort with a trained model file -> predictions.tsv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cohort", required=True, help="cohort CSV (labels not needed)")
    parser.add_argument("--model", required=True, help="model file (.pt) written by `dmif train`")
    parser.add_argument("--out", required=True, help="output folder for predictions.tsv and slice_predictions.tsv")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--saliency", nargs="?", const="gradcam", default=None,
                        choices=("gradcam", "occlusion", "integrated_gradients"),
                        help="write saliency/<patient_id>_<modality>.nii.gz on the reference (T1C) grid; method "
                             "gradcam (default, fast, DF-Net branch only), occlusion or integrated_gradients "
                             "(whole net, minutes per case on a CPU); docs/trust.md")
    parser.add_argument("--report", action="store_true",
                        help="write reports/<patient_id>.html and .pdf per case (slices with the box and the "
                             "saliency overlay, probability, model provenance, preprocessing QA)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run in --out (refused otherwise); its other outputs are removed")


def print_summary(path) -> None:
    """One line per patient of predictions.tsv: 'P001: 0.78 (0.64–0.88) → positive (cut-off 0.45)' (+ warning)."""
    from DMIFLib.evaluation.tables import read_tsv
    from DMIFLib.trust.prediction import summary

    for row in read_tsv(path):
        print(f"{row['patient_id']}: " + summary(float(row["p_fused"]), float(row["p_fused_low"]),
                                                   float(row["p_fused_high"]), int(row["prediction"]),
                                                   float(row["cutoff"]), row["ood_warning"]))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from DMIFLib.failures import FAILURES_NAME, read_failures
    from DMIFLib.inference import predict_cohort
    from DMIFLib.run_folder import run_folder
    from DMIFLib.training import RunCancelledError
    from DMIFLib.training.errors import user_errors

    def report(event: dict) -> None:
        print(f"predict: {event['case']}/{event['cases']} {event['patient_id']}", file=sys.stderr, flush=True)

    extras = None
    if args.saliency or args.report:
        from DMIFLib.casereport.case_outputs import CaseOutputs

        extras = CaseOutputs(args.out, saliency=args.saliency, report=args.report,
                             cohort_dir=Path(args.cohort).resolve().parent)
    try:
        with run_folder(args.out, "predict", overwrite=args.overwrite, protect=(args.cohort, args.model)):
            path = predict_cohort(args.cohort, args.model, args.out, device=args.device, progress=report,
                                  after_case=extras)
    except user_errors() as error:
        print(f"dmif predict: error: {error}", file=sys.stderr)
        return 2
    except RunCancelledError as error:
        print(f"dmif predict: {error}", file=sys.stderr)
        return 130
    print(path.read_text(encoding="utf-8"), end="")
    print_summary(path)
    print(f"wrote {path}")
    for paths in (extras.written.values() if extras else ()):
        for written in paths.values():
            print(f"wrote {written}")
    failures = read_failures(path.parent / FAILURES_NAME)
    if failures:
        print(f"dmif predict: {len(failures)} case(s) failed; see {path.parent / FAILURES_NAME}", file=sys.stderr)
        return 1
    return 0
