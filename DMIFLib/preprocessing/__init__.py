"""Preprocessing: image IO, registration, N4, skull stripping, z-score, ROI boxes and 128×128 slice stacks.

Contract (docs/ARCHITECTURE.md): :class:`~DMIFLib.preprocessing.settings.PreprocessSettings`,
:class:`~DMIFLib.preprocessing.roi.OrientedBox`, :class:`~DMIFLib.preprocessing.slices.SliceStack`,
:func:`~DMIFLib.preprocessing.pipeline.case_slices` and :func:`~DMIFLib.preprocessing.pipeline.image_slices`.
"""

from DMIFLib.preprocessing.errors import PreprocessingError

__all__ = ["PreprocessingError"]
