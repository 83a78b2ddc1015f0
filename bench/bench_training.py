"""Benchmark: the quick preset on a synthetic cohort -> held-out patient-level AUC and time; a label-shuffled
run of the same configuration as a leakage guard (its AUC should be near 0.5).

    python bench/bench_training.py --patients 60 --work bench-output/training
    python bench/bench_training.py --cv 5 --repeats 2 --sizes 30 60 120 --preprocessing minimal

Targets (issue 2): AUC >= 0.90 within 15 minutes on a 2-core CPU; shuffled labels: AUC in 0.35-0.65.
With ``--cv K``: for each cohort size in ``--sizes`` (synthetic, seed ``--seed``), a K-fold cross-validation
run repeated ``--repeats`` times, and the same with shuffled labels: pooled out-of-fold patient-level AUC with
its DeLong CI, the spread across repeats and the wall time (issue 18 targets at 60 patients: pooled AUC
>= 0.90, the whole run <= 30 min). Every timing is printed with the load average (the machine may be shared).
The synthetic cohort and its preprocessing are cached in --work and timed separately from training.
``--preprocessing minimal`` skips registration, N4 and skull stripping (z-score over the head) for a faster
set-up; ``full`` (default) runs ``dmif preprocess``'s pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

MINIMAL = {"register": False, "n4": False, "skull_strip": "none"}


def _timed(label: str, func, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    value = func(*args, **kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label}: {wall:.0f} s wall, {cpu:.0f} s CPU (this process), load average {os.getloadavg()[0]:.1f}",
          flush=True)
    return value, wall


def _train(cohort: Path, out: Path, args: argparse.Namespace, overrides: dict):
    from DMIFLib.commands.train import print_progress
    from DMIFLib.training import train_cohort

    if out.exists():
        shutil.rmtree(out)
    result, wall = _timed(f"train {out.name}", train_cohort, cohort, out, preset=args.preset, device=args.device,
                          progress=print_progress if args.verbose else None, overrides=overrides)
    rows = {(r["level"], r["model"]): r for r in result.metrics}
    for (level, model), row in rows.items():
        print(f"  {out.name:<9} {level:<8} {model:<6} n={row['n']:<4} AUC={row['auc']:.3f} acc={row['accuracy']:.3f}")
    return rows[("patient", "fused")]["auc"], wall


def _shuffled(cohort: Path, seed: int) -> Path:
    """The cohort with its labels permuted (seed ``seed + 1000``), written next to it."""
    from DMIFLib.cohort import read_cohort, write_cohort

    cases = read_cohort(cohort, require_labels=True)
    labels = np.random.default_rng(seed + 1000).permutation([c.label for c in cases])
    for case, label in zip(cases, labels, strict=True):
        case.label, case.split = int(label), None
    return write_cohort(cases, cohort.parent / "cohort_shuffled_labels.csv")


def _cross_validate(cohort: Path, out: Path, args: argparse.Namespace, overrides: dict) -> dict:
    from DMIFLib.commands.train import print_progress
    from DMIFLib.training.cross_validation import cross_validate

    if out.exists():
        shutil.rmtree(out)
    load = os.getloadavg()[0]
    result, wall = _timed(f"cross-validate {out.name}", cross_validate, cohort, out, k=args.cv,
                          repeats=args.repeats, preset=args.preset, device=args.device,
                          progress=print_progress if args.verbose else None, overrides=overrides)
    fused = {r["model"]: r for r in result.metrics}["fused"]
    return {"run": out.name, "n": fused["n"], "auc": fused["auc"], "ci_low": fused["auc_ci_low"],
            "ci_high": fused["auc_ci_high"], "repeat_mean": fused["auc_repeat_mean"],
            "repeat_sd": fused["auc_repeat_sd"], "minutes": wall / 60, "load_start": load,
            "load_end": os.getloadavg()[0]}


def _cv_sizes(args: argparse.Namespace) -> int:
    """Cross-validation against cohort size, each with a label-shuffled control."""
    from DMIFLib.evaluation.tables import write_tsv
    from DMIFLib.synth import synthesize_cohort

    work = Path(args.work)
    rows = []
    for n in args.sizes:
        cohort = work / f"synth-{n}" / "cohort.csv"
        if not cohort.is_file():
            _timed(f"synthesise {n} patients", synthesize_cohort, cohort.parent, n, args.seed, workers=args.workers)
        overrides = {**args.overrides, "seed": args.train_seed}
        if args.preprocessing == "full":
            from DMIFLib.preprocessing.cohort_runner import preprocess_cohort

            cohort, _ = _timed("preprocess (cached per case)", preprocess_cohort, cohort,
                               work / f"preprocessed-{n}", workers=args.workers)
        else:
            overrides["preprocessing"] = MINIMAL
        runs = [("real", cohort)] + ([] if args.no_shuffled else [("shuffled", _shuffled(cohort, args.seed))])
        for kind, path in runs:
            row = {"patients": n, "labels": kind, **_cross_validate(path, work / f"cv-{n}-{kind}", args, overrides)}
            rows.append(row)
            print(f"RESULT {n} patients, {kind} labels: {args.cv}-fold CV x {args.repeats}: pooled out-of-fold "
                  f"AUC (fused) = {row['auc']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}], repeats "
                  f"{row['repeat_mean']:.3f} ± {row['repeat_sd']:.3f}, {row['minutes']:.1f} min (load average "
                  f"{row['load_start']:.1f} -> {row['load_end']:.1f})", flush=True)
    write_tsv(work / "cv_sizes.tsv", rows, tuple(rows[0]))
    print(f"table: {work / 'cv_sizes.tsv'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic cohort")
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--work", default="bench-output/training", help="folder for the cohort and the runs")
    parser.add_argument("--preprocessing", choices=("full", "minimal"), default="full")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target machine has 2 cores)")
    parser.add_argument("--workers", type=int, default=2, help="processes for synthesis and preprocessing")
    parser.add_argument("--no-shuffled", action="store_true", help="skip the label-shuffled leakage guard")
    parser.add_argument("--verbose", action="store_true", help="print every epoch")
    parser.add_argument("--cv", type=int, default=None, metavar="K", help="cross-validation runs instead")
    parser.add_argument("--repeats", type=int, default=2, help="with --cv: repeats of the K folds")
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 60, 120], help="with --cv: cohort sizes")
    parser.add_argument("--overrides", type=json.loads, default={}, metavar="JSON",
                        help="TrainConfig fields on top of the preset, as `dmif train --overrides`")
    args = parser.parse_args(argv)

    import torch

    from DMIFLib.cohort import read_cohort
    from DMIFLib.preprocessing.cohort_runner import preprocess_cohort
    from DMIFLib.synth import synthesize_cohort

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPU(s) visible, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.cv is not None:
        return _cv_sizes(args)
    cohort = work / "synth" / "cohort.csv"
    if not cohort.is_file():
        _timed(f"synthesise {args.patients} patients", synthesize_cohort, cohort.parent, args.patients, args.seed,
               workers=args.workers)
    overrides = {**args.overrides, "seed": args.train_seed}
    if args.preprocessing == "full":
        cohort, _ = _timed("preprocess (cached per case)", preprocess_cohort, cohort, work / "preprocessed",
                           workers=args.workers)
    else:
        overrides["preprocessing"] = MINIMAL
    cases = read_cohort(cohort, require_labels=True)
    print(f"cohort: {len(cases)} patients ({sum(c.label for c in cases)} positive), preprocessing "
          f"{args.preprocessing}", flush=True)

    auc, wall = _train(cohort, work / "run-real", args, overrides)
    print(f"RESULT quick preset: held-out patient-level AUC (fused) = {auc:.3f} in {wall / 60:.1f} min "
          f"(target >= 0.90 within 15 min: {'met' if auc >= 0.90 and wall <= 900 else 'NOT met'})", flush=True)
    if args.no_shuffled:
        return 0
    shuffled = _shuffled(cohort, args.seed)
    auc_s, wall_s = _train(shuffled, work / "run-shuffled", args, overrides)
    print(f"RESULT shuffled labels: held-out patient-level AUC (fused) = {auc_s:.3f} in {wall_s / 60:.1f} min "
          f"(leakage guard 0.35-0.65: {'met' if 0.35 <= auc_s <= 0.65 else 'NOT met'})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
