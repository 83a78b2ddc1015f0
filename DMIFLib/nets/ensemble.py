"""An ensemble of nets of one kind: the mean of the members' logits (the model of a cross-validation run).

A cross-validated run (:mod:`DMIFLib.training.cross_validation`) keeps every fold's net; the ensemble predicts
with all of them. Input as the members' ((B, C, H, W)); ``forward`` → mean logit (B,); ``features`` → the
members' features concatenated (B, Σ F).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class NetEnsemble(nn.Module):
    """Mean of the logits of ``members`` (each returns logits (B,) for the same input)."""

    kind = "ensemble"

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("NetEnsemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → mean of the members' logits (B,)."""
        return torch.stack([m(x) for m in self.members], dim=0).mean(dim=0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, Σ F): every member's features, concatenated."""
        return torch.cat([m.features(x) for m in self.members], dim=1)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": {"members": [m.spec() for m in self.members]}}
