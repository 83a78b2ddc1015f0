"""Device choice and per-device settings shared by training and inference.

``auto`` picks CUDA when torch sees a GPU, then Apple's MPS (Metal) when torch was built with it and the machine
has it, else the CPU. On CUDA, training uses mixed precision (bfloat16 where the GPU supports it, otherwise
float16 with a gradient scaler) and channels-last layout; batches come from DataLoader workers into pinned memory.
"""

from __future__ import annotations

import os

import torch

from DMIFLib.training.errors import DeviceError


def mps_available() -> bool:
    """True when torch has the MPS backend (Apple silicon, macOS 12.3+) and it can be used."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` / ``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` / ``"mps"`` -> ``torch.device``.

    ``auto``: CUDA, then MPS, then the CPU. Raises :class:`DeviceError` (a ``ValueError``) for another name, or a
    device torch does not see.
    """
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device '{device}'; use auto, cpu, cuda, cuda:N or mps") from None
    if resolved.type not in ("cpu", "cuda"):  # e.g. mps: usable only when torch can put a tensor there
        try:
            torch.empty(0, device=resolved)
        except (RuntimeError, AssertionError):
            raise DeviceError(f"device '{device}' is not available here; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device '{device}' was asked for, but torch {torch.__version__} sees no CUDA device; "
                          "use --device cpu or auto")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise DeviceError(f"device '{device}': this machine has {torch.cuda.device_count()} CUDA device(s); "
                          "use cuda:0 or auto")
    return resolved


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision type of training and prediction on ``device``: bfloat16 on a CUDA GPU that supports it
    (Ampere and later), float16 on older GPUs (with a gradient scaler), None (float32) on the CPU and MPS."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def loader_workers(device: torch.device, processes_per_node: int = 1) -> int:
    """DataLoader worker processes that prepare (augment) training batches for one training process.

    0 on the CPU and MPS (the augmentation runs in the training process: on the CPU the workers would take the
    cores the training needs). On CUDA: the machine's CPU cores (those this process may use) shared among the
    ``processes_per_node`` training processes of the node, one core left to each of them, at most 8.
    """
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores // max(1, processes_per_node) - 1))
