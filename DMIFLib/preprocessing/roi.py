"""The tumour box: :class:`OrientedBox` in RAS, like ``vtkMRMLMarkupsROINode``.

A box comes from a Slicer Markups ROI file (``.mrk.json``, possibly rotated), from a label image (the 3-D
bounding box of its non-zero voxels, plus an optional margin in mm) or from an inline text in ``cohort.csv``:

- ``ras:CX,CY,CZ,SX,SY,SZ`` — an axis-aligned box in RAS: centre and size, mm;
- ``ijk:I0,J0,K0,I1,J1,K1`` — inclusive voxel index bounds (i, j, k) on the reference (T1C) image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.preprocessing.errors import PreprocessingError
from DMIFLib.preprocessing.geometry import direction_matrix, index_to_lps, lps_to_index, lps_to_ras, ras_to_lps

_EPS = 1e-6

MIN_BOX_VOXELS = 4
"""Least number of voxels a box must span on each in-plane axis of its slices: a smaller box is a misclick or a
box in other units, and its slices would be a few voxels blown up to S×S."""

MIN_INSIDE_FRACTION = 0.5
"""Least fraction of a box's voxels that must lie inside the image; a box mostly outside is a wrong box."""


class BoxClippedWarning(UserWarning):
    """The ROI box reaches beyond the image; only its part inside the image is used."""


@dataclass(frozen=True)
class OrientedBox:
    """A box in RAS mm: ``center_ras`` (3,), ``axes_ras`` (3, 3) unit axis directions as columns, ``size_mm`` (3,).

    The axes are orthonormalised and made right-handed (a box is symmetric, so flipping an axis does not change
    it); this is the centre / orientation / size of a ``vtkMRMLMarkupsROINode`` in RAS.
    """

    center_ras: np.ndarray
    axes_ras: np.ndarray
    size_mm: np.ndarray

    def __post_init__(self) -> None:
        center = np.asarray(self.center_ras, dtype=float).reshape(3)
        axes = np.asarray(self.axes_ras, dtype=float).reshape(3, 3)
        size = np.asarray(self.size_mm, dtype=float).reshape(3)
        if not (np.all(np.isfinite(center)) and np.all(np.isfinite(axes)) and np.all(np.isfinite(size))):
            raise ValueError("box centre, axes and size must be finite")
        if np.any(size <= 0):
            raise ValueError(f"box size {size.tolist()} mm must be positive on every axis")
        u, _, vt = np.linalg.svd(axes)
        axes = u @ vt  # nearest orthonormal matrix
        if np.linalg.det(axes) < 0:
            axes[:, 2] = -axes[:, 2]
        object.__setattr__(self, "center_ras", center)
        object.__setattr__(self, "axes_ras", axes)
        object.__setattr__(self, "size_mm", size)

    # -- constructors ------------------------------------------------------------------------------------
    @classmethod
    def axis_aligned(cls, center_ras, size_mm) -> OrientedBox:
        """A box aligned with the RAS axes."""
        return cls(np.asarray(center_ras, dtype=float), np.eye(3), np.asarray(size_mm, dtype=float))

    @classmethod
    def from_markups_json(cls, path: str | os.PathLike) -> OrientedBox:
        """Read the first ROI of a Slicer Markups file (``.mrk.json``; LPS or RAS, rotated or not)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PreprocessingError(f"cannot read the Markups ROI file ({error})", file=path) from error
        markups = data.get("markups") if isinstance(data, dict) else None
        rois = [m for m in (markups or []) if isinstance(m, dict) and m.get("type") == "ROI"]
        if not rois:
            raise PreprocessingError("no markup of type 'ROI' in this Markups file", file=path)
        roi = rois[0]
        system = roi.get("coordinateSystem", "LPS")
        if system not in ("LPS", "RAS"):
            raise PreprocessingError(f"unknown coordinateSystem '{system}' (LPS or RAS)", file=path)
        try:
            if "center" in roi:
                center = np.asarray(roi["center"], dtype=float).reshape(3)
            else:
                center = np.asarray(roi["controlPoints"][0]["position"], dtype=float).reshape(3)
            size = np.asarray(roi["size"], dtype=float).reshape(3)
            orientation = np.asarray(roi.get("orientation", np.eye(3).ravel()), dtype=float).reshape(3, 3)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise PreprocessingError(f"the ROI has no usable center/size/orientation ({error})", file=path) from error
        if system == "LPS":  # points and direction vectors both flip x and y
            center = lps_to_ras(center)
            orientation = ras_to_lps(orientation.T).T
        try:
            return cls(center, orientation, size)
        except ValueError as error:
            raise PreprocessingError(str(error), file=path) from error

    @classmethod
    def from_label(cls, label: sitk.Image, margin_mm: float = 0.0, file: object | None = None,
                   values: Sequence[int] | None = None) -> OrientedBox:
        """The bounding box of the non-zero voxels of ``label`` (or of the voxels whose value is in ``values``,
        e.g. (1, 2, 4) for a BraTS tumour without a resection cavity), aligned with its grid, grown by ``margin_mm``.

        The box spans whole voxels (from the first voxel's lower edge to the last voxel's upper edge).
        """
        array = sitk.GetArrayViewFromImage(label)  # (k, j, i)
        if array.ndim != 3:
            raise PreprocessingError(f"the ROI label image is {array.ndim}-D; a 3-D label is needed", file=file)
        if values:
            nonzero = np.nonzero(np.isin(array, np.asarray(values)))
            if len(nonzero[0]) == 0:
                present = np.unique(array)
                raise PreprocessingError(f"the ROI label image has no voxel with label {', '.join(map(str, values))} "
                                         f"(its values: {', '.join(str(v) for v in present[:10].tolist())})",
                                         file=file)
        else:
            nonzero = np.nonzero(array)
        if len(nonzero[0]) == 0:
            raise PreprocessingError("the ROI label image is empty (no non-zero voxel)", file=file)
        lo = np.array([nonzero[2].min(), nonzero[1].min(), nonzero[0].min()], dtype=float)  # (i, j, k)
        hi = np.array([nonzero[2].max(), nonzero[1].max(), nonzero[0].max()], dtype=float)
        center_lps = index_to_lps(label, (lo + hi) / 2.0)[0]
        size = (hi - lo + 1.0) * np.asarray(label.GetSpacing(), dtype=float) + 2.0 * margin_mm
        return cls(lps_to_ras(center_lps), ras_to_lps(direction_matrix(label).T).T, size)

    @classmethod
    def from_inline(cls, text: str, reference: sitk.Image | None = None) -> OrientedBox:
        """Parse ``ras:CX,CY,CZ,SX,SY,SZ`` or ``ijk:I0,J0,K0,I1,J1,K1`` (the latter needs ``reference``)."""
        kind, _, rest = text.partition(":")
        try:
            values = np.array([float(v) for v in rest.replace(";", ",").split(",") if v.strip()])
        except ValueError as error:
            raise PreprocessingError(f"inline ROI '{text}': numbers expected ({error})") from error
        if values.size != 6:
            raise PreprocessingError(f"inline ROI '{text}': 6 numbers expected, found {values.size}")
        if kind == "ras":
            try:
                return cls.axis_aligned(values[:3], values[3:])
            except ValueError as error:
                raise PreprocessingError(f"inline ROI '{text}': {error}") from error
        if kind == "ijk":
            if reference is None:
                raise PreprocessingError(f"inline ROI '{text}': an ijk box needs the reference image")
            lo, hi = np.minimum(values[:3], values[3:]), np.maximum(values[:3], values[3:])
            center_lps = index_to_lps(reference, (lo + hi) / 2.0)[0]
            size = (hi - lo + 1.0) * np.asarray(reference.GetSpacing(), dtype=float)
            return cls(lps_to_ras(center_lps), ras_to_lps(direction_matrix(reference).T).T, size)
        raise PreprocessingError(f"inline ROI '{text}': unknown kind '{kind}' (ras: or ijk:)")

    # -- geometry ----------------------------------------------------------------------------------------
    def corners_ras(self) -> np.ndarray:
        """(8, 3) RAS corners."""
        signs = np.array([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)])
        return self.center_ras + (signs * self.size_mm) @ self.axes_ras.T

    def contains_ras(self, points: np.ndarray) -> np.ndarray:
        """(N,) bool: which of the (N, 3) RAS points lie inside the box (edges included)."""
        local = (np.atleast_2d(points) - self.center_ras) @ self.axes_ras
        return np.all(np.abs(local) <= self.size_mm / 2.0 + _EPS, axis=1)

    def ijk_bounds(self, reference: sitk.Image, clip: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive (i, j, k) index bounds ``(lo, hi)`` of the voxels of ``reference`` whose centres the box spans.

        The box's RAS corners go to LPS and then through ``reference``'s index transform; a rotated box gives
        the index-space bounding box of its corners (so a slice is in when the box crosses its centre plane, as
        Slicer shows it). A box thinner than a voxel keeps the voxel it lies in. With ``clip`` the bounds are
        clipped to the image; a box entirely outside raises :class:`PreprocessingError`.
        """
        index = lps_to_index(reference, ras_to_lps(self.corners_ras()))
        low, high = index.min(axis=0), index.max(axis=0)
        lo = np.ceil(low - _EPS).astype(int)
        hi = np.floor(high + _EPS).astype(int)
        thin = lo > hi
        lo[thin] = hi[thin] = np.floor((low[thin] + high[thin]) / 2.0 + 0.5).astype(int)
        if clip:
            size = np.asarray(reference.GetSize())
            if np.any(hi < 0) or np.any(lo > size - 1):
                raise PreprocessingError(
                    f"the ROI box (centre RAS {np.round(self.center_ras, 1).tolist()} mm, size "
                    f"{np.round(self.size_mm, 1).tolist()} mm) lies outside the image (size {size.tolist()})")
            lo, hi = np.clip(lo, 0, size - 1), np.clip(hi, 0, size - 1)
        return lo, hi

    # -- serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, list]:
        """Plain dict (RAS, mm)."""
        return {"center_ras": self.center_ras.tolist(), "axes_ras": self.axes_ras.tolist(),
                "size_mm": self.size_mm.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> OrientedBox:
        return cls(np.asarray(data["center_ras"]), np.asarray(data["axes_ras"]), np.asarray(data["size_mm"]))

    def to_markups_json(self, coordinate_system: str = "LPS") -> str:
        """Slicer Markups ROI JSON text (loadable into Slicer as a ``vtkMRMLMarkupsROINode``)."""
        center, orientation = self.center_ras, self.axes_ras
        if coordinate_system == "LPS":
            center, orientation = ras_to_lps(center), ras_to_lps(orientation.T).T
        elif coordinate_system != "RAS":
            raise ValueError(f"coordinate_system '{coordinate_system}' is not LPS or RAS")
        markup = {"type": "ROI", "coordinateSystem": coordinate_system, "coordinateUnits": "mm", "roiType": "Box",
                  "center": center.tolist(), "orientation": orientation.ravel().tolist(),
                  "size": self.size_mm.tolist(), "controlPoints": []}
        schema = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                  "Schema/markups-schema-v1.0.3.json#")
        return json.dumps({"@schema": schema, "markups": [markup]}, indent=2)


def check_box(box: OrientedBox, reference: sitk.Image, slice_axis: int,
              case: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The box's clipped (i, j, k) bounds on ``reference`` (as :meth:`OrientedBox.ijk_bounds`), after checks.

    Raises :class:`PreprocessingError` for a box that spans fewer than :data:`MIN_BOX_VOXELS` voxels on an
    in-plane axis (the two index axes other than ``slice_axis``), or whose voxels lie less than
    :data:`MIN_INSIDE_FRACTION` inside the image; warns (:class:`BoxClippedWarning`) when the image clips it.
    """
    import warnings

    who = f"case {case}: " if case else ""
    lo_all, hi_all = box.ijk_bounds(reference, clip=False)
    try:
        lo, hi = box.ijk_bounds(reference)
    except PreprocessingError as error:
        raise (error.with_case(case) if case else error) from None
    counts = hi - lo + 1
    described = (f"the ROI box (centre RAS {np.round(box.center_ras, 1).tolist()} mm, size "
                 f"{np.round(box.size_mm, 2).tolist()} mm)")
    small = [a for a in range(3) if a != slice_axis and counts[a] < MIN_BOX_VOXELS]
    if small:
        raise PreprocessingError(f"{described} spans {counts.tolist()} voxels (i, j, k) of the image; at least "
                                 f"{MIN_BOX_VOXELS} are needed across each slice: draw a box around the tumour",
                                 case=case)
    inside = float(np.prod(counts) / np.prod(hi_all - lo_all + 1))
    if inside < MIN_INSIDE_FRACTION:
        raise PreprocessingError(f"{described} lies {1 - inside:.0%} outside the image (size "
                                 f"{list(reference.GetSize())}); at most {1 - MIN_INSIDE_FRACTION:.0%} may: check "
                                 "the box's coordinates", case=case)
    if inside < 1.0:
        warnings.warn(f"{who}{described} reaches beyond the image; its {inside:.0%} inside the image is used",
                      BoxClippedWarning, stacklevel=2)
    return lo, hi


def is_markups_file(value: str) -> bool:
    """True for a cohort ``roi`` path that is a Slicer Markups file (``.json``); other paths are label images."""
    return value.lower().endswith(".json")


def load_roi(value: str, reference: sitk.Image, margin_mm: float = 0.0, case: str | None = None,
             labels: Sequence[int] | None = None) -> OrientedBox:
    """A box from a cohort ``roi`` value: inline text, a ``.mrk.json`` file or a label image file.

    ``margin_mm`` grows a label-derived box on every side (it does not apply to drawn or inline boxes);
    ``labels`` picks the label values that form a label image's box (None: every non-zero voxel).
    """
    from DMIFLib.preprocessing.io import read_image

    try:
        if value.startswith(("ras:", "ijk:")):
            return OrientedBox.from_inline(value, reference)
        if is_markups_file(value):
            return OrientedBox.from_markups_json(value)
        return OrientedBox.from_label(read_image(value, what="ROI label"), margin_mm=margin_mm, file=value,
                                      values=labels)
    except PreprocessingError as error:
        raise (error.with_case(case) if case else error) from None
