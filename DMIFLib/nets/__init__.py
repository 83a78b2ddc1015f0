"""The networks: DF-Net, MI-Net, DMIF-Net, multimodal DMIF, SPP and reference CNNs.

Every net takes (B, C, H, W), returns logits (B,) (P = sigmoid), exposes ``features(x) -> (B, F)`` and
``spec() -> {"kind": ..., "config": plain dict}``; ``build_net(net.spec())`` rebuilds the same architecture
(weights come from a state_dict), so model files hold only primitive types.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from DMIFLib.nets.dfnet import DFNet, DFNetConfig
from DMIFLib.nets.dmifnet import DMIFNet, DMIFNetConfig
from DMIFLib.nets.init import init_uniform_
from DMIFLib.nets.minet import MINet, MINetConfig
from DMIFLib.nets.multimodal import MultimodalDMIF, MultimodalDMIFConfig
from DMIFLib.nets.presets import KINDS, PRESETS, preset_spec
from DMIFLib.nets.spp import SpatialPyramidPooling


def build_net(spec: dict[str, Any]) -> nn.Module:
    """A freshly initialised net from ``{"kind": ..., "config": {...}}`` (as returned by ``net.spec()``)."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"a net spec is a dict with 'kind' and 'config', got {spec!r}")
    kind, config = spec["kind"], spec.get("config", {})
    if kind == "dfnet":
        return DFNet(DFNetConfig.from_dict(config))
    if kind == "minet":
        return MINet(MINetConfig.from_dict(config))
    if kind == "dmifnet":
        return DMIFNet.from_config(DMIFNetConfig.from_dict(config))
    if kind == "multimodal":
        return MultimodalDMIF.from_config(MultimodalDMIFConfig.from_dict(config))
    if kind == "ensemble":
        from DMIFLib.nets.ensemble import NetEnsemble

        return NetEnsemble([build_net(member) for member in config["members"]])
    if kind == "transfer":
        from DMIFLib.nets.transfer import TransferConfig, TransferNet

        return TransferNet(TransferConfig.from_dict(config))
    if kind in ("resnet34", "densenet121", "vgg"):
        from DMIFLib.nets.reference import build_reference

        return build_reference(kind, config)
    raise ValueError(f"unknown net kind {kind!r}; choose one of {(*KINDS, 'transfer')}")


__all__ = [
    "KINDS",
    "PRESETS",
    "DFNet",
    "DFNetConfig",
    "DMIFNet",
    "DMIFNetConfig",
    "MINet",
    "MINetConfig",
    "MultimodalDMIF",
    "MultimodalDMIFConfig",
    "SpatialPyramidPooling",
    "build_net",
    "init_uniform_",
    "preset_spec",
]
