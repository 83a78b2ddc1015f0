"""Reference CNNs for the model comparison: MONAI's 2-D ResNet34 and DenseNet121, and a VGG19-layout net.

Each is wrapped to the nets' common interface: input (B, in_channels, H, W), ``forward`` → logits (B,),
``features`` → the vector before the classifier (B, feature_dim), ``spec()`` for :func:`DMIFLib.nets.build_net`.
MONAI's nets keep MONAI's own weight initialisation (Kaiming normal convolutions); the VGG net, which no
maintained library provides in 2-D single-channel form with a configurable width, uses
:func:`DMIFLib.nets.init.init_uniform_`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from monai.networks.nets import DenseNet121, resnet34
from torch import nn

from DMIFLib.nets.config import NetConfig
from DMIFLib.nets.init import init_uniform_

# VGG19's convolution layout: channels as multiples of the first stage's width, "M" = 2×2 max pool.
VGG19_LAYOUT: tuple[int | str, ...] = (1, 1, "M", 2, 2, "M", 4, 4, 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M")


@dataclass
class ResNet34Config(NetConfig):
    """in_channels: input channels; widen_factor: MONAI's width multiplier (1.0 = 64…512 channels)."""

    in_channels: int = 1
    widen_factor: float = 1.0
    dropout: float = 0.0


@dataclass
class DenseNet121Config(NetConfig):
    """in_channels: input channels; init_features, growth_rate: MONAI's DenseNet widths (64, 32 in DenseNet121)."""

    in_channels: int = 1
    init_features: int = 64
    growth_rate: int = 32
    dropout: float = 0.0


@dataclass
class VGGConfig(NetConfig):
    """VGG19 layout. width: first stage's channels (64 in VGG19, ×8 at the last stages); hidden: the two FC
    layers' width (4096 in VGG19); batch_norm: BN after each conv (VGG19-BN); pool_size: the adaptive average
    pool before the FC layers (4 = identity at 128×128 input); dropout: after each hidden FC layer."""

    in_channels: int = 1
    width: int = 64
    hidden: int = 4096
    batch_norm: bool = True
    pool_size: int = 4
    dropout: float = 0.5


class ResNet34(nn.Module):
    """MONAI ResNet34 (2-D, stem conv 7×7 stride 2 + max pool as in He et al.): features (B, 512·widen_factor)."""

    kind = "resnet34"

    def __init__(self, config: ResNet34Config | None = None) -> None:
        super().__init__()
        self.config = config = config or ResNet34Config()
        self.body = resnet34(spatial_dims=2, n_input_channels=config.in_channels, conv1_t_stride=2,
                             widen_factor=config.widen_factor, feed_forward=False)
        self.feature_dim = self.body.layer4[-1].conv2.out_channels
        self.head = init_uniform_(nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.feature_dim, 1)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → global-average-pooled features (B, feature_dim)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → logits (B,)."""
        return self.head(self.features(x)).squeeze(1)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.config.to_dict()}


class DenseNet121Net(nn.Module):
    """MONAI DenseNet121 (2-D, one output): features (B, 1024) at the default widths."""

    kind = "densenet121"

    def __init__(self, config: DenseNet121Config | None = None) -> None:
        super().__init__()
        self.config = config = config or DenseNet121Config()
        self.body = DenseNet121(spatial_dims=2, in_channels=config.in_channels, out_channels=1,
                                init_features=config.init_features, growth_rate=config.growth_rate,
                                dropout_prob=config.dropout)
        self.feature_dim = self.body.class_layers.out.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → ReLU + global-average-pooled dense features (B, feature_dim)."""
        return self.body.class_layers[:-1](self.body.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → logits (B,)."""
        return self.body.class_layers.out(self.features(x)).squeeze(1)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.config.to_dict()}


class VGG(nn.Module):
    """VGG19 layout: 16 convs (3×3) in 5 stages, 5 max pools → adaptive avg pool (pool_size²) → FC hidden →
    FC hidden → FC 1. Input (B, in_channels, H, W), H and W ≥ 32; features (B, hidden)."""

    kind = "vgg"

    def __init__(self, config: VGGConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or VGGConfig()
        layers: list[nn.Module] = []
        cin = config.in_channels
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            cout = int(item) * config.width
            layers.append(nn.Conv2d(cin, cout, 3, padding=1, bias=not config.batch_norm))
            if config.batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
            cin = cout
        self.convs = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(config.pool_size), nn.Flatten())
        self.fc = nn.Sequential(
            nn.Linear(cin * config.pool_size**2, config.hidden), nn.ReLU(inplace=True), nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden), nn.ReLU(inplace=True), nn.Dropout(config.dropout),
        )
        self.feature_dim = config.hidden
        self.head = nn.Linear(config.hidden, 1)
        init_uniform_(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → second FC layer's activations (B, hidden)."""
        return self.fc(self.convs(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → logits (B,)."""
        return self.head(self.features(x)).squeeze(1)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.config.to_dict()}


_REFERENCES: dict[str, tuple[type[nn.Module], type[NetConfig]]] = {
    "resnet34": (ResNet34, ResNet34Config),
    "densenet121": (DenseNet121Net, DenseNet121Config),
    "vgg": (VGG, VGGConfig),
}


def reference_config(kind: str, config: dict[str, Any]) -> NetConfig:
    """The typed config of reference CNN ``kind`` from a plain dict (missing keys take their defaults)."""
    if kind not in _REFERENCES:
        raise ValueError(f"unknown reference net {kind!r}; choose one of {tuple(_REFERENCES)}")
    return _REFERENCES[kind][1].from_dict(config)


def build_reference(kind: str, config: dict[str, Any]) -> nn.Module:
    """A reference CNN ``kind`` ("resnet34", "densenet121", "vgg") from its plain config dict."""
    return _REFERENCES[kind][0](reference_config(kind, config))
