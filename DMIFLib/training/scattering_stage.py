"""Stage 1 of MI-Net from cached scattering coefficients (:class:`DMIFLib.scattering.ScatteringCache`).

The scattering has no trainable parameters, so MI-Net's stage 1 only needs each slice's coefficients once.
The cache applies flips (exact: the flipped slices are scattered too) and brightness / intensity scaling
(exact on the coefficients). The other augmentations (affine, noise, gamma) cannot act on cached
coefficients: :func:`cache_augmentation` drops them for this stage only (the scattering is by construction
stable to small deformations, which is what the affine augmentation teaches the other nets). A rotation
range of 90° or more becomes random 90° rotations of the coefficients (space and orientations), which the
cache applies approximately (``DMIFLib.scattering.cache``; docs/performance.md gives the deviation).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import torch
from torch import nn

from DMIFLib.scattering import CoefficientAugment, ScatteringCache
from DMIFLib.training.augment import AugmentConfig
from DMIFLib.training.distributed import shared_scattering_cache
from DMIFLib.training.errors import RunCancelledError
from DMIFLib.training.stage import SliceSet


def cache_augmentation(augment: AugmentConfig | None) -> AugmentConfig | None:
    """The part of ``augment`` that the cache applies exactly: flips, brightness, intensity scaling."""
    if augment is None:
        return None
    return dataclasses.replace(augment, affine_prob=0.0, gaussian_prob=0.0, rayleigh_prob=0.0, gamma=(1.0, 1.0))


class CachedCoefficients:
    """Maps a batch of slice indices (B,) to MI-Net's input: per J (B, 1, K_J, h, w), augmented per sample.

    Used as :func:`~DMIFLib.training.stage.fit`'s ``augment``; ``reseed`` restarts the draws (once per epoch).
    """

    def __init__(self, cache: ScatteringCache, augment: CoefficientAugment | None) -> None:
        self.cache, self.augment = cache, augment
        self.generator = torch.Generator()

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.cache.batch(index.long(), self.augment, self.generator))


def cached_minet_data(net: nn.Module, train: SliceSet, val: SliceSet | None, augment: AugmentConfig | None,
                      device: torch.device, progress: Callable[[dict], None] | None = None,
                      cancel: threading.Event | None = None) -> tuple[SliceSet, SliceSet | None, CachedCoefficients]:
    """Scatter ``train`` and ``val`` slices (N, 1, S, S) once with ``net.scattering``; ``augment`` is reduced
    with :func:`cache_augmentation` (plus 90° rotations when its rotation range reaches 90°).

    Returns the training set as slice indices (N,) (turned into coefficients by the returned
    :class:`CachedCoefficients`), the validation set as coefficient tensors, and that callable; train with
    ``fit(..., augment=callable, forward=net.forward_from_scattering)``.
    """
    coefficient_augment = None
    if augment is not None:
        rot90 = augment.affine_prob if augment.rotate_deg >= 90 else 0.0
        coefficient_augment = dataclasses.replace(CoefficientAugment.from_config(cache_augmentation(augment)),
                                                  rot90_prob=rot90)
    flips = coefficient_augment is not None and coefficient_augment.flip_prob > 0
    scattering = net.scattering.to(device)
    try:
        cache = shared_scattering_cache(ScatteringCache.build, scattering, train.x, flips=flips, progress=progress,
                                        cancel=cancel)
        val_set = None
        if val is not None and len(val):
            val_cache = shared_scattering_cache(ScatteringCache.build, scattering, val.x, flips=False, cancel=cancel)
            val_set = SliceSet(tuple(c.cpu() for c in val_cache.coeffs), val.y)
    except InterruptedError as error:
        raise RunCancelledError(str(error)) from None
    return SliceSet(torch.arange(len(train)), train.y), val_set, CachedCoefficients(cache, coefficient_augment)
