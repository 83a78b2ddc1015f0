"""`dmif evaluate`: Table 2/3-style metric tables for a predictions table against the cohort's labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "metrics (acc, sens, spec, PPV, NPV, AUC with 95% CI, DeLong) of predictions.tsv against cohort labels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions", required=True, help="predictions.tsv written by `dmif predict`")
    parser.add_argument("--cohort", required=True, help="cohort CSV with a 0/1 'label' column")
    parser.add_argument("--out", required=True, help="output folder for the TSV tables")
    parser.add_argument("--cutoff", type=float, default=None,
                        help="one decision cut-off for every column and level (default: the training cut-offs)")
    parser.add_argument("--model", default=None,
                        help="model.pt whose training cut-offs to use (default: run.json next to the predictions)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for the CIs (default 1000)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run in --out (refused otherwise); its other outputs are removed")


def run(args: argparse.Namespace) -> int:
    from DMIFLib.cohort import CohortError
    from DMIFLib.evaluation.evaluate import evaluate_predictions
    from DMIFLib.evaluation.tables import read_tsv
    from DMIFLib.run_folder import run_folder

    predictions = Path(args.predictions)
    inputs = (predictions, predictions.with_name("slice_predictions.tsv"), predictions.with_name("run.json"),
              args.cohort, *([args.model] if args.model else []))
    try:
        with run_folder(args.out, "evaluate", overwrite=args.overwrite, protect=inputs):
            paths = evaluate_predictions(args.predictions, args.cohort, args.out, cutoff=args.cutoff,
                                         n_boot=args.n_boot, model_path=args.model)
    except (CohortError, ValueError, OSError) as error:
        print(f"dmif evaluate: {error}", file=sys.stderr)
        return 2
    for row in read_tsv(paths["table2"]):
        print(f"{row['model']:<26} {row['level']:<8} n={row['n']:<5} acc={float(row['accuracy']):.4f} "
              f"sens={float(row['sensitivity']):.4f} spec={float(row['specificity']):.4f} "
              f"AUC={float(row['auc']):.4f} [{float(row['auc_ci_low']):.4f}, {float(row['auc_ci_high']):.4f}] "
              f"({row['ci_method']}) cut-off={float(row['cutoff']):.3f}")
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0
