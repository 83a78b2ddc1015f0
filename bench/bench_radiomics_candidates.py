"""Run a candidate radiomics library on the real brain1 case and compare it with pyradiomics' stored baseline.

Each candidate runs in its own (throwaway) environment, with this tree on PYTHONPATH:

    PYTHONPATH=$PWD /tmp/venv_pyrad/bin/python bench/bench_radiomics_candidates.py pyradiomics --save pyrad.json
    PYTHONPATH=$PWD /tmp/venv_pysera/bin/python bench/bench_radiomics_candidates.py pysera

Settings are those of the baseline (binWidth 25, voxelArrayShift 2000, no resampling or normalisation, 3D).
``pyradiomics`` also computes the 8 wavelet decompositions, so its ``--save`` JSON serves as the reference of
``bench_radiomics_agreement.py --pyradiomics-json``. The chosen library (MIRP through DMIFLib.radiomics) is
measured by ``bench_radiomics_agreement.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DMIF_SHARED_DATA", ROOT.parent / "shared" / "data")) / "pyradiomics-brain1"
BASELINE = ROOT / "Testing" / "data" / "pyradiomics_brain1_baseline.csv"
CLASSES = ("shape", "firstorder", "glcm", "gldm", "glrlm", "glszm", "ngtdm")

# PySERA 2.1.5 column -> pyradiomics name (same IBSI quantities as DMIFLib.radiomics.names, PySERA's spelling)
PYSERA_NAMES = {
    "morph_volume_mesh": "shape_MeshVolume", "morph_volume_count": "shape_VoxelVolume",
    "morph_surface_area": "shape_SurfaceArea", "morph_sv_ratio": "shape_SurfaceVolumeRatio",
    "morph_sphericity": "shape_Sphericity", "morph_max_3d_diameter": "shape_Maximum3DDiameter",
    "morph_major_axis_length": "shape_MajorAxisLength", "morph_minor_axis_length": "shape_MinorAxisLength",
    "morph_least_axis_length": "shape_LeastAxisLength", "morph_elongation": "shape_Elongation",
    "morph_flatness": "shape_Flatness",
    "stat_energy": "firstorder_Energy", "stat_rms": "firstorder_RootMeanSquared", "ih_entropy": "firstorder_Entropy",
    "ih_uniformity": "firstorder_Uniformity", "stat_mean": "firstorder_Mean", "stat_var": "firstorder_Variance",
    "stat_skew": "firstorder_Skewness", "stat_kurt": "firstorder_Kurtosis", "stat_median": "firstorder_Median",
    "stat_min": "firstorder_Minimum", "stat_max": "firstorder_Maximum", "stat_p10": "firstorder_10Percentile",
    "stat_p90": "firstorder_90Percentile", "stat_iqr": "firstorder_InterquartileRange",
    "stat_range": "firstorder_Range", "stat_mad": "firstorder_MeanAbsoluteDeviation",
    "stat_rmad": "firstorder_RobustMeanAbsoluteDeviation",
}
_PYSERA_TEXTURE = {  # PySERA stem, suffix -> DMIFLib.radiomics.names stem (pyradiomics name looked up there)
    "glcm": ("cm", "_3D_avg"), "glrlm": ("rlm", "_3D_avg"), "szm": ("szm", "_3D"), "ngtdm": ("ngt", "_3D"),
    "ngl": ("ngl", "_3D"),
}
_PYSERA_RENAMES = {"rlm_rl_entropy": "rlm_rl_entr", "szm_sdlge": "szm_szlge", "szm_sdhge": "szm_szhge",
                   "szm_ldlge": "szm_lzlge", "szm_ldhge": "szm_lzhge"}


def run_pyradiomics(image: Path, mask: Path) -> tuple[str, dict[str, float]]:
    import radiomics
    from radiomics import featureextractor

    extractor = featureextractor.RadiomicsFeatureExtractor(
        binWidth=25, voxelArrayShift=2000, distances=[1], label=1, padDistance=5, force2D=False,
        resampledPixelSpacing=None, normalize=False, gldm_a=0, minimumROIDimensions=1, additionalInfo=False)
    extractor.disableAllImageTypes()
    extractor.enableImageTypeByName("Original")
    extractor.enableImageTypeByName("Wavelet")
    extractor.disableAllFeatures()
    for feature_class in CLASSES:
        extractor.enableFeatureClassByName(feature_class)
    result = extractor.execute(str(image), str(mask))
    return f"pyradiomics {radiomics.__version__}", {
        k: float(v) for k, v in result.items() if not k.startswith("diagnostics")}


def run_pysera(image: Path, mask: Path) -> tuple[str, dict[str, float]]:
    import pandas as pd
    import pysera

    from DMIFLib.radiomics.names import MIRP_TO_PYRADIOMICS

    with tempfile.TemporaryDirectory() as tmp:
        result = pysera.process_batch(
            image_input=str(image), mask_input=str(mask), output_path=tmp, temporary_files_path=tmp,
            bin_size=25, dimensions="1st,3d", categories="morph,stat,ih,glcm,glrlm,glszm,ngtdm,ngldm",
            num_workers=1, enable_parallelism=False, apply_preprocessing=False, min_roi_volume=1,
            aggregation_lesion=True,
            IBSI_based_parameters={"radiomics_DataType": "OTHER", "radiomics_DiscType": "FBS",
                                   "radiomics_isScale": 0, "radiomics_isGLround": 0, "radiomics_isReSegRng": 0,
                                   "radiomics_isOutliers": 0})
        table = result["out"][1] if "out" in result else pd.read_excel(next(Path(tmp).glob("*.xlsx")))
    row = table.iloc[0]
    out = {}
    for column in table.columns:
        if column in PYSERA_NAMES:
            out["original_" + PYSERA_NAMES[column]] = float(row[column])
            continue
        for prefix, (stem_prefix, suffix) in _PYSERA_TEXTURE.items():
            if column.startswith(prefix + "_") and column.endswith(suffix):
                stem = stem_prefix + column[len(prefix):-len(suffix)]
                stem = _PYSERA_RENAMES.get(stem, stem)
                if stem in MIRP_TO_PYRADIOMICS:
                    feature_class, feature = MIRP_TO_PYRADIOMICS[stem]
                    out[f"original_{feature_class}_{feature}"] = float(row[column])
    if "original_firstorder_Kurtosis" in out:
        out["original_firstorder_Kurtosis"] += 3.0  # IBSI excess kurtosis -> pyradiomics kurtosis
    return f"PySERA {pysera.__version__}", out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", choices=("pyradiomics", "pysera"))
    parser.add_argument("--save", type=Path, help="write {'features': {...}} JSON here")
    args = parser.parse_args()
    image, mask = DATA / "brain1_image.nrrd", DATA / "brain1_label.nrrd"
    if not image.is_file():
        print(f"brain1 data not found in {DATA}", file=sys.stderr)
        return 2
    from DMIFLib.radiomics.agreement import agreement_table, format_table, read_baseline_csv

    start = time.perf_counter()
    version, features = {"pyradiomics": run_pyradiomics, "pysera": run_pysera}[args.library](image, mask)
    print(f"{version}: {len(features)} features in {time.perf_counter() - start:.1f} s\n")
    if args.save:
        args.save.write_text(json.dumps({"version": version, "features": features}, indent=0), encoding="utf-8")
    print(format_table(agreement_table(features, read_baseline_csv(BASELINE)), f"{version} vs stored baseline"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
