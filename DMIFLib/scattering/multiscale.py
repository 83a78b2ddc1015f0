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
* the spectra of the real signals that feed wavelets (the padded input, the first-order moduli) come from
  ``rfft2`` completed by Hermitian symmetry (:func:`real_fft2_halves`), not from a complex ``fft2``, and the
  periodisation blocks are gathered from the two halves without assembling the full spectrum;
* the block products run on the real view of the spectra, against filters stored real with each value twice
  (re, im): a real fused multiply-add instead of a complex product with a zero imaginary part;
* images are processed in chunks that keep the intermediate arrays small.

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

# Images per chunk. CPU: 4 was the fastest of 1, 2, 4, 6, 8, 16 on the 2-core development CPU with glibc's default
# malloc (interleaved runs, docs/performance.md): its intermediates (≤ 13 MB) stay under the adaptive mmap
# threshold, so they are reused rather than page-faulted in again; with DMIFLib.allocator's fixed thresholds 4, 8
# and 16 are within 6 %. GPU: larger kernels; 64 images take about 0.85 GB at J = 4, 128² (not timed: no GPU was
# available to tune it).
CPU_CHUNK = 4
GPU_CHUNK = 64


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


def real_fft2_halves(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``fft2`` of a real (…, m, n) tensor, n even, as its column halves (left, right), each (…, m, n/2).

    ``torch.cat([left, right], -1)`` is ``fft2(y)``. The left half is a view of ``rfft2``; the right half comes from
    Hermitian symmetry, X[a, b] = conj(X[−a mod m, n − b]): about half the FFT work of ``fft2``, which promotes the
    real input to complex and runs a full complex transform.
    """
    n = y.shape[-1]
    if n % 2:
        raise ValueError(f"real_fft2_halves needs an even last dimension, got {n}")
    half = torch.fft.rfft2(y)  # (…, m, n/2 + 1)
    right = torch.roll(half[..., 1:n // 2 + 1].flip(-1, -2), 1, dims=-2).conj()
    return half[..., :n // 2], right


def _symmetrize(phi: np.ndarray) -> np.ndarray:
    """(φ̂(ω) + φ̂(−ω)) / 2 for a real (M, N) Fourier filter."""
    flipped = np.roll(np.flip(phi, axis=(-2, -1)), shift=(1, 1), axis=(-2, -1))
    return 0.5 * (phi + flipped)


def _separable_lowpass(phi: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real (m, n) Fourier filter φ̂ -> (A (h, R·m), B (R, w, n)): kymatio's low-pass of y is A·[y B_rᵀ]_r.

    For a real signal y (m, n), kymatio's low-pass ``Re(ifft2(periodize(fft2(y) ⊙ φ̂, k)))`` is the circular
    convolution of y with c = ifft2(φ̂_sym) (real; φ̂_sym symmetrised as taking the real part does), sampled every
    k pixels (kymatio's periodisation averages the k×k blocks, which is exactly that sampling). The kernel c, as
    an (m, n) matrix, has a small rank R (φ is a Gaussian, separable up to kymatio's crop mask; R = 1 for the
    J ≤ 4 banks): c = Σ_r p_r q_rᵀ, so the low-pass is Σ_r A_r y B_rᵀ with circulant-sampled
    A_r[a, x] = p_r[(k a − x) mod m], B_r[b, z] = q_r[(k b − z) mod n]: real matrix products instead of an FFT,
    a product and an inverse FFT per image. Rows and columns are those of kymatio's unpadded output (the first
    and last sample dropped). Terms whose singular value is below ``FILTER_TOLERANCE`` of the largest are dropped.
    """
    m, n = phi.shape
    c = np.real(np.fft.ifft2(_symmetrize(phi.astype(np.float64))))
    u, sigma, vt = np.linalg.svd(c)
    rank = int(np.sum(sigma > FILTER_TOLERANCE * sigma[0]))
    rows = (k * np.arange(1, m // k - 1)[:, None] - np.arange(m)[None, :]) % m  # (h, m)
    cols = (k * np.arange(1, n // k - 1)[:, None] - np.arange(n)[None, :]) % n  # (w, n)
    a = np.concatenate([u[rows, r] * sigma[r] for r in range(rank)], axis=1)  # (h, R·m)
    b = np.stack([vt[r][cols] for r in range(rank)])  # (R, w, n)
    return torch.from_numpy(a).float(), torch.from_numpy(b).float()


class _Scale(nn.Module):
    """One J: kymatio's filter bank at the padded size, and the scattering of a padded input.

    Each wavelet group is stored as the blocks of its k×k Fourier periodisation, (F, q, M/k, N/k, 2) real (each
    value twice, for the real and imaginary parts of û; kept flattened to 3-D), divided by k² (exact: a power of
    two), so that ``periodize(û ⊙ ψ̂, k)`` is a sum of q block products at the output size.
    The low-pass φ at each resolution is stored as the real matrices of :func:`_separable_lowpass`.
    """

    def __init__(self, J: int, L: int, padded: tuple[int, int], max_order: int) -> None:
        super().__init__()
        self.J, self.L, self.max_order = J, L, max_order
        m, n = padded
        bank = filter_bank(m, n, J, L)
        self.phi0 = float(bank["phi"]["levels"][0][0, 0])  # φ̂(0): order 0's gain on a constant
        for res, level in enumerate(bank["phi"]["levels"]):
            a, b = _separable_lowpass(level, 2 ** (J - res))
            self.register_buffer(f"phi_a_{res}", a.contiguous(), persistent=False)
            self.register_buffer(f"phi_b_{res}", b.contiguous(), persistent=False)
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
                tiles = stack.reshape(f, k, mr // k, k, nr // k) / (k * k)
                tiles = torch.stack([tiles[:, bi, :, bj, :] for bi, bj in blocks], dim=1)  # (F, q, m/k, n/k)
                tiles = tiles.unsqueeze(-1).expand(*tiles.shape, 2)  # the same factor for re and im
                # Stored flat, (F, q, m/k · n/k · 2): a 3-D buffer is left alone by Module.to(memory_format=...).
                self.register_buffer(f"psi_{j}_{res}", tiles.reshape(f, len(blocks), -1).contiguous(),
                                     persistent=False)

    def filter_periodize(self, halves: tuple[torch.Tensor, torch.Tensor], j: int, res: int) -> torch.Tensor:
        """Spectrum at resolution ``res`` as column halves (:func:`real_fft2_halves`), each (…, m, n/2)
        -> periodize(û ⊙ ψ̂_{j,θ}, 2^(j−res)): (…, L, m/k, n/k) complex.

        The significant blocks of û are first gathered into one contiguous (…, q, m/k, n/k) tensor: products and
        fused multiply-adds on contiguous operands are several times faster than on the strided block views.
        With k ≥ 2 each block lies in one half (n/k divides n/2).
        """
        k = 2 ** (j - res)
        tiles = getattr(self, f"psi_{j}_{res}")  # (L, q, m/k · n/k · 2) real
        left, right = halves
        if k == 1:
            u = torch.cat([left, right], dim=-1).unsqueeze(-3)
        else:
            *lead, m, w = left.shape
            half_k = k // 2
            views = [h.reshape(*lead, k, m // k, half_k, w // half_k) for h in (left, right)]
            u = torch.stack([views[bj >= half_k][..., bi, :, bj % half_k, :] for bi, bj in self.psi_blocks[(j, res)]],
                            dim=-3)
        u = torch.view_as_real(u).unsqueeze(-5)  # (…, 1, q, m/k, n/k, 2)
        tiles = tiles.view(*tiles.shape[:2], *u.shape[-3:])  # (L, q, m/k, n/k, 2)
        acc = u[..., 0, :, :, :] * tiles[:, 0]
        for q in range(1, tiles.shape[1]):
            acc.addcmul_(u[..., q, :, :, :], tiles[:, q])
        return torch.view_as_complex(acc)

    def lowpass(self, y: torch.Tensor, res: int) -> torch.Tensor:
        """Real (…, m, n) at resolution ``res`` -> φ_J low-pass at 2^J, unpadded (…, h, w): Σ_r A_r y B_rᵀ."""
        a, b = getattr(self, f"phi_a_{res}"), getattr(self, f"phi_b_{res}")  # (h, R·m), (R, w, n)
        *lead, m, n = y.shape
        rank, w = b.shape[0], b.shape[1]
        t = y.reshape(-1, n) @ b.reshape(rank * w, n).T  # (…·m, R·w)
        t = t.reshape(-1, m, rank, w).transpose(1, 2).reshape(-1, rank * m, w)
        return (a @ t).reshape(*lead, a.shape[0], w)

    def forward(self, xp: torch.Tensor) -> torch.Tensor:
        """Padded (B, M, N) float32 -> (B, K_J, h, w) in kymatio's coefficient order."""
        J = self.J
        batch = xp.shape[0]
        x_hat = real_fft2_halves(xp)
        out = [self.lowpass(xp, 0).unsqueeze(1)]
        second: list[torch.Tensor] = []
        for j1 in range(J):
            u1 = modulus(torch.fft.ifft2(self.filter_periodize(x_hat, j1, 0)))  # (B, L, m1, n1)
            out.append(self.lowpass(u1, j1))
            if self.max_order < 2 or j1 == J - 1:
                continue
            u1_hat = real_fft2_halves(u1)
            per_j2 = []
            for j2 in range(j1 + 1, J):
                u2 = modulus(torch.fft.ifft2(self.filter_periodize(u1_hat, j2, j1)))  # (B, L, L, m2, n2)
                per_j2.append(self.lowpass(u2, j2))
            second.append(torch.cat(per_j2, dim=2).reshape(batch, -1, *per_j2[0].shape[-2:]))
        return torch.cat(out + second, dim=1)


class MultiScaleScattering(nn.Module):
    """Scattering at each J in ``J`` in one pass; equal to kymatio's ``ScatteringTorch2D`` per J.

    Input (B, H, W) or (B, C, H, W) float32 (or the padded size with ``pre_pad=True``, one J only); output a
    list, one tensor per J in the order given, each (B, C, K_J, H/2^J, W/2^J) — (B, K_J, …) for 3-D input, as
    kymatio — with K_J = :func:`scattering_channels` in kymatio's order: order 0, then (j1, θ1), then
    (j1, θ1, j2, θ2) with j2 > j1. ``chunk_size`` images are processed at a time to bound memory (about 13 MB per
    image at J = 4, 128²); None picks :data:`CPU_CHUNK` on the CPU and :data:`GPU_CHUNK` on other devices, 0 takes
    the whole batch at once.
    """

    def __init__(self, J: Sequence[int] | int = (2, 3, 4), L: int = 8, shape: tuple[int, int] = (128, 128),
                 max_order: int = 2, pre_pad: bool = False, chunk_size: int | None = None) -> None:
        super().__init__()
        self.J = (int(J),) if isinstance(J, int) else tuple(int(j) for j in J)
        self.L, self.shape, self.max_order = L, tuple(int(s) for s in shape), max_order
        self.pre_pad, self.chunk_size = pre_pad, chunk_size
        if max_order not in (1, 2):
            raise ValueError(f"max_order must be 1 or 2, got {max_order}")
        M, N = self.shape
        if not self.J or min(self.J) < 1:
            raise ValueError(f"scattering: every J must be at least 1, got J={self.J}")
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
        chunk = self.chunk_size
        if chunk is None:
            chunk = CPU_CHUNK if flat.device.type == "cpu" else GPU_CHUNK
        chunk = chunk or flat.shape[0]
        outs: list[list[torch.Tensor]] = [[] for _ in self.J]
        for start in range(0, max(flat.shape[0], 1), max(chunk, 1)):
            part = flat[start:start + chunk]
            for i, (scale, pad) in enumerate(zip(self.scales, self.pads, strict=True)):
                xp = part if self.pre_pad else pad(part)[..., 0]
                outs[i].append(scale(xp))
        return [torch.cat(o, dim=0).reshape(*lead, *o[0].shape[1:]) for o in outs]
