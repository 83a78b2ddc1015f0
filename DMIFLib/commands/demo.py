"""`dmif demo`: the whole pipeline on a synthetic cohort, on a CPU in minutes.

synth (``DIR/synth``) → preprocess (``DIR/preprocessed``: registration, N4, skull strip, z-score) → train with
the quick preset (``DIR/train``) → predict the held-out test patients (``DIR/predictions``) → evaluate
(``DIR/evaluation``) → print the metric tables and the paths of the cohort report, one case report (with its
saliency volumes) and a ``.mrml`` scene of the results. Each step reuses what an earlier, interrupted demo in the
same folder finished (the synthetic cohort, cached preprocessed cases, the training checkpoint).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEMO_SALIENCY = "gradcam"
"""The demo's saliency method: one forward and backward pass per batch, seconds on a CPU."""
HELP = "run synth -> preprocess -> train (quick) -> predict -> evaluate on a synthetic cohort and print the tables"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="demo folder (created; an unfinished demo there continues)")
    parser.add_argument("--patients", type=int, default=40, help="synthetic patients (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic cohort and the training")
    parser.add_argument("--workers", type=int, default=2, help="processes for synthesis and preprocessing")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--scale", type=float, default=1.0, help="synthetic head size factor (0.5: faster, smaller)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per stage (default: the quick preset's)")
    parser.add_argument("--modalities", default="t1c,t2w",
                        help="modalities to simulate and train on, of t1c, t2w, flair, t1 (default t1c,t2w; one "
                             "modality trains a single-modality model)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier demo with other settings in --out (refused otherwise)")


def _say(text: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {text}", flush=True)


def run_demo(out: Path, patients: int, seed: int, workers: int, device: str, scale: float = 1.0,
             epochs: int | None = None, modalities: tuple[str, ...] = ("t1c", "t2w")
             ) -> tuple[dict[str, Path], dict[str, Path]]:
    """Run the five steps in ``out`` with the synthetic ``modalities``; returns the evaluation's tables (name ->
    path) and the reports and scene (name -> path): the cohort report (``evaluation/report.html``), the first test
    patient's case report (``predictions/reports/``, with its saliency volumes in ``predictions/saliency/``) and a
    ``.mrml`` scene of the results (``scene/DMIF_demo.mrml``; needs slicer-core)."""
    from DMIFLib.casereport.case_outputs import CaseOutputs
    from DMIFLib.cohort import read_cohort, write_cohort
    from DMIFLib.commands.train import print_progress
    from DMIFLib.evaluation.evaluate import evaluate_predictions
    from DMIFLib.evaluation.report import build_report
    from DMIFLib.evaluation.tables import read_tsv
    from DMIFLib.inference import predict_cohort
    from DMIFLib.preprocessing.cohort_runner import preprocess_cohort
    from DMIFLib.synth import synthesize_cohort
    from DMIFLib.training import train_cohort
    from DMIFLib.training.checkpoint import CHECKPOINT_NAME

    synth_csv = out / "synth" / "cohort.csv"
    if synth_csv.is_file():
        _say(f"reusing the synthetic cohort {synth_csv}")
    else:
        _say(f"1/5 synthesising {patients} patients")
        synthesize_cohort(out / "synth", patients, seed, workers=workers, scale=scale, modalities=modalities)
    _say("2/5 preprocessing (registration, N4, skull strip, z-score)")
    prepared_csv = preprocess_cohort(synth_csv, out / "preprocessed", workers=workers, progress=lambda e: _say(
        f"preprocess {e['case']}/{e['cases']} {e['patient_id']} {e.get('status', '')}"))
    train_dir = out / "train"
    if (train_dir / "model.pt").is_file():
        _say(f"reusing the trained model {train_dir / 'model.pt'}")
    else:
        resume = (train_dir / CHECKPOINT_NAME).is_file()
        _say(f"3/5 training (quick preset{', resumed' if resume else ''})")
        train_cohort(prepared_csv, train_dir, preset="quick", device=device, resume=resume,
                     progress=print_progress, overrides={"seed": seed, **({"epochs": epochs} if epochs else {})})
    test_ids = {row["patient_id"] for row in read_tsv(train_dir / "split.tsv") if row["split"] == "test"}
    test_csv = write_cohort([c for c in read_cohort(prepared_csv) if c.patient_id in test_ids],
                            out / "test_cohort.csv")
    _say(f"4/5 predicting the {len(test_ids)} held-out test patients (saliency and report of the first)")
    test_cases = {c.patient_id: c for c in read_cohort(test_csv)}
    first = next(iter(test_cases))
    extras = CaseOutputs(out / "predictions", saliency=DEMO_SALIENCY, report=True, cohort_dir=test_csv.parent)

    def first_case(model, case, stack, prediction) -> None:
        if case.patient_id == first:
            extras(model, case, stack, prediction)

    predictions = predict_cohort(test_csv, train_dir / "model.pt", out / "predictions", device=device,
                                 after_case=first_case)
    _say("5/5 evaluating")
    # the model file carries each row's training cut-off (slice/patient × modality/fused)
    tables = evaluate_predictions(predictions, test_csv, out / "evaluation", model_path=train_dir / "model.pt")
    written = extras.written.get(first, {})
    outputs = {"cohort report": build_report(out / "evaluation", cohort_csv=test_csv),
               **{f"case report {first} ({kind})": written[kind] for kind in ("html", "pdf") if kind in written}}
    try:
        from DMIFLib.mrml.case_scene import write_results_scene
    except ImportError as error:  # slicer-core is an extra ([slicer]); the rest of the demo does not need it
        _say(f"no Slicer scene: {error} (pip install -e '.[slicer]')")
    else:
        saliency = {first: {m: p for m, p in written.items() if m not in ("html", "pdf")}}
        outputs["Slicer scene"] = write_results_scene(out / "scene" / "DMIF_demo.mrml", predictions,
                                                      train_dir / "model.pt", test_cases, saliency, DEMO_SALIENCY,
                                                      overwrite=True)
    return tables, outputs


def run(args: argparse.Namespace) -> int:
    from DMIFLib.evaluation.tables import read_tsv
    from DMIFLib.run_folder import OutputFolderError, run_folder
    from DMIFLib.synth.patient import check_modalities
    from DMIFLib.training import RunCancelledError
    from DMIFLib.training.errors import user_errors

    started = time.perf_counter()
    out = Path(args.out)
    key = {"patients": args.patients, "seed": args.seed, "scale": args.scale, "epochs": args.epochs}
    try:
        modalities = check_modalities(tuple(m.strip() for m in args.modalities.split(",") if m.strip()))
    except ValueError as error:
        print(f"dmif demo: error: {error}", file=sys.stderr)
        return 2
    key = {**key, "modalities": list(modalities)}
    try:
        with run_folder(out, "demo", overwrite=args.overwrite, resume=True, key=key):
            tables, outputs = run_demo(out, args.patients, args.seed, args.workers, args.device, args.scale,
                                       args.epochs, modalities)
    except (OutputFolderError, *user_errors()) as error:
        print(f"dmif demo: error: {error}", file=sys.stderr)
        return 2
    except RunCancelledError as error:
        print(f"dmif demo: {error}; run the same command again to continue", file=sys.stderr)
        return 130
    print("\nheld-out test patients (trained on the others):")
    for name, path in tables.items():
        print(f"\n== {name}: {path}")
        rows = read_tsv(path)
        if rows:
            columns = list(rows[0])
            print("\t".join(columns))
            for row in rows:
                print("\t".join(row[c] for c in columns))
    print("\nreports and scene (research use only):")
    for name, path in outputs.items():
        print(f"{name}: {path}")
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; everything is in {out}")
    return 0
