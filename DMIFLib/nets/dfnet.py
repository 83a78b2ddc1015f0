"""DF-Net: the ResNeXt-style deep-feature branch of DMIF-Net (SPEC §DMIF-Net)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from DMIFLib.nets.config import NetConfig
from DMIFLib.nets.init import init_uniform_
from DMIFLib.nets.spp import POOLINGS, pooling_and_head


def conv_bn_relu(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True
) -> nn.Sequential:
    """Conv (no bias, 'same'-style padding k//2) → BatchNorm → ReLU (optional)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


@dataclass
class DFNetConfig(NetConfig):
    """DF-Net widths and depths. ``stage_*`` tuples have one entry per stage.

    in_channels: input channels (1 for one modality).
    stem_channels, stem_kernel, stem_stride, stem_pool: the first conv block; ``stem_pool`` adds a 3×3/2 max pool.
    stage_channels: output channels of each stage's residual blocks.
    stage_inner: width of the grouped 3×3 conv inside each stage's blocks (divisible by ``cardinality``).
    stage_blocks: number of residual blocks per stage; stage_strides: stride of each stage's first block.
    cardinality: groups of the split-transform-aggregate 3×3 conv (32 in the paper).
    fusion_channels: output channels of the three fusion/reduction convs (1×1, 3×3, 1×1).
    pooling: "spp" (paper) or "gap" (the paper's "without SPP" ablation); spp_levels: the pyramid's n values.
    dropout: dropout before the classifier (0 = none).
    """

    in_channels: int = 1
    stem_channels: int = 64
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_pool: bool = True
    stage_channels: tuple[int, ...] = (256, 512, 1024)
    stage_inner: tuple[int, ...] = (128, 256, 512)
    stage_blocks: tuple[int, ...] = (2, 2, 2)
    stage_strides: tuple[int, ...] = (1, 2, 2)
    cardinality: int = 32
    fusion_channels: tuple[int, int, int] = (512, 256, 128)
    pooling: str = "spp"
    spp_levels: tuple[int, ...] = (1, 2, 4)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.stage_channels)
        if n == 0 or not (len(self.stage_inner) == len(self.stage_blocks) == len(self.stage_strides) == n):
            raise ValueError(
                "DFNetConfig: stage_channels, stage_inner, stage_blocks and stage_strides need one entry per stage, "
                f"got {self.stage_channels}, {self.stage_inner}, {self.stage_blocks}, {self.stage_strides}"
            )
        bad = [w for w in self.stage_inner if w % self.cardinality]
        if bad:
            raise ValueError(f"DFNetConfig: stage_inner {self.stage_inner} must be divisible by cardinality "
                             f"{self.cardinality} (offending: {bad})")
        if len(self.fusion_channels) != 3:
            raise ValueError(f"DFNetConfig: fusion_channels needs 3 entries, got {self.fusion_channels}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"DFNetConfig: pooling must be one of {POOLINGS}, got {self.pooling!r}")


class ResNeXtBlock(nn.Module):
    """Split-transform-aggregate residual block ("Block1").

    1×1 conv to ``inner`` channels → grouped 3×3 conv (``cardinality`` groups, stride ``stride``) → 1×1 conv to
    ``cout``; y = ReLU(shortcut(x) + f(x)), shortcut = identity or 1×1 conv + BN when shape changes.
    Input (B, cin, H, W) → output (B, cout, H / stride, W / stride).
    """

    def __init__(self, cin: int, inner: int, cout: int, cardinality: int, stride: int = 1) -> None:
        super().__init__()
        self.transform = nn.Sequential(
            conv_bn_relu(cin, inner, 1),
            conv_bn_relu(inner, inner, 3, stride=stride, groups=cardinality),
            conv_bn_relu(inner, cout, 1, relu=False),
        )
        self.shortcut = nn.Identity() if cin == cout and stride == 1 else conv_bn_relu(cin, cout, 1, stride, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.shortcut(x) + self.transform(x))


class DFNet(nn.Module):
    """DF-Net: conv block → ResNeXt stages → three-conv fusion/reduction → SPP (or GAP) → FC → one logit.

    Input (B, in_channels, H, W), e.g. (B, 1, 128, 128). With the paper preset the map after the stages is
    (B, 1024, H/16, W/16), after the fusion module (B, 128, H/16, W/16); ``features`` is (B, F) with
    F = 21 · fusion_channels[-1] for SPP (n = 1, 2, 4) or fusion_channels[-1] for GAP; ``forward`` gives logits (B,).
    """

    kind = "dfnet"

    def __init__(self, config: DFNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DFNetConfig()
        stem: list[nn.Module] = [conv_bn_relu(config.in_channels, config.stem_channels, config.stem_kernel,
                                              config.stem_stride)]
        if config.stem_pool:
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        blocks: list[nn.Module] = []
        cin = config.stem_channels
        for cout, inner, n_blocks, stride in zip(config.stage_channels, config.stage_inner, config.stage_blocks,
                                                 config.stage_strides, strict=True):
            for i in range(n_blocks):
                blocks.append(ResNeXtBlock(cin, inner, cout, config.cardinality, stride if i == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*blocks)
        f1, f2, f3 = config.fusion_channels
        self.fusion = nn.Sequential(conv_bn_relu(cin, f1, 1), conv_bn_relu(f1, f2, 3), conv_bn_relu(f2, f3, 1))
        self.pool, self.feature_dim, self.head = pooling_and_head(config.pooling, config.spp_levels, f3,
                                                                  config.dropout)
        init_uniform_(self)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → the fusion module's map (B, fusion_channels[-1], h, w)."""
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"DFNet expects (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        return self.fusion(self.stages(self.stem(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → pooled features (B, feature_dim)."""
        return self.pool(self.feature_map(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → logits (B,); P(marker) = sigmoid(logit)."""
        return self.head(self.features(x)).squeeze(1)

    def spec(self) -> dict[str, Any]:
        """{"kind": "dfnet", "config": plain dict}: ``build_net(spec)`` rebuilds this architecture."""
        return {"kind": self.kind, "config": self.config.to_dict()}
