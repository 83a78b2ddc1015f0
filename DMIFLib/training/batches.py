"""The training batches of one epoch on the training device: slices taken, augmented and moved (fit's input).

Without workers (the CPU, MPS, and the scattering-cache stage) the batches are augmented in the training process
in order, one random sequence per epoch. With DataLoader workers (CUDA, :func:`DMIFLib.training.device.
loader_workers`) they are augmented in the workers, into pinned memory, while the GPU trains; the augmentation is
then reseeded per batch from (epoch seed, batch number), so the batches do not depend on the number of workers.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from DMIFLib.training.sampler import StageSampler


def to_device(x: torch.Tensor | tuple[torch.Tensor, ...], device: torch.device):
    """A tensor or tuple of tensors moved to ``device`` (asynchronously from pinned memory); 4-D float tensors
    in channels-last layout on CUDA (what the nets' weights use there)."""
    if isinstance(x, tuple):
        return tuple(to_device(t, device) for t in x)
    x = x.to(device, non_blocking=True)
    if device.type == "cuda" and x.dim() == 4 and x.is_floating_point():
        x = x.contiguous(memory_format=torch.channels_last)
    return x


class _AugmentedBatches(Dataset):
    """(batch number, indices) -> (batch number, augmented slices, labels): a DataLoader worker's task."""

    def __init__(self, train, augment: Callable | None, seed: int) -> None:
        self.train, self.augment, self.seed = train, augment, seed

    def __getitem__(self, item: tuple[int, torch.Tensor]) -> tuple[int, torch.Tensor, torch.Tensor]:
        b, index = item
        x = self.train.take(index)
        if self.augment is not None:
            if hasattr(self.augment, "reseed"):
                self.augment.reseed(zlib.crc32(f"{self.seed}/{b}".encode()))
            x = self.augment(x)
        return b, x, self.train.y[index].float()


def training_batches(train, sampler: StageSampler, augment: Callable | None, device: torch.device, workers: int = 0,
                     seed: int = 0) -> Iterator[tuple[int, torch.Tensor | tuple[torch.Tensor, ...], torch.Tensor]]:
    """This process's batches of the epoch ``sampler`` is set to: (batch number, inputs, labels (b,)) on
    ``device``. ``train``: a :class:`~DMIFLib.training.stage.SliceSet`; ``augment`` maps its slices (b, C, H, W)
    (or slice indices, for the scattering cache) to the net's input. ``workers`` > 0 is used only for slice
    tensors (the scattering cache lives on the training device); ``seed``: the epoch's seed."""
    slices = isinstance(train.x, torch.Tensor) and train.x.is_floating_point()
    if workers > 0 and slices:
        loader = DataLoader(_AugmentedBatches(train, augment, seed), sampler=sampler, batch_size=None,
                            num_workers=workers, pin_memory=device.type == "cuda")
        for b, x, y in loader:
            yield b, to_device(x, device), y.to(device, non_blocking=True)
        return
    for b, index in sampler:
        x = train.take(index)
        if augment is not None and isinstance(x, torch.Tensor):
            x = augment(x)
        yield b, to_device(x, device), train.y[index].float().to(device)
