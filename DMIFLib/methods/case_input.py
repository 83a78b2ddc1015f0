"""One patient's input to any method: volumes + tumour region, from a cohort row or from memory (Slicer nodes).

DMIF-Net needs the 128x128 slice stack of the tumour box; radiomics needs the volumes and the tumour mask (the
label image when there is one, else the box). :class:`CaseInput` gives both, computed on demand, so that
``dmif predict``, the batch (cohort rows) and DMIF Predict (volume nodes + ROI) feed every method the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import SimpleITK as sitk  # noqa: N813

if TYPE_CHECKING:
    from DMIFLib.cohort import CohortCase
    from DMIFLib.preprocessing.backend import PreprocessingBackend
    from DMIFLib.preprocessing.roi import OrientedBox
    from DMIFLib.preprocessing.settings import PreprocessSettings
    from DMIFLib.preprocessing.slices import SliceStack


@dataclass
class CaseInput:
    """A patient given either as a cohort row (``case``) or as images in memory (``images`` + ``roi``).

    ``images``: modality -> SimpleITK volume (LPS), as loaded (not preprocessed); ``roi``: the tumour box
    (:class:`OrientedBox`, RAS) or a label image (non-zero = tumour); ``brain_mask``: optional, on the images'
    grid. ``settings``: preprocessing to use instead of the model's own (DMIF Predict's step switches);
    ``backend``: the preprocessing backend (SimpleITK when None, Slicer CLIs in Slicer).
    """

    patient_id: str | None
    case: CohortCase | None = None
    images: Mapping[str, sitk.Image] | None = None
    roi: OrientedBox | sitk.Image | None = None
    brain_mask: sitk.Image | None = None
    settings: PreprocessSettings | None = None
    backend: PreprocessingBackend | None = None
    _volumes: dict[str, sitk.Image] = field(default_factory=dict, repr=False)
    _prepared: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_case(cls, case: CohortCase) -> CaseInput:
        """A cohort row (its files are read when needed)."""
        return cls(patient_id=case.patient_id, case=case)

    def slices(self, settings: PreprocessSettings, modalities: tuple[str, ...]) -> SliceStack:
        """The slice stack of ``modalities`` ((n, S, S) float32 each), preprocessed with ``self.settings`` or else
        ``settings`` (the model's)."""
        from DMIFLib.preprocessing.pipeline import case_slices, image_slices

        settings = self.settings or settings
        if self.case is not None:
            stack = case_slices(self.case.only(modalities), settings, self.backend)
        else:
            stack = image_slices({m: self.images[m] for m in modalities}, self.roi, settings,
                                 brain_mask=self.brain_mask, backend=self.backend, case=self.patient_id)
        stack.patient_id = self.patient_id
        return stack

    def volume(self, modality: str) -> sitk.Image:
        """The modality's volume as given (LPS), read once."""
        if modality not in self._volumes:
            if self.case is not None:
                from DMIFLib.preprocessing.io import read_image

                self._volumes[modality] = read_image(self.case.images[modality], what=f"{modality} image",
                                                     case=self.patient_id)
            else:
                self._volumes[modality] = self.images[modality]
        return self._volumes[modality]

    def prepared(self, settings: PreprocessSettings, modalities: tuple[str, ...]) -> dict[str, sitk.Image]:
        """``modalities``' volumes preprocessed as the slices are (registered onto the reference modality's grid,
        N4, skull strip, z-score; ``self.settings`` or else ``settings``), computed once; a case of a cohort
        written by ``dmif preprocess`` is already preprocessed and read as it is."""
        from DMIFLib.preprocessing.pipeline import is_preprocessed, preprocess_volumes

        settings = self.settings or settings
        key = (repr(settings.to_dict()), tuple(modalities))
        if key not in self._prepared:
            images = {m: self.volume(m) for m in modalities}
            if self.case is not None and is_preprocessed(self.case):
                self._prepared[key] = images
            else:
                mask = self.brain_mask
                if mask is None and self.case is not None and self.case.brain_mask is not None:
                    from DMIFLib.preprocessing.io import read_image

                    mask = read_image(self.case.brain_mask, what="brain mask", case=self.patient_id)
                self._prepared[key] = dict(preprocess_volumes(images, settings, mask, self.backend,
                                                              self.patient_id).volumes)
        return self._prepared[key]

    def region(self, modality: str, on: sitk.Image | None = None) -> tuple[sitk.Image, str]:
        """``(mask, "label" | "box")``: the tumour region as a uint8 {0, 1} mask on the grid of ``on`` (default:
        the modality's volume as given); the label image (all non-zero voxels, resampled by nearest neighbour in
        physical space) when there is one, else the box."""
        from DMIFLib.radiomics.cohort import box_mask, case_region

        reference = self.volume(modality) if on is None else on
        if self.case is not None:
            return case_region(self.case, reference)
        if isinstance(self.roi, sitk.Image):
            label = sitk.Resample(self.roi, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                  self.roi.GetPixelID())
            mask = sitk.Cast(sitk.NotEqual(label, 0), sitk.sitkUInt8)
            mask.CopyInformation(reference)
            return mask, "label"
        return box_mask(self.roi, reference), "box"
