"""The run checkpoint (``DIR/checkpoint.pt``): written atomically after every epoch, read by ``--resume``.

It holds only tensors and plain types (loads with ``torch.load(weights_only=True)``): the configuration, the
cohort hash, the split, the best weights of every finished stage, and the running stage's
:func:`~DMIFLib.training.stage.fit_state` (weights, Adam, ReduceLROnPlateau and gradient-scaler states, the
completed epoch count). The random state is not a stream to save: every epoch reseeds the shuffle, the
augmentation and dropout from (seed, stage, epoch), so the checkpoint's epoch count fixes it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from DMIFLib.atomic import atomic_path
from DMIFLib.training.errors import TrainingError

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "dmif-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` (plus the format tag) to ``path`` atomically: a kill leaves the previous checkpoint."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **state}, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; :class:`TrainingError` when it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file can fail anywhere inside the unpickler
        raise TrainingError(f"{path}: unreadable checkpoint ({error}); delete it to start again") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not a DMIF training checkpoint")
    if state.get("format_version") != CHECKPOINT_VERSION:
        raise TrainingError(f"{path}: checkpoint format {state.get('format_version')} is not supported "
                            f"(this DMIFLib writes {CHECKPOINT_VERSION}); start the run again")
    return state
