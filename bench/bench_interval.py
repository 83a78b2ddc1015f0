"""Benchmark: coverage of the per-patient 90 % interval (p_fused_low/high) by retrained models' predictions.

One synthetic pool of patients (``dmif synth``) is cut into disjoint cohorts: a base cohort, ``--repeats`` fresh
cohorts of the same size, and the test patients. On the base cohort it trains (a) a ``--folds``-fold
cross-validation, whose ensemble model gives the fold-model interval, and (b) a plain run, whose model gives the
test-time-augmentation interval (:mod:`DMIFLib.trust.interval`). Each fresh cohort trains a plain run with its own
seed. Coverage = the fraction of the retrained models' p_fused for the test patients that lie inside the base
models' intervals, on the raw scale (every run with ``calibration: none``, so that the figure measures the
interval, not the variability of the calibration fit). Also printed: the interval widths and, as a reference,
the width of the retrained models' own 5–95 % range per patient.

    python bench/bench_interval.py --patients 12 --repeats 5 --test 8 --epochs 2 --work bench-output/interval

Tiny nets on 32×32 slices (as the tests) so that it runs on a CPU in minutes; ``--epochs`` per stage.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

TINY = {"net_width": "tiny", "slice_size": 32, "mi_scales": [2], "max_slices": 4, "batch_size": 16,
        "calibration": "none", "preprocessing": {"register": False, "n4": False, "skull_strip": "none"}}


def _subset(pool_csv: Path, ids: list[str], name: str) -> Path:
    """A cohort CSV beside the pool's (relative paths keep resolving) with only the patients ``ids``."""
    with open(pool_csv, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row["patient_id"] in set(ids)]
        columns = reader.fieldnames
    path = pool_csv.parent / f"{name}.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _predict(model_path: Path, stacks: list) -> np.ndarray:
    """(3, n): p_fused, p_fused_low, p_fused_high of the test stacks."""
    from DMIFLib.inference import predict_stack
    from DMIFLib.model_file import load_model

    model = load_model(model_path, "cpu")
    preds = [predict_stack(model, s) for s in stacks]
    return np.array([[p.p_fused for p in preds], [p.p_fused_low for p in preds], [p.p_fused_high for p in preds]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=16, help="patients per training cohort")
    parser.add_argument("--repeats", type=int, default=6, help="retrained models on fresh cohorts")
    parser.add_argument("--test", type=int, default=12, help="test patients")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("bench-output/interval"))
    args = parser.parse_args()

    from DMIFLib.cohort import read_cohort
    from DMIFLib.preprocessing.pipeline import case_slices
    from DMIFLib.preprocessing.settings import PreprocessSettings
    from DMIFLib.stats.interval import interval_coverage
    from DMIFLib.synth import synthesize_cohort
    from DMIFLib.training import train_cohort
    from DMIFLib.training.cross_validation import cross_validate

    started = time.perf_counter()
    n_pool = args.patients * (1 + args.repeats) + args.test
    pool = synthesize_cohort(args.work / "pool", n_pool, seed=args.seed, scale=0.5)
    cases = read_cohort(pool)
    by_label = {0: [c.patient_id for c in cases if c.label == 0], 1: [c.patient_id for c in cases if c.label == 1]}
    rng = np.random.default_rng(args.seed)
    for ids in by_label.values():
        rng.shuffle(ids)
    # balanced, disjoint cohorts: every cohort takes half its patients from each class
    def take(n: int) -> list[str]:
        return [by_label[0].pop() for _ in range(n // 2)] + [by_label[1].pop() for _ in range(n - n // 2)]

    base_ids = take(args.patients)
    fresh_ids = [take(args.patients) for _ in range(args.repeats)]
    test_ids = take(args.test)
    overrides = {**TINY, "epochs": args.epochs, "seed": args.seed}
    settings = PreprocessSettings(register=False, n4=False, skull_strip="none", slice_size=32)
    test_cases = [c for c in cases if c.patient_id in set(test_ids)]
    stacks = []
    for case in test_cases:
        stack = case_slices(case, settings)
        stack.patient_id = case.patient_id
        stacks.append(stack)
    print(f"pool {n_pool} patients synthesised and {len(stacks)} test stacks cut: "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    base_csv = _subset(pool, base_ids, "base")
    cache = args.work / "slices"
    cv = cross_validate(base_csv, args.work / "cv", k=args.folds, preset="quick", device="cpu", overrides=overrides)
    plain = train_cohort(base_csv, args.work / "plain", preset="quick", device="cpu", overrides=overrides,
                         slice_cache=cache)
    cv_p, plain_p = _predict(cv.model_path, stacks), _predict(plain.model_path, stacks)
    retrained = []
    for r, ids in enumerate(fresh_ids):
        run = train_cohort(_subset(pool, ids, f"fresh{r}"), args.work / f"fresh{r}", preset="quick", device="cpu",
                           overrides={**overrides, "seed": args.seed + 1 + r}, slice_cache=cache)
        retrained.append(_predict(run.model_path, stacks)[0])
    retrained = np.array(retrained)
    print(f"training and prediction: {time.perf_counter() - started:.0f} s wall, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{args.patients} patients per cohort, {args.repeats} retrained models, {args.test} test patients, "
          f"{args.folds}-fold CV, {args.epochs} epochs per stage, nominal level 0.90")
    for name, (p, low, high) in (("fold-model ensemble (CV)", cv_p), ("test-time augmentation (plain)", plain_p)):
        print(f"{name}: coverage {interval_coverage(low, high, retrained):.3f}, median width "
              f"{np.median(high - low):.3f}, median |p - retrained mean| {np.median(abs(p - retrained.mean(0))):.3f}")
    spread = np.percentile(retrained, [5, 95], axis=0)
    print(f"retrained models' own 5-95 % range per patient: median width {np.median(spread[1] - spread[0]):.3f}; "
          f"retrained p s.d. per patient (median) {np.median(retrained.std(axis=0, ddof=1)):.3f}")


if __name__ == "__main__":
    main()
