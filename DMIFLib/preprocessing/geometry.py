"""Image geometry helpers: LPS (SimpleITK) ↔ RAS (Slicer), index ↔ physical, slice axis.

SimpleITK images carry LPS physical coordinates; Slicer and Markups ROIs use RAS. The conversion is
``diag(-1, -1, 1)`` both ways. Index vectors here are in (i, j, k) order (SimpleITK's ``GetSize`` order);
NumPy arrays from SimpleITK are (k, j, i).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk  # noqa: N813

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
"""Multiply an LPS point or direction (3,) — or the rows of an (N, 3) array transposed — to get RAS."""


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """(..., 3) LPS points or directions → RAS (negate x and y)."""
    return np.asarray(points, dtype=float) * np.array([-1.0, -1.0, 1.0])


ras_to_lps = lps_to_ras
"""(..., 3) RAS → LPS; the same sign flip."""


def direction_matrix(image: sitk.Image) -> np.ndarray:
    """The (3, 3) LPS direction matrix of ``image``; column c is the LPS direction of index axis c."""
    return np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)


def index_to_lps(image: sitk.Image, index: np.ndarray) -> np.ndarray:
    """(N, 3) continuous (i, j, k) indices → (N, 3) LPS points in mm."""
    index = np.atleast_2d(np.asarray(index, dtype=float))
    scaled = index * np.asarray(image.GetSpacing(), dtype=float)
    return np.asarray(image.GetOrigin(), dtype=float) + scaled @ direction_matrix(image).T


def lps_to_index(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """(N, 3) LPS points in mm → (N, 3) continuous (i, j, k) indices."""
    points = np.atleast_2d(np.asarray(points, dtype=float))
    rotated = (points - np.asarray(image.GetOrigin(), dtype=float)) @ direction_matrix(image)
    return rotated / np.asarray(image.GetSpacing(), dtype=float)


def slice_axis(image: sitk.Image) -> int:
    """The acquisition's slice axis as an index axis (0 = i, 1 = j, 2 = k).

    The axis with the largest spacing (thick slices); when the spacing is isotropic within 1 %, the index axis
    whose direction is closest to superior–inferior (axial slices).
    """
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    if spacing.max() > 1.01 * spacing.min():
        return int(np.argmax(spacing))
    return int(np.argmax(np.abs(direction_matrix(image)[2, :])))
