"""The preprocessing on the real patient TCGA-FG-6692 and the pyradiomics brain1 sample (../shared/data).

Kept fast with downsampled volumes and shrink factors; the full-resolution figures come from
bench/bench_preprocessing.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from DMIFLib.cohort import CohortCase
from DMIFLib.preprocessing.backend import SimpleITKBackend, rotation_angle_deg
from DMIFLib.preprocessing.io import read_image
from DMIFLib.preprocessing.pipeline import case_slices, image_slices, preprocess_volumes
from DMIFLib.preprocessing.roi import OrientedBox
from DMIFLib.preprocessing.settings import PreprocessSettings
from DMIFLib.preprocessing.slices import extract_slices

PATIENT = "TCGA-FG-6692"


def downsample(image: sitk.Image, factor: int) -> sitk.Image:
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), 0.5 * factor)
    return sitk.Shrink(smooth, [factor] * 3)


def rigidly_moved(image: sitk.Image, transform: sitk.VersorRigid3DTransform) -> sitk.Image:
    """The same voxels with a header moved by ``transform``: voxel at LPS p now lies at transform(p)."""
    moved = sitk.Image(image)
    rotation = np.asarray(transform.GetMatrix()).reshape(3, 3)
    moved.SetOrigin(transform.TransformPoint(image.GetOrigin()))
    moved.SetDirection(tuple((rotation @ np.asarray(image.GetDirection()).reshape(3, 3)).ravel()))
    return moved


def test_known_rigid_offset_between_real_t1c_and_t2w_is_recovered(shared_data):
    sri24 = shared_data / PATIENT / "sri24"
    t1c = downsample(read_image(sri24 / f"{PATIENT}_t1c_bet.nii.gz"), 3)
    t2w = downsample(read_image(sri24 / f"{PATIENT}_t2_bet.nii.gz"), 3)  # co-registered with t1c by the archive
    centre = t1c.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in t1c.GetSize()])
    known = sitk.VersorRigid3DTransform()
    known.SetCenter(centre)
    known.SetRotation((1.0, -2.0, 1.5), np.radians(4.0))  # 4° about an oblique axis
    known.SetTranslation((4.0, -4.0, 2.0))  # 6 mm
    moving = rigidly_moved(t2w, known)
    settings = PreprocessSettings(registration_shrink=(2, 1), registration_smoothing_mm=(3.0, 0.0),
                                  registration_sampling=0.1)
    result = SimpleITKBackend().register_rigid(t1c, moving, settings)
    brain = np.argwhere(sitk.GetArrayViewFromImage(t1c) > 50)[::40, ::-1]
    points = [t1c.TransformIndexToPhysicalPoint([int(v) for v in index]) for index in brain]
    errors = [np.linalg.norm(np.subtract(known.TransformPoint(p), result.transform.TransformPoint(p))) for p in points]
    rotation_error = rotation_angle_deg(np.asarray(known.GetMatrix()).reshape(3, 3).T
                                        @ np.asarray(result.transform.GetMatrix()).reshape(3, 3))
    assert max(errors) < 1.0 and rotation_error < 1.0, (max(errors), rotation_error)
    assert result.mi_after > result.mi_before + 0.1


def test_n4_removes_a_known_smooth_bias_field(shared_data):
    t1c = downsample(read_image(shared_data / PATIENT / "sri24" / f"{PATIENT}_t1c_bet.nii.gz"), 3)
    clean = sitk.GetArrayFromImage(t1c)
    brain = clean > 50
    k, j, i = np.indices(clean.shape)
    c = (np.asarray(clean.shape) - 1) / 2.0
    field = np.exp(0.35 * (i - c[2]) / c[2] - 0.25 * ((j - c[1]) / c[1]) ** 2 + 0.2 * (k - c[0]) / c[0])
    biased = sitk.GetImageFromArray((clean * field).astype(np.float32))
    biased.CopyInformation(t1c)
    mask = sitk.GetImageFromArray(brain.astype(np.uint8))
    mask.CopyInformation(t1c)
    corrected = sitk.GetArrayFromImage(SimpleITKBackend().bias_correct(biased, PreprocessSettings(n4_shrink=2), mask))

    def correlation(volume):
        return np.corrcoef(volume[brain], clean[brain])[0, 1]

    def residual_bias(volume):  # coefficient of variation of volume / clean over the brain
        ratio = volume[brain] / clean[brain]
        return ratio.std() / ratio.mean()

    before, after = correlation(clean * field), correlation(corrected)
    assert before < 0.9 and after > 0.98, (before, after)  # measured: 0.861 -> 0.988 (3 mm voxels)
    residual = residual_bias(clean * field), residual_bias(corrected)
    assert residual[0] > 0.1 and residual[1] < 0.5 * residual[0], residual


@pytest.fixture(scope="module")
def native_t1c_prepared():
    from pathlib import Path

    from Testing.conftest import SHARED_DATA

    path = Path(SHARED_DATA) / PATIENT / "native" / f"{PATIENT}_t1c.nii.gz"
    if not path.is_file():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    image = read_image(path)
    return image, preprocess_volumes({"t1c": image}, PreprocessSettings(n4_shrink=8), case=PATIENT)


def test_native_t1c_skull_strip_and_zscore(shared_data, native_t1c_prepared):
    image, prepared = native_t1c_prepared
    assert prepared.mask_source == "simpleitk fallback"
    mask = sitk.GetArrayViewFromImage(prepared.mask) > 0
    volume = sitk.GetArrayViewFromImage(prepared.volumes["t1c"])
    assert abs(volume[mask].mean()) < 0.01 and abs(volume[mask].std() - 1.0) < 0.01
    # a plausible brain: 0.8-2 litres in the 143 mm slab, in one piece, without the bright scalp fat
    millilitres = mask.sum() * np.prod(image.GetSpacing()) / 1000.0
    assert 800 < millilitres < 2000, millilitres
    components = sitk.ConnectedComponentImageFilter()
    components.Execute(prepared.mask)
    assert components.GetObjectCount() == 1
    corrected = volume[mask]
    assert np.mean(corrected > np.median(corrected) + 4.0) < 0.01
    centre = np.argwhere(mask).mean(axis=0)
    assert mask[tuple(np.round(centre).astype(int))]


def test_crops_from_the_automatic_segmentation_box_contain_the_tumour(shared_data, tmp_path):
    sri24 = shared_data / PATIENT / "sri24"
    images = {m: read_image(sri24 / f"{PATIENT}_{name}_bet.nii.gz") for m, name in (("t1c", "t1c"), ("t2w", "t2"))}
    seg = read_image(sri24 / f"{PATIENT}_seg_auto.nii.gz")
    brain = sitk.Cast(images["t1c"] > 0, sitk.sitkUInt8)
    settings = PreprocessSettings(register=False, n4=False, margin_mm=2.0)
    stack = image_slices(images, seg, settings, brain_mask=brain, case=PATIENT)
    tumour = sitk.GetArrayViewFromImage(seg) > 0  # (k, j, i)
    tumour_slices = np.nonzero(tumour.any(axis=(1, 2)))[0]
    assert stack.slice_indices[0] <= tumour_slices[0] and stack.slice_indices[-1] >= tumour_slices[-1]
    assert stack.n_slices <= len(tumour_slices) + 5  # 2 mm margin = 2 slices each side at 1 mm
    # every tumour voxel lies inside the crop, and every cropped slice shows tumour
    lo, hi = stack.info["crop_ijk_lo"], stack.info["crop_ijk_hi"]
    _, j, i = np.nonzero(tumour)
    assert i.min() >= lo[0] and i.max() <= hi[0] and j.min() >= lo[1] and j.max() <= hi[1]
    label_slices = extract_slices({"label": sitk.Cast(seg > 0, sitk.sitkFloat32)}, stack.box, 128)
    assert (label_slices.images["label"][2:-2].max(axis=(1, 2)) > 0.5).all()
    for array in stack.images.values():
        assert array.shape == (stack.n_slices, 128, 128)
    # the QA image of the box over T1C and T2W (looked at by eye; it must at least be written)
    from DMIFLib.preprocessing.qa import box_overlay_png

    assert box_overlay_png(images, stack.box, tmp_path / "qa_box.png").stat().st_size > 10_000


def test_pyradiomics_brain1_nrrd_and_labelmap_single_modality(shared_data):
    folder = shared_data / "pyradiomics-brain1"
    case = CohortCase(patient_id="brain1", images={"t1c": folder / "brain1_image.nrrd"},
                      roi=str(folder / "brain1_label.nrrd"))
    stack = case_slices(case, PreprocessSettings(n4_shrink=8))
    label = sitk.GetArrayFromImage(read_image(folder / "brain1_label.nrrd"))
    assert stack.modalities == ("t1c",)
    assert stack.slice_indices.tolist() == np.nonzero(label.any(axis=(1, 2)))[0].tolist()
    assert stack.images["t1c"].shape == (stack.n_slices, 128, 128)
    assert np.isfinite(stack.images["t1c"]).all()
    assert OrientedBox.from_label(read_image(folder / "brain1_label.nrrd")).size_mm[2] == pytest.approx(
        stack.n_slices * 6.5, abs=0.01)
