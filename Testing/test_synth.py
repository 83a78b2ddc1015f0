"""The synthetic cohort: determinism, geometry (a real registration recovers the T2W offset), labels, and
"learnable, not trivial": first-order tumour statistics do not separate the classes, a texture statistic does.
Small heads (``scale`` 0.5: same spacings and texture, half the field of view) keep it fast.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from DMIFLib.cli import main
from DMIFLib.cohort import read_cohort
from DMIFLib.synth import SynthCancelledError, read_truth_transform, synthesize_cohort

SCALE = 0.5


@pytest.fixture(scope="module")
def cohort40(tmp_path_factory) -> Path:
    return synthesize_cohort(tmp_path_factory.mktemp("synth40"), 40, seed=11, workers=2, scale=SCALE)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_identical_files_any_workers(tmp_path):
    a = synthesize_cohort(tmp_path / "a", 3, seed=5, scale=0.35)
    b = synthesize_cohort(tmp_path / "b", 3, seed=5, scale=0.35, workers=2)
    c = synthesize_cohort(tmp_path / "c", 3, seed=6, scale=0.35)
    files_a, files_b, files_c = _files(a.parent), _files(b.parent), _files(c.parent)
    assert len(files_a) == 1 + 3 * 5
    assert files_a == files_b
    assert files_a["SYN001/t1c.nii.gz"] != files_c["SYN001/t1c.nii.gz"]


def test_cohort_table_and_refusals(tmp_path):
    events = []
    csv_path = synthesize_cohort(tmp_path, 6, seed=1, scale=0.35, progress=events.append)
    assert csv_path.read_text(encoding="utf-8").splitlines()[0].startswith("patient_id,t1c,t2w,roi,label")
    assert "SYN001/t1c.nii.gz" in csv_path.read_text(encoding="utf-8")  # relative paths
    cases = read_cohort(csv_path, require_labels=True, require_modalities=("t2w",))
    assert [c.label for c in cases].count(1) == 3
    assert all(Path(c.roi).is_file() and c.images["t2w"].is_file() for c in cases)
    assert [e["done"] for e in events] == list(range(1, 7))
    before = csv_path.read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        synthesize_cohort(tmp_path, 6, seed=2, scale=0.35)
    assert csv_path.read_bytes() == before
    assert main(["synth", "--out", str(tmp_path), "--patients", "2"]) == 2
    (tmp_path / "old" / "SYN002").mkdir(parents=True)
    (tmp_path / "old" / "SYN002" / "notes.txt").write_text("the user's", encoding="utf-8")  # not ours: refused, kept
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        synthesize_cohort(tmp_path / "old", 2, seed=2, scale=0.35)
    assert (tmp_path / "old" / "SYN002" / "notes.txt").read_text(encoding="utf-8") == "the user's"
    (tmp_path / "old" / "SYN002" / "notes.txt").unlink()
    (tmp_path / "old" / "SYN002" / "t1c.nii.gz").write_bytes(b"partial")  # an interrupted run's file: redone
    synthesize_cohort(tmp_path / "old", 2, seed=2, scale=0.35)
    assert sitk.ReadImage(str(tmp_path / "old" / "SYN002" / "t1c.nii.gz")).GetDimension() == 3
    with pytest.raises(ValueError, match="at least 2"):
        synthesize_cohort(tmp_path / "one", 1, seed=2)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(SynthCancelledError):
        synthesize_cohort(tmp_path / "cancelled", 4, seed=1, scale=0.35, cancel=cancel)


def test_command_line(tmp_path):
    assert main(["synth", "--out", str(tmp_path), "--patients", "2", "--seed", "3", "--scale", "0.35"]) == 0
    assert len(read_cohort(tmp_path / "cohort.csv")) == 2


def test_labels_balanced_and_tumour_inside_brain(cohort40):
    cases = read_cohort(cohort40)
    assert sum(c.label for c in cases) == 20
    for case in cases[:6]:
        t1c = sitk.ReadImage(str(case.images["t1c"]))
        label_image = sitk.ReadImage(case.roi)
        assert label_image.GetPixelID() == sitk.sitkUInt8
        assert label_image.GetSize() == t1c.GetSize() and label_image.GetOrigin() == t1c.GetOrigin()
        label = sitk.GetArrayFromImage(label_image).astype(bool)
        brain = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(case.roi).parent / "brain_mask.nii.gz"))) > 0
        assert label.sum() > 500
        assert not (label & ~brain).any()
        assert np.count_nonzero(label.any(axis=(1, 2))) >= 4  # several slices even at half scale


def test_realistic_geometry_and_real_registration_recovers_t2w_offset(cohort40):
    case = read_cohort(cohort40)[0]
    fixed = sitk.ReadImage(str(case.images["t1c"]), sitk.sitkFloat32)
    moving = sitk.ReadImage(str(case.images["t2w"]), sitk.sitkFloat32)
    spacing = np.array(fixed.GetSpacing())
    assert 0.85 <= spacing[0] <= 1.0 and 4.0 <= spacing[2] <= 6.0
    assert moving.GetSize() != fixed.GetSize()
    assert not np.allclose(np.array(moving.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-3)  # oblique
    truth = read_truth_transform(Path(case.roi).parent / "truth.json")
    reg_truth = json.loads((Path(case.roi).parent / "truth.json").read_text(encoding="utf-8"))["t2w_registration"]
    assert reg_truth["rotation_deg"] > 2.0 and reg_truth["translation_norm_mm"] > 2.0

    brain = sitk.ReadImage(str(Path(case.roi).parent / "brain_mask.nii.gz"))
    points = [fixed.TransformIndexToPhysicalPoint([int(i) for i in idx[::-1]])
              for idx in np.argwhere(sitk.GetArrayFromImage(brain) > 0)[::50]]

    def error_mm(transform: sitk.Transform) -> float:
        return float(np.mean([np.linalg.norm(np.subtract(transform.TransformPoint(p), truth.TransformPoint(p)))
                              for p in points]))

    initial = sitk.Euler3DTransform()
    initial.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in fixed.GetSize()]))
    assert error_mm(initial) > 3.0  # identity leaves T2W visibly off
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.REGULAR)
    method.SetMetricSamplingPercentage(0.25, seed=1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-3, 200, relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    found = method.Execute(fixed, moving)
    # 4–6 mm slices on differently oriented grids limit the accuracy to about a voxel's in-plane size or two.
    assert error_mm(found) < 2.5
    assert error_mm(found) < 0.4 * error_mm(initial)
    # The geometry is exact: the true transform scores better than both identity and the optimiser's result.
    evaluate = sitk.ImageRegistrationMethod()
    evaluate.SetMetricAsMattesMutualInformation(32)
    evaluate.SetInterpolator(sitk.sitkLinear)
    scores = {}
    for name, transform in (("truth", truth), ("identity", initial), ("found", found)):
        evaluate.SetInitialTransform(transform)
        scores[name] = evaluate.MetricEvaluate(fixed, moving)
    assert scores["truth"] < scores["found"] < scores["identity"]


def _coherence(image: np.ndarray, mask: np.ndarray) -> float:
    """In-plane orientation coherence (λ1 − λ2)/(λ1 + λ2) of the gradient structure tensor summed over ``mask``."""
    gx = ndimage.gaussian_filter(image, (0, 0.7, 0.7), order=(0, 0, 1))
    gy = ndimage.gaussian_filter(image, (0, 0.7, 0.7), order=(0, 1, 0))
    jxx, jyy, jxy = (gx * gx)[mask].sum(), (gy * gy)[mask].sum(), (gx * gy)[mask].sum()
    return float(np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy))


def test_label_learnable_from_texture_not_from_intensity(cohort40):
    labels, first_order, coherence = [], {"t1c": [], "t2w": []}, {"t1c": [], "t2w": []}
    for case in read_cohort(cohort40):
        folder = Path(case.roi).parent
        t1c = sitk.ReadImage(str(case.images["t1c"]), sitk.sitkFloat32)
        # T2W as registration would give it (true transform), on the T1C grid.
        t2w = sitk.Resample(sitk.ReadImage(str(case.images["t2w"]), sitk.sitkFloat32), t1c,
                            read_truth_transform(folder / "truth.json"), sitk.sitkLinear)
        tumour = sitk.GetArrayFromImage(sitk.ReadImage(case.roi)) > 0
        brain = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "brain_mask.nii.gz"))) > 0
        core = ndimage.binary_erosion(tumour, np.ones((1, 7, 7)))  # away from the tumour's edge
        labels.append(case.label)
        for name, image in (("t1c", t1c), ("t2w", t2w)):
            array = sitk.GetArrayFromImage(image).astype(np.float64)
            z = (array - array[brain].mean()) / array[brain].std()
            first_order[name].append([z[tumour].mean(), z[tumour].std()])
            coherence[name].append(_coherence(array, core))
    for name in ("t1c", "t2w"):
        stats = np.array(first_order[name])
        assert 0.3 <= roc_auc_score(labels, stats[:, 0]) <= 0.7, f"{name}: mean tumour intensity separates"
        assert 0.3 <= roc_auc_score(labels, stats[:, 1]) <= 0.7, f"{name}: tumour intensity spread separates"
        assert roc_auc_score(labels, coherence[name]) > 0.85, f"{name}: texture orientation does not separate"
