"""Markups ROI nodes <-> :class:`DMIFLib.preprocessing.roi.OrientedBox` (all in world RAS, mm)."""

from __future__ import annotations

import numpy as np
import slicer

from DMIFLib.mrml.scene import MRMLError
from DMIFLib.mrml.volumes import volume_to_image, vtk_matrix


def roi_node_to_box(node: slicer.vtkMRMLMarkupsROINode):
    """The ROI as an ``OrientedBox``: center_ras (3,), axes_ras (3, 3) with the box axes as columns,
    size_mm (3,) — world coordinates, parent transforms included. Raises :class:`MRMLError` for an empty box."""
    from DMIFLib.preprocessing.roi import OrientedBox

    if node is None:
        raise MRMLError("no tumour box (Markups ROI) selected")
    if not node.GetNumberOfControlPoints() or node.GetNthControlPointPositionStatus(0) != node.PositionDefined:
        raise MRMLError(f"ROI '{node.GetName()}' has not been placed yet")
    center = [0.0, 0.0, 0.0]
    node.GetCenterWorld(center)
    axes = np.zeros((3, 3))
    for column, getter in enumerate((node.GetXAxisWorld, node.GetYAxisWorld, node.GetZAxisWorld)):
        axis = [0.0, 0.0, 0.0]
        getter(axis)
        axes[:, column] = axis
    size = [0.0, 0.0, 0.0]
    node.GetSizeWorld(size)
    if min(size) <= 0:
        raise MRMLError(f"ROI '{node.GetName()}' is empty (size {size[0]:.1f} x {size[1]:.1f} x {size[2]:.1f} mm)")
    return OrientedBox(center_ras=np.array(center), axes_ras=axes, size_mm=np.array(size))


def box_to_roi_node(box, scene: slicer.vtkMRMLScene, name: str = "Tumour box",
                    node: slicer.vtkMRMLMarkupsROINode | None = None) -> slicer.vtkMRMLMarkupsROINode:
    """Set ``node`` (or a new Markups ROI node) to an ``OrientedBox`` given in RAS."""
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
        node.CreateDefaultDisplayNodes()
    object_to_node = np.eye(4)
    object_to_node[:3, :3] = np.asarray(box.axes_ras, dtype=float)
    object_to_node[:3, 3] = np.asarray(box.center_ras, dtype=float)
    with slicer.util.NodeModify(node):
        node.SetAndObserveObjectToNodeMatrix(vtk_matrix(object_to_node))
        node.SetSize(*np.asarray(box.size_mm, dtype=float))
    return node


def reset_roi_for_placement(node: slicer.vtkMRMLMarkupsROINode) -> slicer.vtkMRMLMarkupsROINode:
    """Make a (placed) box ROI placeable again by two clicks at opposite corners: no control points, axes of the
    node's coordinate system, two control points required.

    ``RemoveAllControlPoints()`` alone is not enough: a placed box keeps required/maximum control-point counts
    of 1 (vtkMRMLMarkupsROINode::UpdateBoxROIFromControlPoints returns before restoring them when no point is
    left), so the next placement would take one click and give an empty box. ``SetROIType`` restores the counts
    of a box (2), but only when the type changes, hence the round trip through the bounding-box type.
    """
    node.RemoveAllControlPoints()
    node.SetAndObserveObjectToNodeMatrix(vtk_matrix(np.eye(4)))
    node.SetROIType(node.ROITypeBoundingBox)
    node.SetROIType(node.ROITypeBox)
    return node


def fit_box_to_labelmap(labelmap: slicer.vtkMRMLVolumeNode, margin_mm: float = 0.0):
    """The ``OrientedBox`` (RAS) around a labelmap node's non-zero voxels, aligned with its voxel grid and grown
    by ``margin_mm``; raises PreprocessingError when the labelmap is empty."""
    from DMIFLib.preprocessing.roi import OrientedBox

    return OrientedBox.from_label(volume_to_image(labelmap), margin_mm, file=labelmap.GetName())
