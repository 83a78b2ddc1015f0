"""The seed-001 fused head: deep features reduced by a linear layer, concatenated with radiomics features, MLP."""

from __future__ import annotations

import torch
from torch import nn


class FusionHead(nn.Module):
    """``logit = W2 · ReLU(W1 · [A · deep, radiomics] + b1) + b2``.

    ``deep`` (B, deep_dim): standardised deep features of DMIF-Net; ``radiomics`` (B, n_radiomics): standardised
    selected radiomics features. ``reduced``: width of the linear reduction ``A`` of the deep features (the paper
    maps its 1,048,576 U-Net features to 10); ``hidden``: units of the ReLU layer. Returns logits (B,).
    """

    def __init__(self, deep_dim: int, n_radiomics: int, reduced: int = 10, hidden: int = 8) -> None:
        super().__init__()
        self.config = {"deep_dim": int(deep_dim), "n_radiomics": int(n_radiomics), "reduced": int(reduced),
                       "hidden": int(hidden)}
        self.reduce = nn.Linear(deep_dim, reduced)
        self.hidden = nn.Linear(reduced + n_radiomics, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, deep: torch.Tensor, radiomics: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([self.reduce(deep), radiomics], dim=1)
        return self.out(torch.relu(self.hidden(mixed))).squeeze(1)

    def spec(self) -> dict:
        return {"kind": "fusion_head", "config": dict(self.config)}

    @classmethod
    def from_spec(cls, spec: dict) -> FusionHead:
        if spec.get("kind") != "fusion_head":
            raise ValueError(f"not a fusion head spec: {spec!r}")
        return cls(**spec["config"])
