"""`dmif report`: one self-contained HTML page (tables, ROC, training curves, t-SNE, provenance) for a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write a self-contained HTML report for a `dmif train` / `dmif compare` / `dmif evaluate` output folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="run_dir", required=True, help="the run's output folder")
    parser.add_argument("--out", default=None, help="HTML file to write (default: RUN/report.html)")
    parser.add_argument("--cohort", default=None, help="cohort CSV with labels, for ROC curves of predictions.tsv "
                        "(default: the cohort a `dmif train` folder recorded in its run.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report file (refused otherwise)")


def run(args: argparse.Namespace) -> int:
    from DMIFLib.cohort import CohortError
    from DMIFLib.evaluation.report import build_report
    from DMIFLib.run_folder import add_output_file

    out = Path(args.out) if args.out else Path(args.run_dir) / "report.html"
    try:
        if not Path(args.run_dir).is_dir():
            raise FileNotFoundError(f"{args.run_dir}: run folder not found")
        with add_output_file(out, overwrite=args.overwrite):
            path = build_report(args.run_dir, out, cohort_csv=args.cohort)
    except (CohortError, ValueError, OSError) as error:
        print(f"dmif report: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
