"""MI-Net: the multi-scale wavelet-scattering branch of DMIF-Net (SPEC §DMIF-Net)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from DMIFLib.nets.config import NetConfig
from DMIFLib.nets.init import init_uniform_
from DMIFLib.nets.spp import POOLINGS, pooling_and_head
from DMIFLib.scattering import MultiScaleScattering, scattering_channels

INPUT_NORMS = ("batchnorm", "log_batchnorm", "none")


@dataclass
class MINetConfig(NetConfig):
    """MI-Net settings.

    scales: the scattering scales J used, a subset of {2, 3, 4} in the paper (any J ≥ 1 works).
    L, max_order: scattering orientations and order (8 and 2 in the paper).
    input_shape: (H, W) of the input slices; each side must be divisible by 2^max(scales).
    in_channels: input channels (1 for one modality).
    channels_per_scale: output channels of each scale's fusion convolution.
    input_norm: normalisation of the scattering coefficients before the convolutions — "batchnorm"
        (BatchNorm2d over the K_J coefficient channels: their magnitudes span orders), "log_batchnorm"
        (signed log(1 + |S| / 1e-3) first, then BatchNorm) or "none".
    input_affine: whether that BatchNorm has a learnable per-channel scale and shift. The presets turn it off:
        the fusion conv right after it absorbs a per-channel scale (and the conv's own BatchNorm a shift), and
        without parameters before the conv, backpropagation stops there instead of computing the gradient with
        respect to all K_J coefficient channels (41 % of a cached training step of the quick MI-Net on a 2-core
        CPU). True, the default, is what model files written before this field existed contain.
    pooling: "spp" (paper) or "gap"; spp_levels: the pyramid's n values; dropout: before the classifier.
    """

    scales: tuple[int, ...] = (2, 3, 4)
    L: int = 8
    max_order: int = 2
    input_shape: tuple[int, int] = (128, 128)
    in_channels: int = 1
    channels_per_scale: int = 64
    input_norm: str = "batchnorm"
    input_affine: bool = True
    pooling: str = "spp"
    spp_levels: tuple[int, ...] = (1, 2, 4)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not self.scales or len(set(self.scales)) != len(self.scales) or min(self.scales) < 1:
            raise ValueError(f"MINetConfig: scales must be distinct positive integers, got {self.scales}")
        factor = 2 ** max(self.scales)
        if len(self.input_shape) != 2 or any(s % factor for s in self.input_shape):
            raise ValueError(f"MINetConfig: input_shape {self.input_shape} must be (H, W) divisible by "
                             f"2^max(scales) = {factor}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"MINetConfig: input_norm must be one of {INPUT_NORMS}, got {self.input_norm!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"MINetConfig: pooling must be one of {POOLINGS}, got {self.pooling!r}")


@functools.lru_cache(maxsize=8)
def _scattering_prototype(scales: tuple[int, ...], L: int, shape: tuple[int, int], max_order: int) -> nn.Module:
    """One scattering module per configuration, built once: building the filter banks takes seconds, and the
    training stages rebuild MI-Nets several times. Nets get deep copies (buffers are not shared between nets)."""
    scattering = MultiScaleScattering(J=scales, L=L, shape=shape, max_order=max_order)
    for module in scattering.modules():
        for name, buffer in list(module._buffers.items()):
            module.register_buffer(name, buffer, persistent=False)
    return scattering


class SignedLog(nn.Module):
    """y = sign(x) · log(1 + |x| / eps): compresses scattering coefficients spanning orders of magnitude."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x) * torch.log1p(x.abs() / self.eps)


def scale_fusion_conv(cin: int, cout: int, factor: int) -> nn.Sequential:
    """Conv with kernel 2f+1, stride f, padding f: (B, cin, h, w) → (B, cout, h/f, w/f), then BN + ReLU.

    f = 2^(J_max − J), so each scale gets a different receptive field (3, 5, 9 scattering pixels for
    J = 4, 3, 2 with J_max = 4) and all scales come out at the coarsest scale's spatial size.
    """
    return nn.Sequential(
        nn.Conv2d(cin, cout, 2 * factor + 1, stride=factor, padding=factor, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class MINet(nn.Module):
    """MI-Net: scattering at each J → per-scale norm + fusion conv → concat → SPP (or GAP) → FC → one logit.

    Input (B, in_channels, H, W), e.g. (B, 1, 128, 128). The scattering gives, per J, (B, in_channels, K_J,
    H/2^J, W/2^J) with K_J = 1 + J·L + L²·J(J−1)/2 (81, 217, 417 at J = 2, 3, 4 for L = 8); each scale's
    conv maps it to (B, channels_per_scale, H/2^Jmax, W/2^Jmax); the concatenation is
    (B, n_scales · channels_per_scale, H/2^Jmax, W/2^Jmax); ``features`` is (B, F) with F = 21 · that many
    channels for SPP (n = 1, 2, 4); ``forward`` gives logits (B,).

    The scattering has no trainable parameters and its filter buffers are not persistent (not in the
    state_dict), so a model file does not depend on which scattering implementation computed them.
    """

    kind = "minet"

    def __init__(self, config: MINetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MINetConfig()
        self.scattering = copy.deepcopy(_scattering_prototype(tuple(config.scales), config.L,
                                                              tuple(config.input_shape), config.max_order))
        j_max = max(config.scales)
        self.coefficient_channels = tuple(
            config.in_channels * scattering_channels(j, config.L, config.max_order) for j in config.scales
        )
        branches = []
        for j, k in zip(config.scales, self.coefficient_channels, strict=True):
            norm: list[nn.Module] = []
            if config.input_norm == "log_batchnorm":
                norm.append(SignedLog())
            if config.input_norm != "none":
                norm.append(nn.BatchNorm2d(k, affine=config.input_affine))
            branches.append(nn.Sequential(*norm, scale_fusion_conv(k, config.channels_per_scale, 2 ** (j_max - j))))
        self.scale_convs = nn.ModuleList(branches)
        fused_channels = len(config.scales) * config.channels_per_scale
        self.pool, self.feature_dim, self.head = pooling_and_head(config.pooling, config.spp_levels, fused_channels,
                                                                  config.dropout)
        init_uniform_(self)

    def scatter(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, in_channels, H, W) → list per J of (B, in_channels, K_J, H/2^J, W/2^J)."""
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels or tuple(x.shape[-2:]) != tuple(c.input_shape):
            raise ValueError(f"MINet expects (B, {c.in_channels}, {c.input_shape[0]}, {c.input_shape[1]}), "
                             f"got {tuple(x.shape)}")
        return list(self.scattering(x.contiguous()))

    def features_from_scattering(self, coeffs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Scattering coefficients (one per J, (B, C, K_J, h, w) or (B, C·K_J, h, w)) → features (B, F)."""
        if len(coeffs) != len(self.scale_convs):
            raise ValueError(f"MINet expects {len(self.scale_convs)} scattering tensors (J = {self.config.scales}), "
                             f"got {len(coeffs)}")
        maps = []
        for s, k, conv in zip(coeffs, self.coefficient_channels, self.scale_convs, strict=True):
            s = s.reshape(s.shape[0], -1, *s.shape[-2:])
            if s.shape[1] != k:
                raise ValueError(f"MINet: a scattering tensor has {s.shape[1]} coefficient channels, expected {k}")
            maps.append(conv(s))
        return self.pool(torch.cat(maps, dim=1))

    def forward_from_scattering(self, coeffs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Scattering coefficients (as :meth:`features_from_scattering`) → logits (B,)."""
        return self.head(self.features_from_scattering(coeffs)).squeeze(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → features (B, feature_dim)."""
        return self.features_from_scattering(self.scatter(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → logits (B,); P(marker) = sigmoid(logit)."""
        return self.forward_from_scattering(self.scatter(x))

    def spec(self) -> dict[str, Any]:
        """{"kind": "minet", "config": plain dict}: ``build_net(spec)`` rebuilds this architecture."""
        return {"kind": self.kind, "config": self.config.to_dict()}
