"""fit(): learns a separable problem, resumes exactly from a checkpoint, reports progress, cancels."""

import threading

import pytest
import torch
from torch import nn

from DMIFLib.training.errors import RunCancelledError
from DMIFLib.training.stage import SliceSet, fit, predict_proba


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 1))

    def forward(self, x):
        return self.body(x).squeeze(1)


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 2).float()
    pattern = torch.sin(torch.arange(16.0) * 1.5)
    x = 0.5 * torch.randn(n, 1, 16, 16, generator=g) + y[:, None, None, None] * pattern
    return SliceSet(x, y)


def _fit(net, device="cpu", **kwargs):
    return fit(net, _data(64, 0), _data(32, 1), lr=1e-2, batch_size=16, device=device, seed=3, stage="s", **kwargs)


def test_fit_learns_and_reports_progress():
    torch.manual_seed(0)
    net, events = SmallNet(), []
    result = _fit(net, epochs=4, progress=events.append)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["val_auc"] > 0.9
    epoch_events = [e for e in events if "val_loss" in e]
    batch_events = [e for e in events if "batch" in e]
    assert len(epoch_events) == 4 and len(batch_events) == 16
    assert set(batch_events[0]) >= {"stage", "epoch", "epochs", "batch", "batches", "loss"}
    p = predict_proba(net, _data(32, 1))
    assert p.shape == (32,) and ((p >= 0) & (p <= 1)).all()


def test_resume_from_an_epoch_checkpoint_gives_the_same_weights():
    torch.manual_seed(0)
    states = []
    full = SmallNet()
    _fit(full, epochs=3, checkpoint=states.append)
    assert [s["epoch"] for s in states] == [1, 2, 3]
    torch.manual_seed(99)  # a fresh process: different global RNG state
    resumed = SmallNet()
    result = _fit(resumed, epochs=3, resume=states[0])
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_cancel_stops_before_the_next_batch():
    cancel = threading.Event()
    states = []

    def progress(event):
        if event.get("epoch") == 2:
            cancel.set()

    with pytest.raises(RunCancelledError, match="epoch 2"):
        _fit(SmallNet(), epochs=5, progress=progress, cancel=cancel, checkpoint=states.append)
    assert [s["epoch"] for s in states] == [1]


@pytest.mark.gpu
def test_cuda_mixed_precision_fit_and_resume_match():
    torch.manual_seed(0)
    states = []
    net = SmallNet()
    result = _fit(net, epochs=2, checkpoint=states.append, device="cuda")
    assert result.history[-1]["val_auc"] > 0.8 and states[0]["scaler"]  # the gradient scaler is active
    resumed = SmallNet()
    _fit(resumed, epochs=2, resume=states[0], device="cuda")
    for key, value in net.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize("keep_last", [False, True])
def test_keep_last_ends_with_the_last_epoch_instead_of_the_best(keep_last):
    # validation labels flipped: the better the net learns, the higher the validation loss, so epoch 1 is "best"
    val = _data(32, 1)
    val = SliceSet(val.x, 1 - val.y)
    torch.manual_seed(0)
    net, states = SmallNet(), []
    result = fit(net, _data(64, 0), val, lr=1e-2, batch_size=16, device="cpu", seed=3, stage="s", epochs=4,
                 checkpoint=states.append, keep_last=keep_last)
    losses = [row["val_loss"] for row in result.history]
    assert losses.index(min(losses)) == 0 and losses[-1] > losses[0]
    expected = states[-1]["net"] if keep_last else states[0]["net"]
    for key, value in net.state_dict().items():
        assert torch.equal(value.cpu(), expected[key].cpu()), key
    # kept_loss: the training loss of the epoch the net ends with (stacking reads it, DMIFLib.training.stacking)
    assert result.kept_loss == result.history[-1 if keep_last else 0]["loss"]


def test_keep_last_epoch_setting():
    from DMIFLib.training.errors import TrainingError
    from DMIFLib.training.presets import make_config

    assert make_config("quick").keep_last_epoch == ("stage1/minet",)
    assert make_config("paper").keep_last_epoch == ()  # Algorithm 1 as published: the best validation-loss epoch
    assert make_config("paper", {"keep_last_epoch": "stage2"}).keep_last_epoch == ("stage2",)
    with pytest.raises(TrainingError, match="keep_last_epoch"):
        make_config("quick", {"keep_last_epoch": ["stage4"]})


def test_cosine_schedule_ignores_the_validation_loss_and_resumes_exactly():
    # flipped validation labels: ReduceLROnPlateau (patience 0) cuts the rate; the cosine schedule does not care
    val = _data(32, 1)
    val = SliceSet(val.x, 1 - val.y)
    torch.manual_seed(0)
    plateau = fit(SmallNet(), _data(64, 0), val, lr=1e-2, batch_size=16, device="cpu", seed=3, stage="s",
                  epochs=4, patience=0)
    assert plateau.history[-1]["lr"] < 1e-2 * 0.1 ** 2
    torch.manual_seed(0)
    states, net = [], SmallNet()
    cosine = fit(net, _data(64, 0), val, lr=1e-2, batch_size=16, device="cpu", seed=3, stage="s", epochs=4,
                 patience=0, schedule="cosine", checkpoint=states.append)
    # the rate after epoch e (history's "lr") is 1e-2 * (1 + cos(pi * e / 4)) / 2
    assert [row["lr"] for row in cosine.history] == pytest.approx([8.536e-3, 5e-3, 1.464e-3, 0.0], abs=1e-6)
    torch.manual_seed(99)
    resumed = SmallNet()
    fit(resumed, _data(64, 0), val, lr=1e-2, batch_size=16, device="cpu", seed=3, stage="s", epochs=4, patience=0,
        schedule="cosine", resume=states[1])
    for key, value in net.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    with pytest.raises(ValueError, match="learning-rate schedule 'step'"):
        fit(SmallNet(), _data(8, 0), None, lr=1e-2, epochs=1, device="cpu", schedule="step")


def test_cosine_lr_setting():
    from DMIFLib.training.errors import TrainingError
    from DMIFLib.training.presets import make_config

    assert make_config("quick").cosine_lr == ("stage1/minet",)
    assert make_config("paper").cosine_lr == ()  # Algorithm 1 as published: ReduceLROnPlateau
    assert make_config("paper", {"cosine_lr": "stage1"}).cosine_lr == ("stage1",)
    with pytest.raises(TrainingError, match="cosine_lr"):
        make_config("quick", {"cosine_lr": ["stage9"]})
