"""Shared pytest fixtures: the read-only real data in ../shared/data, fixed seeds, small thread counts."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DMIF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (real MRI and peer reference outputs); the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set DMIF_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def fixed_seeds() -> None:
    random.seed(0)
    np.random.seed(0)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
