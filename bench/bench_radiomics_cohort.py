"""Run time of the radiomics cohort helper on the real TCGA-FG-6692 case (SRI24, 1 mm), seed001_mri parameters.

    PYTHONPATH=$PWD python bench/bench_radiomics_cohort.py [--out features.csv]

The region is the automatic BraTS segmentation (a label: all non-zero voxels); modalities t1c and t2w.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASE = Path(os.environ.get("DMIF_SHARED_DATA", ROOT.parent / "shared" / "data")) / "TCGA-FG-6692" / "sri24"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the features CSV here")
    args = parser.parse_args()
    if not CASE.is_dir():
        print(f"TCGA-FG-6692 data not found in {CASE}", file=sys.stderr)
        return 2
    from DMIFLib.cohort import CohortCase
    from DMIFLib.radiomics.cohort import extract_cohort_features, write_features_csv
    from DMIFLib.radiomics.params import load_params

    case = CohortCase("TCGA-FG-6692", {"t1c": CASE / "TCGA-FG-6692_t1c_bet.nii.gz",
                                       "t2w": CASE / "TCGA-FG-6692_t2_bet.nii.gz"},
                      roi=str(CASE / "TCGA-FG-6692_seg_auto.nii.gz"))
    start = time.perf_counter()
    rows, failures = extract_cohort_features([case], load_params("seed001_mri"))
    seconds = time.perf_counter() - start
    if failures:
        print(failures, file=sys.stderr)
        return 1
    values = [v for k, v in rows[0].items() if k not in ("patient_id", "region")]
    print(f"TCGA-FG-6692, t1c + t2w, seed001_mri: {len(values)} features, region {rows[0]['region']}, "
          f"{sum(not math.isfinite(v) for v in values)} non-finite, {seconds:.1f} s "
          f"(t1c tumour {rows[0]['t1c_original_shape_VoxelVolume'] / 1000:.1f} cm^3)")
    if args.out:
        write_features_csv(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
