"""ScatteringCache: cached coefficients + coefficient-domain augmentation against recomputing the scattering."""

from __future__ import annotations

import threading

import pytest
import torch

from DMIFLib.scattering import CoefficientAugment, MultiScaleScattering, ScatteringCache
from DMIFLib.scattering.cache import orientation_index, rot90_permutation
from DMIFLib.training.augment import AugmentConfig


def smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.randn(n, 1, size + 4, size + 4, generator=g), 5, 1)
    return x.contiguous()


@pytest.fixture(scope="module")
def scattering() -> MultiScaleScattering:
    return MultiScaleScattering(J=(2, 3), shape=(32, 32))


@pytest.fixture(scope="module")
def slices() -> torch.Tensor:
    return smooth_images(6)


@pytest.fixture(scope="module")
def cache(scattering, slices) -> ScatteringCache:
    return ScatteringCache.build(scattering, slices, batch_size=4)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_unaugmented_batch_is_the_scattering(cache, scattering, slices) -> None:
    idx = torch.tensor([4, 1])
    coeffs = cache.batch(idx)
    for c, ref in zip(coeffs, scattering(slices[idx]), strict=True):
        assert c.shape == ref.shape and c.dtype == torch.float32
        torch.testing.assert_close(c, ref)
    assert len(cache) == 6 and cache.nbytes > 0


def test_flip_and_intensity_equal_recomputing(cache, scattering, slices) -> None:
    augment = CoefficientAugment(flip_prob=0.5, shift=0.5, shift_prob=1.0, scale=0.3, scale_prob=1.0)
    idx = torch.arange(6)
    coeffs = cache.batch(idx, augment, generator=torch.Generator().manual_seed(1))
    # Replay the same draws on the images (the order of draws is documented by CoefficientAugment).
    g = torch.Generator().manual_seed(1)
    flip = torch.rand(6, generator=g) < 0.5
    shift = torch.where(torch.rand(6, generator=g) < 1.0, (torch.rand(6, generator=g) * 2 - 1) * 0.5, torch.zeros(6))
    factor = torch.where(torch.rand(6, generator=g) < 1.0, 1 + (torch.rand(6, generator=g) * 2 - 1) * 0.3,
                         torch.ones(6))
    assert flip.any() and not flip.all()
    images = torch.where(flip.view(-1, 1, 1, 1), torch.flip(slices, dims=(-1,)), slices)
    images = factor.view(-1, 1, 1, 1) * (images + shift.view(-1, 1, 1, 1))
    for c, ref in zip(coeffs, scattering(images), strict=True):
        torch.testing.assert_close(c, ref, rtol=1e-5, atol=1e-6 * float(ref.abs().max()))


def test_negative_scale_flips_only_order_zero(cache, scattering, slices) -> None:
    # a·x with a < 0: order 0 changes sign, orders 1-2 are |a|·S (checked through the cache's own maths).
    coeffs = cache.batch(torch.arange(2))
    ref = scattering(-2.0 * slices[:2])
    for c, r in zip(coeffs, ref, strict=True):
        torch.testing.assert_close(-2.0 * c[:, :, :1], r[:, :, :1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(2.0 * c[:, :, 1:], r[:, :, 1:], rtol=1e-5, atol=1e-6)


def test_rot90_in_coefficient_domain_is_approximate_but_oriented(cache, scattering, slices) -> None:
    """Rotating the coefficients and permuting θ_l -> θ_{l+L/2} beats not permuting, but is not exact."""
    rotated = scattering(torch.rot90(slices, 1, dims=(-2, -1)))
    for i, j in enumerate(scattering.J):
        plain = torch.rot90(cache.coeffs[i], 1, dims=(-2, -1))
        permuted = plain[:, :, orientation_index(j, 8, 2, rot90_permutation(8))]
        orders12 = slice(1, None)
        err_perm = relative_error(permuted[:, :, orders12], rotated[i][:, :, orders12])
        err_plain = relative_error(plain[:, :, orders12], rotated[i][:, :, orders12])
        assert err_perm < 0.8 * err_plain
        assert err_perm > 1e-3  # the sampling grid moves by 2^J - 1 pixels: not a float-rounding difference


def test_orientation_index_is_a_permutation_and_an_involution_for_rot90() -> None:
    index = orientation_index(4, 8, 2, rot90_permutation(8))
    assert sorted(index.tolist()) == list(range(417))
    assert torch.equal(index[index], torch.arange(417))


def test_same_generator_seed_replays_the_batch(cache) -> None:
    augment = CoefficientAugment(flip_prob=0.5, rot90_prob=0.5, shift=0.2, shift_prob=0.5, scale=0.1, scale_prob=0.5)
    a = cache.batch(torch.arange(6), augment, generator=torch.Generator().manual_seed(7))
    b = cache.batch(torch.arange(6), augment, generator=torch.Generator().manual_seed(7))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_float16_storage_and_progress_and_cancel(scattering, slices) -> None:
    events = []
    half = ScatteringCache.build(scattering, slices, batch_size=4, dtype=torch.float16, flips=False,
                                 progress=events.append)
    assert [e["done"] for e in events] == [4, 6] and events[-1]["total"] == 6
    full = scattering(slices)
    for c, ref in zip(half.batch(torch.arange(6)), full, strict=True):
        assert relative_error(c, ref) < 1e-3
    with pytest.raises(ValueError, match="without flips"):
        half.batch(torch.arange(2), CoefficientAugment(flip_prob=1.0))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(InterruptedError):
        ScatteringCache.build(scattering, slices, cancel=cancel)


def test_augment_config_mapping() -> None:
    with pytest.raises(ValueError, match="affine"):
        CoefficientAugment.from_config(AugmentConfig())
    config = AugmentConfig(affine_prob=0.0, gaussian_prob=0.0, rayleigh_prob=0.0, gamma=(1.0, 1.0))
    augment = CoefficientAugment.from_config(config)
    assert augment.flip_prob == config.flip_prob and augment.shift == config.brightness
    assert augment.scale == config.scale_intensity and augment.rot90_prob == 0.0


def test_build_refuses_bad_slices(scattering) -> None:
    with pytest.raises(ValueError, match="\\(N, 1, H, W\\)"):
        ScatteringCache.build(scattering, torch.zeros(2, 32, 32))
