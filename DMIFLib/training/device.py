"""Device choice shared by training and inference: ``auto`` picks CUDA when torch sees a GPU, else the CPU."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` / ``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` -> ``torch.device``; ``ValueError`` when CUDA is absent."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' was asked for, but torch {torch.__version__} sees no CUDA device; "
                         "use --device cpu or auto")
    return resolved
