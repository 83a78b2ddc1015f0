"""Smooth random fields evaluated analytically at arbitrary physical points (sums of random plane waves).

Evaluating at points (instead of on a fixed grid) lets every acquisition grid sample exactly the same
continuous anatomy, whatever its spacing, matrix and direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WaveField:
    """``f(x) = sum_k a_k cos(2π k_k·x + φ_k)``; ``wave_vectors`` (K, 3) in cycles/mm, ``x`` in mm."""

    wave_vectors: np.ndarray
    phases: np.ndarray
    amplitudes: np.ndarray

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Field values (N,) float32 at ``points`` (N, 3) in mm."""
        points = np.asarray(points, dtype=np.float32)
        out = np.zeros(len(points), dtype=np.float32)
        # Argument = 2π k·x + φ, one wave at a time to keep memory at O(N).
        kv = (2.0 * np.pi * self.wave_vectors).astype(np.float32)
        for k, phase, amp in zip(kv, self.phases.astype(np.float32), self.amplitudes.astype(np.float32), strict=True):
            arg = points @ k
            arg += phase
            out += amp * np.cos(arg)
        return out


def random_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` unit vectors (n, 3) uniform on the sphere."""
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def smooth_field(rng: np.random.Generator, n_waves: int, wavelength_mm: tuple[float, float]) -> WaveField:
    """An isotropic smooth field with unit standard deviation and wavelengths in ``wavelength_mm`` (min, max)."""
    wavelengths = rng.uniform(*wavelength_mm, size=n_waves)
    vectors = random_directions(rng, n_waves) / wavelengths[:, None]
    phases = rng.uniform(0.0, 2.0 * np.pi, size=n_waves)
    amplitudes = np.full(n_waves, np.sqrt(2.0 / n_waves))
    return WaveField(vectors, phases, amplitudes)
