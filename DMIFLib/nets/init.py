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
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


def fusion_head(branch_heads: list[nn.Sequential], dropout: float) -> nn.Sequential:
    """A fusion classifier over concatenated branch features that starts as the mean of the branches' logits.

    Each branch head is ``Sequential(Dropout, Linear(F_i, 1))``; the fusion head is
    ``Sequential(Dropout, Linear(ΣF_i, 1))`` with weight ``[w_1, …, w_n] / n`` and bias ``mean(b_i)``, so before
    fine-tuning the fused logit equals the average of the (trained) branches' logits: stage 2/3 of Algorithm 1
    starts from the ensemble of the stage-1/2 nets instead of a random classifier, which on small cohorts
    otherwise throws away what a branch has learned. :func:`weight_fusion_head_` sets another weighting.
    """
    linears = [head[-1] for head in branch_heads]
    head = nn.Sequential(nn.Dropout(dropout), nn.Linear(sum(linear.in_features for linear in linears), 1))
    weight_fusion_head_(head, branch_heads, [1.0 / len(linears)] * len(linears))
    return head


def weight_fusion_head_(head: nn.Sequential, branch_heads: list[nn.Sequential], coefficients: list[float],
                        intercept: float = 0.0) -> None:
    """Set a fusion head (see :func:`fusion_head`) so that its logit is ``Σ c_i · logit_i + intercept``.

    ``logit_i`` is branch i's own head on its features; ``coefficients`` has one number per branch. In place.
    """
    linears = [h[-1] for h in branch_heads]
    if len(coefficients) != len(linears):
        raise ValueError(f"fusion head: {len(linears)} branches but {len(coefficients)} coefficients")
    with torch.no_grad():
        head[-1].weight.copy_(torch.cat([c * linear.weight for c, linear in zip(coefficients, linears, strict=True)],
                                        dim=1))
        head[-1].bias.copy_(sum(c * linear.bias for c, linear in zip(coefficients, linears, strict=True)) + intercept)
