"""`dmif compare`: train the paper's ablations and reference CNNs on one patient-level split; Table 2/3 TSVs."""

from __future__ import annotations

import argparse
import json
import sys

HELP = ("train DMIF-Net ablations and reference CNNs (--radiomics: and seed 001's radiomics rows) on one patient "
        "split; Table 2/3 TSVs with DeLong p-values")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cohort", required=True, help="cohort CSV with 0/1 labels (T1C and T2W for multimodal)")
    parser.add_argument("--out", required=True, help="output folder (tables, run.json; `dmif report --run OUT`)")
    parser.add_argument("--preset", default="quick", choices=("quick", "paper"),
                        help="training preset: quick (CPU demo) or paper (Algorithm 1 as published)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--set", dest="overrides", default=None, metavar="JSON",
                        help='training-setting overrides as JSON, e.g. \'{"epochs": 2, "net_width": "tiny"}\'')
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run in --out (refused otherwise); its other outputs are removed")
    parser.add_argument("--radiomics", action="store_true",
                        help="add seed 001's rows: radiomics-only baseline and DMIF-Net + radiomics (needs the "
                             "radiomics extra; settings: --set '{\"radiomics\": {...}}', docs/methods.md)")
    parser.add_argument("--transfer", action="store_true",
                        help="add the transfer-learning CNN rows of seed 002 (ImageNet weights from a local file; "
                             "settings: --set '{\"transfer\": {...}}', docs/methods.md)")
    parser.add_argument("--n-boot", type=int, default=None, help="bootstrap replicates (default 200 quick, 1000 paper)")


def run(args: argparse.Namespace) -> int:
    from DMIFLib.cohort import CohortError
    from DMIFLib.evaluation.compare import compare_models
    from DMIFLib.evaluation.tables import read_tsv
    from DMIFLib.preprocessing.errors import PreprocessingError
    from DMIFLib.run_folder import run_folder
    from DMIFLib.training.errors import RunCancelledError, TrainingError

    def progress(event: dict) -> None:
        if event.get("stage") == "compare":
            print(f"[{event['index']}] training {event['model']}", flush=True)
        elif event.get("stage") == "radiomics":
            print(f"radiomics {event['case']}/{event['cases']}: {event['patient_id']}", flush=True)
        elif event.get("stage") == "slices":
            print(f"slices {event['case']}/{event['cases']}: {event['patient_id']}", flush=True)
        elif "val_auc" in event:
            print(f"    epoch {event['epoch']}/{event['epochs']} loss {event['loss']:.4f} "
                  f"val_loss {event['val_loss']:.4f} val_auc {event['val_auc']:.3f}", flush=True)

    try:
        overrides = json.loads(args.overrides) if args.overrides else None
        with run_folder(args.out, "compare", overwrite=args.overwrite, protect=(args.cohort,)):
            paths = compare_models(args.cohort, args.out, preset=args.preset, device=args.device,
                                   overrides=overrides, n_boot=args.n_boot, progress=progress,
                                   overwrite=args.overwrite, with_radiomics=args.radiomics,
                                   with_transfer=args.transfer)
    except json.JSONDecodeError as error:
        print(f"dmif compare: --set is not valid JSON: {error}", file=sys.stderr)
        return 2
    except (CohortError, PreprocessingError, TrainingError, ValueError, OSError) as error:
        print(f"dmif compare: {error}", file=sys.stderr)
        return 2
    except RunCancelledError as error:
        print(f"dmif compare: {error}", file=sys.stderr)
        return 130
    for key in ("table2", "table3"):
        for row in read_tsv(paths[key]):
            if row["level"] == "patient":
                print(f"{row['model']:<26} patient AUC {float(row['auc']):.4f} acc {float(row['accuracy']):.4f} "
                      f"DeLong p (Bonferroni) {row['delong_p_bonferroni'] or '-'}")
    run_info = json.loads(paths["run"].read_text(encoding="utf-8"))
    about = run_info["radiomics_baseline"]
    if args.radiomics and about.get("skipped"):
        print(f"dmif compare: no radiomics rows: {about['skipped']}", file=sys.stderr)
    elif args.radiomics and about.get("fusion_skipped"):
        print(f"dmif compare: no DMIF-Net + radiomics row: {about['fusion_skipped']}", file=sys.stderr)
    for note in run_info["transfer"]["skipped"] if args.transfer else ():
        print(f"dmif compare: no transfer row {note}", file=sys.stderr)
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0
