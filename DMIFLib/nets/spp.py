"""Spatial pyramid pooling (He et al. 2015; SPEC eq. 3)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional


def spp_kernel_stride(a: int, n: int) -> tuple[int, int]:
    """Eq. 3's window for pooling an a-pixel side into n bins: kernel ⌈a/n⌉, stride ⌊a/n⌋."""
    return math.ceil(a / n), a // n


def spp_eq3_bins(a: int, n: int) -> int:
    """How many bins eq. 3's window gives along a side of a pixels (0 when a < n)."""
    kernel, stride = spp_kernel_stride(a, n)
    return 0 if stride == 0 else (a - kernel) // stride + 1


class SpatialPyramidPooling(nn.Module):
    """Max-pool a feature map to n×n bins for every n in ``levels``, flatten and concatenate.

    Input (B, C, H, W); output (B, C · Σ n²) — (B, 21 C) for the default levels (1, 2, 4) — ordered level by
    level, each level channel-major (C, n, n) flattened.

    Per side the window is eq. 3's kernel ⌈a/n⌉, stride ⌊a/n⌋. That gives exactly n bins whenever a = q·n + r
    with r ≤ q (every a divisible by n, and every a ≥ n² − n); for the few small sides where it gives more than n
    bins (e.g. a = 7, n = 4 → 6 bins) or none (a < n), that level falls back to adaptive max pooling
    (bin i spans ⌊i·a/n⌋ … ⌈(i+1)·a/n⌉), so the output size never depends on the input size.
    """

    def __init__(self, levels: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        if not levels or any(int(n) < 1 for n in levels):
            raise ValueError(f"SPP levels must be positive integers, got {tuple(levels)}")
        self.levels = tuple(int(n) for n in levels)

    def output_size(self, channels: int) -> int:
        """Length of the pooled vector for a map of ``channels`` channels: C · Σ n²."""
        return channels * sum(n * n for n in self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        pooled = []
        for n in self.levels:
            if spp_eq3_bins(h, n) == n and spp_eq3_bins(w, n) == n:
                (kh, sh), (kw, sw) = spp_kernel_stride(h, n), spp_kernel_stride(w, n)
                y = functional.max_pool2d(x, kernel_size=(kh, kw), stride=(sh, sw))
            else:
                y = functional.adaptive_max_pool2d(x, n)
            pooled.append(y.reshape(b, -1))
        return torch.cat(pooled, dim=1)

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


POOLINGS = ("spp", "gap")


def pooling_and_head(pooling: str, spp_levels: Sequence[int], channels: int,
                     dropout: float) -> tuple[nn.Module, int, nn.Sequential]:
    """A branch's pooling of its (B, channels, h, w) map and its classifier: (pool, feature_dim, head).

    ``pooling`` "spp" (paper): :class:`SpatialPyramidPooling` over ``spp_levels``; "gap": global average pooling
    (feature_dim = channels). ``head`` is dropout then FC → 1 logit.
    """
    if pooling == "spp":
        pool: nn.Module = SpatialPyramidPooling(spp_levels)
        feature_dim = pool.output_size(channels)
    else:
        pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        feature_dim = channels
    return pool, feature_dim, nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, 1))
