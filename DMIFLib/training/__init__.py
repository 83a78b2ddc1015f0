"""Training: patient splits, augmentation, Algorithm 1's stages, checkpoints and resume.

``train_cohort(cohort_csv, out_dir, preset="quick", device="auto", resume=False, progress=None, cancel=None,
overrides=None) -> TrainResult`` is the entry point (docs/ARCHITECTURE.md); the building blocks are
:mod:`~DMIFLib.training.data`, :mod:`~DMIFLib.training.split` and :mod:`~DMIFLib.training.stage`.
"""

from DMIFLib.training.algorithm import TrainResult, train_cohort
from DMIFLib.training.errors import RunCancelledError, TrainingError

__all__ = ["RunCancelledError", "TrainResult", "TrainingError", "train_cohort"]
