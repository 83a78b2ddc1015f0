"""A tumour mask drawn on the T2 (cohort column ``roi_space`` = t2w) is carried to the T1C through the registration.

The phantom's T2 is misregistered from the T1C by a known rigid motion (5 mm, 4°); the mask is drawn where the
tumour lies in the T2 scan. Carried through the registration it must cover the tumour in the T1C; taken as it is
(physical coordinates only) it would be off by the motion.
"""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk  # noqa: N813
from test_preprocessing_pipeline import FAST, TUMOUR_LPS, euler, grid, head, tumour_label

from DMIFLib.cohort import CohortCase, read_cohort, write_cohort
from DMIFLib.preprocessing.backend import RegistrationResult, SimpleITKBackend
from DMIFLib.preprocessing.cohort_runner import preprocess_cohort
from DMIFLib.preprocessing.geometry import index_to_lps
from DMIFLib.preprocessing.io import read_image
from DMIFLib.preprocessing.pipeline import case_slices
from DMIFLib.preprocessing.roi_space import label_on_reference
from DMIFLib.preprocessing.settings import PreprocessSettings


def dice(a: sitk.Image, b: sitk.Image) -> float:
    x, y = sitk.GetArrayFromImage(a) > 0, sitk.GetArrayFromImage(b) > 0
    return 2.0 * float((x & y).sum()) / float(x.sum() + y.sum())


def test_mask_on_t2_grid_is_carried_to_t1c(tmp_path):
    truth = euler((2.0, -2.0, 3.0), (3.0, -3.0, 2.5))  # T1C LPS point -> T2 LPS point (the patient moved)
    t1_grid, t2_grid = grid(), grid((60, 56, 18), (1.5, 1.5, 4.5), degrees=(8.0, 0.0, 5.0))
    t1c, t2w = head(t1_grid, "t1c"), head(t2_grid, "t2w", truth.GetInverse(), seed=1)
    size = t2_grid.GetSize()
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3).astype(float)
    inverse = truth.GetInverse()  # T2 LPS point -> phantom (T1C) LPS point, applied as x -> A (x - c) + c + t
    matrix, centre = np.reshape(inverse.GetMatrix(), (3, 3)), np.asarray(inverse.GetCenter())
    points = (index_to_lps(t2_grid, index) - centre) @ matrix.T + centre + np.asarray(inverse.GetTranslation())
    drawn = sitk.GetImageFromArray((np.linalg.norm(points - TUMOUR_LPS, axis=1) <= 7.0).astype(np.uint8)
                                   .reshape(size).transpose(2, 1, 0))
    drawn.CopyInformation(t2_grid)
    truth_on_t1c = tumour_label(t1_grid)
    best = dice(label_on_reference(drawn, t1_grid, truth), truth_on_t1c)  # resampling 4.5 mm -> 5 mm slices
    assert dice(label_on_reference(drawn, t1_grid, None), truth_on_t1c) < best - 0.15  # the motion uncorrected
    data = tmp_path / "data"
    data.mkdir()
    for name, image in (("t1c", t1c), ("t2w", t2w), ("roi", drawn)):
        sitk.WriteImage(image, str(data / f"{name}.nii.gz"))
    case = CohortCase("P1", {"t1c": data / "t1c.nii.gz", "t2w": data / "t2w.nii.gz"}, str(data / "roi.nii.gz"),
                      extra={"roi_space": "t2w"})
    cohort = write_cohort([case], data / "cohort.csv")
    settings = PreprocessSettings.from_dict({**FAST, "slice_size": 32})
    out = preprocess_cohort(cohort, tmp_path / "out", settings)
    (preprocessed,) = read_cohort(out)
    assert "roi_space" not in preprocessed.extra  # the written roi now lies on the T1C grid
    carried = read_image(preprocessed.roi)
    assert carried.GetSize() == t1c.GetSize() and dice(carried, truth_on_t1c) > best - 0.05
    provenance = json.loads((tmp_path / "out" / "cases" / "P1" / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["roi_file"] == "roi.nii.gz"
    # the one-shot pipeline (no dmif preprocess) carries the mask through the registration too
    direct = case_slices(read_cohort(cohort)[0], settings, backend=KnownMotion(truth))
    assert direct.slice_indices.tolist() == case_slices(preprocessed, settings).slice_indices.tolist()


class KnownMotion(SimpleITKBackend):
    """Registration that returns the phantom's known motion (the real one ran in preprocess_cohort above)."""

    def __init__(self, transform: sitk.Transform) -> None:
        self.transform = transform

    def register_rigid(self, fixed, moving, settings):
        return RegistrationResult(self.transform, 0.0, 0.0, "known")
