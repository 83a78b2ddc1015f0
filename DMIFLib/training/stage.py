"""One training stage: fit any net that returns logits (B,) on slice tensors (Algorithm 1's inner loop).

Adam with betas (0.99, 0.999), binary cross-entropy on logits, ``ReduceLROnPlateau`` (patience 5) on the
validation loss (the training loss when there is no validation set) or, with ``schedule="cosine"``, a cosine
decay of the learning rate over the stage's epochs that no validation loss steers; shuffling every epoch. The net that
ends the stage is the epoch with the lowest validation loss. Every epoch is reproducible from
``(seed, stage, epoch)``: the shuffle, the augmentation and dropout are reseeded from them, so a resumed run
repeats exactly what an uninterrupted one does. On CUDA: mixed precision (``torch.autocast``, bfloat16, or
float16 with a gradient scaler on GPUs without bfloat16), channels-last weights and inputs, DataLoader workers.
Under torchrun the net is trained with DistributedDataParallel (:mod:`DMIFLib.training.distributed`).
"""

from __future__ import annotations

import copy
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from DMIFLib.training import distributed
from DMIFLib.training.batches import to_device, training_batches
from DMIFLib.training.device import autocast_dtype, loader_workers, resolve_device
from DMIFLib.training.errors import RunCancelledError
from DMIFLib.training.sampler import StageSampler

Inputs = torch.Tensor | tuple[torch.Tensor, ...]
"""A stage's inputs: slices (N, C, H, W), or several aligned tensors (e.g. cached scattering per J)."""

ADAM_BETAS = (0.99, 0.999)


@dataclass
class SliceSet:
    """Inputs with one binary label per slice: ``x`` (N, ...) or a tuple of such tensors, ``y`` (N,) 0/1."""

    x: Inputs
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, index: torch.Tensor) -> Inputs:
        if isinstance(self.x, tuple):
            return tuple(t[index] for t in self.x)
        return self.x[index]


@dataclass
class FitResult:
    """The per-epoch history rows of a stage, its best validation loss (``inf`` without validation) and the
    training loss of the epoch whose weights the net ends with (``kept_loss``)."""

    history: list[dict] = field(default_factory=list)
    best_val_loss: float = float("inf")
    kept_loss: float = float("nan")


def epoch_seed(seed: int, stage: str, epoch: int) -> int:
    """A stable 32-bit seed for one epoch of one stage."""
    return zlib.crc32(f"{seed}/{stage}/{epoch}".encode())


def _call(net: nn.Module, forward: Callable | None, x: Inputs) -> torch.Tensor:
    if forward is not None:
        return forward(x)
    return net(*x) if isinstance(x, tuple) else net(x)


@torch.no_grad()
def predict_logits(net: nn.Module, data: SliceSet | Inputs, batch_size: int = 64,
                   device: str | torch.device = "cpu", forward: Callable | None = None) -> torch.Tensor:
    """The net's (or ``forward``'s) logits for every slice, in order, float32 on the CPU: (N,) or (N, K) for a
    ``forward`` with K outputs per slice; batches of ``batch_size``, autocast on CUDA; eval mode."""
    device = resolve_device(device)
    amp = autocast_dtype(device)
    data = data if isinstance(data, SliceSet) else SliceSet(data, torch.zeros(_length(data)))
    net.eval()
    out = []
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)))
        with torch.autocast(device_type=device.type, dtype=amp or torch.float16, enabled=amp is not None):
            out.append(_call(net, forward, to_device(data.take(index), device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def predict_proba(net: nn.Module, data: SliceSet | Inputs, batch_size: int = 64, device: str | torch.device = "cpu",
                  forward: Callable | None = None) -> np.ndarray:
    """Sigmoid of the net's logits for every slice, in order: (N,) float64 in [0, 1]; the net is put in eval mode."""
    return torch.sigmoid(predict_logits(net, data, batch_size, device, forward)).numpy().astype(np.float64)


def _length(x: Inputs) -> int:
    return int((x[0] if isinstance(x, tuple) else x).shape[0])


def _cpu_copy(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _safe_auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def fit(net: nn.Module, train: SliceSet, val: SliceSet | None, *, lr: float, epochs: int, batch_size: int = 64,
        device: str | torch.device = "auto", augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        seed: int = 0, stage: str = "fit", patience: int = 5, forward: Callable | None = None,
        progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
        checkpoint: Callable[[dict], None] | None = None, resume: dict | None = None,
        keep_last: bool = False, schedule: str = "plateau") -> FitResult:
    """Train ``net`` in place for ``epochs`` epochs and leave it holding the best-validation-loss weights
    (``keep_last``: the last epoch's weights; the validation loss still drives ReduceLROnPlateau).
    ``schedule``: "plateau" (ReduceLROnPlateau on the validation loss) or "cosine" (``lr`` decays to 0 along a
    half cosine over ``epochs``, whatever the validation loss does).

    ``train``/``val``: slices (N, C, H, W) float32 with labels (N,) 0/1 (CPU tensors; batches move to
    ``device``). ``augment`` maps a training batch to the net's (augmented) input, e.g. (B, C, H, W) ->
    (B, C, H, W), or slice indices -> cached scattering (only applied to tensor inputs; it is reseeded every
    epoch through its ``reseed(seed)`` when it has one); ``forward(x) -> logits (B,)`` replaces ``net(x)``
    (e.g. ``MINet.forward_from_scattering``).
    ``progress`` gets ``{"stage", "epoch", "epochs", "batch", "batches", "loss"}`` after every batch and
    ``{..., "val_loss", "val_auc", "lr"}`` after every epoch; ``cancel`` is checked before every batch and
    raises :class:`RunCancelledError` (the last completed epoch's checkpoint stays valid).
    ``checkpoint(state)`` receives after every epoch a dict of plain types and tensors (see :func:`fit_state`)
    that ``resume=state`` continues from.
    """
    device = resolve_device(device)
    amp = autocast_dtype(device)
    net.to(device)
    if device.type == "cuda":
        net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=ADAM_BETAS)
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    elif schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=patience)
    else:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose 'plateau' or 'cosine'")
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    step = distributed.wrap(net, lambda x: _call(net, forward, x))  # DistributedDataParallel under torchrun
    rank, world_size = distributed.rank_and_size()
    sampler = StageSampler(len(train), batch_size, rank, world_size)
    workers = loader_workers(device, distributed.processes_per_node())
    loss_fn = nn.BCEWithLogitsLoss()
    result = FitResult()
    best_state: dict | None = None
    start_epoch = 0
    if resume is not None:
        net.load_state_dict(resume["net"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if resume["scaler"] and scaler.is_enabled():  # a float16 run's scaler (not from a CPU or bfloat16 run)
            scaler.load_state_dict(resume["scaler"])
        best_state = resume["best_state"]
        result.best_val_loss = float(resume["best_val_loss"])
        result.history = [dict(row) for row in resume["history"]]
        start_epoch = int(resume["epoch"])
    has_val = val is not None and len(val) > 0
    batches = len(sampler)
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        seed_e = epoch_seed(seed, stage, epoch)
        torch.manual_seed(seed_e + rank)  # each process its own dropout and augmentation draws
        if augment is not None and hasattr(augment, "reseed"):
            augment.reseed(seed_e + rank)
        sampler.set_epoch(seed_e)
        net.train()
        total, count = 0.0, 0
        for b, x, y in training_batches(train, sampler, augment, device, workers, seed_e + rank):
            if cancel is not None and cancel.is_set():
                raise RunCancelledError(f"{stage}: cancelled in epoch {epoch + 1}/{epochs}")
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=amp or torch.float16, enabled=amp is not None):
                logits = step(x)
            loss = loss_fn(logits.float(), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach()) * len(y)
            count += len(y)
            if progress is not None:
                progress({"stage": stage, "epoch": epoch + 1, "epochs": epochs, "batch": b + 1, "batches": batches,
                          "loss": float(loss.detach())})
        total, count = distributed.all_sum(total, count)
        distributed.sync_buffers(net)
        train_loss = total / max(count, 1)
        val_loss, val_auc = float("nan"), float("nan")
        if has_val:
            p = distributed.predict_shared(lambda data: predict_proba(net, data, batch_size, device, forward), val)
            yv = val.y.numpy().astype(np.float64)
            eps = 1e-7
            val_loss = float(-np.mean(yv * np.log(p + eps) + (1 - yv) * np.log(1 - p + eps)))
            val_auc = _safe_auc(yv, p)
        monitored = val_loss if np.isfinite(val_loss) else train_loss
        if schedule == "cosine":
            scheduler.step()
        else:
            scheduler.step(monitored)
        if not has_val or monitored < result.best_val_loss:
            result.best_val_loss = monitored if has_val else result.best_val_loss
            best_state = _cpu_copy(net.state_dict())
        row = {"stage": stage, "epoch": epoch + 1, "epochs": epochs, "lr": optimizer.param_groups[0]["lr"],
               "loss": train_loss, "val_loss": val_loss, "val_auc": val_auc,
               "seconds": round(time.perf_counter() - started, 3)}
        result.history.append(row)
        if progress is not None:
            progress(dict(row))
        if checkpoint is not None:
            checkpoint(fit_state(net, optimizer, scheduler, scaler, epoch + 1, best_state, result))
    kept = result.history[-1] if result.history else None
    if best_state is not None and not keep_last:
        net.load_state_dict(best_state)
        kept = next((row for row in result.history if row["val_loss"] == result.best_val_loss), kept)
    result.kept_loss = float(kept["loss"]) if kept else float("nan")
    return result


def fit_state(net: nn.Module, optimizer: torch.optim.Optimizer, scheduler, scaler, epoch: int,
              best_state: dict | None, result: FitResult) -> dict:
    """Everything :func:`fit` needs to continue after ``epoch`` completed epochs (loads with weights_only)."""
    return {"epoch": epoch, "net": _cpu_copy(net.state_dict()),
            "optimizer": copy.deepcopy(optimizer.state_dict()), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "best_state": best_state, "best_val_loss": result.best_val_loss,
            "history": [dict(row) for row in result.history]}
