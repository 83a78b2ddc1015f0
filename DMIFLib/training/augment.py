"""The paper's slice augmentations (Chen et al. 2022, §1.3), from MONAI's random array transforms.

rotation, translation, shear, scaling -> ``RandAffine``; flip -> ``RandFlip``; Gaussian noise ->
``RandGaussianNoise``; Rayleigh noise -> ``RandRicianNoise`` (magnitude of complex Gaussian noise: Rician on
tissue, Rayleigh where the signal is zero) applied to the slice shifted so that its minimum is 0, then shifted
back, because the slices are z-scored (negative values would be folded by the magnitude); brightness ->
``RandShiftIntensity``; contrast -> ``RandAdjustContrast`` (gamma) and ``RandScaleIntensity``. The paper's
saturation has no meaning for single-channel MRI and is left out.

Each slice of a batch gets its own random draw; the sequence is reproducible from the seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandAffine,
    RandFlip,
    RandGaussianNoise,
    Randomizable,
    RandRicianNoise,
    RandScaleIntensity,
    RandShiftIntensity,
)
from monai.utils import convert_to_tensor


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges and probabilities; angles in degrees, translation in pixels of the 128×128 slice."""

    affine_prob: float = 0.8
    rotate_deg: float = 15.0
    translate_px: float = 8.0
    shear: float = 0.1
    scale: float = 0.1
    flip_prob: float = 0.5
    gaussian_prob: float = 0.2
    gaussian_std: float = 0.1
    rayleigh_prob: float = 0.2
    rayleigh_std: float = 0.1
    brightness_prob: float = 0.3
    brightness: float = 0.2
    contrast_prob: float = 0.3
    gamma: tuple[float, float] = (0.8, 1.25)
    scale_intensity: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        values = dict(values)
        if "gamma" in values:
            values["gamma"] = tuple(values["gamma"])
        return cls(**values)


class _ZeroBasedRicianNoise(Randomizable):
    """``RandRicianNoise`` on the slice shifted to a zero minimum (the background then gets Rayleigh noise)."""

    def __init__(self, prob: float, std: float) -> None:
        self.noise = RandRicianNoise(prob=prob, std=std)

    def set_random_state(self, seed=None, state=None):
        self.noise.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:  # the wrapped transform draws its own numbers
        return None

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        low = img.min()
        return self.noise(img - low) + low


class SliceAugmenter:
    """Randomly augment a batch of slices (B, C, H, W) float32; channels of one slice move together."""

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0) -> None:
        c = config or AugmentConfig()
        self.config = c
        self.transform = Compose([
            RandAffine(prob=c.affine_prob, rotate_range=math.radians(c.rotate_deg), shear_range=(c.shear, c.shear),
                       translate_range=(c.translate_px, c.translate_px), scale_range=(c.scale, c.scale),
                       padding_mode="zeros"),
            RandFlip(prob=c.flip_prob, spatial_axis=1),
            RandGaussianNoise(prob=c.gaussian_prob, std=c.gaussian_std),
            _ZeroBasedRicianNoise(prob=c.rayleigh_prob, std=c.rayleigh_std),
            RandShiftIntensity(offsets=c.brightness, prob=c.brightness_prob),
            RandAdjustContrast(prob=c.contrast_prob, gamma=c.gamma),
            RandScaleIntensity(factors=c.scale_intensity, prob=c.contrast_prob),
        ])
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random sequence (the trainer reseeds once per epoch so that resume replays it)."""
        self.transform.set_random_state(seed=int(seed) % (2**32))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W) on the same device; the batch is augmented on the CPU."""
        device = batch.device
        out = [convert_to_tensor(self.transform(sample), track_meta=False) for sample in batch.detach().cpu()]
        return torch.stack(out).to(device=device, dtype=batch.dtype)
