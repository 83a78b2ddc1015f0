"""The distributed sampler's shares, the DataLoader-worker batches, and the per-device settings (no GPU needed)."""

import pytest
import torch

from DMIFLib.training.augment import AugmentConfig, SliceAugmenter
from DMIFLib.training.batches import training_batches
from DMIFLib.training.device import autocast_dtype, loader_workers, resolve_device
from DMIFLib.training.sampler import StageSampler
from DMIFLib.training.stage import SliceSet


@pytest.mark.parametrize("n", [1, 37, 64, 70])
def test_the_processes_shares_make_the_single_process_batches(n):
    single = StageSampler(n, 16)
    single.set_epoch(123)
    for world in (2, 3):
        shares = [StageSampler(n, 16, rank, world) for rank in range(world)]
        for share in shares:
            share.set_epoch(123)
        merged = {}
        for rank_batches in (list(share) for share in shares):
            for b, index in rank_batches:
                merged.setdefault(b, []).extend(index.tolist())
        expected = {b: sorted(index.tolist()) for b, index in single if len(index) >= 2 * world or n == 1}
        assert {b: sorted(v) for b, v in merged.items()} == expected  # same global batches; short last one skipped
        assert len({len(list(share)) for share in shares}) == 1  # every process takes the same number of steps
    other = StageSampler(n, 16)
    other.set_epoch(124)
    assert n == 1 or [i.tolist() for _, i in other] != [i.tolist() for _, i in single]


def test_worker_batches_do_not_depend_on_the_number_of_workers():
    g = torch.Generator().manual_seed(0)
    data = SliceSet(torch.randn(40, 1, 32, 32, generator=g), (torch.rand(40, generator=g) < 0.5).float())
    sampler = StageSampler(len(data), 8)
    sampler.set_epoch(7)
    augment = SliceAugmenter(AugmentConfig(), seed=0)
    runs = [list(training_batches(data, sampler, augment, torch.device("cpu"), workers, seed=5)) for workers in (1, 2)]
    for (b1, x1, y1), (b2, x2, y2) in zip(*runs, strict=True):
        assert b1 == b2 and torch.equal(x1, x2) and torch.equal(y1, y2)
    assert [b for b, _, _ in runs[0]] == list(range(5))
    assert not torch.equal(runs[0][0][1], data.x[next(iter(sampler))[1]])  # augmented
    # in-process (no workers, no augmentation): exactly the slices of the sampler's batches
    plain = list(training_batches(data, sampler, None, torch.device("cpu")))
    for (b, x, y), (b_sampled, index) in zip(plain, sampler, strict=True):
        assert b == b_sampled and torch.equal(x, data.x[index]) and torch.equal(y, data.y[index])


def test_device_settings_on_the_cpu():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu) is None and loader_workers(cpu, 4) == 0
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    """The order of the choice (this machine has neither, so their availability is set here)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.gpu
def test_cuda_autocast_and_workers():
    dtype = autocast_dtype(torch.device("cuda"))
    assert dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert loader_workers(torch.device("cuda"), 1) >= 0
