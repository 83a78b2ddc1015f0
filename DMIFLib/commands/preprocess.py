"""`dmif preprocess`: register, N4, skull strip and z-score a cohort; write QA images and provenance per case."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "preprocess a cohort (registration to T1C, N4, skull stripping, z-score) into a folder with QA and provenance"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cohort", help="cohort.csv (patient_id, t1c, t2w[, flair], roi, ...)")
    source.add_argument("--tcia", metavar="DIR",
                        help="a TCIA LGG-1p19qDeletion download in any form (NBIA/TCIA retriever DICOM with the "
                             "SEG, 2017 DOI/ or NiFTiSegmentationsEdited/; searched recursively)")
    source.add_argument("--brats", metavar="DIR",
                        help="a BraTS 2018-2024, Kaggle BraTS 2020, UPENN-GBM or UCSF-PDGM download (searched "
                             "recursively; see docs/preprocessing.md)")
    source.add_argument("--merge", nargs="+", metavar="DIR",
                        help="merge the --out folders of every --shard i/n run into --out (checks that no patient "
                             "is missing or in two shards)")
    parser.add_argument("--shard", metavar="I/N",
                        help="preprocess only shard I of N (1-based; by subject, independent of the row order), "
                             "e.g. one per node of a SLURM array; each shard its own --out; then --merge them")
    parser.add_argument("--labels", metavar="FILE",
                        help="with --tcia/--brats: label sheet, .xlsx or CSV (any delimiter/encoding), e.g. "
                             "TCIA_LGG_cases_159.xlsx (Filename, 1p/19q = d/d or n/n)")
    parser.add_argument("--label-column", metavar="C", help="the sheet's label column (default: label or 1p/19q)")
    parser.add_argument("--id-column", metavar="C",
                        help="the sheet's patient id column (default: patient_id, Filename, ID, ...)")
    parser.add_argument("--label-map", metavar="V=L,...",
                        help='label values to 0/1 or skip, added to the defaults (d/d=1, n/n=0, co-deletion=1, '
                             'relative co-deletion=1, intact=0, unknown=skip), e.g. "d/d=1,n/n=0"')
    parser.add_argument("--roi-labels", metavar="L,L,...",
                        help="with --brats: the segmentation labels that form the tumour box, e.g. 1,2,4 (BraTS "
                             "2018-2021, UPENN, UCSF) or 1,2,3 (BraTS 2023+, leaving out 4 = resection cavity in "
                             "2024); default: every non-zero label")
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


def _adapt(args: argparse.Namespace, out_dir: Path) -> Path:
    """``--tcia``/``--brats``: find the cases, label them from ``--labels``, write ``OUT/source_cohort.csv``.

    Prints one line per skipped case and the sheet/disk id mismatches on stderr; returns the CSV path.
    """
    from DMIFLib.cohort import CohortError, write_cohort
    from DMIFLib.datasets.label_sheet import apply_labels, parse_label_map, read_label_sheet

    sheet = None
    if args.labels:
        value_map = parse_label_map(args.label_map) if args.label_map else None
        sheet = read_label_sheet(args.labels, args.label_column, args.id_column, value_map)
    if args.tcia:
        from DMIFLib.datasets.tcia import tcia_cases

        cases, skipped = tcia_cases(args.tcia, out_dir / "source_images")
    else:
        from DMIFLib.cohort import parse_roi_labels
        from DMIFLib.datasets.brats import brats_family_cases

        cases, skipped = brats_family_cases(args.brats, parse_roi_labels(args.roi_labels or ""))
    if sheet is not None:
        report = apply_labels(cases, sheet)
        cases, skipped = report.cases, skipped + report.skipped
        if report.sheet_only:
            print(f"dmif preprocess: {len(report.sheet_only)} id(s) in {sheet.path.name} have no case on disk: "
                  f"{', '.join(report.sheet_only)}", file=sys.stderr)
        if not cases:
            raise CohortError(f"{sheet.path}: no case on disk has a usable label ({len(report.disk_only)} case(s) "
                              f"not in the sheet, e.g. {', '.join(report.disk_only[:3])})")
    for reason in skipped:
        print(f"dmif preprocess: skipped {reason}", file=sys.stderr)
    return write_cohort(cases, out_dir / "source_cohort.csv")


def run(args: argparse.Namespace) -> int:
    import json

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
    if args.roi_labels and not args.brats:
        print("dmif preprocess: --roi-labels goes with --brats (in a cohort.csv, use a roi_labels column)",
              file=sys.stderr)
        return 2
    if not args.labels and (args.label_column or args.id_column or args.label_map):
        print("dmif preprocess: --label-column, --id-column and --label-map go with --labels FILE", file=sys.stderr)
        return 2
    if args.merge:
        return _merge(args)
    source = args.cohort or args.tcia or args.brats
    key = {"source": str(Path(source).resolve()), "labels": str(Path(args.labels).resolve()) if args.labels else None,
           "settings": settings.to_dict()}
    if args.shard:
        from DMIFLib.preprocessing.shards import parse_shard

        try:
            key["shard"] = "/".join(map(str, parse_shard(args.shard)))
        except ValueError as error:
            print(f"dmif preprocess: {error}", file=sys.stderr)
            return 2
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


def _merge(args: argparse.Namespace) -> int:
    """``--merge DIR ... --out OUT``: the shards' cohort.csv and failures.tsv as one cohort (paths into DIRs)."""
    from DMIFLib.cohort import CohortError
    from DMIFLib.preprocessing.shards import merge_shards
    from DMIFLib.run_folder import OutputFolderError, run_folder

    if args.shard or args.adapt_only or args.labels:
        print("dmif preprocess: --merge takes only shard folders and --out", file=sys.stderr)
        return 2
    try:
        with run_folder(args.out, "preprocess", overwrite=args.overwrite, resume=True,
                        key={"merge": [str(Path(d).resolve()) for d in args.merge]}, protect=args.merge):
            out_csv = merge_shards(args.merge, args.out)
    except (OutputFolderError, CohortError) as error:
        print(f"dmif preprocess: error: {error}", file=sys.stderr)
        return 2
    print(out_csv)
    return 0


def _preprocess(args: argparse.Namespace, settings) -> int:
    from DMIFLib.cohort import CohortError, read_cohort
    from DMIFLib.preprocessing.cohort_runner import preprocess_cohort

    cohort_csv = args.cohort
    if cohort_csv is None:
        try:
            cohort_csv = _adapt(args, Path(args.out))
        except (CohortError, OSError, ValueError) as error:
            print(f"dmif preprocess: {error}", file=sys.stderr)
            return 2
        print(cohort_csv)
        if args.adapt_only:
            return 0
    if args.shard:
        from DMIFLib.preprocessing.shards import parse_shard, write_shard

        try:
            cohort_csv = write_shard(read_cohort(cohort_csv), *parse_shard(args.shard), Path(args.out),
                                     str(Path(args.cohort or args.tcia or args.brats).resolve()), settings.to_dict())
        except CohortError as error:
            print(f"dmif preprocess: {error}", file=sys.stderr)
            return 2
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
