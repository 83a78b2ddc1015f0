"""Device choice shared by training and inference: ``auto`` picks CUDA when torch sees a GPU, else the CPU."""

from __future__ import annotations

import torch

from DMIFLib.training.errors import DeviceError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` / ``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` -> ``torch.device``.

    Raises :class:`DeviceError` (a ``ValueError``) for another name, or a CUDA device torch does not see.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N") from None
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
