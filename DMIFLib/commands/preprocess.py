"""`dmif preprocess`: register, N4, skull strip and z-score a cohort; write QA images and provenance per case."""

from __future__ import annotations

import argparse
import sys

HELP = "preprocess a cohort (registration to T1C, N4, skull stripping, z-score) into a folder with QA and provenance"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cohort", help="cohort.csv (patient_id, t1c, t2w[, flair], roi, ...)")
    source.add_argument("--tcia", metavar="DIR", help="a TCIA LGG-1p19qDeletion download (one folder per patient)")
    source.add_argument("--brats", metavar="DIR", help="BraTS-style case folders (<case>/<case>_t1ce.nii.gz, ...)")
    parser.add_argument("--labels", help="with --tcia/--brats: CSV of 1p/19q codes (Filename, 1p/19q) or 0/1")
    parser.add_argument("--adapt-only", action="store_true",
                        help="with --tcia/--brats: only write OUT/source_cohort.csv, do not preprocess")
    parser.add_argument("--out", required=True, help="output folder: cohort.csv, failures.tsv, cases/<patient>/")
    parser.add_argument("--workers", type=int, default=1, help="cases processed in parallel (default 1)")
    parser.add_argument("--settings", help="JSON file with PreprocessSettings fields to change")
    parser.add_argument("--no-register", action="store_true", help="skip the rigid registration to T1C")
    parser.add_argument("--no-n4", action="store_true", help="skip the N4 bias-field correction")
    parser.add_argument("--skull-strip", choices=("auto", "mask", "none"),
                        help="auto: the brain_mask column or the built-in fallback; mask: require the column; "
                             "none: keep the skull")
    parser.add_argument("--margin-mm", type=float, help="margin added around a label-derived box (mm)")
    parser.add_argument("--no-qa", action="store_true", help="do not write the QA PNGs")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run in --out (refused otherwise; the same inputs and settings "
                             "continue it, skipping finished cases)")


def _progress_bar(event: dict) -> None:
    done, total = event["case"], event["cases"]
    width = 30
    filled = int(width * done / max(total, 1))
    status = event["status"] + (f": {event['problem']}" if event.get("problem") else "")
    print(f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {event['patient_id']} {status}",
          file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from DMIFLib.preprocessing.settings import PreprocessSettings
    from DMIFLib.run_folder import OutputFolderError, run_folder

    try:
        values = PreprocessSettings().to_dict()
        if args.settings:
            values.update(json.loads(Path(args.settings).read_text(encoding="utf-8")))
        if args.no_register:
            values["register"] = False
        if args.no_n4:
            values["n4"] = False
        if args.skull_strip:
            values["skull_strip"] = args.skull_strip
        if args.margin_mm is not None:
            values["margin_mm"] = args.margin_mm
        settings = PreprocessSettings.from_dict(values)
    except (OSError, ValueError, TypeError) as error:
        print(f"dmif preprocess: settings: {error}", file=sys.stderr)
        return 2
    source = args.cohort or args.tcia or args.brats
    key = {"source": str(Path(source).resolve()), "labels": str(Path(args.labels).resolve()) if args.labels else None,
           "settings": settings.to_dict()}
    try:
        with run_folder(args.out, "preprocess", overwrite=args.overwrite, resume=True, key=key,
                        protect=[p for p in (source, args.labels) if p]):
            return _preprocess(args, settings)
    except OutputFolderError as error:
        print(f"dmif preprocess: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dmif preprocess: interrupted; finished cases are kept: run the same command again to continue "
              "(they are not redone)", file=sys.stderr)
        return 130


def _preprocess(args: argparse.Namespace, settings) -> int:
    from pathlib import Path

    from DMIFLib.cohort import CohortError
    from DMIFLib.preprocessing.cohort_runner import preprocess_cohort

    cohort_csv = args.cohort
    if cohort_csv is None:
        from DMIFLib.preprocessing.adapters import brats_cohort, tcia_lgg_1p19q_cohort

        try:
            if args.tcia:
                cohort_csv, skipped = tcia_lgg_1p19q_cohort(args.tcia, Path(args.out) / "source_cohort.csv",
                                                            args.labels)
            else:
                cohort_csv, skipped = brats_cohort(args.brats, Path(args.out) / "source_cohort.csv", args.labels)
        except (CohortError, OSError) as error:
            print(f"dmif preprocess: {error}", file=sys.stderr)
            return 2
        for reason in skipped:
            print(f"dmif preprocess: skipped {reason}", file=sys.stderr)
        print(cohort_csv)
        if args.adapt_only:
            return 0
    try:
        out_csv = preprocess_cohort(cohort_csv, args.out, settings, workers=args.workers, progress=_progress_bar,
                                    qa=not args.no_qa)
    except (CohortError, OSError) as error:
        print(f"dmif preprocess: {error}", file=sys.stderr)
        return 2
    failures = Path(args.out) / "failures.tsv"
    n_failed = len(failures.read_text(encoding="utf-8").splitlines()) - 1
    if out_csv.exists():
        print(out_csv)
    if n_failed:
        print(f"dmif preprocess: {n_failed} case(s) failed; see {failures}", file=sys.stderr)
        return 1
    return 0
