"""OrientedBox: LPS↔RAS, Markups ROI files (rotated), label bounding boxes, inline boxes, IJK bounds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from DMIFLib.preprocessing.errors import PreprocessingError
from DMIFLib.preprocessing.geometry import index_to_lps, lps_to_index
from DMIFLib.preprocessing.roi import OrientedBox, load_roi


def rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def oblique_image(size=(30, 24, 10), spacing=(1.0, 1.2, 4.0)) -> sitk.Image:
    image = sitk.Image(list(size), sitk.sitkUInt8)
    image.SetSpacing(spacing)
    image.SetOrigin((12.0, -30.0, 5.0))
    image.SetDirection(tuple((rotation(2, 20) @ rotation(0, 10)).ravel()))
    return image


def test_lps_ras_sign_flip_on_label_box():
    # an axis-aligned LPS image: voxel (i, j, k) is at LPS (origin + index * spacing)
    label = sitk.Image([20, 20, 10], sitk.sitkUInt8)
    label.SetSpacing((1.0, 2.0, 3.0))
    label.SetOrigin((10.0, 20.0, 30.0))
    label[4, 5, 6] = 1
    box = OrientedBox.from_label(label)
    # LPS centre (14, 30, 48) -> RAS (-14, -30, 48); the box spans one voxel
    np.testing.assert_allclose(box.center_ras, [-14.0, -30.0, 48.0])
    np.testing.assert_allclose(box.size_mm, [1.0, 2.0, 3.0])
    grown = OrientedBox.from_label(label, margin_mm=5.0)
    np.testing.assert_allclose(grown.size_mm, [11.0, 12.0, 13.0])


def test_label_box_on_oblique_grid_is_rotated_and_covers_exactly_the_voxels():
    label = oblique_image()
    array = np.zeros(label.GetSize()[::-1], np.uint8)
    array[3:6, 5:15, 8:20] = 1  # (k, j, i)
    voxels = sitk.GetImageFromArray(array)
    voxels.CopyInformation(label)
    box = OrientedBox.from_label(voxels)
    lo, hi = box.ijk_bounds(voxels)
    assert lo.tolist() == [8, 5, 3] and hi.tolist() == [19, 14, 5]
    # every labelled voxel centre is inside the box, the voxels just outside are not
    inside = np.argwhere(array > 0)[:, ::-1]
    centres = index_to_lps(voxels, inside) * [-1, -1, 1]
    assert box.contains_ras(centres).all()
    outside = index_to_lps(voxels, np.array([[7, 10, 4], [20, 10, 4], [10, 4, 4], [10, 10, 6]])) * [-1, -1, 1]
    assert not box.contains_ras(outside).any()


def test_rotated_markups_roi_round_trip_lps_and_ras(tmp_path):
    axes = rotation(2, 30) @ rotation(0, 15)
    box = OrientedBox([10.0, -20.0, 35.0], axes, [40.0, 30.0, 20.0])
    for system in ("LPS", "RAS"):
        path = tmp_path / f"roi_{system}.mrk.json"
        path.write_text(box.to_markups_json(system), encoding="utf-8")
        back = OrientedBox.from_markups_json(path)
        np.testing.assert_allclose(back.center_ras, box.center_ras, atol=1e-9)
        np.testing.assert_allclose(back.axes_ras, box.axes_ras, atol=1e-9)
        np.testing.assert_allclose(back.size_mm, box.size_mm)
    stored = json.loads((tmp_path / "roi_LPS.mrk.json").read_text(encoding="utf-8"))["markups"][0]
    np.testing.assert_allclose(stored["center"], [-10.0, 20.0, 35.0])  # LPS in the file


def test_slicer_style_markups_file_lps_orientation():
    # As Slicer 5 writes it: LPS, a 90° rotation about S, row-major orientation (columns = ROI axes)
    data = {"@schema": "x", "markups": [{
        "type": "ROI", "coordinateSystem": "LPS", "center": [1.0, 2.0, 3.0],
        "orientation": [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0], "size": [10.0, 20.0, 30.0]}]}
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".mrk.json", delete=False) as handle:
        json.dump(data, handle)
    box = OrientedBox.from_markups_json(handle.name)
    np.testing.assert_allclose(box.center_ras, [-1.0, -2.0, 3.0])
    # LPS x-axis column (0, 1, 0) -> RAS (0, -1, 0)
    np.testing.assert_allclose(box.axes_ras[:, 0], [0.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(box.axes_ras[:, 1], [1.0, 0.0, 0.0], atol=1e-12)  # LPS (-1, 0, 0)


def test_ijk_bounds_of_rotated_box_contain_every_voxel_centre_inside_it():
    reference = oblique_image(size=(40, 40, 12))
    centre_lps = index_to_lps(reference, [[20.0, 18.0, 6.0]])[0]
    box = OrientedBox(centre_lps * [-1, -1, 1], rotation(1, 25) @ rotation(2, 40), [18.0, 10.0, 14.0])
    lo, hi = box.ijk_bounds(reference)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in reference.GetSize()], indexing="ij"), -1).reshape(-1, 3)
    inside = grid[box.contains_ras(index_to_lps(reference, grid) * [-1, -1, 1])]
    assert len(inside) > 50
    assert (inside >= lo).all() and (inside <= hi).all()
    # and tight: the bounds are the voxel centres within the index-space extent of the box's corners
    corners = lps_to_index(reference, box.corners_ras() * [-1, -1, 1])
    assert np.all(lo - 1 < corners.min(0)) and np.all(lo >= corners.min(0))
    assert np.all(hi + 1 > corners.max(0)) and np.all(hi <= corners.max(0))


def test_inline_boxes():
    reference = oblique_image()
    ras = OrientedBox.from_inline("ras:1,2,3,10,20,30")
    np.testing.assert_allclose(ras.center_ras, [1, 2, 3])
    np.testing.assert_allclose(ras.axes_ras, np.eye(3))
    ijk = OrientedBox.from_inline("ijk:2,3,1,9,12,4", reference)
    lo, hi = ijk.ijk_bounds(reference)
    assert lo.tolist() == [2, 3, 1] and hi.tolist() == [9, 12, 4]
    assert load_roi("ijk:2,3,1,9,12,4", reference).size_mm.tolist() == pytest.approx([8.0, 12.0, 16.0])


@pytest.mark.parametrize("text, problem", [
    ("ras:1,2,3", "6 numbers"), ("ras:1,2,3,4,5,-6", "positive"), ("xyz:1,2,3,4,5,6", "unknown kind"),
    ("ras:a,b,c,d,e,f", "numbers expected")])
def test_bad_inline_boxes(text, problem):
    with pytest.raises(PreprocessingError, match=problem):
        OrientedBox.from_inline(text)


def test_empty_label_and_box_outside_image(tmp_path):
    empty = sitk.Image([8, 8, 4], sitk.sitkUInt8)
    path = tmp_path / "empty_label.nrrd"
    sitk.WriteImage(empty, str(path))
    with pytest.raises(PreprocessingError, match=r"case P1, .*empty_label.nrrd: the ROI label image is empty"):
        load_roi(str(path), empty, case="P1")
    far = OrientedBox.axis_aligned([500.0, 500.0, 500.0], [10.0, 10.0, 10.0])
    with pytest.raises(PreprocessingError, match="outside the image"):
        far.ijk_bounds(empty)


def test_markups_file_without_roi(tmp_path):
    path = tmp_path / "points.mrk.json"
    path.write_text(json.dumps({"markups": [{"type": "Fiducial", "controlPoints": []}]}), encoding="utf-8")
    with pytest.raises(PreprocessingError, match=r"points\.mrk\.json: no markup of type 'ROI'"):
        OrientedBox.from_markups_json(path)
    (tmp_path / "broken.mrk.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(PreprocessingError, match="cannot read the Markups ROI file"):
        OrientedBox.from_markups_json(tmp_path / "broken.mrk.json")
