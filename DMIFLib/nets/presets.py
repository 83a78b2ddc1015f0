"""Named width presets: "tiny" (unit tests), "quick" (CPU demo), "paper" (full size)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from DMIFLib.nets.dfnet import DFNetConfig
from DMIFLib.nets.dmifnet import DMIFNetConfig
from DMIFLib.nets.minet import MINetConfig
from DMIFLib.nets.multimodal import MultimodalDMIFConfig

PRESETS = ("tiny", "quick", "paper")
KINDS = ("dfnet", "minet", "dmifnet", "multimodal", "resnet34", "densenet121", "vgg")

_DF = {
    "tiny": DFNetConfig(stem_channels=8, stem_kernel=3, stage_channels=(16,), stage_inner=(8,), stage_blocks=(1,),
                        stage_strides=(2,), cardinality=4, fusion_channels=(16, 8, 4)),
    # 128 → 64 (stem) → 32 (pool) → 32, 16, 8 (stages); depthwise/2-wide groups keep it cheap on a CPU.
    "quick": DFNetConfig(stem_channels=16, stem_kernel=5, stage_channels=(32, 64, 128), stage_inner=(32, 64, 128),
                         stage_blocks=(1, 1, 1), fusion_channels=(64, 32, 32), dropout=0.2),
    "paper": DFNetConfig(),
}
_MI = {
    "tiny": MINetConfig(channels_per_scale=4, input_affine=False),
    "quick": MINetConfig(channels_per_scale=16, dropout=0.2, input_affine=False),
    "paper": MINetConfig(input_affine=False),
}
# Reference CNNs (issue 5): MONAI's fixed layouts at full size; narrower for tests.
_REFERENCE: dict[str, dict[str, dict[str, Any]]] = {
    "resnet34": {"tiny": {"widen_factor": 0.125}, "quick": {"widen_factor": 0.25}, "paper": {}},
    "densenet121": {"tiny": {"init_features": 8, "growth_rate": 4}, "quick": {"init_features": 16, "growth_rate": 8},
                    "paper": {}},
    "vgg": {"tiny": {"width": 4, "hidden": 16}, "quick": {"width": 8, "hidden": 256}, "paper": {}},
}


def preset_spec(kind: str, preset: str, modalities: Sequence[str] = ("t1c", "t2w")) -> dict[str, Any]:
    """The ``build_net`` spec of net ``kind`` at width ``preset``; ``modalities`` only matters for "multimodal"."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    if kind == "dfnet":
        config: dict[str, Any] = _DF[preset].to_dict()
    elif kind == "minet":
        config = _MI[preset].to_dict()
    elif kind in ("dmifnet", "multimodal"):
        branch = DMIFNetConfig(df=_DF[preset], mi=_MI[preset])
        if kind == "dmifnet":
            config = branch.to_dict()
        else:
            if not modalities or len(set(modalities)) != len(modalities):
                raise ValueError(f"multimodal preset needs distinct modality names, got {tuple(modalities)}")
            config = MultimodalDMIFConfig(branches={m: branch for m in modalities}).to_dict()
    elif kind in _REFERENCE:
        from DMIFLib.nets.reference import reference_config

        config = reference_config(kind, _REFERENCE[kind][preset]).to_dict()
    else:
        raise ValueError(f"unknown net kind {kind!r}; choose one of {KINDS}")
    return {"kind": kind, "config": config}
