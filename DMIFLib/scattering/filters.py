"""kymatio's 2-D Morlet filter bank, bit-identical and cached per (M, N, J, L).

``kymatio.scattering2d.filter_bank.filter_bank`` periodises each filter with four nested Python loops (seconds
per J at 160²); here the same masked filter is periodised with one reshape-and-sum, which is exact because
kymatio's mask leaves exactly one non-zero alias per output coefficient (Testing/test_scattering.py checks
bit-equality). The filters themselves come from kymatio's ``morlet_2d`` and ``gabor_2d``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from kymatio.scattering2d.filter_bank import gabor_2d, morlet_2d
from scipy.fft import fft2


def periodize_filter_fft(x: np.ndarray, res: int) -> np.ndarray:
    """kymatio's ``periodize_filter_fft``: (M, N) Fourier filter -> (M/2^res, N/2^res) low-frequency crop."""
    M, N = x.shape
    mask = np.ones(x.shape, np.float32)
    len_x, start_x = int(M * (1 - 2 ** (-res))), int(M * 2 ** (-res - 1))
    len_y, start_y = int(N * (1 - 2 ** (-res))), int(N * 2 ** (-res - 1))
    mask[start_x:start_x + len_x, :] = 0
    mask[:, start_y:start_y + len_y] = 0
    k = 2**res
    return np.multiply(x, mask).reshape(k, M // k, k, N // k).sum(axis=(0, 2)).astype(x.dtype)


@lru_cache(maxsize=16)
def filter_bank(M: int, N: int, J: int, L: int = 8) -> dict:
    """kymatio's ``filter_bank(M, N, J, L)``: {"psi": [{"j", "theta", "levels"}...], "phi": {"j", "levels"}}.

    Cached: treat the returned arrays as read-only.
    """
    psi = []
    for j in range(J):
        for theta in range(L):
            signal = morlet_2d(M, N, 0.8 * 2**j, (int(L - L / 2 - 1) - theta) * np.pi / L, 3.0 / 4.0 * np.pi / 2**j,
                               4.0 / L)
            fourier = np.real(fft2(signal))
            levels = [periodize_filter_fft(fourier, res) for res in range(min(j + 1, max(J - 1, 1)))]
            psi.append({"levels": levels, "j": j, "theta": theta})
    phi_fourier = np.real(fft2(gabor_2d(M, N, 0.8 * 2 ** (J - 1), 0, 0)))
    phi = {"levels": [periodize_filter_fft(phi_fourier, res) for res in range(J)], "j": J}
    return {"psi": psi, "phi": phi}
