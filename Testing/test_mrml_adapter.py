"""The MRML adapter under slicer-core: real volume, ROI and table nodes; geometry RAS <-> LPS; scene save/reload."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed for the MRML adapter")
sitk = pytest.importorskip("SimpleITK")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "DMIFPredict"))

from DMIFLib.mrml import tables  # noqa: E402
from DMIFLib.mrml.scene import MRMLError, load_scene, load_volume, new_scene, save_scene  # noqa: E402
from DMIFLib.mrml.volumes import image_to_volume, volume_to_image  # noqa: E402


def _oblique_image() -> sitk.Image:
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.normal(size=(5, 7, 9)).astype(np.float32))  # (k, j, i)
    image.SetSpacing((0.9, 1.1, 5.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    angle = np.deg2rad(12.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image.SetDirection(rotation.flatten().tolist())
    return image


def _same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)


def test_image_volume_round_trip_keeps_lps_geometry_and_voxels():
    scene = new_scene()
    image = _oblique_image()
    node = image_to_volume(image, scene, "oblique")
    # RAS in the node: the first voxel's RAS position is the LPS origin with x and y negated.
    import vtk

    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    np.testing.assert_allclose([ijk_to_ras.GetElement(r, 3) for r in range(3)], [-10.0, 20.0, 30.0])
    back = volume_to_image(node)
    _same_geometry(image, back)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(back))


def test_real_oblique_volume_matches_simpleitk_reader(shared_data):
    path = shared_data / "TCGA-FG-6692" / "native" / "TCGA-FG-6692_t2.nii.gz"
    scene = new_scene()
    node = load_volume(scene, path, "T2W")
    from_mrml = volume_to_image(node)
    from_file = sitk.ReadImage(str(path))
    # Slicer's reader may store the slices in the opposite order (this file's sform is left-handed); the
    # physical image must be the same: resampled onto the file's grid it matches voxel for voxel.
    assert from_mrml.GetSize() == from_file.GetSize()
    on_file_grid = sitk.Resample(from_mrml, from_file, sitk.Transform(), sitk.sitkNearestNeighbor, -1)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(on_file_grid), sitk.GetArrayFromImage(from_file))
    corner = from_file.TransformIndexToPhysicalPoint((0, 0, 0))
    assert from_mrml.TransformPhysicalPointToContinuousIndex(corner) == pytest.approx((0, 0, 25), abs=1e-3)


def test_parent_linear_transform_is_applied():
    import vtk

    scene = new_scene()
    node = image_to_volume(_oblique_image(), scene, "moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 5.0)  # +5 mm towards Right = -5 in LPS x
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    assert volume_to_image(node).GetOrigin()[0] == pytest.approx(10.0 - 5.0)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(MRMLError, match="not found"):
        load_volume(new_scene(), tmp_path / "nope.nii.gz")


def test_tables_survive_scene_save_and_reload_under_the_patient(tmp_path):
    scene = new_scene()
    volume = image_to_volume(_oblique_image(), scene, "T1C")
    node = tables.table_from_columns(scene, "Results", {"patient_id": ["P1", "P2"], "p_fused": [0.25, 0.75],
                                                         "prediction": [0, 1]})
    patient = tables.patient_item(scene, "P1")
    tables.place_under(scene, patient, [volume, node])
    chart = tables.plot_chart(scene, "Curve", node, "p_fused", ["prediction"], "p", "class")
    tables.place_under(scene, patient, [chart])
    saved = save_scene(scene, tmp_path / "out" / "scene.mrml")
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")], "staging files left behind"

    stored_at = node.GetStorageNode().GetFileName()
    with pytest.raises(MRMLError, match="already exists"):
        save_scene(scene, saved)  # never replaces what is there
    assert node.GetStorageNode().GetFileName() == stored_at
    assert save_scene(scene, saved, overwrite=True) == saved

    again = load_scene(saved)
    reloaded = again.GetFirstNodeByName("Results")
    columns = tables.table_columns(reloaded)
    assert columns["patient_id"] == ["P1", "P2"]
    assert columns["p_fused"] == pytest.approx([0.25, 0.75])
    assert columns["prediction"] == [0, 1]
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(again)
    parent = sh.GetItemParent(sh.GetItemByDataNode(reloaded))
    assert sh.GetItemName(parent) == "P1" and sh.GetItemLevel(parent) == "Patient"
    chart_again = again.GetFirstNodeByName("Curve")
    assert chart_again.GetNumberOfPlotSeriesNodes() == 1
    assert chart_again.GetNthPlotSeriesNode(0).GetTableNode().GetName() == "Results"
    assert again.GetFirstNodeByName("T1C").GetImageData().GetDimensions() == (9, 7, 5)


def _rotated_box():
    from DMIFLib.preprocessing.roi import OrientedBox

    angle = np.deg2rad(20.0)
    axes = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    return OrientedBox(np.array([12.0, -30.0, 45.0]), axes, np.array([20.0, 30.0, 40.0]))


def test_roi_node_round_trip_and_agrees_with_the_markups_file_reader(tmp_path):
    from DMIFLib.mrml.roi import box_to_roi_node, roi_node_to_box
    from DMIFLib.preprocessing.roi import OrientedBox

    scene = new_scene()
    box = _rotated_box()
    node = box_to_roi_node(box, scene)
    back = roi_node_to_box(node)
    np.testing.assert_allclose(back.center_ras, box.center_ras, atol=1e-9)
    np.testing.assert_allclose(back.axes_ras, box.axes_ras, atol=1e-9)
    np.testing.assert_allclose(back.size_mm, box.size_mm, atol=1e-9)
    # Slicer's own writer (LPS .mrk.json) read by DMIFLib's parser gives the same box
    storage = slicer.vtkMRMLMarkupsROIJsonStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "box.mrk.json"))
    assert storage.WriteData(node)
    parsed = OrientedBox.from_markups_json(tmp_path / "box.mrk.json")
    np.testing.assert_allclose(parsed.center_ras, box.center_ras, atol=1e-6)
    np.testing.assert_allclose(np.abs(parsed.axes_ras.T @ box.axes_ras), np.eye(3), atol=1e-6)
    np.testing.assert_allclose(parsed.size_mm, box.size_mm, atol=1e-6)


def test_roi_under_a_transform_is_read_in_world_coordinates():
    import vtk

    from DMIFLib.mrml.roi import box_to_roi_node, roi_node_to_box
    from DMIFLib.preprocessing.roi import OrientedBox

    scene = new_scene()
    node = box_to_roi_node(OrientedBox.axis_aligned([0.0, 0.0, 0.0], [10.0, 10.0, 10.0]), scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(2, 3, 7.5)
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    np.testing.assert_allclose(roi_node_to_box(node).center_ras, [0.0, 0.0, 7.5])


def test_unplaced_roi_is_a_clear_error():
    from DMIFLib.mrml.roi import roi_node_to_box

    node = new_scene().AddNewNodeByClass("vtkMRMLMarkupsROINode", "Tumour box")
    with pytest.raises(MRMLError, match="'Tumour box' has not been placed"):
        roi_node_to_box(node)


def test_a_placed_box_can_be_placed_again_with_two_clicks():
    """After RemoveAllControlPoints() a placed box ROI keeps needing one control point (Slicer's
    vtkMRMLMarkupsROINode): the next placement would give an empty box. reset_roi_for_placement fixes that."""
    from DMIFLib.mrml.roi import reset_roi_for_placement, roi_node_to_box

    scene = new_scene()
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "Tumour box")
    roi.AddControlPoint([0.0, 0.0, 0.0])
    roi.AddControlPoint([10.0, 20.0, 5.0])  # two opposite corners, as the placement widget adds them
    assert roi.GetSize() == pytest.approx((10.0, 20.0, 5.0)) and roi.GetRequiredNumberOfControlPoints() == 1
    roi.RemoveAllControlPoints()
    assert roi.GetRequiredNumberOfControlPoints() == 1  # the defect: one click would place an empty box

    reset_roi_for_placement(roi)
    assert (roi.GetRequiredNumberOfControlPoints(), roi.GetMaximumNumberOfControlPoints()) == (2, 2)
    assert roi.GetNumberOfControlPoints() == 0 and roi.GetROIType() == roi.ROITypeBox
    roi.AddControlPoint([-4.0, 2.0, 1.0])
    roi.AddControlPoint([6.0, -8.0, 13.0])
    box = roi_node_to_box(roi)
    assert box.size_mm == pytest.approx([10.0, 10.0, 12.0]) and box.center_ras == pytest.approx([1.0, -3.0, 7.0])
    assert box.axes_ras == pytest.approx(np.eye(3))


def test_fit_box_to_segmentation_follows_the_reference_grid():
    from DMIFPredictLib.logic import PredictLogic

    from DMIFLib.mrml.roi import roi_node_to_box

    scene = new_scene()
    reference = image_to_volume(_oblique_image(), scene, "T1C")
    label = np.zeros((5, 7, 9), np.uint8)
    label[1:3, 2:5, 3:7] = 1  # k 1..2, j 2..4, i 3..6
    label_image = sitk.GetImageFromArray(label)
    label_image.CopyInformation(_oblique_image())
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "tumour")
    image_to_volume(label_image, scene, "tumour", labelmap)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)

    roi = PredictLogic.fitBoxToSegmentation(scene, segmentation, reference)
    box = roi_node_to_box(roi)
    np.testing.assert_allclose(sorted(box.size_mm), sorted([4 * 0.9, 3 * 1.1, 2 * 5.5]), atol=1e-6)
    center_lps = label_image.TransformContinuousIndexToPhysicalPoint((4.5, 3.0, 1.5))
    np.testing.assert_allclose(box.center_ras, np.array(center_lps) * [-1, -1, 1], atol=1e-6)
