"""Per-case time and peak memory of the preprocessing on the real patient TCGA-FG-6692 (native scanner volumes).

    python bench/bench_preprocessing.py [--data ../shared/data] [--out bench-preprocessing] [--flair]

The native T1C and the oblique T2 (and FLAIR with --flair) go through `dmif preprocess`'s per-case function:
rigid Mattes-MI registration to T1C, N4, the built-in skull strip, z-score, then the crop of the tumour box.
The box comes from the archive's automatic segmentation (SRI24 space), carried into native space by a rigid
registration of the SRI24 T1C onto the native T1C (done before the timing starts). The case runs in a child
process so that its peak resident memory is measured alone. Prints the step timings, the Mattes MI before/after,
the recovered transform and where the QA images are. Target: register + N4 + skull strip + crop ≤ 15 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PATIENT = "TCGA-FG-6692"


def native_tumour_label(data: Path, out: Path) -> Path:
    """seg_auto (SRI24 grid) resampled onto the native T1C grid through a rigid SRI24 → native registration."""
    import SimpleITK as sitk  # noqa: N813

    from DMIFLib.preprocessing.backend import SimpleITKBackend
    from DMIFLib.preprocessing.io import read_image
    from DMIFLib.preprocessing.settings import PreprocessSettings

    native = read_image(data / PATIENT / "native" / f"{PATIENT}_t1c.nii.gz")
    sri24 = read_image(data / PATIENT / "sri24" / f"{PATIENT}_t1c_bet.nii.gz")
    result = SimpleITKBackend().register_rigid(native, sri24, PreprocessSettings())
    seg = read_image(data / PATIENT / "sri24" / f"{PATIENT}_seg_auto.nii.gz")
    label = sitk.Resample(sitk.Cast(seg > 0, sitk.sitkUInt8), native, result.transform, sitk.sitkNearestNeighbor, 0)
    path = out / "inputs" / f"{PATIENT}_tumour_native.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(label, str(path), True)
    print(f"ROI: seg_auto carried to native space (SRI24→native MI {result.mi_before:.3f} → {result.mi_after:.3f}); "
          f"{int(sitk.GetArrayViewFromImage(label).sum())} tumour voxels on the native grid")
    return path


def run_case(cohort_csv: str, out_dir: str, queue) -> None:
    """Child process: preprocess the case, then crop it as training would; report timings and peak memory."""
    from DMIFLib.cohort import read_cohort
    from DMIFLib.preprocessing.cohort_runner import preprocess_case
    from DMIFLib.preprocessing.pipeline import case_slices
    from DMIFLib.preprocessing.settings import PreprocessSettings

    settings = PreprocessSettings()
    (case,) = read_cohort(cohort_csv)
    start = time.perf_counter()
    provenance = preprocess_case(case, out_dir, settings)
    case_s = time.perf_counter() - start
    from DMIFLib.cohort import write_cohort
    from DMIFLib.preprocessing.cohort_runner import case_folder_name, output_case

    out_case = output_case(case, Path(out_dir) / "cases" / case_folder_name(case.patient_id), provenance)
    write_cohort([out_case], Path(out_dir) / "cohort.csv")
    start = time.perf_counter()
    stack = case_slices(read_cohort(Path(out_dir) / "cohort.csv")[0], settings)
    crop_s = time.perf_counter() - start
    queue.put({"provenance": provenance, "case_s": case_s, "crop_s": crop_s, "n_slices": stack.n_slices,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default="bench-preprocessing")
    parser.add_argument("--flair", action="store_true", help="register FLAIR too")
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out).resolve()
    if not (data / PATIENT).is_dir():
        print(f"no {PATIENT} under {data}", file=sys.stderr)
        return 2
    from DMIFLib.cohort import CohortCase, write_cohort

    label = native_tumour_label(data, out)
    native = data / PATIENT / "native"
    images = {"t1c": native / f"{PATIENT}_t1c.nii.gz", "t2w": native / f"{PATIENT}_t2.nii.gz"}
    if args.flair:
        images["flair"] = native / f"{PATIENT}_flair.nii.gz"
    cohort_csv = write_cohort([CohortCase(PATIENT, images, str(label))], out / "inputs" / "cohort.csv")
    result_dir = out / "preprocessed"
    import shutil

    shutil.rmtree(result_dir, ignore_errors=True)  # the benchmark's own output: time the work, not the cache
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=run_case, args=(str(cohort_csv), str(result_dir), queue))
    process.start()
    result = queue.get()
    process.join()
    provenance, timings = result["provenance"], result["provenance"]["timings_s"]
    print(f"machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} (shared with other jobs)")
    for name, seconds in timings.items():
        print(f"  {name:<16} {seconds:7.2f} s")
    core = sum(v for k, v in timings.items() if k.startswith(("register", "n4", "skull_strip", "zscore")))
    print(f"register + N4 + skull strip + z-score: {core:.2f} s; crop of {result['n_slices']} slices from the "
          f"saved case: {result['crop_s']:.2f} s; total {core + result['crop_s']:.2f} s (target ≤ 15 s)")
    print(f"whole case incl. reading, writing and QA PNGs: {result['case_s']:.2f} s; "
          f"peak memory (child process RSS): {result['peak_rss_mb']:.0f} MB")
    for name, reg in provenance["registration"].items():
        print(f"{name} → t1c: Mattes MI {reg['mattes_mi_before']:.4f} (scanner geometry) → "
              f"{reg['mattes_mi_after']:.4f}; rotation {reg['rotation_angle_deg']:.2f}° "
              f"(Euler LPS x/y/z {', '.join(f'{a:.2f}' for a in reg['rotation_deg'])}°), translation "
              f"{', '.join(f'{t:.2f}' for t in reg['translation_mm'])} mm about centre "
              f"{', '.join(f'{c:.1f}' for c in reg['center_mm'])} mm (LPS); {reg.get('iterations')} iterations")
    print(f"brain mask: {provenance['brain_mask']['source']}, {provenance['brain_mask']['volume_ml']:.0f} ml")
    case_dir = result_dir / "cases" / PATIENT
    print(f"QA images: {', '.join(str(p) for p in sorted(case_dir.glob('qa_*.png')))}")
    print(json.dumps({"timings_s": timings, "peak_rss_mb": result["peak_rss_mb"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
