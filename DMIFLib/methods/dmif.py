"""Method "dmif": DMIF-Net (seed 000, Chen et al. 2022), trained with Algorithm 1 (:mod:`DMIFLib.training`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch

from DMIFLib.methods.base import Method
from DMIFLib.methods.case_input import CaseInput


class DMIFMethod(Method):
    """Per-modality DMIF-Nets (DF-Net + MI-Net) and the multimodal fusion net; ``p_fused`` = mean slice
    probability of the multimodal net (:mod:`DMIFLib.inference`)."""

    name = "dmif"
    title = "DMIF-Net"
    seed = "000"

    def train(self, cohort_csv: str | os.PathLike, out_dir: str | os.PathLike, preset: str = "quick",
              device: str = "auto", resume: bool = False, progress: Callable[[dict], None] | None = None,
              cancel: threading.Event | None = None, overrides: dict[str, Any] | None = None, *,
              test_ids: Collection[str] | None = None, cache_dir: str | os.PathLike | None = None):
        from DMIFLib.training.algorithm import train_cohort

        return train_cohort(cohort_csv, out_dir, preset=preset, device=device, resume=resume, progress=progress,
                            cancel=cancel, overrides=overrides, test_ids=test_ids,
                            slice_cache=Path(cache_dir) / "slices" if cache_dir is not None else None)

    def load(self, content: dict, path: Path | None, device: torch.device):
        from DMIFLib.model_file import dmif_nets, model_from_content

        return model_from_content(content, dmif_nets(content, device), path, device)

    def predict(self, model, case: CaseInput):
        from DMIFLib.inference import predict_stack

        return predict_stack(model, case.slices(model.settings, model.modalities))
