"""Agreement of DMIFLib.radiomics (MIRP) with pyradiomics on the real brain1 case, and its run time.

    PYTHONPATH=$PWD python bench/bench_radiomics_agreement.py [--pyradiomics-json FILE] [--no-wavelet]
    PYTHONPATH=$PWD python bench/bench_radiomics_agreement.py --params seed001_mri   # run time only

Prints Markdown tables: original-image features against pyradiomics' stored baseline
(Testing/data/pyradiomics_brain1_baseline.csv, its settings: DMIFLib/radiomics/pyradiomics_baseline.json), and,
with ``--pyradiomics-json`` (``{"features": {name: value}}`` written by pyradiomics run elsewhere with the same
settings), every feature including the 8 wavelet decompositions against that run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DMIF_SHARED_DATA", ROOT.parent / "shared" / "data")) / "pyradiomics-brain1"
BASELINE = ROOT / "Testing" / "data" / "pyradiomics_brain1_baseline.csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyradiomics-json", type=Path, help="features computed by pyradiomics on brain1")
    parser.add_argument("--no-wavelet", action="store_true", help="original image only")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with brain1_image.nrrd, brain1_label.nrrd")
    parser.add_argument("--save", type=Path, help="write the computed features here (JSON)")
    parser.add_argument("--params", default="pyradiomics_baseline",
                        help="parameter set or file; agreement tables only for pyradiomics_baseline (default)")
    args = parser.parse_args()
    if not (args.data / "brain1_image.nrrd").is_file():
        print(f"brain1 data not found in {args.data}", file=sys.stderr)
        return 2

    import dataclasses

    import SimpleITK as sitk  # noqa: N813

    from DMIFLib.radiomics.agreement import agreement_table, format_table, read_baseline_csv
    from DMIFLib.radiomics.extractor import extract_features
    from DMIFLib.radiomics.params import load_params

    params = load_params(args.params)
    if args.no_wavelet:
        params = dataclasses.replace(params, wavelet=None)
    image = sitk.ReadImage(str(args.data / "brain1_image.nrrd"))
    mask = sitk.ReadImage(str(args.data / "brain1_label.nrrd"))
    start = time.perf_counter()
    features = extract_features(image, mask, params, name="brain1")
    seconds = time.perf_counter() - start
    n_types = 1 if params.wavelet is None else 9
    print(f"brain1: {len(features)} features, {n_types} image type(s), {seconds:.1f} s\n")
    if args.save:
        args.save.write_text(json.dumps({"features": features}, indent=0), encoding="utf-8")

    if args.params != "pyradiomics_baseline":
        return 0
    baseline = read_baseline_csv(BASELINE)
    print(format_table(agreement_table(features, baseline), "DMIFLib.radiomics vs pyradiomics' stored baseline"))
    if args.pyradiomics_json:
        reference = json.loads(args.pyradiomics_json.read_text(encoding="utf-8"))["features"]
        reference = {k: v for k, v in reference.items() if n_types > 1 or k.startswith("original_")}
        for prefix in sorted({k.split("_")[0] for k in reference}):
            subset = {k: v for k, v in reference.items() if k.startswith(prefix + "_")}
            print()
            print(format_table(agreement_table(features, subset), f"{prefix}: DMIFLib.radiomics vs pyradiomics run"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
