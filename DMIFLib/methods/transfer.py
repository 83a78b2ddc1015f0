"""Method "transfer": transfer-learning CNNs (seed 002, Zhang et al. 2024) fine-tuned per modality and fused late
(averaged probabilities, logistic regression, SVM) or as input channels (:mod:`DMIFLib.training.transfer`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch

from DMIFLib.methods.base import Method
from DMIFLib.methods.case_input import CaseInput


class TransferMethod(Method):
    """AlexNet, GoogLeNet, ResNet or VGG per modality (ImageNet weights from a local file) + late or channel
    fusion; ``p_fused`` = mean fused slice probability (docs/methods.md)."""

    name = "transfer"
    title = "transfer-learning CNNs"
    seed = "002"

    def train(self, cohort_csv: str | os.PathLike, out_dir: str | os.PathLike, preset: str = "quick",
              device: str = "auto", resume: bool = False, progress: Callable[[dict], None] | None = None,
              cancel: threading.Event | None = None, overrides: dict[str, Any] | None = None, *,
              test_ids: Collection[str] | None = None, cache_dir: str | os.PathLike | None = None):
        from DMIFLib.training.transfer import train_transfer

        return train_transfer(cohort_csv, out_dir, preset=preset, device=device, resume=resume, progress=progress,
                              cancel=cancel, overrides=overrides, test_ids=test_ids,
                              slice_cache=Path(cache_dir) / "slices" if cache_dir is not None else None)

    def train_config(self, preset: str, overrides: dict[str, Any] | None):
        from DMIFLib.training.presets import make_config
        from DMIFLib.training.transfer import split_overrides

        return make_config(preset, split_overrides(overrides)[1])

    def load(self, content: dict, path: Path | None, device: torch.device):
        from DMIFLib.model_file import model_from_content
        from DMIFLib.training.transfer import transfer_nets

        return model_from_content(content, transfer_nets(content, device), path, device, content["method_state"])

    def predict(self, model, case: CaseInput):
        from DMIFLib.training.transfer import predict_transfer_stack

        return predict_transfer_stack(model, case.slices(model.settings, model.modalities))
