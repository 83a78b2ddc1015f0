"""The paper's uniform initialisation of convolution and fully connected layers."""

from __future__ import annotations

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
