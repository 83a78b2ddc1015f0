"""DMIF-Net: DF-Net and MI-Net features of one modality fused by a classifier (SPEC §DMIF-Net)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from DMIFLib.nets.config import NetConfig
from DMIFLib.nets.dfnet import DFNet, DFNetConfig
from DMIFLib.nets.init import fusion_head, weight_fusion_head_
from DMIFLib.nets.minet import MINet, MINetConfig


@dataclass
class DMIFNetConfig(NetConfig):
    """The two branches' configs and the fusion classifier's dropout."""

    df: DFNetConfig = field(default_factory=DFNetConfig)
    mi: MINetConfig = field(default_factory=MINetConfig)
    dropout: float = 0.0


class DMIFNet(nn.Module):
    """DMIF-Net for one modality: concat(DF-Net features, MI-Net features) → FC → one logit.

    Input (B, 1, H, W); ``features`` (B, F_df + F_mi); ``forward`` logits (B,). Built from two (typically
    stage-1-trained) branches, which keep their weights; the new fusion head starts as the mean of the two
    branches' logits (:func:`DMIFLib.nets.init.fusion_head`); training re-weights it from validation
    data (``weight_branches_``, :mod:`DMIFLib.training.stacking`). The branches' own heads stay in the module (unused
    by ``forward``) so that their per-branch logits remain available.
    """

    kind = "dmifnet"

    def __init__(self, df: DFNet, mi: MINet, dropout: float = 0.0) -> None:
        super().__init__()
        if df.config.in_channels != mi.config.in_channels:
            raise ValueError(f"DMIFNet: DF-Net takes {df.config.in_channels} input channels, MI-Net "
                             f"{mi.config.in_channels}")
        self.df = df
        self.mi = mi
        self.dropout = float(dropout)
        self.feature_dim = df.feature_dim + mi.feature_dim
        self.head = fusion_head([df.head, mi.head], self.dropout)

    @classmethod
    def from_config(cls, config: DMIFNetConfig) -> DMIFNet:
        """A freshly initialised DMIF-Net."""
        return cls(DFNet(config.df), MINet(config.mi), config.dropout)

    @property
    def config(self) -> DMIFNetConfig:
        return DMIFNetConfig(df=self.df.config, mi=self.mi.config, dropout=self.dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) → (B, feature_dim)."""
        return torch.cat([self.df.features(x), self.mi.features(x)], dim=1)

    def features_with_scattering(self, x: torch.Tensor, coeffs: Sequence[torch.Tensor]) -> torch.Tensor:
        """As :meth:`features`, with MI-Net's scattering precomputed (see ``MINet.features_from_scattering``)."""
        return torch.cat([self.df.features(x), self.mi.features_from_scattering(coeffs)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) → logits (B,)."""
        return self.head(self.features(x)).squeeze(1)

    def forward_with_scattering(self, x: torch.Tensor, coeffs: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, 1, H, W) plus its precomputed scattering → logits (B,)."""
        return self.head(self.features_with_scattering(x, coeffs)).squeeze(1)

    def branch_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) → (B, 2): DF-Net's and MI-Net's own logits (their stage-1 heads)."""
        return torch.stack([self.df(x), self.mi(x)], dim=1)

    def weight_branches_(self, coefficients: list[float], intercept: float = 0.0) -> None:
        """Set the fusion head to ``c_df · logit_df + c_mi · logit_mi + intercept`` (see ``branch_logits``)."""
        weight_fusion_head_(self.head, [self.df.head, self.mi.head], coefficients, intercept)

    def spec(self) -> dict[str, Any]:
        """{"kind": "dmifnet", "config": plain dict}: ``build_net(spec)`` rebuilds this architecture."""
        return {"kind": self.kind, "config": self.config.to_dict()}
