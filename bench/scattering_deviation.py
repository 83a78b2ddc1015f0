"""Deviation figures for docs/performance.md: what the scattering cache and a shared Fourier grid would change.

    python bench/scattering_deviation.py [--n 16]

Prints, per J and per order, ‖approx − exact‖ / ‖exact‖ on synthetic 128² slices for: the cache's intensity
maps (exact up to rounding), cached flips (exact), flips and 90° rotations applied to the coefficients
(space + orientation permutation), float16 storage, and computing a smaller J on the largest J's padded grid.
"""

import argparse

import torch

from DMIFLib.scattering import MultiScaleScattering, ScatteringCache
from DMIFLib.scattering.benchmark import synthetic_slices
from DMIFLib.scattering.cache import flip_permutation, orientation_index, rot90_permutation
from DMIFLib.scattering.multiscale import _Scale


def per_order(approx: torch.Tensor, exact: torch.Tensor, J: int, L: int = 8) -> str:
    parts = [slice(0, 1), slice(1, 1 + J * L), slice(1 + J * L, None)]
    errs = [float((approx[:, :, p] - exact[:, :, p]).norm() / exact[:, :, p].norm()) for p in parts]
    return "  ".join(f"{e:9.2e}" for e in errs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="number of slices")
    n = parser.parse_args().n
    torch.set_num_threads(1)
    x = synthetic_slices(n, seed=5)
    scattering = MultiScaleScattering()
    exact = scattering(x)
    cache = ScatteringCache.build(scattering, x, batch_size=16)
    half = ScatteringCache.build(scattering, x, batch_size=16, flips=False, dtype=torch.float16)
    a, b = 1.15, -0.3
    affine = scattering(a * (x + b))
    flipped = scattering(torch.flip(x, dims=(-1,)))
    rotated = scattering(torch.rot90(x, 1, dims=(-2, -1)))
    print(f"{n} synthetic 128² slices; relative L2 error per order:     order 0    order 1    order 2")
    for i, J in enumerate(scattering.J):
        s = cache.coeffs[i]
        mapped = s * a
        mapped[:, :, 0] = a * s[:, :, 0] + a * b * cache.phi0[i]
        print(f"J={J} intensity a·(x+b) from the cache              {per_order(mapped, affine[i], J)}")
        print(f"J={J} flip from the cache (flipped slices cached)   {per_order(cache.flipped[i], flipped[i], J)}")
        perm = orientation_index(J, 8, 2, flip_permutation(8))
        print(f"J={J} flip applied to the coefficients              "
              f"{per_order(torch.flip(s, dims=(-1,))[:, :, perm], flipped[i], J)}")
        perm = orientation_index(J, 8, 2, rot90_permutation(8))
        print(f"J={J} rot90 applied to the coefficients             "
              f"{per_order(torch.rot90(s, 1, dims=(-2, -1))[:, :, perm], rotated[i], J)}")
        print(f"J={J} float16 storage                               {per_order(half.coeffs[i].float(), exact[i], J)}")
    # A shared grid: J = 2 and 3 computed on J = 4's padded 160² grid (pad 16 reflect), then cropped to the
    # output window of their own padding.
    big = scattering.pads[-1](x.reshape(-1, 128, 128))[..., 0]
    for i, J in enumerate(scattering.J[:-1]):
        shared = _Scale(J, 8, tuple(big.shape[-2:]), 2)(big)
        offset = (16 - 2**J) // 2**J
        crop = shared[..., offset:offset + 128 // 2**J, offset:offset + 128 // 2**J].reshape(exact[i].shape)
        print(f"J={J} on the J=4 grid (160²) instead of its own     {per_order(crop, exact[i], J)}")


if __name__ == "__main__":
    main()
