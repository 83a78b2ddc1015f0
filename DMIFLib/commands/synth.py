"""``dmif synth``: write a synthetic cohort (NIfTI + cohort.csv)."""

from __future__ import annotations

import argparse
import sys

HELP = ("Write a synthetic phantom cohort (T1C and T2W, or the --modalities asked for; tumour label, texture-coded "
        "0/1 label) and cohort.csv.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (gets cohort.csv and one folder per patient)")
    parser.add_argument("--patients", type=int, default=60, help="number of patients (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical files")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="shrink head, tumour and field of view (spacings unchanged), e.g. 0.5 for quick tests")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run in --out (refused otherwise); its other outputs are removed")
    parser.add_argument("--modalities", default="t1c,t2w",
                        help="comma-separated modalities to simulate, of t1c, t2w, flair, t1 (default t1c,t2w)")


def run(args: argparse.Namespace) -> int:
    from DMIFLib.run_folder import run_folder
    from DMIFLib.synth import synthesize_cohort

    def progress(event: dict) -> None:
        print(f"synth: {event['done']}/{event['total']} {event['patient_id']}", file=sys.stderr, flush=True)

    try:
        modalities = tuple(m.strip() for m in args.modalities.split(",") if m.strip())
        key = {"patients": args.patients, "seed": args.seed, "scale": args.scale, "modalities": list(modalities)}
        with run_folder(args.out, "synth", overwrite=args.overwrite, resume=True, key=key):
            csv_path = synthesize_cohort(args.out, args.patients, args.seed, workers=args.workers,
                                         progress=progress, scale=args.scale, overwrite=args.overwrite,
                                         modalities=modalities)
    except (FileExistsError, ValueError) as error:
        print(f"dmif synth: {error}", file=sys.stderr)
        return 2
    print(csv_path)
    return 0
