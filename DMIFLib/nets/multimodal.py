"""Multimodal DMIF: one DMIF-Net per modality, features concatenated → classifier (SPEC §Multimodal)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from DMIFLib.nets.config import NetConfig
from DMIFLib.nets.dmifnet import DMIFNet, DMIFNetConfig
from DMIFLib.nets.init import fusion_head, weight_fusion_head_


@dataclass
class MultimodalDMIFConfig(NetConfig):
    """``branches`` maps modality name → its DMIF-Net config; its key order is the input's channel order."""

    branches: dict[str, DMIFNetConfig] = field(default_factory=dict)
    dropout: float = 0.0


class MultimodalDMIF(nn.Module):
    """Multimodal fusion: concat over modalities of DMIFNet features → FC → one logit.

    Input (B, M, H, W) with the M modalities in ``self.modalities`` order (one channel each); ``features``
    (B, Σ F_m); ``forward`` logits (B,); ``modality_logits`` (B, M), each branch's own DMIF-Net logit.
    Built from (typically stage-2-trained) branches, which keep their weights; the fusion head starts as the
    mean of the branches' logits (:func:`DMIFLib.nets.init.fusion_head`); training re-weights it from validation
    data (``weight_branches_``, :mod:`DMIFLib.training.stacking`).
    """

    kind = "multimodal"

    def __init__(self, branches: Mapping[str, DMIFNet], dropout: float = 0.0) -> None:
        super().__init__()
        if not branches:
            raise ValueError("MultimodalDMIF needs at least one modality")
        self.branches = nn.ModuleDict(dict(branches))
        self.modalities = tuple(branches)
        self.dropout = float(dropout)
        self.feature_dim = sum(b.feature_dim for b in self.branches.values())
        self.head = fusion_head([b.head for b in self.branches.values()], self.dropout)

    @classmethod
    def from_config(cls, config: MultimodalDMIFConfig) -> MultimodalDMIF:
        """A freshly initialised multimodal net."""
        return cls({m: DMIFNet.from_config(c) for m, c in config.branches.items()}, config.dropout)

    @property
    def config(self) -> MultimodalDMIFConfig:
        return MultimodalDMIFConfig(branches={m: b.config for m, b in self.branches.items()}, dropout=self.dropout)

    def _split(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != len(self.modalities):
            raise ValueError(f"MultimodalDMIF expects (B, {len(self.modalities)}, H, W) with modalities "
                             f"{self.modalities}, got {tuple(x.shape)}")
        return [x[:, i : i + 1] for i in range(len(self.modalities))]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, M, H, W) → (B, feature_dim)."""
        parts = self._split(x)
        return torch.cat([self.branches[m].features(p) for m, p in zip(self.modalities, parts, strict=True)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, M, H, W) → fused logits (B,)."""
        return self.head(self.features(x)).squeeze(1)

    def modality_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, M, H, W) → (B, M): each modality's DMIF-Net logit, in ``self.modalities`` order."""
        parts = self._split(x)
        return torch.stack([self.branches[m](p) for m, p in zip(self.modalities, parts, strict=True)], dim=1)

    def branch_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, M, H, W) → (B, M): the branches' logits, as :meth:`modality_logits`."""
        return self.modality_logits(x)

    def weight_branches_(self, coefficients: list[float], intercept: float = 0.0) -> None:
        """Set the fusion head to ``Σ_m c_m · logit_m + intercept`` (``modality_logits`` order)."""
        weight_fusion_head_(self.head, [b.head for b in self.branches.values()], coefficients, intercept)

    def spec(self) -> dict[str, Any]:
        """{"kind": "multimodal", "config": plain dict}: ``build_net(spec)`` rebuilds this architecture."""
        return {"kind": self.kind, "config": self.config.to_dict()}
