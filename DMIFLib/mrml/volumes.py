"""Scalar volume nodes <-> SimpleITK images.

A volume node's geometry is its IJK->RAS matrix (times its parent transforms, which must be linear); a
SimpleITK image carries LPS physical coordinates. With F = diag(-1, -1, 1):
``direction * spacing = F @ IJKToRAS[:3, :3]`` and ``origin = F @ IJKToRAS[:3, 3]``.
Voxel arrays are (k, j, i) = (z, y, x) in both.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk  # noqa: N813
import slicer
import vtk
from vtk.util import numpy_support

from DMIFLib.mrml.scene import MRMLError

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def _matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    """A vtkMatrix4x4 from a (4, 4) array."""
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_world_ras(node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The (4, 4) IJK -> world RAS matrix of a volume node, parent transforms included (linear only)."""
    local = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(local)
    ijk_to_ras = _matrix_to_numpy(local)
    parent = node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise MRMLError(f"volume '{node.GetName()}': its parent transform '{parent.GetName()}' is not linear; "
                            "harden the transform first")
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        ijk_to_ras = _matrix_to_numpy(to_world) @ ijk_to_ras
    return ijk_to_ras


def volume_to_image(node: slicer.vtkMRMLScalarVolumeNode) -> sitk.Image:
    """A SimpleITK image (LPS geometry, same pixel type) holding a copy of the volume node's voxels."""
    if node is None:
        raise MRMLError("no volume selected")
    image_data = node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise MRMLError(f"volume '{node.GetName()}' has no image data")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise MRMLError(f"volume '{node.GetName()}' has {image_data.GetNumberOfScalarComponents()} components; "
                        "a scalar (grey-level) volume is needed")
    dims = image_data.GetDimensions()  # (i, j, k)
    voxels = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(dims[::-1])
    image = sitk.GetImageFromArray(np.array(voxels, copy=True))
    matrix = LPS_FROM_RAS @ ijk_to_world_ras(node)[:3]
    spacing = np.linalg.norm(matrix[:, :3], axis=0)
    if np.any(spacing <= 0):
        raise MRMLError(f"volume '{node.GetName()}' has a degenerate IJK to RAS matrix")
    image.SetSpacing(spacing.tolist())
    image.SetDirection((matrix[:, :3] / spacing).flatten().tolist())
    image.SetOrigin(matrix[:, 3].tolist())
    return image


def image_to_volume(image: sitk.Image, scene: slicer.vtkMRMLScene, name: str,
                    node: slicer.vtkMRMLScalarVolumeNode | None = None) -> slicer.vtkMRMLScalarVolumeNode:
    """Put a SimpleITK image (LPS) into ``node`` (or a new scalar volume node named ``name``) in RAS."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise MRMLError(f"'{name}': only 3-D scalar images can become volume nodes")
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    voxels = np.ascontiguousarray(sitk.GetArrayFromImage(image))
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(*voxels.shape[::-1])
    scalars = numpy_support.numpy_to_vtk(voxels.ravel(), deep=True)
    image_data.GetPointData().SetScalars(scalars)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = LPS_FROM_RAS @ direction @ np.diag(image.GetSpacing())
    ijk_to_ras[:3, 3] = LPS_FROM_RAS @ np.array(image.GetOrigin())
    node.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras))
    node.SetAndObserveImageData(image_data)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node
