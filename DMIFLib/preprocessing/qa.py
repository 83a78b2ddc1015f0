"""Quality-assurance PNGs per case: the ROI box over each modality, and a registration checkerboard.

Drawn on matplotlib's object-oriented ``Figure`` (rendered by the Agg canvas), not pyplot: no global backend or
figure state, so preprocessing inside Slicer's process leaves the user's matplotlib alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.atomic import atomic_path
from DMIFLib.preprocessing.geometry import lps_to_index, ras_to_lps, slice_axis
from DMIFLib.preprocessing.roi import OrientedBox


def _plane(image: sitk.Image, axis: int, index: int) -> np.ndarray:
    """The 2-D plane ``index`` along index ``axis`` (rows = higher in-plane index axis, as in SliceStack)."""
    array = sitk.GetArrayViewFromImage(image)  # (k, j, i)
    plane_axes = [a for a in range(3) if a != axis]
    return np.transpose(array, (2 - axis, 2 - plane_axes[1], 2 - plane_axes[0]))[index]


def _window(plane: np.ndarray) -> tuple[float, float]:
    values = plane[np.isfinite(plane)]
    low, high = np.percentile(values, [1, 99.5]) if values.size else (0.0, 1.0)
    return float(low), float(high if high > low else low + 1.0)


def _box_outline(box: OrientedBox, reference: sitk.Image, axis: int, index: int) -> np.ndarray:
    """(5, 2) column/row coordinates of the box's index-space rectangle in slice ``index`` (closed polygon)."""
    corners = lps_to_index(reference, ras_to_lps(box.corners_ras()))
    plane_axes = [a for a in range(3) if a != axis]
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    c0, c1 = lo[plane_axes[0]], hi[plane_axes[0]]
    r0, r1 = lo[plane_axes[1]], hi[plane_axes[1]]
    return np.array([[c0, r0], [c1, r0], [c1, r1], [c0, r1], [c0, r0]])


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)
    return path


def box_overlay_png(volumes: Mapping[str, sitk.Image], box: OrientedBox, path: str | os.PathLike,
                    title: str = "") -> Path:
    """PNG: for each modality (columns), the box over the three slices at its lower edge, centre and upper edge."""
    from matplotlib.figure import Figure

    names = list(volumes)
    reference = volumes[names[0]]
    axis = slice_axis(reference)
    lo, hi = box.ijk_bounds(reference)
    rows = sorted({int(lo[axis]), int((lo[axis] + hi[axis]) // 2), int(hi[axis])})
    figure = Figure(figsize=(3.2 * len(names), 3.2 * len(rows)))
    axes = figure.subplots(len(rows), len(names), squeeze=False)
    for c, name in enumerate(names):
        for r, index in enumerate(rows):
            plane = _plane(volumes[name], axis, index)
            low, high = _window(plane)
            ax = axes[r][c]
            ax.imshow(plane, cmap="gray", vmin=low, vmax=high, origin="lower")
            outline = _box_outline(box, reference, axis, index)
            ax.plot(outline[:, 0], outline[:, 1], color="yellow", linewidth=1.2)
            ax.set_title(f"{name}  slice {index}", fontsize=9)
            ax.axis("off")
    return _finish(figure, title, path)


def _finish(figure, title: str, path: str | os.PathLike) -> Path:
    """Title, lay out and save a figure atomically; returns the PNG's path."""
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save(figure, Path(path))


def checkerboard_png(fixed: sitk.Image, moving_on_fixed: sitk.Image, path: str | os.PathLike, title: str = "",
                     moving_before: sitk.Image | None = None, squares: int = 8) -> Path:
    """PNG: a checkerboard of ``fixed`` and ``moving_on_fixed`` (both on the fixed grid, each min–max windowed)
    on the middle slice; with ``moving_before`` (header geometry only) a second panel shows it before registration.
    """
    from matplotlib.figure import Figure

    axis = slice_axis(fixed)
    index = fixed.GetSize()[axis] // 2
    panels = [("before registration", moving_before)] if moving_before is not None else []
    panels.append(("after registration", moving_on_fixed))
    figure = Figure(figsize=(5 * len(panels), 5))
    axes = figure.subplots(1, len(panels), squeeze=False)
    a = _plane(fixed, axis, index).astype(float)
    low, high = _window(a)
    a = np.clip((a - low) / (high - low), 0, 1)
    for ax, (label, moving) in zip(axes[0], panels, strict=True):
        b = _plane(moving, axis, index).astype(float)
        b_low, b_high = _window(b)
        b = np.clip((b - b_low) / (b_high - b_low), 0, 1)
        rows, cols = np.indices(a.shape)
        tiles = ((rows * squares // a.shape[0]) + (cols * squares // a.shape[1])) % 2 == 0
        ax.imshow(np.where(tiles, a, b), cmap="gray", origin="lower")
        ax.set_title(f"{label} (slice {index})", fontsize=9)
        ax.axis("off")
    return _finish(figure, title, path)
