"""A continuous 3-D phantom head: scalp, fat, skull, CSF, grey/white matter, ventricles, oedema and tumour.

The head lives in its own physical frame (LPS mm, +x left, +y posterior, +z superior; the T1C scanner frame).
Every tissue boundary is an ellipsoid warped by a smooth random displacement, so each patient differs.
:meth:`Phantom.tissues` classifies arbitrary points, which the acquisitions sample on their own grids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from DMIFLib.synth.fields import WaveField, smooth_field


class Tissue(IntEnum):
    """Tissue classes; the values index the contrast tables of :mod:`DMIFLib.synth.acquisition`."""

    AIR = 0
    SCALP = 1
    FAT = 2
    SKULL = 3
    CSF = 4
    GREY = 5
    WHITE = 6
    VENTRICLE = 7
    OEDEMA = 8
    TUMOUR = 9
    RIM = 10


def _ellipsoid_radius(points: np.ndarray, center: np.ndarray, semi_axes: np.ndarray,
                      rotation: np.ndarray | None = None) -> np.ndarray:
    """Normalised ellipsoid radius (N,): < 1 inside. ``rotation`` (3, 3) columns = ellipsoid axes."""
    local = points - center.astype(np.float32)
    if rotation is not None:
        local = local @ rotation.astype(np.float32)
    local /= semi_axes.astype(np.float32)
    return np.sqrt(np.einsum("ij,ij->i", local, local))


def _random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.deg2rad(rng.uniform(-max_deg, max_deg, 3))).as_matrix()


@dataclass
class Phantom:
    """One patient's anatomy; all lengths in mm, positions in the head (T1C LPS) frame.

    ``scale`` shrinks every structure (tumour included) for small test volumes; textures keep their size.
    """

    center: np.ndarray
    head_axes: np.ndarray
    scalp_mm: float
    fat_mm: float
    skull_mm: float
    csf_mm: float
    cortex_mm: float
    ventricle_center: np.ndarray
    ventricle_axes: np.ndarray
    ventricle_gap_mm: float
    tumour_center: np.ndarray
    tumour_axes: np.ndarray
    tumour_rotation: np.ndarray
    oedema_factor: float
    rim: bool
    warp_mm: float
    warp: tuple[WaveField, WaveField, WaveField] = field(repr=False)
    gyri: WaveField = field(repr=False)
    tumour_shape: WaveField = field(repr=False)

    @classmethod
    def random(cls, rng: np.random.Generator, scale: float = 1.0) -> Phantom:
        """Draw a head (semi-axes ~65 × 76 × 68 mm at ``scale`` 1) with a tumour in one hemisphere."""
        s = scale
        center = rng.uniform(-4.0, 4.0, 3) * s
        head_axes = np.array([rng.uniform(62, 68), rng.uniform(72, 78), rng.uniform(64, 70)]) * s
        side = rng.choice([-1.0, 1.0])
        tumour_axes = np.array([rng.uniform(14.5, 23), rng.uniform(14.5, 23), rng.uniform(22, 30)]) * s
        tumour_center = center + np.array([side * rng.uniform(20, 27), rng.uniform(-20, 18),
                                           rng.uniform(2, 14)]) * s
        return cls(
            center=center, head_axes=head_axes,
            scalp_mm=rng.uniform(2.5, 4.0) * s, fat_mm=rng.uniform(1.5, 3.0) * s,
            skull_mm=rng.uniform(5.0, 7.0) * s, csf_mm=rng.uniform(1.5, 3.0) * s,
            cortex_mm=rng.uniform(3.0, 4.0) * s,
            ventricle_center=center + np.array([0.0, rng.uniform(-8, 0), rng.uniform(4, 12)]) * s,
            ventricle_axes=np.array([rng.uniform(4, 6), rng.uniform(20, 28), rng.uniform(8, 12)]) * s,
            ventricle_gap_mm=rng.uniform(1.5, 3.5) * s,
            tumour_center=tumour_center, tumour_axes=tumour_axes,
            tumour_rotation=_random_rotation(rng, 25.0),
            oedema_factor=rng.uniform(1.15, 1.4), rim=bool(rng.random() < 0.5),
            warp=tuple(smooth_field(rng, 6, (80.0 * s, 160.0 * s)) for _ in range(3)),
            warp_mm=rng.uniform(2.0, 4.0) * s,
            gyri=smooth_field(rng, 24, (10.0 * s, 18.0 * s)),
            tumour_shape=smooth_field(rng, 10, (18.0 * s, 40.0 * s)),
        )

    def tumour_radius(self, points: np.ndarray) -> np.ndarray:
        """Irregular normalised tumour radius (N,): < 1 inside the tumour (before clipping to the brain)."""
        r = _ellipsoid_radius(points, self.tumour_center, self.tumour_axes, self.tumour_rotation)
        near = r < 1.6
        if near.any():
            r[near] += 0.16 * self.tumour_shape(points[near])
        return r

    def tissues(self, points: np.ndarray) -> np.ndarray:
        """Tissue class (N,) uint8 (:class:`Tissue`) at ``points`` (N, 3) mm in the head frame."""
        points = np.asarray(points, dtype=np.float32)
        warped = points + self.warp_mm * np.stack([w(points) for w in self.warp], axis=1) / np.sqrt(2.0)
        out = np.zeros(len(points), dtype=np.uint8)
        r_head = _ellipsoid_radius(warped, self.center, self.head_axes)
        # Depth below the head surface, mm (ellipsoid radius scaled by the mean semi-axis).
        depth = (1.0 - r_head) * float(np.mean(self.head_axes))
        inside = depth > 0
        layers = np.cumsum([self.scalp_mm, self.fat_mm, self.skull_mm, self.csf_mm])
        out[inside] = Tissue.SCALP
        out[depth > layers[0]] = Tissue.FAT
        out[depth > layers[1]] = Tissue.SKULL
        out[depth > layers[2]] = Tissue.CSF
        brain = depth > layers[3]
        idx = np.flatnonzero(brain)
        p = warped[idx]
        # Cortical ribbon: grey matter down to ``cortex_mm`` below the brain surface, deeper (up to ~3×) where
        # the gyral field is high (the bottoms of sulci), with a thin CSF cleft along the middle of deep sulci.
        brain_depth = depth[idx] - layers[3]
        gyri = self.gyri(p)
        fold = np.clip(gyri, 0.0, None)
        tissue = np.where(brain_depth > self.cortex_mm * (1.0 + 1.6 * fold), Tissue.WHITE, Tissue.GREY).astype(np.uint8)
        tissue[(gyri > 0.75) & (brain_depth < self.cortex_mm * (0.6 + 1.6 * (gyri - 0.75)))] = Tissue.CSF
        for side in (-1.0, 1.0):
            offset = side * (self.ventricle_axes[0] + self.ventricle_gap_mm / 2)
            c = self.ventricle_center + np.array([offset, 0.0, 0.0])
            tilt = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [side * 0.25, 0.0, 1.0]])  # frontal horns splay out
            tissue[_ellipsoid_radius(p, c, self.ventricle_axes, tilt) < 1.0] = Tissue.VENTRICLE
        r_tumour = self.tumour_radius(p)
        tissue[(r_tumour < self.oedema_factor) & (tissue != Tissue.VENTRICLE) & (tissue != Tissue.CSF)] = Tissue.OEDEMA
        tumour = r_tumour < 1.0
        tissue[tumour] = Tissue.TUMOUR
        if self.rim:
            tissue[tumour & (r_tumour > 0.86)] = Tissue.RIM
        out[idx] = tissue
        return out
