"""kymatio's 2-D scattering at several scales, one ``ScatteringTorch2D`` per J: the reference implementation.

kymatio 0.3.0's ``kymatio.torch`` import fails with SciPy >= 1.15 (its 3-D filters import
``scipy.special.sph_harm``), so the 2-D torch frontend is imported directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D
from torch import nn


def scattering_channels(J: int, L: int = 8, max_order: int = 2) -> int:
    """Number of scattering coefficients per input channel: 1 + J·L (+ L²·J(J−1)/2 at order 2)."""
    return 1 + J * L + (L * L * J * (J - 1) // 2 if max_order >= 2 else 0)


class KymatioMultiScaleScattering(nn.Module):
    """Scattering at each J in ``J``, computed independently by kymatio.

    Input (B, H, W) or (B, C, H, W); output a list, one tensor per J in the order given, each
    (B, C, K_J, H / 2^J, W / 2^J) with K_J = :func:`scattering_channels` (C = 1 for 3-D input: (B, K_J, ...)
    follows kymatio's convention of keeping the input's leading dims).
    """

    def __init__(self, J: Sequence[int] = (2, 3, 4), L: int = 8, shape: tuple[int, int] = (128, 128),
                 max_order: int = 2) -> None:
        super().__init__()
        self.J = tuple(int(j) for j in J)
        self.L = L
        self.shape = tuple(shape)
        self.max_order = max_order
        self.scatterings = nn.ModuleList(
            ScatteringTorch2D(J=j, shape=self.shape, L=L, max_order=max_order) for j in self.J
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [scattering(x) for scattering in self.scatterings]
