"""DICOM SEG → a 0/1 label image on the grid of the series it was drawn on (read with highdicom).

The tumour segment is the one whose label or segmented property type names a tumour (:data:`TUMOUR_SEGMENT`,
e.g. ``Neoplasm`` in TCIA LGG-1p19qDeletion), or the only segment. Its voxels are placed on the referenced series'
grid by their LPS positions; the SEG must share the series' frame of reference and every voxel must fall on a
voxel centre of that grid (within a quarter voxel), otherwise the SEG is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.preprocessing.errors import PreprocessingError
from DMIFLib.preprocessing.geometry import lps_to_index

TUMOUR_SEGMENT = re.compile(r"neoplasm|tumou?r|lesion|glioma|mass", re.IGNORECASE)
"""A segment label or property type matching this is the tumour."""

_GRID_TOLERANCE = 0.25
"""Largest distance (in voxels) between a SEG voxel centre and the referenced grid's nearest voxel centre."""


def referenced_series_uid(path: str | os.PathLike) -> str | None:
    """The SeriesInstanceUID the SEG at ``path`` was drawn on (ReferencedSeriesSequence), or None."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["ReferencedSeriesSequence"])
    sequence = ds.get("ReferencedSeriesSequence") or []
    return str(sequence[0].SeriesInstanceUID) if sequence and "SeriesInstanceUID" in sequence[0] else None


def tumour_segment(seg) -> tuple[int, str]:
    """(number, label) of the tumour segment of a highdicom Segmentation; raises :class:`PreprocessingError`."""
    segments = []
    for description in seg.SegmentSequence:
        names = [str(getattr(description, "SegmentLabel", ""))]
        prop = getattr(description, "SegmentedPropertyTypeCodeSequence", None)
        if prop:
            names.append(str(getattr(prop[0], "CodeMeaning", "")))
        segments.append((int(description.SegmentNumber), names[0], any(TUMOUR_SEGMENT.search(n) for n in names)))
    tumour = [s for s in segments if s[2]]
    if len(tumour) == 1 or (not tumour and len(segments) == 1):
        number, label, _ = (tumour or segments)[0]
        return number, label
    labels = ", ".join(f"{n}: '{label}'" for n, label, _ in segments)
    raise PreprocessingError(f"cannot tell the tumour segment among {len(segments)} ({labels})")


def seg_to_label(path: str | os.PathLike, reference: sitk.Image, frame_of_reference_uid: str = "",
                 case: str | None = None) -> sitk.Image:
    """The SEG's tumour segment as a uint8 0/1 image on ``reference``'s grid (the series it references).

    Raises :class:`PreprocessingError` (naming ``case`` and the file) for an unreadable SEG, no tumour segment,
    another frame of reference, voxels off the reference grid or outside it, or an empty segment.
    """
    path = Path(path)
    try:
        import highdicom as hd
    except ImportError:
        raise PreprocessingError("reading a DICOM SEG needs the package highdicom>=0.27 (bundled with Slicer 5.12; "
                                 "pip install highdicom)", case=case, file=path) from None
    try:
        seg = hd.seg.segread(path)
        number, label = tumour_segment(seg)
        volume = seg.get_volume(segment_numbers=[number], combine_segments=True, relabel=True)
    except PreprocessingError as error:
        raise PreprocessingError(error.problem, case=case, file=path) from None
    except (ValueError, RuntimeError, AttributeError, KeyError, TypeError, NotImplementedError) as error:
        raise PreprocessingError(f"cannot read the DICOM SEG ({type(error).__name__}: {error})", case=case,
                                 file=path) from error
    seg_frame = str(volume.frame_of_reference_uid or "")
    if seg_frame and frame_of_reference_uid and seg_frame != frame_of_reference_uid:
        raise PreprocessingError(f"the SEG's frame of reference {seg_frame} is not the referenced series' "
                                 f"({frame_of_reference_uid})", case=case, file=path)
    array = np.asarray(volume.array)
    voxels = np.argwhere(array.reshape(array.shape[:3]) > 0)
    if not len(voxels):
        raise PreprocessingError(f"segment '{label}' is empty", case=case, file=path)
    lps = (np.c_[voxels, np.ones(len(voxels))] @ volume.affine.T)[:, :3]
    index = lps_to_index(reference, lps)
    rounded = np.rint(index).astype(int)
    off = float(np.abs(index - rounded).max())
    if off > _GRID_TOLERANCE:
        raise PreprocessingError(f"segment '{label}' does not lie on the referenced series' voxel grid (up to "
                                 f"{off:.2f} voxel off)", case=case, file=path)
    size = np.asarray(reference.GetSize())
    if np.any(rounded < 0) or np.any(rounded >= size):
        raise PreprocessingError(f"segment '{label}' extends outside the referenced series", case=case, file=path)
    out = np.zeros(tuple(reversed(reference.GetSize())), dtype=np.uint8)  # (k, j, i)
    out[rounded[:, 2], rounded[:, 1], rounded[:, 0]] = 1
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(reference)
    return image
