"""Wavelet scattering for MI-Net.

``MultiScaleScattering`` is the module MI-Net uses; ``KymatioMultiScaleScattering`` is kymatio's reference.
"""

from DMIFLib.scattering.kymatio_reference import KymatioMultiScaleScattering, scattering_channels

# Interim: the fast shared-FFT implementation (issue 6) replaces this alias with its own class.
MultiScaleScattering = KymatioMultiScaleScattering

__all__ = ["KymatioMultiScaleScattering", "MultiScaleScattering", "scattering_channels"]
