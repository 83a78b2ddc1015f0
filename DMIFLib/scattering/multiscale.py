"""Fast 2-D wavelet scattering at several scales J in one module, equal to kymatio's ``ScatteringTorch2D``.

The algorithm is kymatio's (``kymatio/scattering2d/core/scattering2d.py``): the same filters (kymatio's
``filter_bank`` at each J's padded size, bit-identical, see :mod:`DMIFLib.scattering.filters`), the same
reflect padding and the same Fourier-domain periodisation for subsampling. What changes is the layout of the work:

* all L orientations of a scale (and, at order 2, all L×L (θ1, θ2) pairs of a (j1, j2) pair) are one batched
  product, one periodisation and one batched inverse FFT, instead of one small op per path;
* ``periodize(û ⊙ ψ̂, k)`` is computed as a sum of block products at the output size, over the k×k Fourier
  blocks where the filters are not negligible (> ``FILTER_TOLERANCE`` of their peak; the rest is below float32
  rounding), instead of a full-size product followed by a strided mean;
* the FFTs of real signals (the padded input, the moduli |u ⋆ ψ|) only feed the low-pass φ through their half
  spectrum: ``Re(ifft(P_k(Ŷ ⊙ φ̂)))`` equals ``irfft(P_rows(Ŷ ⊙ φ̂_sym))`` subsampled by k in space, with
  φ̂_sym(ω) = (φ̂(ω) + φ̂(−ω)) / 2 (kymatio keeps the real part, which is exactly what the symmetrised filter
  gives; kymatio's periodised φ̂ levels are not quite even because of its crop mask); second-order moduli that
  feed no further wavelet get a real-to-complex FFT only;
* images are processed in chunks that keep the intermediate arrays cache-sized.

What the scales can share: kymatio pads each J by 2^J pixels (reflect), so the Fourier grids differ per J
(136², 144², 160² for 128² input at J = 2, 3, 4) and each J's filters are sampled on its own grid: no FFT and no
first-order modulus is common to two J's. docs/performance.md gives the deviation of a common grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from kymatio.scattering2d.backend.torch_backend import TorchBackend2D
from kymatio.scattering2d.utils import compute_padding
from torch import nn

from DMIFLib.scattering.filters import filter_bank
from DMIFLib.scattering.kymatio_reference import scattering_channels

# Fourier coefficients of a filter below this fraction of its largest are set to zero, and k×k periodisation
# blocks holding only such coefficients are left out of the sums: the dropped terms are at the level of float32
# rounding (the tests compare with kymatio at rtol 1e-5).
FILTER_TOLERANCE = 1e-7


def _clip_tails(filters: torch.Tensor) -> torch.Tensor:
    """Zero the coefficients below FILTER_TOLERANCE of the largest."""
    return torch.where(filters.abs() < FILTER_TOLERANCE * filters.abs().max(), 0.0, filters)


def _blocks(filters: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """The (row, column) blocks of a k×k periodisation of (F, M, N) filters where any filter is significant."""
    f, m, n = filters.shape
    peak = filters.abs().reshape(f, k, m // k, k, n // k).amax(dim=(0, 2, 4)) / filters.abs().max()
    return [(i, j) for i in range(k) for j in range(k) if peak[i, j] > FILTER_TOLERANCE]


def modulus(z: torch.Tensor) -> torch.Tensor:
    """|z| of a complex tensor as sqrt(re² + im²) (kymatio's modulus; 3-4× faster than ``abs``'s hypot on CPU)."""
    return torch.addcmul(z.real.square(), z.imag, z.imag).sqrt_()


def _symmetrize(phi: torch.Tensor) -> torch.Tensor:
    """(φ̂(ω) + φ̂(−ω)) / 2 for a real (M, N) Fourier filter."""
    flipped = torch.roll(torch.flip(phi, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    return 0.5 * (phi + flipped)


class _Scale(nn.Module):
    """One J: kymatio's filter bank at the padded size, and the scattering of a padded input.

    Each filter group is stored as the blocks of its k×k Fourier periodisation, (F, q, M/k, N/k), so that
    ``periodize(û ⊙ ψ̂, k)`` is a sum of q block products at the output size.
    """

    def __init__(self, J: int, L: int, padded: tuple[int, int], max_order: int) -> None:
        super().__init__()
        self.J, self.L, self.max_order = J, L, max_order
        m, n = padded
        bank = filter_bank(m, n, J, L)
        self.phi0 = float(bank["phi"]["levels"][0][0, 0])  # φ̂(0): order 0's gain on a constant
        self.phi_rows: dict[int, list[int]] = {}
        for res, level in enumerate(bank["phi"]["levels"]):
            phi = _clip_tails(_symmetrize(torch.from_numpy(level).float()))
            half = phi[..., : phi.shape[-1] // 2 + 1]
            k = 2 ** (J - res)
            peak = half.abs().reshape(k, -1).amax(dim=1) / half.abs().max()
            rows = [i for i in range(k) if peak[i] > FILTER_TOLERANCE]
            self.phi_rows[res] = rows
            blocks = half.reshape(k, half.shape[0] // k, half.shape[1])[rows]
            self.register_buffer(f"phi_{res}", blocks.to(torch.complex64).contiguous(), persistent=False)
        self.psi_blocks: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for j in range(J):
            group = [p for p in bank["psi"] if p["j"] == j]
            if [p["theta"] for p in group] != list(range(L)):
                raise RuntimeError("kymatio's filter bank changed its orientation order")
            for res in range(len(group[0]["levels"])):
                stack = _clip_tails(torch.from_numpy(np.stack([p["levels"][res] for p in group])).float())
                k = 2 ** (j - res)
                blocks = _blocks(stack, k)
                self.psi_blocks[(j, res)] = blocks
                f, mr, nr = stack.shape
                tiles = stack.reshape(f, k, mr // k, k, nr // k)
                tiles = torch.stack([tiles[:, bi, :, bj, :] for bi, bj in blocks], dim=1)  # (F, q, m/k, n/k)
                self.register_buffer(f"psi_{j}_{res}", tiles.to(torch.complex64).contiguous(), persistent=False)

    def filter_periodize(self, u_hat: torch.Tensor, j: int, res: int) -> torch.Tensor:
        """(…, m, n) complex spectrum at resolution ``res`` -> periodize(û ⊙ ψ̂_{j,θ}, 2^(j−res)): (…, L, m/k, n/k)."""
        k = 2 ** (j - res)
        tiles = getattr(self, f"psi_{j}_{res}")  # (L, q, m/k, n/k); complex: complex × real products are slower
        *lead, m, n = u_hat.shape
        u = u_hat.reshape(*lead, 1, k, m // k, k, n // k)
        acc = None
        for q, (bi, bj) in enumerate(self.psi_blocks[(j, res)]):
            term = u[..., bi, :, bj, :] * tiles[:, q]
            acc = term if acc is None else acc.add_(term)
        return acc.div_(k * k)

    def lowpass(self, half: torch.Tensor, res: int, n: int) -> torch.Tensor:
        """Half spectrum (…, m, n/2+1) at resolution ``res`` -> φ_J low-pass at 2^J, unpadded (…, h, w)."""
        k = 2 ** (self.J - res)
        tiles = getattr(self, f"phi_{res}")  # (q, m/k, n/2+1)
        *lead, m, nh = half.shape
        rows = half.reshape(*lead, k, m // k, nh)
        acc = None
        for q, bi in enumerate(self.phi_rows[res]):
            term = rows[..., bi, :, :] * tiles[q]
            acc = term if acc is None else acc.add_(term)
        s = torch.fft.irfft2(acc, s=(m // k, n))[..., ::k]
        return s[..., 1:-1, 1:-1] / k

    def forward(self, xp: torch.Tensor) -> torch.Tensor:
        """Padded (B, M, N) float32 -> (B, K_J, h, w) in kymatio's coefficient order."""
        J = self.J
        batch, _, n = xp.shape
        x_hat = torch.fft.fft2(xp)
        out = [self.lowpass(x_hat[..., : n // 2 + 1], 0, n).unsqueeze(1)]
        second: list[torch.Tensor] = []
        for j1 in range(J):
            u1 = modulus(torch.fft.ifft2(self.filter_periodize(x_hat, j1, 0)))  # (B, L, m1, n1)
            n1 = u1.shape[-1]
            needs_full = self.max_order >= 2 and j1 < J - 1
            u1_hat = torch.fft.fft2(u1) if needs_full else torch.fft.rfft2(u1)
            out.append(self.lowpass(u1_hat[..., : n1 // 2 + 1], j1, n1))
            if not needs_full:
                continue
            per_j2 = []
            for j2 in range(j1 + 1, J):
                u2 = modulus(torch.fft.ifft2(self.filter_periodize(u1_hat, j2, j1)))  # (B, L, L, m2, n2)
                per_j2.append(self.lowpass(torch.fft.rfft2(u2), j2, u2.shape[-1]))
            second.append(torch.cat(per_j2, dim=2).reshape(batch, -1, *per_j2[0].shape[-2:]))
        return torch.cat(out + second, dim=1)


class MultiScaleScattering(nn.Module):
    """Scattering at each J in ``J`` in one pass; equal to kymatio's ``ScatteringTorch2D`` per J.

    Input (B, H, W) or (B, C, H, W) float32 (or the padded size with ``pre_pad=True``, one J only); output a
    list, one tensor per J in the order given, each (B, C, K_J, H/2^J, W/2^J) — (B, K_J, …) for 3-D input, as
    kymatio — with K_J = :func:`scattering_channels` in kymatio's order: order 0, then (j1, θ1), then
    (j1, θ1, j2, θ2) with j2 > j1. ``chunk_size`` images are processed at a time to bound memory
    (about 13 MB per image at J = 4, 128²).
    """

    def __init__(self, J: Sequence[int] | int = (2, 3, 4), L: int = 8, shape: tuple[int, int] = (128, 128),
                 max_order: int = 2, pre_pad: bool = False, chunk_size: int = 16) -> None:
        super().__init__()
        self.J = (int(J),) if isinstance(J, int) else tuple(int(j) for j in J)
        self.L, self.shape, self.max_order = L, tuple(int(s) for s in shape), max_order
        self.pre_pad, self.chunk_size = pre_pad, chunk_size
        if max_order not in (1, 2):
            raise ValueError(f"max_order must be 1 or 2, got {max_order}")
        M, N = self.shape
        if any(2**j > M or 2**j > N for j in self.J):
            raise ValueError(f"scattering: every 2^J must fit in the input shape {self.shape}, got J={self.J}")
        self.padded = [compute_padding(M, N, j) for j in self.J]
        if pre_pad and len(set(self.padded)) > 1:
            raise ValueError("pre_pad=True needs a single padded size: use one J")
        self.pads = [TorchBackend2D.Pad([(pm - M) // 2, (pm - M + 1) // 2, (pn - N) // 2, (pn - N + 1) // 2], [M, N])
                     for pm, pn in self.padded]
        self.scales = nn.ModuleList(_Scale(j, L, p, max_order) for j, p in zip(self.J, self.padded, strict=True))

    def channels(self) -> list[int]:
        """K_J per scale."""
        return [scattering_channels(j, self.L, self.max_order) for j in self.J]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if not torch.is_tensor(x) or x.dim() < 2:
            raise TypeError("scattering: the input must be a tensor (…, H, W)")
        expected = self.padded[0] if self.pre_pad else self.shape
        if tuple(x.shape[-2:]) != tuple(expected):
            raise ValueError(f"scattering: expected spatial size {tuple(expected)}, got {tuple(x.shape[-2:])}")
        lead = x.shape[:-2]
        flat = x.reshape(-1, *x.shape[-2:]).float()
        chunk = self.chunk_size or flat.shape[0]
        outs: list[list[torch.Tensor]] = [[] for _ in self.J]
        for start in range(0, max(flat.shape[0], 1), max(chunk, 1)):
            part = flat[start:start + chunk]
            for i, (scale, pad) in enumerate(zip(self.scales, self.pads, strict=True)):
                xp = part if self.pre_pad else pad(part)[..., 0]
                outs[i].append(scale(xp))
        return [torch.cat(o, dim=0).reshape(*lead, *o[0].shape[1:]) for o in outs]
