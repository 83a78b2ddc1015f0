"""Figures of a case report (matplotlib ``Figure`` objects, no pyplot): the reference slices with the box and the
saliency overlay, the probability with its interval, and PNG files (QA images) as a figure for the PDF."""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import SimpleITK as sitk  # noqa: N813
from matplotlib.figure import Figure

from DMIFLib.preprocessing.qa import _box_outline, _plane, _window
from DMIFLib.preprocessing.roi import OrientedBox

UNSIGNED_COLORMAP = "jet"
"""Overlay colour map of non-negative maps (Grad-CAM); signed maps use :data:`SIGNED_COLORMAP` centred at 0."""
SIGNED_COLORMAP = "RdBu_r"
SHOWN_FRACTION = 0.15
"""Overlay voxels with |saliency| below this fraction of the map's largest |value| are left transparent."""


def png_bytes(figure: Figure, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes (Agg)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def shown_slices(saliency: sitk.Image, axis: int, lo: int, hi: int, count: int = 3) -> list[int]:
    """Up to ``count`` slice indices in ``lo..hi`` along index ``axis``, a quarter of the box apart: the slice with
    the largest summed |saliency| among them, the others shifted inwards at the box's ends."""
    array = np.abs(sitk.GetArrayViewFromImage(saliency))  # (k, j, i)
    per_slice = array.sum(axis=tuple(a for a in range(3) if a != 2 - axis))
    best = lo + int(np.argmax(per_slice[lo:hi + 1])) if per_slice[lo:hi + 1].any() else (lo + hi) // 2
    step = max(1, (hi - lo + 1) // 4)
    first = int(np.clip(best - (count // 2) * step, lo, max(lo, hi - (count - 1) * step)))
    return sorted({min(hi, first + n * step) for n in range(count)})


def overlay_figure(reference: sitk.Image, box: OrientedBox, saliency: Mapping[str, sitk.Image],
                   method: str, reference_name: str = "t1c") -> Figure:
    """Rows = modalities of ``saliency`` (images on ``reference``'s grid), columns = three slices through the box:
    the reference image in grey, the saliency map in colour (``jet`` for non-negative maps, ``RdBu_r`` centred at
    0 for signed ones; faint values transparent) and the box outline in yellow, zoomed to the box."""
    from DMIFLib.preprocessing.geometry import slice_axis

    axis = slice_axis(reference)
    lo, hi = box.ijk_bounds(reference)
    names = list(saliency)
    first = saliency[names[0]]
    indices = shown_slices(first, axis, int(lo[axis]), int(hi[axis]))
    figure = Figure(figsize=(3.4 * len(indices) + 0.8, 3.3 * len(names)))
    axes = figure.subplots(len(names), len(indices), squeeze=False)
    plane_axes = [a for a in range(3) if a != axis]
    pad = [0.5 * (hi[a] - lo[a] + 1) for a in plane_axes]
    for r, name in enumerate(names):
        values = sitk.GetArrayViewFromImage(saliency[name])
        peak = float(np.abs(values).max()) or 1.0
        signed = bool((values < 0).any())
        cmap, vmin = (SIGNED_COLORMAP, -1.0) if signed else (UNSIGNED_COLORMAP, 0.0)
        shown = None
        for c, index in enumerate(indices):
            ax = axes[r][c]
            plane = _plane(reference, axis, index)
            low, high = _window(plane)
            ax.imshow(plane, cmap="gray", vmin=low, vmax=high, origin="lower")
            heat = _plane(saliency[name], axis, index) / peak
            shown = ax.imshow(np.ma.masked_where(np.abs(heat) < SHOWN_FRACTION, heat), cmap=cmap, vmin=vmin,
                              vmax=1.0, alpha=0.6, origin="lower", interpolation="nearest")
            outline = _box_outline(box, reference, axis, index)
            ax.plot(outline[:, 0], outline[:, 1], color="yellow", linewidth=1.2)
            ax.set_xlim(lo[plane_axes[0]] - pad[0], hi[plane_axes[0]] + pad[0])
            ax.set_ylim(lo[plane_axes[1]] - pad[1], hi[plane_axes[1]] + pad[1])
            ax.set_title(f"{name} saliency on {reference_name}, slice {index}", fontsize=8)
            ax.axis("off")
        figure.colorbar(shown, ax=list(axes[r]), shrink=0.8, label="saliency / max |saliency|")
    figure.suptitle(f"Saliency ({method}) over the {reference_name.upper()}, box in yellow", fontsize=10)
    return figure


def probability_figure(p: float, cutoff: float, low: float | None = None, high: float | None = None,
                       marker: str = "marker") -> Figure:
    """A 0–1 scale with the probability (dot), its interval (bar; absent when ``low``/``high`` are None) and the
    model's cut-off (dashed)."""
    figure = Figure(figsize=(6.0, 1.3))
    ax = figure.subplots()
    ax.axvspan(cutoff, 1.0, color="#f3e0e0")
    interval = low is not None and high is not None
    if interval:
        ax.plot([low, high], [0, 0], color="#444", linewidth=4, solid_capstyle="butt")
    ax.plot([p], [0], "o", color="#c0392b", markersize=9)
    ax.axvline(cutoff, color="#555", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(-1, 1)
    ax.set_yticks([])
    ax.set_xlabel(f"P({marker}) = {p:.2f} (dot)" + (f", interval {low:.2f}–{high:.2f} (bar)" if interval else "")
                  + f", cut-off {cutoff:.2f} (dashed)", fontsize=8)
    figure.tight_layout()
    return figure


def image_figure(png: bytes, title: str) -> Figure:
    """A PNG (e.g. a QA image) on a page-sized figure, for the PDF."""
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(png), format="png")
    height, width = pixels.shape[:2]
    figure = Figure(figsize=(8.27, min(11.0, 8.27 * height / width + 0.6)))
    ax = figure.subplots()
    ax.imshow(pixels)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return figure
