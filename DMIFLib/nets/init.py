"""The paper's uniform initialisation of convolution and fully connected layers."""

from __future__ import annotations

import torch
from torch import nn


def init_uniform_(module: nn.Module) -> nn.Module:
    """Initialise every conv and linear layer inside ``module`` from uniform distributions, in place.

    The paper says only "uniform initialisation". We use He (Kaiming) uniform, U(−b, b) with
    b = √(6 / fan_in), for convolutions, because each is followed by BatchNorm + ReLU and He's bound keeps the
    activation variance constant through ReLU layers; and Glorot (Xavier) uniform, b = √(6 / (fan_in + fan_out)),
    for linear layers, the classifier heads whose output is a logit with no ReLU after it. Biases are set to 0;
    BatchNorm to weight 1, bias 0. Returns ``module``.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


def fusion_head(branch_heads: list[nn.Sequential], dropout: float) -> nn.Sequential:
    """A fusion classifier over concatenated branch features that starts as the mean of the branches' logits.

    Each branch head is ``Sequential(Dropout, Linear(F_i, 1))``; the fusion head is
    ``Sequential(Dropout, Linear(ΣF_i, 1))`` with weight ``[w_1, …, w_n] / n`` and bias ``mean(b_i)``, so before
    fine-tuning the fused logit equals the average of the (trained) branches' logits: stage 2/3 of Algorithm 1
    starts from the ensemble of the stage-1/2 nets instead of a random classifier, which on small cohorts
    otherwise throws away what a branch has learned.
    """
    linears = [head[-1] for head in branch_heads]
    fused = nn.Linear(sum(linear.in_features for linear in linears), 1)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([linear.weight for linear in linears], dim=1) / len(linears))
        fused.bias.copy_(torch.stack([linear.bias for linear in linears]).mean(dim=0))
    return nn.Sequential(nn.Dropout(dropout), fused)
