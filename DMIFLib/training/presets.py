"""Training presets: ``paper`` (Algorithm 1 as published) and ``quick`` (a CPU demo), plus overrides.

``paper``: batch 64, 150 epochs per stage, learning rates 1e-3 / 1e-4 / 1e-5 for stages 1 / 2 / 3, the
paper's net widths, all augmentations. ``quick``: narrower nets (``DMIFLib.nets.preset_spec(..., "quick")``),
64×64 slices, a few epochs and at most a few slices per patient, so that a 60-patient synthetic cohort
trains in minutes on two CPU cores. ``tiny`` is for unit tests.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from DMIFLib.training.augment import AugmentConfig
from DMIFLib.training.errors import TrainingError

STAGES = ("stage1", "stage2", "stage3")
PER_NET_KEYS = ("stage1/dfnet", "stage1/minet")
"""Optional ``epochs`` / ``lr`` keys that override ``stage1`` for one stage-1 net."""


@dataclass
class TrainConfig:
    """Everything that decides a training run; plain types only (it goes into checkpoints and run.json).

    net_width: the nets' width preset ("tiny", "quick", "paper"); net_overrides: config fields replaced in the
    stage-1 nets' specs, by kind ({"dfnet": {...}, "minet": {...}}); mi_scales: MI-Net's scattering scales J.
    epochs, lr: per stage ("stage1", "stage2", "stage3"; "stage1/dfnet" / "stage1/minet" override stage 1
    for one net). slice_size: the preprocessing's S×S. keep_last_epoch: the stages (keys as in ``epochs``) that
    end with their last epoch instead of their lowest-validation-loss epoch. cosine_lr: the stages whose
    learning rate follows a cosine decay over their epochs instead of ReduceLROnPlateau on the validation loss.
    max_slices: at most this many slices per training patient, the central ones of its stack (None: all).
    val_fraction: share of each class of the training patients held out for ReduceLROnPlateau / model choice.
    augment: ``AugmentConfig`` fields, or None for no augmentation. modalities: None = every modality that
    all patients have. scattering_cache: train MI-Net (stage 1) from cached scattering coefficients, with only
    the augmentations the cache applies exactly (flips, brightness, intensity scaling).
    calibration: how p_fused is calibrated on the validation patients: "temperature" (default), "platt",
    "isotonic" or "none" (docs/trust.md).
    """

    preset: str = "paper"
    net_width: str = "paper"
    net_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    mi_scales: tuple[int, ...] = (2, 3, 4)
    batch_size: int = 64
    epochs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 150))
    lr: dict[str, float] = field(default_factory=lambda: {"stage1": 1e-3, "stage2": 1e-4, "stage3": 1e-5})
    patience: int = 5
    keep_last_epoch: tuple[str, ...] = ()
    cosine_lr: tuple[str, ...] = ()
    slice_size: int = 128
    max_slices: int | None = None
    val_fraction: float = 0.2
    test_fraction: float = 0.25
    seed: int = 0
    augment: dict | None = field(default_factory=lambda: AugmentConfig().to_dict())
    modalities: tuple[str, ...] | None = None
    marker: str = "1p/19q co-deletion"
    scattering_cache: bool = False
    preprocessing: dict[str, Any] = field(default_factory=dict)
    calibration: str = "temperature"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainingError(f"unknown training setting(s) {unknown}; known: {sorted(names)}")
        config = cls(**data)
        for name in ("epochs", "lr"):
            keys = set(getattr(config, name))
            if not set(STAGES) <= keys or not keys <= set(STAGES) | set(PER_NET_KEYS):
                raise TrainingError(f"{name} needs the keys {', '.join(STAGES)} (optionally "
                                    f"{', '.join(PER_NET_KEYS)}), got {', '.join(sorted(keys))}")
        try:
            config.mi_scales = tuple(config.mi_scales)
            for name in ("keep_last_epoch", "cosine_lr"):
                keys = getattr(config, name)
                setattr(config, name, (keys,) if isinstance(keys, str) else tuple(keys))
            if config.modalities is not None:
                config.modalities = tuple(config.modalities)
        except TypeError as error:
            raise TrainingError(f"training settings: {error}") from None
        problem = config.problem()
        if problem:
            raise TrainingError(f"training settings: {problem}")
        return config

    def problem(self) -> str | None:
        """What makes this configuration unusable (a wrong type, an epoch count below 1, ...), or None."""
        def integer(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def number(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        for key, value in self.epochs.items():
            if not integer(value) or value < 1:
                return f"epochs[{key}] = {value!r}: a whole number of at least 1 is needed (0 would train nothing)"
        for key, value in self.lr.items():
            if not number(value) or value <= 0:
                return f"lr[{key}] = {value!r}: a positive number is needed"
        checks = {"batch_size": (self.batch_size, 1), "slice_size": (self.slice_size, 8),
                  "patience": (self.patience, 0), "seed": (self.seed, 0)}
        for name, (value, least) in checks.items():
            if not integer(value) or value < least:
                return f"{name} = {value!r}: a whole number of at least {least} is needed"
        if self.max_slices is not None and (not integer(self.max_slices) or self.max_slices < 1):
            return f"max_slices = {self.max_slices!r}: a whole number of at least 1 (or null for all) is needed"
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not number(value) or not 0 <= value < 1:
                return f"{name} = {value!r}: a fraction in [0, 1) is needed"
        for name in ("keep_last_epoch", "cosine_lr"):
            if not set(getattr(self, name)) <= set(STAGES) | set(PER_NET_KEYS):
                return (f"{name} = {list(getattr(self, name))!r}: stage keys are needed, of "
                        f"{', '.join(STAGES + PER_NET_KEYS)}")
        if not self.mi_scales or not all(integer(j) and j >= 1 for j in self.mi_scales):
            return f"mi_scales = {list(self.mi_scales)!r}: whole numbers of at least 1 are needed"
        if not isinstance(self.preprocessing, dict) or not isinstance(self.net_overrides, dict):
            return "preprocessing and net_overrides must be JSON objects"
        if self.modalities is not None and not all(isinstance(m, str) for m in self.modalities):
            return f"modalities = {list(self.modalities)!r}: modality names are needed"
        from DMIFLib.trust.calibrate import calibration_problem

        return calibration_problem(self.calibration)


_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {
        # 64×64 slices: no max-pool after DF-Net's stem, so that its first stage still resolves 4-px textures
        # MI-Net: log-compressed scattering (its coefficients span orders of magnitude), 32 channels per scale;
        # it trains on the scattering cache (about a second per epoch), so it gets more epochs than DF-Net:
        # 100, because on 38 training patients it still improves after 40 (docs/training.md, small cohorts).
        "net_width": "quick", "mi_scales": (2, 3),
        "net_overrides": {"dfnet": {"stem_pool": False},
                          "minet": {"input_norm": "log_batchnorm", "channels_per_scale": 32}},
        "batch_size": 32, "slice_size": 64, "max_slices": 8,
        "epochs": {"stage1": 4, "stage1/minet": 100, "stage2": 3, "stage3": 2},
        # MI-Net ends with its last epoch: the lowest validation loss of ~8 validation patients picked epochs 3-7
        # (training loss still 0.6-0.9) in the folds where the cross-validation failed (docs/training.md).
        "keep_last_epoch": ("stage1/minet",),
        # ... and its learning rate decays along a cosine over the 100 epochs: ReduceLROnPlateau on those few
        # validation patients cut it to 3e-9 by epoch 50 at the latest; 5-fold held-out AUC of MI-Net alone,
        # pooled: T1C 0.687 -> 0.901, T2W 0.790 -> 0.864 (docs/training.md, bench/bench_epoch_choice.py).
        "cosine_lr": ("stage1/minet",),
        "lr": {"stage1": 1e-3, "stage1/minet": 3e-3, "stage2": 3e-4, "stage3": 1e-4},
        "augment": AugmentConfig(rotate_deg=180.0, translate_px=4.0, gaussian_prob=0.0, rayleigh_prob=0.0).to_dict(),
        "scattering_cache": True,
    },
}
PRESET_NAMES = tuple(_PRESETS)


def make_config(preset: str = "quick", overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The preset's configuration with ``overrides`` applied.

    ``overrides`` uses :class:`TrainConfig` field names; ``epochs`` and ``lr`` accept a number (every stage
    and net) or a partial per-stage dict; ``augment`` a partial dict of ``AugmentConfig`` fields, or None.
    """
    if preset not in _PRESETS:
        raise TrainingError(f"unknown preset '{preset}'; choose one of {', '.join(PRESET_NAMES)}")
    data = TrainConfig().to_dict()
    data.update(_PRESETS[preset], preset=preset)
    for key, value in (overrides or {}).items():
        if key in ("epochs", "lr") and not isinstance(value, dict):
            value = dict.fromkeys(STAGES, value)  # one number: every stage and net
        elif key in ("epochs", "lr", "augment") and isinstance(value, dict) and data.get(key) is not None:
            value = {**data[key], **value}
        data[key] = value
    try:
        if data["augment"] is not None:
            AugmentConfig.from_dict(data["augment"])  # reject unknown augmentation keys early
        return TrainConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise TrainingError(f"training settings: {error}") from None
