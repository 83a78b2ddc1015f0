"""The label mechanism: a multi-scale tumour texture that is oriented (label 1) or isotropic (label 0).

Both classes are sums of the same number of plane waves with the same wavelengths (three bands, about
2.6, 4 and 6.5 mm) and the same amplitudes, so the texture has unit variance and near-Gaussian values in both
classes: first-order statistics (mean, variance, histogram) do not separate them. What differs is the
distribution of wave orientations in the axial plane:

- label 1: a fraction ``anisotropy`` (drawn in [0.5, 1]) of the waves point along a dominant orientation
  (random per patient, per-band jitter of ±10°, spread 8–20°); the rest are isotropic. Gives stripes.
- label 0: a fraction ``anisotropy`` drawn in [0, 0.45] is oriented, the rest isotropic. Gives blobs.

The anisotropy ranges nearly meet; with the random spread, the per-patient texture gain, the tumour size and
the acquisition noise, the classes are not perfectly separable from the images.
Wave vectors stay within ±10° of the axial plane so thick slices do not average them away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from DMIFLib.synth.fields import WaveField

BAND_WAVELENGTHS_MM: tuple[float, ...] = (2.6, 4.0, 6.5)
"""Centre wavelength of each texture band (mm); ±12 % radial spread inside a band."""

WAVES_PER_BAND = 40
ANISOTROPY_RANGE = {1: (0.5, 1.0), 0: (0.0, 0.45)}


@dataclass(frozen=True)
class TextureParams:
    """Per-patient texture draw (recorded in the patient's truth JSON)."""

    label: int
    orientation_deg: float
    anisotropy: float
    spread_deg: float


def draw_texture(rng: np.random.Generator, label: int) -> tuple[WaveField, TextureParams]:
    """A unit-variance texture field for ``label`` (0 or 1) and its parameters."""
    orientation = rng.uniform(0.0, np.pi)
    anisotropy = rng.uniform(*ANISOTROPY_RANGE[int(label)])
    spread = np.deg2rad(rng.uniform(8.0, 20.0))
    vectors, phases = [], []
    for wavelength in BAND_WAVELENGTHS_MM:
        band_orientation = orientation + np.deg2rad(rng.uniform(-10.0, 10.0))
        oriented = rng.random(WAVES_PER_BAND) < anisotropy
        theta = np.where(oriented, band_orientation + rng.normal(0.0, spread, WAVES_PER_BAND),
                         rng.uniform(0.0, np.pi, WAVES_PER_BAND))
        elevation = np.deg2rad(rng.uniform(-10.0, 10.0, WAVES_PER_BAND))
        freq = 1.0 / (wavelength * rng.uniform(0.88, 1.12, WAVES_PER_BAND))
        vectors.append(freq[:, None] * np.stack([np.cos(theta) * np.cos(elevation),
                                                 np.sin(theta) * np.cos(elevation),
                                                 np.sin(elevation)], axis=1))
        phases.append(rng.uniform(0.0, 2.0 * np.pi, WAVES_PER_BAND))
    n = WAVES_PER_BAND * len(BAND_WAVELENGTHS_MM)
    field = WaveField(np.concatenate(vectors), np.concatenate(phases), np.full(n, np.sqrt(2.0 / n)))
    params = TextureParams(int(label), float(np.rad2deg(orientation)), float(anisotropy), float(np.rad2deg(spread)))
    return field, params
