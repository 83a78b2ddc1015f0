"""Per-modality saliency volumes on the reference (T1C) grid, ready to overlay the MRI."""

from __future__ import annotations

from typing import Any

import SimpleITK as sitk  # noqa: N813
from torch import nn

from DMIFLib.explain.attribution import slice_saliency
from DMIFLib.explain.volume import slices_to_volume
from DMIFLib.preprocessing.slices import SliceStack


def saliency_volume(model: Any, stack: SliceStack, reference_image: sitk.Image, modality: str,
                    method: str = "gradcam", clip_to_box: bool = True, **options: Any) -> sitk.Image:
    """Saliency of ``modality``'s DMIF-Net for ``stack``'s slices, as a float32 image on ``reference_image``'s grid.

    ``model`` is a :class:`~DMIFLib.model_file.LoadedModel` (its ``nets[modality]`` is used) or a net taking
    (B, 1, S, S) → logits (B,). ``reference_image`` is the image the slices were cut from (the T1C, or the
    preprocessed reference volume on the same grid). ``method``/``options``: see
    :func:`DMIFLib.explain.attribution.slice_saliency`; zero outside the box (see :func:`slices_to_volume`).
    """
    net = model if isinstance(model, nn.Module) else model.nets[modality]
    if modality not in stack.images:
        raise KeyError(f"{stack.patient_id or 'slice stack'}: no {modality} slices (has {', '.join(stack.images)})")
    values = slice_saliency(net, stack.images[modality], method, **options)
    return slices_to_volume(values, stack, reference_image, clip_to_box=clip_to_box)
