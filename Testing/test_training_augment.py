"""The MONAI augmentation pipeline: seeded, shape-preserving, every transform active."""

import dataclasses

import torch

from DMIFLib.training.augment import AugmentConfig, SliceAugmenter

OFF = AugmentConfig(affine_prob=0, flip_prob=0, gaussian_prob=0, rayleigh_prob=0, brightness_prob=0, contrast_prob=0)


def _batch():
    torch.manual_seed(0)
    return torch.randn(4, 2, 32, 32)


def test_same_seed_same_augmentation_other_seed_differs():
    x = _batch()
    a = SliceAugmenter(seed=5)(x)
    b = SliceAugmenter(seed=5)(x)
    c = SliceAugmenter(seed=6)(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_all_off_is_identity_and_each_transform_changes_the_slices():
    x = _batch()
    assert torch.allclose(SliceAugmenter(OFF, seed=0)(x), x, atol=1e-6)  # (x - min) + min rounds
    for prob in ("affine_prob", "flip_prob", "gaussian_prob", "rayleigh_prob", "brightness_prob", "contrast_prob"):
        y = SliceAugmenter(dataclasses.replace(OFF, **{prob: 1.0}), seed=1)(x)
        assert not torch.allclose(y, x), prob


def test_flip_and_affine_move_both_modalities_together():
    x = _batch()
    x[:, 1] = x[:, 0]
    y = SliceAugmenter(dataclasses.replace(OFF, affine_prob=1.0, flip_prob=1.0), seed=2)(x)
    assert torch.allclose(y[:, 0], y[:, 1])


def test_rayleigh_noise_keeps_z_scored_values_signed():
    x = _batch()
    y = SliceAugmenter(dataclasses.replace(OFF, rayleigh_prob=1.0, rayleigh_std=0.01), seed=3)(x)
    assert (y < 0).float().mean() > 0.3  # a plain magnitude would fold every negative value to positive
    assert (y - x).abs().mean() < 0.05
