"""Slice stacks: the slices inside the tumour box along the acquisition's slice axis, cropped, resized to S×S.

Aspect ratio (``PreprocessSettings.resize_mode``):

- ``"square"`` (default): the crop is the box's in-plane extent with its shorter side widened, in mm, to the
  longer one (centred on the box, real image context; beyond the image edge the modality's fill value), so
  the S×S slice has the same physical scale on both axes — tumour shape is not distorted;
- ``"stretch"``: exactly the box's in-plane extent, resized to S×S (anisotropic scaling when the box is not
  square in mm).

Resizing is bilinear with antialiasing (``torch.nn.functional.interpolate``), so shrinking a large crop does
not alias.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.preprocessing.errors import PreprocessingError
from DMIFLib.preprocessing.geometry import slice_axis as acquisition_slice_axis
from DMIFLib.preprocessing.roi import OrientedBox, check_box


@dataclass
class SliceStack:
    """One patient's slices: ``images[modality]`` is (n, S, S) float32 (z-scored), one row per slice.

    ``slice_indices`` (n,) are the indices of the slices along ``slice_axis`` (0 = i, 1 = j, 2 = k) of the
    reference (T1C) grid; the rows of a slice run along the higher in-plane index axis, the columns along the
    lower one (for axial k-slices: rows = j, columns = i, as in SimpleITK's (k, j, i) arrays).
    """

    images: dict[str, np.ndarray]
    slice_indices: np.ndarray
    slice_axis: int
    patient_id: str | None = None
    box: OrientedBox | None = None
    info: dict = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return len(self.slice_indices)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.images)

    def stacked(self, modalities: Sequence[str]) -> np.ndarray:
        """(n, M, S, S) float32 with the modalities in the given order (for the multimodal net)."""
        missing = [m for m in modalities if m not in self.images]
        if missing:
            raise KeyError(f"{self.patient_id or 'slice stack'}: no {', '.join(missing)} slices "
                           f"(has {', '.join(self.images)})")
        return np.stack([self.images[m] for m in modalities], axis=1)

    def save(self, path: str | os.PathLike) -> Path:
        """Save as ``.npz`` (atomically)."""
        import json

        from DMIFLib.atomic import atomic_path

        path = Path(path)
        meta = {"slice_axis": self.slice_axis, "patient_id": self.patient_id, "info": self.info,
                "box": self.box.to_dict() if self.box is not None else None}
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, slice_indices=self.slice_indices, meta=np.array(json.dumps(meta)),
                     **{f"image_{m}": a for m, a in self.images.items()})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SliceStack:
        import json

        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            images = {k.removeprefix("image_"): data[k] for k in data.files if k.startswith("image_")}
            return cls(images=images, slice_indices=data["slice_indices"], slice_axis=meta["slice_axis"],
                       patient_id=meta["patient_id"], info=meta["info"],
                       box=OrientedBox.from_dict(meta["box"]) if meta["box"] else None)


def central_slices(n: int, limit: int | None) -> np.ndarray:
    """The central ``limit`` of ``n`` slice indices (all when ``limit`` is None or ≥ n): the box's end slices
    show the least tumour. Training takes these slices of each patient (``max_slices``), and a model trained so
    scores a patient on the same ones (the model file's ``patient_slices``)."""
    if limit is None or n <= limit:
        return np.arange(n)
    start = (n - limit) // 2
    return np.arange(start, start + limit)


def _resize(planes: np.ndarray, size: int) -> np.ndarray:
    """(n, H, W) → (n, size, size) float32, bilinear with antialiasing."""
    import torch
    from torch.nn.functional import interpolate

    tensor = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[:, None]
    return interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)[:, 0].numpy()


def _window(lo: int, hi: int, spacing: float, extent_mm: float) -> tuple[int, int]:
    """Half-open integer index window [a, b) of ``extent_mm`` centred on voxels lo..hi (may leave the image)."""
    n = max(hi - lo + 1, round(extent_mm / spacing))
    centre = (lo + hi) / 2.0
    start = int(np.floor(centre - (n - 1) / 2.0 + 0.5))
    return start, start + n


def extract_slices(volumes: Mapping[str, sitk.Image], box: OrientedBox, size: int = 128,
                   resize_mode: str = "square", fill: Mapping[str, float] | None = None,
                   slice_axis: int | None = None, patient_id: str | None = None) -> SliceStack:
    """Crop the slices that ``box`` (RAS) covers from ``volumes`` (all on one grid) and resize them to size×size.

    ``slice_axis`` defaults to the acquisition's slice axis of the first volume (the reference grid);
    ``fill[modality]`` is the value outside the image (default 0). A box too small or mostly outside the image
    raises :class:`PreprocessingError` (:func:`~DMIFLib.preprocessing.roi.check_box`).
    """
    reference = next(iter(volumes.values()))
    for name, image in volumes.items():
        if image.GetSize() != reference.GetSize() or not np.allclose(image.GetOrigin(), reference.GetOrigin()):
            raise PreprocessingError(f"{name} is not on the reference grid; resample it first", case=patient_id)
    axis = acquisition_slice_axis(reference) if slice_axis is None else slice_axis
    lo, hi = check_box(box, reference, axis, patient_id)
    plane_axes = [a for a in range(3) if a != axis]  # (i, j, k) index axes; columns = plane_axes[0]
    spacing = np.asarray(reference.GetSpacing(), dtype=float)
    extents = [(hi[a] - lo[a] + 1) * spacing[a] for a in plane_axes]
    if resize_mode == "square":
        extents = [max(extents)] * 2
    elif resize_mode != "stretch":
        raise ValueError(f"resize_mode '{resize_mode}' is not square or stretch")
    windows = [_window(lo[a], hi[a], spacing[a], e) for a, e in zip(plane_axes, extents, strict=True)]
    image_size = np.asarray(reference.GetSize())
    slice_indices = np.arange(lo[axis], hi[axis] + 1)
    images: dict[str, np.ndarray] = {}
    for name, image in volumes.items():
        # SimpleITK arrays are (k, j, i): move to (slice, rows = higher plane axis, cols = lower plane axis)
        array = sitk.GetArrayViewFromImage(image)
        volume = np.transpose(array, (2 - axis, 2 - plane_axes[1], 2 - plane_axes[0]))[lo[axis]:hi[axis] + 1]
        (c0, c1), (r0, r1) = windows
        crop = np.full((len(slice_indices), r1 - r0, c1 - c0), (fill or {}).get(name, 0.0), dtype=np.float32)
        rs, re = max(r0, 0), min(r1, image_size[plane_axes[1]])
        cs, ce = max(c0, 0), min(c1, image_size[plane_axes[0]])
        crop[:, rs - r0:re - r0, cs - c0:ce - c0] = volume[:, rs:re, cs:ce]
        images[name] = _resize(crop, size)
    return SliceStack(images=images, slice_indices=slice_indices, slice_axis=axis, patient_id=patient_id, box=box,
                      info={"crop_ijk_lo": lo.tolist(), "crop_ijk_hi": hi.tolist(), "resize_mode": resize_mode,
                            "crop_extent_mm": [float(e) for e in extents],
                            "spacing_mm": [float(v) for v in spacing]})
