"""Benchmark ``dmif synth``: wall time for a cohort on one core, volume sizes and tumour extent.

Usage: ``OMP_NUM_THREADS=1 python bench/bench_synth.py [--patients 60] [--workers 1] [--out DIR]``.
Target (docs/synthetic-data.md): 60 patients in < 60 s on one core; ~10–15 tumour slices; tumour 35–60 mm.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.cohort import read_cohort
from DMIFLib.synth import synthesize_cohort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the cohort here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "cohort"
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        csv_path = synthesize_cohort(out, args.patients, args.seed, workers=args.workers)
        wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
        print(f"{args.patients} patients, {args.workers} worker(s): {wall:.1f} s wall"
              + (f", {cpu:.1f} s CPU in this process" if args.workers == 1 else ""))
        sizes, slices, extent, rot, shift, labels = [], [], [], [], [], []
        for case in read_cohort(csv_path):
            image = sitk.ReadImage(case.roi)
            label = sitk.GetArrayFromImage(image) > 0
            sizes.append(image.GetSize())
            slices.append(np.count_nonzero(label.any(axis=(1, 2))))
            _, yy, xx = np.nonzero(label)
            spacing = image.GetSpacing()
            extent.append(max((np.ptp(xx) + 1) * spacing[0], (np.ptp(yy) + 1) * spacing[1]))
            truth = json.loads((Path(case.roi).parent / "truth.json").read_text(encoding="utf-8"))["t2w_registration"]
            rot.append(truth["rotation_deg"])
            shift.append(truth["translation_norm_mm"])
            labels.append(case.label)
        sizes = np.array(sizes)

        def summary(values) -> str:
            return f"median {np.median(values):.1f}, range {np.min(values):.1f}–{np.max(values):.1f}"

        print(f"T1C matrix (i, j, k): min {sizes.min(axis=0).tolist()}, max {sizes.max(axis=0).tolist()}")
        print(f"tumour slices: {summary(slices)}")
        print(f"tumour in-plane extent (mm): {summary(extent)}")
        print(f"T2W true offset: rotation (deg) {summary(rot)}; translation (mm) {summary(shift)}")
        print(f"labels: {sum(labels)} of {len(labels)} are 1")


if __name__ == "__main__":
    main()
