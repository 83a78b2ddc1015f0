"""A method: how a model is trained from a cohort, loaded from its model file and applied to one patient.

Every method (DMIF-Net, radiomics fusion, transfer CNNs, ...) is one subclass of :class:`Method` in its own file,
listed in :mod:`DMIFLib.methods.registry`. Training, the model file, prediction (``dmif predict``, the headless
batch, DMIF Predict in Slicer), ``dmif compare`` and the Train module all go through this interface.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from DMIFLib.inference import CasePrediction
    from DMIFLib.methods.case_input import CaseInput
    from DMIFLib.model_file import LoadedModel
    from DMIFLib.training.algorithm import TrainResult
    from DMIFLib.training.presets import TrainConfig


class Method(ABC):
    """One way of predicting the marker. Subclasses set ``name`` (the ``--method`` value and the model file's
    ``method`` entry), ``title`` (for tables and the Train module) and ``seed`` (the seed document, e.g. "000")."""

    name: ClassVar[str]
    title: ClassVar[str]
    seed: ClassVar[str]

    @abstractmethod
    def train(self, cohort_csv: str | os.PathLike, out_dir: str | os.PathLike, preset: str = "quick",
              device: str = "auto", resume: bool = False, progress: Callable[[dict], None] | None = None,
              cancel: threading.Event | None = None, overrides: dict[str, Any] | None = None, *,
              test_ids: Collection[str] | None = None, cache_dir: str | os.PathLike | None = None) -> TrainResult:
        """Train on a labelled cohort into the run folder ``out_dir``; ``out_dir/model.pt`` is the model file.

        ``preset`` "quick" | "paper"; ``overrides``: the method's settings (``epochs`` and ``seed`` apply to every
        method). ``progress`` gets dicts with at least ``stage`` and ``fraction`` (0..1); ``cancel`` stops at the
        next batch with ``RunCancelledError``. Raises ``CohortError`` / ``TrainingError`` naming the file or case.
        ``test_ids`` (a cross-validation fold) replaces the split's test patients; ``cache_dir`` holds the caches
        that runs on the same cohort share (``slices/``, ``radiomics/``; default ``out_dir``).
        """

    def train_config(self, preset: str, overrides: dict[str, Any] | None) -> TrainConfig:
        """The training settings (split seed, modalities, ...) that ``train`` would use with these arguments;
        ``TrainingError`` for a bad preset or setting. Methods with keys of their own drop them here."""
        from DMIFLib.training.presets import make_config

        return make_config(preset, overrides)

    def resumable(self, out_dir: Path) -> bool:
        """True when ``out_dir`` holds an unfinished run of this method that ``train(resume=True)`` continues."""
        from DMIFLib.training.checkpoint import CHECKPOINT_NAME

        return (out_dir / CHECKPOINT_NAME).is_file()

    @abstractmethod
    def load(self, content: dict, path: Path | None, device: torch.device) -> LoadedModel:
        """The model held by a model file's ``content`` (already checked by :func:`DMIFLib.model_file.load_model`:
        format, version, modalities, preprocessing, finite weights), rebuilt on ``device`` in eval mode.
        Raises ``ModelFileError`` / ``KeyError`` / ``ValueError`` for content it cannot use."""

    @abstractmethod
    def predict(self, model: LoadedModel, case: CaseInput) -> CasePrediction:
        """One patient's :class:`~DMIFLib.inference.CasePrediction` (``p_<modality>``, ``p_fused``, per-slice
        probabilities). Raises ``ValueError`` (e.g. ``PreprocessingError``) naming the patient for bad input."""
