"""Wavelet scattering for MI-Net.

``MultiScaleScattering`` (fast, all scales in one module) is the module MI-Net uses;
``KymatioMultiScaleScattering`` is kymatio's reference; ``ScatteringCache`` keeps the coefficients of a training
set for stage 1.
"""

from DMIFLib.scattering.cache import CoefficientAugment, ScatteringCache
from DMIFLib.scattering.kymatio_reference import KymatioMultiScaleScattering, scattering_channels
from DMIFLib.scattering.multiscale import MultiScaleScattering

__all__ = ["CoefficientAugment", "KymatioMultiScaleScattering", "MultiScaleScattering", "ScatteringCache",
           "scattering_channels"]
