"""`dmif report`: one self-contained HTML page (tables, ROC, training curves, t-SNE, provenance) for a run."""

from __future__ import annotations

import argparse
import sys

HELP = "write a self-contained HTML report for a `dmif train` / `dmif compare` / `dmif evaluate` output folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="run_dir", required=True, help="the run's output folder")
    parser.add_argument("--out", default=None, help="HTML file to write (default: RUN/report.html)")
    parser.add_argument("--cohort", default=None, help="cohort CSV with labels, for ROC curves of predictions.tsv "
                        "(default: the cohort a `dmif train` folder recorded in its run.json)")


def run(args: argparse.Namespace) -> int:
    from DMIFLib.cohort import CohortError
    from DMIFLib.evaluation.report import build_report

    try:
        path = build_report(args.run_dir, args.out, cohort_csv=args.cohort)
    except (CohortError, ValueError, OSError) as error:
        print(f"dmif report: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
