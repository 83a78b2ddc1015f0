"""Slice-space maps (n, S, S) put back through the crop onto the reference (T1C) voxel grid.

:func:`DMIFLib.preprocessing.slices.extract_slices` cuts, for every slice index in the box along the slice
axis, an in-plane index window (rows = the higher in-plane index axis, columns = the lower one; square mode
widens the shorter side in mm) and resizes it to S×S with bilinear interpolation (``align_corners=False``).
:func:`slices_to_volume` inverts this: each S×S map is resized back to the window's size with the same
pixel-centre convention, written into its slice of a zero volume, and (by default) cut to the box's index bounds.
The window is recomputed with the slicing code's own ``_window`` from what ``extract_slices`` stores in
``SliceStack.info`` (``crop_ijk_lo``, ``crop_ijk_hi``, ``crop_extent_mm``), so no crop maths is repeated here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.preprocessing.slices import SliceStack, _window


@dataclass(frozen=True)
class CropGeometry:
    """Where a slice stack lies on its reference grid. Indices are (i, j, k) voxel indices, bounds inclusive.

    ``rows`` / ``cols``: half-open index windows [a, b) along ``plane_axes[1]`` / ``plane_axes[0]`` (may leave
    the image); ``lo`` / ``hi``: the box's index bounds; ``slice_axis``: the axis the slices are taken along.
    """

    slice_axis: int
    plane_axes: tuple[int, int]
    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    rows: tuple[int, int]
    cols: tuple[int, int]


def crop_geometry(stack: SliceStack, reference: sitk.Image) -> CropGeometry:
    """The crop of ``stack`` on ``reference`` (the grid it was cut from; raises ValueError when it does not fit)."""
    name = stack.patient_id or "slice stack"
    missing = [k for k in ("crop_ijk_lo", "crop_ijk_hi", "crop_extent_mm") if k not in stack.info]
    if missing:
        raise ValueError(f"{name}: no crop geometry (info lacks {', '.join(missing)}); cut it with extract_slices")
    axis = int(stack.slice_axis)
    lo = np.asarray(stack.info["crop_ijk_lo"], dtype=int)
    hi = np.asarray(stack.info["crop_ijk_hi"], dtype=int)
    size = np.asarray(reference.GetSize())
    if np.any(lo < 0) or np.any(hi >= size) or not np.array_equal(stack.slice_indices, np.arange(lo[axis],
                                                                                                   hi[axis] + 1)):
        raise ValueError(f"{name}: the crop (index bounds {lo.tolist()}–{hi.tolist()}) does not fit the reference "
                         f"image (size {size.tolist()}); pass the image the slices were cut from")
    if stack.box is not None:
        box_lo, box_hi = stack.box.ijk_bounds(reference)
        if not (np.array_equal(box_lo, lo) and np.array_equal(box_hi, hi)):
            raise ValueError(f"{name}: the box covers voxels {box_lo.tolist()}–{box_hi.tolist()} of the reference "
                             f"image, the slices were cut from {lo.tolist()}–{hi.tolist()}: a different grid")
    plane_axes = tuple(a for a in range(3) if a != axis)
    spacing = np.asarray(reference.GetSpacing(), dtype=float)
    cols, rows = (_window(int(lo[a]), int(hi[a]), float(spacing[a]), float(e))
                  for a, e in zip(plane_axes, stack.info["crop_extent_mm"], strict=True))
    return CropGeometry(slice_axis=axis, plane_axes=plane_axes, lo=tuple(int(v) for v in lo),
                        hi=tuple(int(v) for v in hi), rows=rows, cols=cols)


def _resize_to(planes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n, S, S) → (n, *shape) float32, bilinear, ``align_corners=False`` (antialiased when shrinking)."""
    import torch
    from torch.nn.functional import interpolate

    tensor = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[:, None]
    return interpolate(tensor, size=shape, mode="bilinear", align_corners=False, antialias=True)[:, 0].numpy()


def slices_to_volume(values: np.ndarray, stack: SliceStack, reference: sitk.Image,
                     clip_to_box: bool = True) -> sitk.Image:
    """Per-slice maps ``values`` (n, S, S), one row per slice of ``stack``, as a float32 image on ``reference``'s
    grid (same size, spacing, origin, direction); zero outside the crop, and outside the box's index bounds when
    ``clip_to_box`` (else the square crop's extra in-plane context is kept)."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 3 or len(values) != stack.n_slices:
        raise ValueError(f"values must be (n_slices={stack.n_slices}, S, S), got shape {values.shape}")
    geometry = crop_geometry(stack, reference)
    (r0, r1), (c0, c1) = geometry.rows, geometry.cols
    planes = _resize_to(values, (r1 - r0, c1 - c0))
    out = np.zeros(reference.GetSize()[::-1], dtype=np.float32)  # (k, j, i)
    col_axis, row_axis = geometry.plane_axes
    view = np.transpose(out, (2 - geometry.slice_axis, 2 - row_axis, 2 - col_axis))  # (slice, row, col) view
    size = reference.GetSize()
    rs, re = max(r0, 0), min(r1, size[row_axis])
    cs, ce = max(c0, 0), min(c1, size[col_axis])
    if clip_to_box:
        rs, re = max(rs, geometry.lo[row_axis]), min(re, geometry.hi[row_axis] + 1)
        cs, ce = max(cs, geometry.lo[col_axis]), min(ce, geometry.hi[col_axis] + 1)
    slices = slice(geometry.lo[geometry.slice_axis], geometry.hi[geometry.slice_axis] + 1)
    view[slices, rs:re, cs:ce] = planes[:, rs - r0:re - r0, cs - c0:ce - c0]
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(reference)
    return image
