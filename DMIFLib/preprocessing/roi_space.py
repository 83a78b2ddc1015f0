"""A tumour label drawn on another modality's scan, carried onto the reference grid through the registration.

A cohort row may say in its ``roi_space`` column which modality's frame its ``roi`` label image lies in (e.g.
``t2w`` for TCIA LGG-1p19qDeletion, whose masks were drawn on the T2). Scans of one session share the scanner's
physical frame, but the patient may move between them; the rigid registration of that modality to the reference
(T1C) measures the motion, and the label is resampled through it (nearest neighbour) onto the reference grid.
"""

from __future__ import annotations

import SimpleITK as sitk  # noqa: N813

from DMIFLib.cohort import CohortCase

ROI_SPACE_COLUMN = "roi_space"
"""Cohort column naming the modality whose frame the ``roi`` label image lies in (empty: the reference's)."""


def roi_space(case: CohortCase, reference: str) -> str | None:
    """The modality ``case``'s label lies on when it is not ``reference`` (and the ROI is a label image), else None.

    Raises ValueError when the column names a modality the case does not have.
    """
    space = case.extra.get(ROI_SPACE_COLUMN, "").strip()
    if not space or space == reference or case.roi_is_inline() or case.roi.lower().endswith(".json"):
        return None
    if space not in case.images:
        raise ValueError(f"roi_space '{space}' is not one of the case's modalities ({', '.join(case.images)})")
    return space


def label_on_reference(label: sitk.Image, reference: sitk.Image, transform: sitk.Transform | None) -> sitk.Image:
    """``label`` (uint8, on the grid of the modality it was drawn on) resampled onto ``reference``'s grid.

    ``transform`` is that modality's registration result (reference LPS → modality LPS, as
    :meth:`PreprocessingBackend.register_rigid` returns it); None when registration is off (identity).
    """
    return sitk.Resample(sitk.Cast(label, sitk.sitkUInt8), reference, transform or sitk.Euler3DTransform(),
                         sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
