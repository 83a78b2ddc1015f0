"""Markups ROI nodes <-> :class:`DMIFLib.preprocessing.roi.OrientedBox` (all in world RAS, mm)."""

from __future__ import annotations

import numpy as np
import slicer

from DMIFLib.mrml.scene import MRMLError
from DMIFLib.mrml.volumes import ijk_to_world_ras, vtk_matrix


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


def box_from_mask(mask_kji: np.ndarray, ijk_to_ras: np.ndarray, margin_mm: float = 0.0, name: str = "mask"):
    """The ``OrientedBox`` around the non-zero voxels of a (k, j, i) mask, aligned with the voxel grid.

    ``ijk_to_ras`` is the (4, 4) IJK -> RAS matrix of the mask; the box spans whole voxels and is enlarged by
    ``margin_mm`` on each side. Raises :class:`MRMLError` when the mask is empty.
    """
    from DMIFLib.preprocessing.roi import OrientedBox

    nonzero = np.nonzero(mask_kji)
    if not nonzero[0].size:
        raise MRMLError(f"'{name}' is empty: nothing to fit the box to")
    low = np.array([axis.min() for axis in nonzero][::-1], dtype=float) - 0.5  # (i, j, k), voxel edges
    high = np.array([axis.max() for axis in nonzero][::-1], dtype=float) + 0.5
    linear = ijk_to_ras[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    center = linear @ ((low + high) / 2) + ijk_to_ras[:3, 3]
    size = (high - low) * spacing + 2 * margin_mm
    return OrientedBox(center_ras=center, axes_ras=linear / spacing, size_mm=size)


def fit_box_to_labelmap(labelmap: slicer.vtkMRMLVolumeNode, margin_mm: float = 0.0):
    """The grid-aligned ``OrientedBox`` around a labelmap (or any volume) node's non-zero voxels, in RAS."""
    from vtk.util import numpy_support

    image_data = labelmap.GetImageData()
    if image_data is None:
        raise MRMLError(f"'{labelmap.GetName()}' has no image data")
    mask = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(image_data.GetDimensions()[::-1])
    return box_from_mask(mask, ijk_to_world_ras(labelmap), margin_mm, labelmap.GetName())
