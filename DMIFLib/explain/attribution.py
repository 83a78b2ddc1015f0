"""Saliency of one net on 2-D slices with Captum: Grad-CAM, occlusion, integrated gradients.

Every map explains the net's logit (P(marker) = sigmoid(logit)); positive values are evidence *for* the marker.

- ``"gradcam"``: Captum's ``LayerGradCam`` on DF-Net's last block (the fusion module's last conv + BN + ReLU,
  the map SPP pools; 8×8 at 128×128 input), ReLU applied (Selvaraju et al. 2017; ``gradcam_relu=False`` keeps
  the signed map), bilinearly upsampled to S×S; non-negative with the ReLU. Needs a ``DMIFNet`` or ``DFNet``.
- ``"occlusion"``: Captum's ``Occlusion``: a ``window``×``window`` patch set to ``baseline`` slides with
  ``stride``; each pixel gets the mean drop of the logit over the patches that cover it. Signed.
- ``"integrated_gradients"``: Captum's ``IntegratedGradients`` from a constant ``baseline`` image
  (``n_steps`` Gauss–Legendre steps). Signed; sums to about logit(x) − logit(baseline) per slice.

The baseline is 0, the brain's mean after z-scoring. Occlusion and IG explain the whole net (DF- and MI-Net).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

METHODS = ("gradcam", "occlusion", "integrated_gradients")


def gradcam_layer(net: nn.Module) -> nn.Module:
    """DF-Net's last block in ``net`` (a ``DMIFNet`` or ``DFNet``): the last module of its fusion stage."""
    from DMIFLib.nets.dfnet import DFNet
    from DMIFLib.nets.dmifnet import DMIFNet

    df = net.df if isinstance(net, DMIFNet) else net
    if not isinstance(df, DFNet):
        raise ValueError(f"Grad-CAM needs a DMIF-Net or DF-Net; {type(net).__name__} has no DF-Net branch "
                         "(use occlusion or integrated_gradients)")
    return df.fusion[-1]


@contextmanager
def _eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` in eval mode (BatchNorm running statistics, no dropout), restored afterwards."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


def slice_saliency(net: nn.Module, slices: np.ndarray, method: str = "gradcam", batch_size: int = 16,
                   baseline: float = 0.0, window: int = 16, stride: int = 8, n_steps: int = 32,
                   gradcam_relu: bool = True, device: torch.device | str | None = None) -> np.ndarray:
    """Saliency of ``net`` for each slice: ``slices`` (n, S, S) float32 → (n, S, S) float32 (see module doc).

    ``net`` takes (B, 1, S, S) and returns logits (B,); it is run in eval mode and left in its previous mode.
    ``batch_size`` slices go through Captum at once (integrated gradients uses ``batch_size`` as its internal
    batch of interpolated images; occlusion evaluates ``batch_size`` patch positions per forward pass).
    """
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion

    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    slices = np.asarray(slices, dtype=np.float32)
    if slices.ndim != 3:
        raise ValueError(f"slices must be (n, S, S), got shape {slices.shape}")
    if device is None:
        device = next(net.parameters()).device
    size = slices.shape[1:]
    out = np.zeros(slices.shape, dtype=np.float32)
    with _eval_mode(net), torch.enable_grad():
        for start in range(0, len(slices), batch_size):
            x = torch.from_numpy(slices[start:start + batch_size]).to(device)[:, None]
            if method == "gradcam":
                cam = LayerGradCam(net, gradcam_layer(net)).attribute(x, relu_attributions=gradcam_relu)
                attr = LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")
            elif method == "occlusion":
                attr = Occlusion(net).attribute(x, sliding_window_shapes=(1, window, window),
                                                strides=(1, stride, stride), baselines=baseline,
                                                perturbations_per_eval=batch_size)
            else:
                attr = IntegratedGradients(net).attribute(x, baselines=baseline, n_steps=n_steps,
                                                          internal_batch_size=batch_size)
            out[start:start + len(x)] = attr.detach()[:, 0].cpu().numpy()
    return out
