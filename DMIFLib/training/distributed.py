"""``dmif train`` under torchrun: one training process per GPU (or CPU share), DistributedDataParallel.

``torchrun --nproc-per-node N [--nnodes M ...] -m DMIFLib train ...`` starts N·M copies of ``dmif train`` with
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set; :func:`session` joins them into one process group (NCCL on CUDA,
gloo on the CPU), each on its own GPU ``cuda:LOCAL_RANK``. What every process does, and what only rank 0 does:

* every process reads the cohort and the split (deterministic: the same in every process) and trains each
  stage's net wrapped in DistributedDataParallel on its part of every batch (:class:`~DMIFLib.training.sampler.
  StageSampler`), with BatchNorm normalising over the whole batch (SyncBatchNorm on NCCL, an equivalent layer
  on gloo); the scattering cache and the validation predictions are computed in parts, one per process,
  and all-gathered, so that every process holds the same cache and takes the same early-stopping and
  learning-rate decisions; BatchNorm's running statistics are copied from rank 0 after every epoch;
* rank 0 alone extracts the slice stacks first (the others then read its cache), writes ``split.tsv``, the
  checkpoints, ``history.tsv``, and at the end evaluates and writes the model file, metrics and ``run.json``
  (``world_size``, ``backend``); the others wait at a barrier.

The checkpoint holds the unwrapped net and the optimizer (the same in every process), and the batches depend
only on the seed, not on the number of processes, so a run resumes on another number of processes (or in one).
Without torchrun (``WORLD_SIZE`` unset or 1) every function here is a no-op and training is single-process.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from DMIFLib.training.device import resolve_device
from DMIFLib.training.errors import DeviceError

TIMEOUT_MINUTES = 120
"""How long a process waits at a barrier (rank 0's final evaluation, a slow slice extraction) before failing."""


@dataclass(frozen=True)
class Distributed:
    """This process's place in the torchrun job."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    backend: str
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


_current: Distributed | None = None


def launched() -> bool:
    """True in a process that torchrun started as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> Distributed | None:
    """The process group this process belongs to (None in a single-process run)."""
    return _current


def is_main() -> bool:
    """True in rank 0 and in a single-process run: the process that writes the outputs."""
    return _current is None or _current.main


def rank_and_size() -> tuple[int, int]:
    """(rank, world size); (0, 1) in a single-process run."""
    return (0, 1) if _current is None else (_current.rank, _current.world_size)


def processes_per_node() -> int:
    return 1 if _current is None else _current.local_world_size


def run_info() -> dict[str, Any]:
    """``run.json``'s ``world_size`` and ``backend`` (None in a single-process run)."""
    return {"world_size": rank_and_size()[1], "backend": None if _current is None else _current.backend}


def _device_for(device: str, local_rank: int) -> tuple[torch.device, str]:
    wanted = str(device)
    if wanted.startswith("cuda:"):
        raise DeviceError(f"--device {wanted}: under torchrun every process uses its own GPU (cuda:LOCAL_RANK); "
                          "pass --device cuda or auto")
    resolved = resolve_device(wanted)
    if resolved.type == "mps" and wanted == "auto":
        resolved = torch.device("cpu")  # neither NCCL nor gloo works on MPS tensors
    if resolved.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DeviceError(f"torchrun started {local_rank + 1}+ processes on a node with "
                              f"{torch.cuda.device_count()} GPU(s); use --nproc-per-node {torch.cuda.device_count()}")
        return torch.device("cuda", local_rank), "nccl"
    if resolved.type != "cpu":
        raise DeviceError(f"--device {wanted}: torchrun training runs on CUDA (NCCL) or the CPU (gloo)")
    return resolved, "gloo"


@contextlib.contextmanager
def session(device: str) -> Iterator[str]:
    """Join torchrun's process group for the block; yields the device this process trains on (e.g. ``cuda:1``).

    Without torchrun it yields ``device`` unchanged. Raises :class:`DeviceError` for a device a torchrun job
    cannot use.
    """
    global _current
    if not launched():
        yield device
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device, backend = _device_for(device, local_rank)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=TIMEOUT_MINUTES))
    _current = Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                           local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")), backend=backend,
                           device=torch_device)
    try:
        yield str(torch_device)
    finally:
        _current = None
        dist.destroy_process_group()


def barrier() -> None:
    if _current is not None:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first, the others after it (e.g. to read the cache rank 0 wrote)."""
    if _current is not None and not _current.main:
        dist.barrier()
    yield
    if _current is not None and _current.main:
        dist.barrier()


@contextlib.contextmanager
def on_main(enter: Callable[[], contextlib.AbstractContextManager], error: type[Exception]) -> Iterator[Any]:
    """Enter ``enter()`` in rank 0 only (e.g. the output folder's lock); the others wait for it and raise
    ``error`` with rank 0's message when it failed. Single-process: enter it."""
    if _current is None:
        with enter() as value:
            yield value
        return
    if not _current.main:
        message = _broadcast(None)
        if message is not None:
            raise error(message)
        yield None
        return
    try:
        manager = enter()
        value = manager.__enter__()
    except error as failure:
        _broadcast(str(failure))
        raise
    _broadcast(None)
    with contextlib.ExitStack() as stack:
        stack.push(manager)
        yield value


def _broadcast(value: Any) -> Any:
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _Forward(nn.Module):
    """``forward(x)``, a function of ``net``'s parameters (e.g. ``MINet.forward_from_scattering``), as a module
    that DDP wraps; ``x`` may be a tuple of tensors and is passed on as it is."""

    def __init__(self, net: nn.Module, forward: Callable) -> None:
        super().__init__()
        self.net, self._forward = net, forward

    def forward(self, x):
        return self._forward(x)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes, differentiable: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole batch across the processes (gloo on the CPU,
    where torch's SyncBatchNorm does not run): the per-channel sums are all-reduced, differentiably. Same
    parameters, buffers and state dict as BatchNorm2d; in eval mode it is BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        c, dims = x.shape[1], [0, *range(2, x.dim())]
        xd = x.double()
        local = torch.cat([xd.sum(dims), (xd * xd).sum(dims), xd.new_tensor([x.numel() / c])])
        stats = _AllReduceSum.apply(local)
        count = stats[-1]
        mean = stats[:c] / count
        var = (stats[c:2 * c] / count - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
            unbiased = var * count / (count - 1).clamp_min(1)
            self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = ((xd - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)).to(x.dtype)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def _synchronise_batchnorm(net: nn.Module) -> None:
    """Make ``net``'s BatchNorm layers normalise with the statistics of the whole (global) batch, in place and
    keeping their parameters: torch's SyncBatchNorm on NCCL, :class:`_GlobalBatchNorm` on gloo."""
    if _current.backend == "nccl":
        nn.SyncBatchNorm.convert_sync_batchnorm(net)
        return
    for module in net.modules():
        if type(module) is nn.BatchNorm2d and module.track_running_stats:
            module.__class__ = _GlobalBatchNorm


def wrap(net: nn.Module, step: Callable) -> Callable:
    """The training forward ``step(x) -> logits`` (``net``'s forward, or e.g. ``MINet.forward_from_scattering``)
    as it runs in this process: ``step`` itself in a single-process run, DistributedDataParallel around it under
    torchrun. DDP copies ``net``'s parameters from rank 0 and averages their gradients over the processes, and
    ``net``'s BatchNorm layers normalise over the whole batch, so that a step equals the single-process step on
    that batch. ``static_graph``: DMIF-Net does not use its branches' own classifier heads, DDP learns that once."""
    if _current is None:
        return step
    from torch.nn.parallel import DistributedDataParallel

    _synchronise_batchnorm(net)
    ids = [_current.device.index] if _current.device.type == "cuda" else None
    return DistributedDataParallel(_Forward(net, step), device_ids=ids, static_graph=True)


def all_sum(*values: float) -> tuple[float, ...]:
    """Each value summed over the processes (e.g. the epoch's loss total and slice count)."""
    if _current is None:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return tuple(float(v) for v in t.cpu())


def sync_buffers(net: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process: each process updated them on its
    own part of the batches, and the processes must validate, checkpoint and evaluate the same net."""
    if _current is None:
        return
    for buffer in net.buffers():
        if buffer.is_floating_point():
            dist.broadcast(buffer.data, src=0)


def gather_rows(part: torch.Tensor, n: int) -> torch.Tensor:
    """The rows ``x[rank::W]`` that each process computed -> all ``n`` rows in order, in every process."""
    if _current is None:
        return part
    w = _current.world_size
    per = -(-n // w)
    padded = part.new_zeros((per, *part.shape[1:]))
    padded[:part.shape[0]] = part
    device = _collective_device()
    parts = [torch.empty_like(padded, device=device) for _ in range(w)]
    dist.all_gather(parts, padded.to(device))
    out = part.new_empty((n, *part.shape[1:]))
    for r in range(w):
        out[r::w] = parts[r][:len(range(r, n, w))].to(out.device)
    return out


def shard(data):
    """This process's rows ``[rank::W]`` of a :class:`~DMIFLib.training.stage.SliceSet` (all rows single-process)."""
    if _current is None:
        return data
    index = torch.arange(_current.rank, len(data), _current.world_size)
    return type(data)(data.take(index), data.y[index])


def predict_shared(predict: Callable[[Any], np.ndarray], data) -> np.ndarray:
    """``predict(data)`` (per-slice values (N,)) computed in parts, one per process, and all-gathered."""
    if _current is None:
        return predict(data)
    part = torch.from_numpy(np.ascontiguousarray(predict(shard(data)), dtype=np.float64))
    return gather_rows(part, len(data)).numpy()


def shared_scattering_cache(build: Callable, scattering: nn.Module, slices: torch.Tensor, **options):
    """``ScatteringCache.build(scattering, slices, **options)``, each process scattering its rows ``[rank::W]``;
    the coefficients are all-gathered so that every process holds the whole cache."""
    if _current is None:
        return build(scattering, slices, **options)
    n = slices.shape[0]
    part = build(scattering, slices[_current.rank::_current.world_size], **options)
    stacked = []
    for i, plain in enumerate(part.coeffs):
        rows = [gather_rows(plain, n)]
        if part.flipped is not None:
            rows.append(gather_rows(part.flipped[i], n))
        stacked.append(torch.cat(rows))
    return type(part)(scattering, stacked, n)


def _collective_device() -> torch.device:
    return _current.device if _current is not None and _current.backend == "nccl" else torch.device("cpu")
