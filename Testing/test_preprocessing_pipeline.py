"""Preprocessing pipeline on small synthetic heads: slices, z-score, aspect ratio, readers, cohort runner, errors."""

from __future__ import annotations

import csv
import json
import struct

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from DMIFLib.cohort import CohortCase, read_cohort, write_cohort
from DMIFLib.preprocessing.backend import PreprocessingBackend, SimpleITKBackend
from DMIFLib.preprocessing.cohort_runner import preprocess_cohort
from DMIFLib.preprocessing.errors import PreprocessingError
from DMIFLib.preprocessing.geometry import index_to_lps
from DMIFLib.preprocessing.io import read_image
from DMIFLib.preprocessing.pipeline import case_slices, image_slices, preprocess_volumes
from DMIFLib.preprocessing.roi import OrientedBox
from DMIFLib.preprocessing.settings import PreprocessSettings
from DMIFLib.preprocessing.slices import SliceStack, extract_slices

TUMOUR_LPS = np.array([9.0, 6.0, 2.0])
FAST = {"n4": False, "registration_iterations": 60, "registration_shrink": [2, 1],
        "registration_smoothing_mm": [2.0, 0.0], "registration_sampling": [0.25, 0.1], "skull_strip": "none"}


def euler(degrees=(0.0, 0.0, 0.0), translation=(0.0, 0.0, 0.0), center=(0.0, 0.0, 0.0)) -> sitk.Euler3DTransform:
    return sitk.Euler3DTransform(center, *np.radians(degrees), translation)


def head(grid: sitk.Image, contrast: str, to_phantom: sitk.Transform | None = None, seed: int = 0) -> sitk.Image:
    """A phantom head sampled on ``grid``: scalp/skull, brain, ventricle-like blobs and a tumour (LPS mm).

    ``to_phantom`` maps the grid's physical points into phantom space (a known misregistration).
    """
    size = grid.GetSize()
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3).astype(float)
    points = index_to_lps(grid, index)
    if to_phantom is not None:
        points = np.array([to_phantom.TransformPoint(tuple(p)) for p in points])

    def blob(centre, radii, sharp=1.5):
        r = np.sqrt((((points - centre) / radii) ** 2).sum(1))
        return 1.0 / (1.0 + np.exp((r - 1.0) * np.mean(radii) / sharp))

    headmask, brain = blob([0, 0, 0], [40, 46, 36]), blob([0, 0, 0], [33, 39, 30])
    blobs = blob([-6, -4, 0], [4, 12, 8]) + blob([7, -4, 0], [4, 12, 8]) + blob([-15, 20, -5], [6, 5, 6])
    tumour = blob(TUMOUR_LPS, [7, 7, 7])
    values = {"t1c": (900, 300, 80, 700), "t2w": (300, 450, 1200, 900)}[contrast]
    image = values[0] * (headmask - brain) + values[1] * brain + values[2] * blobs * brain + values[3] * tumour
    image += np.random.default_rng(seed).normal(0, 8, image.shape)
    out = sitk.GetImageFromArray(image.reshape(size, order="C").transpose(2, 1, 0).astype(np.float32))
    out.CopyInformation(grid)
    return out


def grid(size=(56, 60, 16), spacing=(1.6, 1.6, 5.0), degrees=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    direction = np.asarray(euler(degrees).GetMatrix()).reshape(3, 3)
    image.SetDirection(tuple(direction.ravel()))
    centre = direction @ ((np.asarray(size) - 1) * spacing / 2.0)
    image.SetOrigin(tuple(-centre))
    return image


def tumour_label(reference: sitk.Image, radius_mm: float = 7.0) -> sitk.Image:
    size = reference.GetSize()
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3).astype(float)
    points = index_to_lps(reference, index)
    inside = (np.linalg.norm(points - TUMOUR_LPS, axis=1) <= radius_mm).astype(np.uint8)
    label = sitk.GetImageFromArray(inside.reshape(size).transpose(2, 1, 0))
    label.CopyInformation(reference)
    return label


@pytest.fixture(scope="module")
def phantom():
    """T1C on an axial grid, T2W on an oblique grid with a known misregistration (5 mm, 4°), tumour label."""
    t1_grid = grid()
    truth = euler((2.0, -2.0, 3.0), (3.0, -3.0, 2.5))  # fixed (T1C) LPS point -> moving (T2W) LPS point
    t2 = head(grid((60, 56, 18), (1.5, 1.5, 4.5), degrees=(8.0, 0.0, 5.0)), "t2w", truth.GetInverse(), seed=1)
    return {"t1c": head(t1_grid, "t1c"), "t2w": t2, "label": tumour_label(t1_grid), "truth": truth}


def test_settings_round_trip_and_validation():
    settings = PreprocessSettings(margin_mm=3.0, registration_shrink=(2, 1), registration_smoothing_mm=(1, 0),
                                  registration_sampling=(0.25, 0.1))
    data = json.loads(json.dumps(settings.to_dict()))
    assert PreprocessSettings.from_dict(data) == settings
    with pytest.raises(ValueError, match="unknown preprocessing setting"):
        PreprocessSettings.from_dict({"slice_sise": 64})
    with pytest.raises(ValueError, match="resize_mode"):
        PreprocessSettings(resize_mode="crop")
    with pytest.raises(ValueError, match="same number of levels"):
        PreprocessSettings(registration_shrink=(4, 2, 1), registration_smoothing_mm=(1, 0))
    with pytest.raises(ValueError, match="one fraction per level"):
        PreprocessSettings(registration_shrink=(2, 1), registration_smoothing_mm=(1, 0))


def test_image_slices_registers_and_crops_all_modalities(phantom):
    settings = PreprocessSettings.from_dict(FAST)
    stack = image_slices({"t1c": phantom["t1c"], "t2w": phantom["t2w"]}, phantom["label"], settings, case="P")
    assert set(stack.images) == {"t1c", "t2w"} and stack.slice_axis == 2
    for array in stack.images.values():
        assert array.shape == (stack.n_slices, 128, 128) and array.dtype == np.float32
    label = sitk.GetArrayViewFromImage(phantom["label"])
    assert stack.slice_indices.tolist() == sorted(set(np.nonzero(label)[0].tolist()))
    # the registered T2W matches the same phantom sampled directly on the T1C grid (no misalignment)
    aligned = extract_slices({"t2w": head(phantom["t1c"], "t2w", seed=2)}, stack.box, size=128)
    correlation = np.corrcoef(stack.images["t2w"].ravel(), aligned.images["t2w"].ravel())[0, 1]
    unregistered = image_slices({"t1c": phantom["t1c"], "t2w": phantom["t2w"]}, phantom["label"],
                                PreprocessSettings.from_dict({**FAST, "register": False}))
    before = np.corrcoef(unregistered.images["t2w"].ravel(), aligned.images["t2w"].ravel())[0, 1]
    assert correlation > 0.95 and before < correlation - 0.1, (before, correlation)
    registration = stack.info["registration"]["t2w"]
    assert registration["mi_after"] > registration["mi_before"]


def test_registration_recovers_phantom_misalignment(phantom):
    settings = PreprocessSettings(registration_shrink=(2, 1), registration_smoothing_mm=(2.0, 0.0),
                                  registration_sampling=(0.25, 0.1))
    result = SimpleITKBackend().register_rigid(phantom["t1c"], phantom["t2w"], settings)
    truth = phantom["truth"]
    points = [(x, y, z) for x in (-25, 0, 25) for y in (-30, 0, 30) for z in (-20, 0, 20)]
    errors = [np.linalg.norm(np.subtract(truth.TransformPoint(p), result.transform.TransformPoint(p))) for p in points]
    assert max(errors) < 1.5, errors


def test_zscore_over_brain_mask(phantom):
    mask = sitk.Cast(tumour_label(phantom["t1c"], 25.0), sitk.sitkUInt8)
    settings = PreprocessSettings.from_dict({**FAST, "register": False, "skull_strip": "mask"})
    prepared = preprocess_volumes({"t1c": phantom["t1c"]}, settings, brain_mask=mask)
    array = sitk.GetArrayViewFromImage(prepared.volumes["t1c"])
    inside = sitk.GetArrayViewFromImage(mask) > 0
    assert abs(array[inside].mean()) < 1e-4 and abs(array[inside].std() - 1) < 1e-4
    assert np.all(array[~inside] == 0)
    with pytest.raises(PreprocessingError, match="case Q: skull_strip='mask' needs a brain mask"):
        preprocess_volumes({"t1c": phantom["t1c"]}, settings, case="Q")
    with pytest.raises(PreprocessingError, match="values 0, 2; a 0/1 mask"):
        preprocess_volumes({"t1c": phantom["t1c"]}, settings, brain_mask=mask * 2)


def test_square_mode_keeps_aspect_ratio_and_stretch_does_not():
    volume = sitk.Image([80, 80, 6], sitk.sitkFloat32)
    volume.SetSpacing((1.0, 1.0, 3.0))
    array = np.zeros((6, 80, 80), np.float32)
    rows, cols = np.indices((80, 80))
    array[:, (rows - 40) ** 2 + (cols - 40) ** 2 <= 8 ** 2] = 1.0  # a disc of radius 8 mm in every slice
    volume = sitk.GetImageFromArray(array)
    volume.SetSpacing((1.0, 1.0, 3.0))
    # a box 40 mm wide (i) and 20 mm high (j), centred on the disc; RAS x = -LPS x
    box = OrientedBox.axis_aligned([-39.5, -39.5, 7.5], [40.0, 20.0, 7.0])  # slice centres 6, 9 mm

    def disc_extent(mode):
        stack = extract_slices({"t1c": volume}, box, size=64, resize_mode=mode)
        plane = stack.images["t1c"][0] > 0.5
        return np.ptp(np.nonzero(plane)[0]) + 1, np.ptp(np.nonzero(plane)[1]) + 1, stack

    height, width, stack = disc_extent("square")
    assert stack.n_slices == 2 and abs(height - width) <= 1
    assert stack.info["crop_extent_mm"] == [40.0, 40.0]
    height, width, _ = disc_extent("stretch")
    assert height == pytest.approx(2 * width, abs=2)


def test_slice_stack_save_load(tmp_path, phantom):
    stack = extract_slices({"t1c": phantom["t1c"]}, OrientedBox.from_label(phantom["label"]), size=32,
                           patient_id="P")
    back = SliceStack.load(stack.save(tmp_path / "stack.npz"))
    np.testing.assert_array_equal(back.images["t1c"], stack.images["t1c"])
    assert back.slice_indices.tolist() == stack.slice_indices.tolist() and back.patient_id == "P"
    np.testing.assert_allclose(back.box.center_ras, stack.box.center_ras)
    assert back.stacked(["t1c"]).shape == (stack.n_slices, 1, 32, 32)


def write_dicom_series(image: sitk.Image, folder) -> None:
    folder.mkdir()
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1.1"
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        for tag, value in (("0008|0060", "MR"), ("0020|000e", series), ("0020|000d", series + ".0"),
                           ("0020|0037", "\\".join(f"{v:.6f}" for v in (*direction[0::3], *direction[1::3]))),
                           ("0020|0032", "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k)))),
                           ("0020|0013", str(k + 1)), ("0008|0018", f"{series}.{k + 1}"),
                           ("0028|0030", "\\".join(f"{v:.6f}" for v in image.GetSpacing()[:2])),
                           ("0018|0050", f"{image.GetSpacing()[2]:.6f}")):
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(plane)


def test_readers_keep_lps_geometry_in_every_format(tmp_path):
    image = sitk.Image([12, 10, 6], sitk.sitkInt16)
    image.SetSpacing((0.9, 1.1, 4.0))
    image.SetOrigin((-40.0, 25.0, -10.0))
    image.SetDirection(tuple(np.asarray(euler((10.0, 0.0, 20.0)).GetMatrix())))
    image[3, 4, 2] = 100
    for name in ("image.nii.gz", "image.nrrd", "image.mha"):
        sitk.WriteImage(image, str(tmp_path / name))
    write_dicom_series(image, tmp_path / "dicom")
    for name in ("image.nii.gz", "image.nrrd", "image.mha", "dicom"):
        back = read_image(tmp_path / name)
        np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-4, err_msg=name)
        np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-4, err_msg=name)
        np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-4, err_msg=name)
        assert sitk.GetArrayViewFromImage(back)[2, 4, 3] == 100, name
    # On disk NIfTI stores RAS: srow_x/srow_y (bytes 280..311) carry the negated LPS x and y of the origin
    import gzip

    header = gzip.open(tmp_path / "image.nii.gz").read(348)
    srow_x, srow_y, srow_z = (struct.unpack("<4f", header[o:o + 16]) for o in (280, 296, 312))
    assert (srow_x[3], srow_y[3], srow_z[3]) == pytest.approx((40.0, -25.0, -10.0))
    nrrd_header = (tmp_path / "image.nrrd").read_bytes()[:600].decode("latin-1")
    assert "space: left-posterior-superior" in nrrd_header


def test_reader_errors(tmp_path):
    sitk.WriteImage(sitk.Image([8, 8], sitk.sitkFloat32), str(tmp_path / "flat.nii.gz"))
    sitk.WriteImage(sitk.Image([4, 4, 4, 3], sitk.sitkFloat32), str(tmp_path / "series.nii.gz"))
    array = np.zeros((4, 4, 4), np.float32)
    array[1, 1, 1] = np.nan
    bad = sitk.GetImageFromArray(array)
    sitk.WriteImage(bad, str(tmp_path / "nan.nrrd"))  # ITK's NIfTI reader turns NaN/inf into 0; NRRD keeps them
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    (tmp_path / "empty_folder").mkdir()
    cases = {"missing.nii.gz": "file not found", "flat.nii.gz": "2-D", "series.nii.gz": "4-D",
             "nan.nrrd": "1 NaN/inf voxels", "junk.nii.gz": "cannot read", "empty_folder": "no DICOM series"}
    for name, problem in cases.items():
        with pytest.raises(PreprocessingError, match=problem) as error:
            read_image(tmp_path / name, case="P7")
        assert str(error.value).startswith(f"case P7, {tmp_path / name}: ")


def write_case(folder, patient_id, phantom, **overrides) -> CohortCase:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("t1c", "t2w", "label"):
        image = overrides.get(name, phantom[name])
        if isinstance(image, str):
            paths[name] = folder / image
            continue
        paths[name] = folder / f"{patient_id}_{name}.{'mha' if patient_id == 'P4' else 'nii.gz'}"
        sitk.WriteImage(image, str(paths[name]))
    return CohortCase(patient_id=patient_id, images={"t1c": paths["t1c"], "t2w": paths["t2w"]},
                      roi=str(paths["label"]), label=int(patient_id[-1]) % 2)


class NoWorkBackend(PreprocessingBackend):
    """Fails if any volume step is asked for: reading a preprocessed case must not redo the work."""

    name = "no-work"

    def register_rigid(self, fixed, moving, settings):
        raise AssertionError("registration was run again")

    def bias_correct(self, image, settings, mask=None):
        raise AssertionError("N4 was run again")


def test_preprocess_cohort_outputs_cache_failures_and_case_slices(tmp_path, phantom):
    data = tmp_path / "data"
    shifted = sitk.Image(phantom["t2w"])
    shifted.SetOrigin(tuple(np.add(shifted.GetOrigin(), (600.0, 0.0, 0.0))))
    array = sitk.GetArrayFromImage(phantom["t1c"])
    array[3, 3, 3] = np.inf
    nan = sitk.GetImageFromArray(array)
    nan.CopyInformation(phantom["t1c"])
    cases = [write_case(data / "P1", "P1", phantom), write_case(data / "P2", "P2", phantom, t2w="absent.nii.gz"),
             write_case(data / "P3", "P3", phantom, t2w=shifted), write_case(data / "P4", "P4", phantom, t1c=nan),
             write_case(data / "P5", "P5", phantom, label=sitk.Image([8, 8, 8], sitk.sitkUInt8))]
    cohort_csv = write_cohort(cases, data / "cohort.csv")
    settings = PreprocessSettings.from_dict(FAST)
    events = []
    out = preprocess_cohort(cohort_csv, tmp_path / "out", settings, progress=events.append)
    assert [e["case"] for e in events] == [1, 2, 3, 4, 5]
    with open(tmp_path / "out" / "failures.tsv", encoding="utf-8") as handle:
        failures = {row["patient_id"]: row for row in csv.DictReader(handle, delimiter="\t")}
    assert set(failures) == {"P2", "P3", "P4", "P5"}
    assert failures["P2"]["file"].endswith("absent.nii.gz") and "not found" in failures["P2"]["problem"]
    assert "do not overlap" in failures["P3"]["problem"]
    assert failures["P4"]["file"].endswith("P4_t1c.mha") and "NaN/inf" in failures["P4"]["problem"]
    assert "empty" in failures["P5"]["problem"]
    # no partial outputs for the failed cases, no temporary folders left
    assert sorted(p.name for p in (tmp_path / "out" / "cases").iterdir()) == ["P1"]
    (preprocessed,) = read_cohort(out)
    assert preprocessed.extra["preprocessed"] == "1"
    case_dir = tmp_path / "out" / "cases" / "P1"
    provenance = json.loads((case_dir / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["registration"]["t2w"]["mattes_mi_after"] > provenance["registration"]["t2w"][
        "mattes_mi_before"]
    assert provenance["inputs"]["t1c"]["sha256"] and provenance["versions"]["SimpleITK"]
    assert {"qa_box.png", "qa_registration_t2w.png", "t2w_to_t1c.tfm"} <= {p.name for p in case_dir.iterdir()}
    # reading the preprocessed cohort crops only, and gives the same slices as the one-shot pipeline
    stack = case_slices(preprocessed, settings, backend=NoWorkBackend())
    direct = case_slices(cases[0], settings)
    assert stack.slice_indices.tolist() == direct.slice_indices.tolist()
    np.testing.assert_allclose(stack.images["t2w"], direct.images["t2w"], atol=1e-4)
    # same inputs and settings: nothing is redone
    events.clear()
    stamp = (case_dir / "t1c.nii.gz").stat().st_mtime_ns
    preprocess_cohort(cohort_csv, tmp_path / "out", settings, progress=events.append)
    assert events[0]["status"] == "cached" and (case_dir / "t1c.nii.gz").stat().st_mtime_ns == stamp
    # the output folder never replaces the input table
    with pytest.raises(ValueError, match="must not hold the input"):
        preprocess_cohort(out, tmp_path / "out", settings)


def test_preprocess_cohort_in_parallel(tmp_path, phantom):
    cases = [write_case(tmp_path / "data" / p, p, phantom) for p in ("A1", "A2")]
    cohort_csv = write_cohort(cases, tmp_path / "data" / "cohort.csv")
    settings = PreprocessSettings.from_dict({**FAST, "register": False})
    out = preprocess_cohort(cohort_csv, tmp_path / "out", settings, workers=2, qa=False)
    assert [c.patient_id for c in read_cohort(out)] == ["A1", "A2"]
