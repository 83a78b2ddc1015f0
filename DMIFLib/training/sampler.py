"""Which training slices each process gets in each batch of a stage (the distributed sampler of Algorithm 1).

One shuffle per epoch, the same in every process; a run on W processes takes the single-process run's steps.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class StageSampler(Sampler):
    """The batches of one training stage for process ``rank`` of ``world_size``: yields (batch number, slice
    indices (b,) int64).

    Every epoch (:meth:`set_epoch` with the epoch's seed, ``stage.epoch_seed(seed, stage, epoch)``) permutes the N
    slices with a generator seeded with it (the single-process order) and cuts the permutation into global batches
    of ``batch_size``; process ``rank`` gets positions rank, rank + W, ... of each batch. Together the processes
    see exactly the single-process batches, and DistributedDataParallel averages their gradients (BatchNorm
    normalising over the whole batch), so W processes take the single-process steps. A global batch with
    fewer than 2 slices per process is skipped (BatchNorm cannot train on one sample), unless the whole set is
    one slice. Like torch's DistributedSampler, but the order does not depend on W, so that a run resumes on
    another number of processes.
    """

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of {world_size} processes")
        self.n, self.batch_size, self.rank, self.world_size = n, batch_size, rank, world_size
        self.seed = 0

    def set_epoch(self, seed: int) -> None:
        """Shuffle the next iteration with the epoch's seed."""
        self.seed = int(seed)

    def __len__(self) -> int:
        """The number of global batches per epoch (skipped ones included)."""
        return max(1, -(-self.n // self.batch_size))

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed))
        for b in range(len(self)):
            batch = order[b * self.batch_size:(b + 1) * self.batch_size]
            if len(batch) < 2 * self.world_size and self.n > 1:
                continue
            yield b, batch[self.rank::self.world_size]
