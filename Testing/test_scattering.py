"""MultiScaleScattering against kymatio's ScatteringTorch2D (the reference) and kymatio's own stored test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

from DMIFLib.scattering import MultiScaleScattering, scattering_channels


def assert_close_to(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """rtol 1e-5 with an atol of 1e-6 of the largest coefficient (float32 rounding of the FFTs)."""
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6 * float(ref.abs().max()))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 1, 128, 128, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def fast() -> MultiScaleScattering:
    return MultiScaleScattering(J=(2, 3, 4), shape=(128, 128))


@pytest.mark.parametrize("J", [2, 3, 4])
def test_equal_to_kymatio_per_scale(J: int, images: torch.Tensor, fast: MultiScaleScattering) -> None:
    torch.set_num_threads(1)
    ref = ScatteringTorch2D(J=J, shape=(128, 128), L=8)(images)
    ours = fast(images)[fast.J.index(J)]
    assert ours.shape == (2, 1, scattering_channels(J), 128 // 2**J, 128 // 2**J)
    assert_close_to(ours, ref)


@pytest.mark.parametrize("scales", [(2, 4), (4, 3), (3,)])
def test_subsets_keep_the_requested_order(scales: tuple[int, ...], images: torch.Tensor,
                                          fast: MultiScaleScattering) -> None:
    full = dict(zip(fast.J, fast(images), strict=True))
    subset = MultiScaleScattering(J=scales)(images)
    assert len(subset) == len(scales)
    for j, s in zip(scales, subset, strict=True):
        torch.testing.assert_close(s, full[j], rtol=1e-6, atol=1e-7 * float(full[j].abs().max()))


def test_chunking_and_three_dim_input_follow_kymatio_layout(images: torch.Tensor) -> None:
    whole = MultiScaleScattering(J=(2,), chunk_size=0)(images)[0]
    chunked = MultiScaleScattering(J=(2,), chunk_size=1)(images)[0]
    torch.testing.assert_close(chunked, whole)
    flat = MultiScaleScattering(J=(2,))(images[:, 0])[0]  # (B, H, W) -> (B, K, h, w), like kymatio
    assert flat.shape == (2, 81, 32, 32)
    torch.testing.assert_close(flat, whole[:, 0])


def test_channels_last_conversion_leaves_the_scattering_alone(images: torch.Tensor) -> None:
    """Module.to(memory_format=channels_last) on a net holding the scattering (as users do for convs) changes
    nothing in it: its filter buffers are not 4-D, so they keep their layout."""
    plain = MultiScaleScattering(J=(2, 3))
    converted = MultiScaleScattering(J=(2, 3)).to(memory_format=torch.channels_last)
    for a, b in zip(plain(images), converted(images), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_first_order_only_is_the_prefix(images: torch.Tensor) -> None:
    first = MultiScaleScattering(J=(3,), max_order=1)(images)[0]
    both = MultiScaleScattering(J=(3,), max_order=2)(images)[0]
    assert first.shape[2] == 1 + 3 * 8
    torch.testing.assert_close(first, both[:, :, : 1 + 3 * 8])


def test_kymatio_stored_reference(shared_data) -> None:
    """kymatio's own regression data (tests/scattering2d/test_data_2d.npz): J=4 on 32×32, 2×3 signals."""
    data = np.load(shared_data / "reference" / "kymatio_test_data_2d.npz")
    x = torch.from_numpy(data["x"])
    expected = torch.from_numpy(data["Sx"])
    J = int(data["J"])
    scattering = MultiScaleScattering(J=(J,), shape=(32, 32), pre_pad=bool(data["pre_pad"]))
    assert_close_to(scattering(x)[0], expected)
    first = MultiScaleScattering(J=(J,), shape=(32, 32), max_order=1, pre_pad=bool(data["pre_pad"]))
    assert_close_to(first(x)[0], expected[..., : 1 + J * 8, :, :])


def test_pre_pad_matches_kymatio() -> None:
    ref = ScatteringTorch2D(J=3, shape=(32, 32), L=8, pre_pad=True)
    x = torch.randn(2, ref._M_padded, ref._N_padded, generator=torch.Generator().manual_seed(1))
    ours = MultiScaleScattering(J=(3,), shape=(32, 32), pre_pad=True)(x)[0]
    assert_close_to(ours, ref(x))


def test_gradients_match_kymatio() -> None:
    x = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    ScatteringTorch2D(J=2, shape=(32, 32), L=8)(x_ref).sum().backward()
    MultiScaleScattering(J=(2,), shape=(32, 32))(x_ours)[0].sum().backward()
    assert_close_to(x_ours.grad, x_ref.grad)


def test_bad_input_is_refused() -> None:
    scattering = MultiScaleScattering(J=(2,), shape=(32, 32))
    with pytest.raises(ValueError, match="expected spatial size"):
        scattering(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match="2\\^J"):
        MultiScaleScattering(J=(6,), shape=(32, 32))
    with pytest.raises(ValueError, match="single padded size"):
        MultiScaleScattering(J=(2, 3), shape=(32, 32), pre_pad=True)
    for scales in ((0,), (2, 0), ()):
        with pytest.raises(ValueError, match="at least 1"):
            MultiScaleScattering(J=scales, shape=(32, 32))


@pytest.mark.gpu
def test_cuda_equals_kymatio_on_cuda(images: torch.Tensor) -> None:
    ref = ScatteringTorch2D(J=3, shape=(128, 128), L=8).cuda()(images.cuda())
    ours = MultiScaleScattering(J=(3,)).cuda()(images.cuda())[0]
    assert ours.is_cuda
    assert_close_to(ours.cpu(), ref.cpu())


def test_filter_bank_is_bit_identical_to_kymatio() -> None:
    from kymatio.scattering2d.filter_bank import filter_bank as kymatio_filter_bank

    from DMIFLib.scattering.filters import filter_bank

    ours, ref = filter_bank(48, 40, 3, 6), kymatio_filter_bank(48, 40, 3, 6)
    for a, b in zip(ours["psi"] + [ours["phi"]], ref["psi"] + [ref["phi"]], strict=True):
        assert a.get("theta") == b.get("theta") and a["j"] == b["j"] and len(a["levels"]) == len(b["levels"])
        for x, y in zip(a["levels"], b["levels"], strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y)


@pytest.mark.parametrize("shape", [(3, 8, 10), (2, 5, 8), (2, 3, 17, 34)])
def test_real_fft2_halves_are_the_full_spectrum(shape: tuple[int, ...]) -> None:
    from DMIFLib.scattering.multiscale import real_fft2_halves

    y = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    left, right = real_fft2_halves(y)
    torch.testing.assert_close(torch.cat([left, right], dim=-1), torch.fft.fft2(y), rtol=1e-5, atol=1e-4)


def test_real_fft2_halves_refuses_an_odd_width() -> None:
    from DMIFLib.scattering.multiscale import real_fft2_halves

    with pytest.raises(ValueError, match="even"):
        real_fft2_halves(torch.zeros(4, 7))
