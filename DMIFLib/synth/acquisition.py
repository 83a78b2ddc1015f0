"""MR acquisition of the phantom: a grid (matrix, spacing, origin, direction), tissue contrast, the tumour
texture, a smooth multiplicative bias field and Rician noise. Output: a SimpleITK image (int16, LPS geometry).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk  # noqa: N813
from scipy.ndimage import gaussian_filter

from DMIFLib.synth.anatomy import Phantom, Tissue
from DMIFLib.synth.fields import WaveField, smooth_field

# Mean intensity per tissue (WM ≈ 1). T1C: fat and enhancing rim bright, CSF dark; T2W: CSF, oedema, tumour bright;
# FLAIR: as T2W but with the free water (CSF, ventricles) suppressed, grey matter a little brighter than white;
# native T1: as T1C without enhancement (the rim as dark as the tumour).
CONTRAST: dict[str, dict[Tissue, float]] = {
    "t1c": {Tissue.AIR: 0.0, Tissue.SCALP: 0.55, Tissue.FAT: 1.35, Tissue.SKULL: 0.08, Tissue.CSF: 0.22,
            Tissue.GREY: 0.70, Tissue.WHITE: 1.0, Tissue.VENTRICLE: 0.20, Tissue.OEDEMA: 0.58,
            Tissue.TUMOUR: 0.62, Tissue.RIM: 1.30},
    "t2w": {Tissue.AIR: 0.0, Tissue.SCALP: 0.65, Tissue.FAT: 0.95, Tissue.SKULL: 0.06, Tissue.CSF: 1.9,
            Tissue.GREY: 1.35, Tissue.WHITE: 1.0, Tissue.VENTRICLE: 2.0, Tissue.OEDEMA: 1.75,
            Tissue.TUMOUR: 1.55, Tissue.RIM: 1.45},
    "flair": {Tissue.AIR: 0.0, Tissue.SCALP: 0.75, Tissue.FAT: 1.10, Tissue.SKULL: 0.05, Tissue.CSF: 0.12,
              Tissue.GREY: 1.20, Tissue.WHITE: 1.0, Tissue.VENTRICLE: 0.10, Tissue.OEDEMA: 1.70,
              Tissue.TUMOUR: 1.50, Tissue.RIM: 1.40},
}
CONTRAST["t1"] = {**CONTRAST["t1c"], Tissue.OEDEMA: 0.60, Tissue.RIM: CONTRAST["t1c"][Tissue.TUMOUR]}
TEXTURE_AMPLITUDE = {"t1c": 0.16, "t2w": 0.12, "flair": 0.12, "t1": 0.12}
"""Texture standard deviation relative to the tumour's mean intensity (multiplied by a per-patient factor)."""


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``size`` (i, j, k) voxels, ``spacing`` mm, ``origin`` LPS mm, ``direction`` (3, 3) columns."""

    size: tuple[int, int, int]
    spacing: np.ndarray
    origin: np.ndarray
    direction: np.ndarray

    @classmethod
    def centred(cls, center: np.ndarray, size: tuple[int, int, int], spacing: np.ndarray,
                direction: np.ndarray) -> Grid:
        """A grid whose centre lies at ``center`` (LPS mm)."""
        half = (np.asarray(size) - 1) * spacing / 2.0
        return cls(size, np.asarray(spacing, float), center - direction @ half, np.asarray(direction, float))

    def points(self) -> np.ndarray:
        """Physical LPS points (k*j*i, 3) float32 of every voxel, in SimpleITK array order (z, y, x)."""
        ni, nj, nk = self.size
        k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
        idx = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(np.float32)
        matrix = (self.direction * self.spacing[None, :]).astype(np.float32)
        return idx @ matrix.T + self.origin.astype(np.float32)

    def to_image(self, array_zyx: np.ndarray) -> sitk.Image:
        image = sitk.GetImageFromArray(array_zyx.reshape(self.size[::-1]))
        image.SetSpacing([float(s) for s in self.spacing])
        image.SetOrigin([float(o) for o in self.origin])
        image.SetDirection([float(d) for d in self.direction.ravel()])
        return image


@dataclass(frozen=True)
class Acquisition:
    """How one modality is acquired: ``head_from_scanner`` maps scanner LPS points to the head frame."""

    modality: str
    grid: Grid
    rotation: np.ndarray
    translation: np.ndarray
    rotation_center: np.ndarray
    bias: WaveField
    bias_strength: float
    noise_fraction: float
    gain: float

    def head_from_scanner(self, points: np.ndarray) -> np.ndarray:
        """Head-frame points for scanner points (N, 3): ``x = R (q - c) + c + t`` (identity for T1C)."""
        c = self.rotation_center.astype(np.float32)
        return (points - c) @ self.rotation.T.astype(np.float32) + c + self.translation.astype(np.float32)


def draw_bias(rng: np.random.Generator, scale: float) -> WaveField:
    """A smooth bias-field exponent (unit std, wavelengths 180–320 mm × ``scale``) in scanner coordinates."""
    return smooth_field(rng, 5, (180.0 * scale, 320.0 * scale))


def acquire(phantom: Phantom, acq: Acquisition, texture: WaveField, texture_gain: float,
            tumour_level: float, rng: np.random.Generator) -> tuple[sitk.Image, np.ndarray]:
    """Simulate one image; returns (int16 image, tissue classes (z, y, x) uint8 on its grid)."""
    scanner = acq.grid.points()
    head = acq.head_from_scanner(scanner)
    tissue = phantom.tissues(head)
    lut = np.zeros(len(Tissue), dtype=np.float32)
    for t, value in CONTRAST[acq.modality].items():
        lut[t] = value
    lut[Tissue.TUMOUR] *= tumour_level
    lut[Tissue.RIM] *= tumour_level
    # Partial volume / point-spread: a light in-plane blur (σ ≈ 0.45 voxel) of the tissue image; the tumour
    # texture is applied after it so that the finest band keeps its contrast.
    shape = acq.grid.size[::-1]
    signal = gaussian_filter(lut[tissue].reshape(shape), sigma=(0.0, 0.45, 0.45), mode="nearest").ravel()
    in_tumour = np.flatnonzero((tissue == Tissue.TUMOUR) | (tissue == Tissue.RIM))
    if len(in_tumour):
        amplitude = TEXTURE_AMPLITUDE[acq.modality] * texture_gain
        signal[in_tumour] *= 1.0 + amplitude * texture(head[in_tumour])
    signal *= np.exp(acq.bias_strength * acq.bias(scanner)).astype(np.float32)
    sigma = acq.noise_fraction
    real = signal + rng.normal(0.0, sigma, signal.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, signal.shape).astype(np.float32)
    magnitude = np.sqrt(real * real + imag * imag) * acq.gain
    array = np.clip(np.rint(magnitude), 0, np.iinfo(np.int16).max).astype(np.int16)
    return acq.grid.to_image(array.reshape(shape)), tissue.reshape(shape)
