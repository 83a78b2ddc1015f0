"""`dmif compare --transfer`: the transfer-learning CNNs of seed 002 as Table 2 rows beside DMIF-Net.

Per architecture (default AlexNet, GoogLeNet, ResNet18, VGG16 — the paper's four families), on the comparison's
own train / validation / test patients:

- one net per modality, fine-tuned from ImageNet weights (rows "ResNet18 T1C", ...);
- their late fusion by averaged probabilities, logistic regression and a linear SVM, fitted on the validation
  slices (rows "ResNet18 late mean", "... late LR", "... late SVM");
- one net on the modalities stacked as channels (row "ResNet18 FC-fusion" for FLAIR + T1C, "TC-fusion" for
  T2W + T1C, "FTC-fusion" for all three, "channel fusion" otherwise).

Training is :func:`DMIFLib.training.stage.fit` with the comparison's epochs (stage 1), batch size, augmentation
and seed, at the fine-tuning learning rate (1e-4 unless ``lr`` is given). Every row gets DMIF-Net's DeLong test,
Bonferroni-corrected over Table 2 (:func:`DMIFLib.evaluation.compare.write_comparison`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from DMIFLib.nets.late_fusion import COMBINERS, fit_late_fusion
from DMIFLib.nets.transfer import ARCHS, MIN_INPUT, WeightsNotFoundError, find_imagenet_weights
from DMIFLib.training.errors import TrainingError
from DMIFLib.training.transfer import FUSIONS, TRANSFER_LR, TransferSettings, new_net

DEFAULT_ARCHS = ("alexnet", "googlenet", "resnet18", "vgg16")
TITLES = {"alexnet": "AlexNet", "googlenet": "GoogLeNet", "resnet18": "ResNet18", "resnet34": "ResNet34",
          "resnet50": "ResNet50", "vgg11": "VGG11", "vgg16": "VGG16"}
COMBINER_TITLES = {"mean": "late mean", "logistic": "late LR", "svm": "late SVM"}
CHANNEL_TITLES = {frozenset({"flair", "t1c"}): "FC-fusion", frozenset({"t2w", "t1c"}): "TC-fusion",
                  frozenset({"flair", "t2w", "t1c"}): "FTC-fusion"}


@dataclass
class CompareTransferSettings:
    """archs: architectures to compare; fusions: the fused rows (:data:`~DMIFLib.training.transfer.FUSIONS`);
    imagenet, weights, input_size, width_divisor: as for ``dmif train --method transfer``; lr: fine-tuning rate."""

    archs: tuple[str, ...] = DEFAULT_ARCHS
    fusions: tuple[str, ...] = FUSIONS
    imagenet: bool = True
    weights: str | None = None
    input_size: int | None = None
    width_divisor: int = 1
    lr: float = TRANSFER_LR

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, slice_size: int) -> CompareTransferSettings:
        """Checked settings; :class:`TrainingError` for an unknown key, architecture, fusion, a slice size an
        architecture cannot take, or a missing ImageNet file (named, with where to put it)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data or {}) - names)
        if unknown:
            raise TrainingError(f"transfer comparison settings {unknown} unknown; known: {sorted(names)}")
        settings = cls(**(data or {}))
        settings.archs, settings.fusions = tuple(settings.archs), tuple(settings.fusions)
        bad = [f for f in settings.fusions if f not in FUSIONS]
        if bad or not settings.archs:
            raise TrainingError(f"transfer comparison: fusions {bad} unknown (choose from {', '.join(FUSIONS)}) "
                                "or no archs")
        if not isinstance(settings.lr, (int, float)) or isinstance(settings.lr, bool) or not settings.lr > 0:
            raise TrainingError(f"transfer comparison: lr = {settings.lr!r}: a positive number is needed")
        for arch in settings.archs:
            if arch not in ARCHS:
                raise TrainingError(f"transfer comparison: arch {arch!r}: choose from {', '.join(ARCHS)}")
            settings.for_arch(arch)
            side = settings.input_size or slice_size
            if side < MIN_INPUT[arch]:
                raise TrainingError(f"transfer comparison: {arch} needs slices of at least {MIN_INPUT[arch]} px, "
                                    f"got {side}; set input_size")
            if settings.imagenet:
                try:
                    find_imagenet_weights(arch, settings.weights)
                except WeightsNotFoundError as error:
                    raise TrainingError(str(error)) from None
        return settings

    def for_arch(self, arch: str) -> TransferSettings:
        return TransferSettings.from_dict({"arch": arch, "imagenet": self.imagenet, "weights": self.weights,
                                           "input_size": self.input_size, "width_divisor": self.width_divisor})


def transfer_outcomes(settings: CompareTransferSettings, config, train, val, test, modalities: Sequence[str],
                      device: torch.device, progress: Callable[[dict], None] | None = None,
                      cancel: threading.Event | None = None, first_index: int = 1) -> tuple[list, dict]:
    """(``ModelOutcome`` list for Table 2, info for run.json) of every architecture's rows (module docstring).

    ``train``/``val``/``test``: the comparison's ``SliceData``; ``config``: its ``TrainConfig``. A late fusion
    that cannot be fitted (no validation patients of both classes) is left out and named in ``info``."""
    from DMIFLib.evaluation.compare import ModelOutcome, _features
    from DMIFLib.training.augment import AugmentConfig, SliceAugmenter
    from DMIFLib.training.stage import SliceSet, fit, predict_proba

    modalities = tuple(modalities)
    augment = SliceAugmenter(AugmentConfig.from_dict(config.augment), config.seed) if config.augment else None
    bs = config.batch_size
    outcomes: list[ModelOutcome] = []
    skipped: list[str] = []

    def train_row(name: str, net, inputs: Callable) -> tuple[ModelOutcome, np.ndarray]:
        """Train one net, record its outcome; returns it with the net's validation-slice probabilities."""
        if progress is not None:
            progress({"stage": "compare", "model": name, "index": first_index + len(outcomes)})
        started = time.perf_counter()
        net.to(device)
        x_train, x_val, x_test = inputs(train), inputs(val), inputs(test)
        result = fit(net, SliceSet(x_train, train.y), SliceSet(x_val, val.y) if len(val.y) else None,
                     lr=settings.lr, epochs=config.epochs["stage1"], batch_size=bs, device=device, augment=augment,
                     seed=config.seed, stage=name, patience=config.patience, progress=progress, cancel=cancel)
        outcome = ModelOutcome(name, "reference", predict_proba(net, x_test, bs, device),
                               predict_proba(net, x_train, bs, device),
                               _features(net.features, x_test, len(test.y), bs, device),
                               time.perf_counter() - started, result.history)
        outcomes.append(outcome)
        return outcome, (predict_proba(net, x_val, bs, device) if len(val.y) else np.zeros(0))

    for arch in settings.archs:
        title = TITLES[arch]
        arch_settings = settings.for_arch(arch)
        members = [train_row(f"{title} {m.upper()}", new_net(f"transfer/{m}", modalities, arch_settings,
                                                             config.seed), lambda d, m=m: d.images[m])
                   for m in modalities]
        if len(modalities) < 2:
            continue
        for fusion in settings.fusions:
            if fusion == "channels":
                name = f"{title} {CHANNEL_TITLES.get(frozenset(modalities), 'channel fusion')}"
                train_row(name, new_net("transfer/fused", modalities, arch_settings, config.seed),
                          lambda d: d.stacked(modalities))
                continue
            name = f"{title} {COMBINER_TITLES[fusion]}"
            started = time.perf_counter()
            try:
                combiner = fit_late_fusion(fusion, np.stack([p for _, p in members], axis=1), val.y.numpy(),
                                           config.seed)
            except ValueError as error:
                skipped.append(f"{name}: {error}")
                continue
            fused = {side: combiner.proba(np.stack([getattr(o, side) for o, _ in members], axis=1))
                     for side in ("p_test", "p_train")}
            outcomes.append(ModelOutcome(name, "reference", fused["p_test"], fused["p_train"],
                                         np.concatenate([o.features for o, _ in members], axis=1),
                                         time.perf_counter() - started + sum(o.seconds for o, _ in members)))
    info = {"settings": {**dataclasses.asdict(settings), "archs": list(settings.archs),
                         "fusions": list(settings.fusions)},
            "combiners": [c for c in COMBINERS if c in settings.fusions], "skipped": skipped}
    return outcomes, info
