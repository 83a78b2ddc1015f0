"""The 8 first-level stationary wavelet decompositions pyradiomics calls ``wavelet-LLH`` ... ``wavelet-LLL``.

Same construction as pyradiomics' ``getWaveletImage`` (PyWavelets ``swtn``, level 1, over axes x, y, z): odd
dimensions are padded by one voxel with wrap-around and trimmed afterwards. The three letters of a name are the
filters along x, y and z (L = low pass / approximation, H = high pass / detail).
"""

from __future__ import annotations

import numpy as np
import pywt

WAVELET_DECOMPOSITIONS = ("LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH", "LLL")


def wavelet_decompositions(volume: np.ndarray, wavelet: str = "coif1") -> dict[str, np.ndarray]:
    """``{"wavelet-LLH": (z, y, x) float64, ...}`` (8 entries) from a (z, y, x) volume; same shape as the input."""
    if volume.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {volume.shape}")
    shape = volume.shape
    data = np.pad(np.asarray(volume, dtype=np.float64), [(0, n % 2) for n in shape], mode="wrap")
    # axes (2, 1, 0): the key's letters are in x, y, z order, as pyradiomics names them
    coefficients = pywt.swtn(data, pywt.Wavelet(wavelet), level=1, start_level=0, axes=(2, 1, 0))[0]
    trim = tuple(slice(0, n) for n in shape)
    out = {}
    for name in WAVELET_DECOMPOSITIONS:
        key = name.replace("L", "a").replace("H", "d")
        out[f"wavelet-{name}"] = coefficients[key][trim]
    return out
