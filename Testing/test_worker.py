"""The JSON-lines worker: SIGTERM cancels cleanly, SIGKILL mid-run, and --resume finishes every epoch."""

import json
import os
import signal
import subprocess
import sys

import pytest
from test_training_e2e import TINY_OVERRIDES, make_tiny_cohort, read_tsv

from DMIFLib.model_file import load_model
from DMIFLib.training import train_cohort
from DMIFLib.training.algorithm import stage_names
from DMIFLib.worker import main

EPOCHS = 2


def _start(cohort, out, *extra):
    overrides = json.dumps({**TINY_OVERRIDES, "epochs": EPOCHS})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "DMIFLib.worker", "train", str(cohort), str(out), "--device", "cpu",
                             "--overrides", overrides, *extra], stdout=subprocess.PIPE, text=True, env=env)


def _events_until(process, stop):
    """Read JSON events until ``stop(event)`` is true; returns the events read."""
    events = []
    for line in process.stdout:
        events.append(json.loads(line))
        if stop(events[-1]):
            break
    return events


def test_sigterm_cancels_then_sigkill_and_resume_finish_every_epoch(tmp_path_factory, tmp_path):
    cohort = make_tiny_cohort(tmp_path_factory.getbasetemp())
    out = tmp_path / "run"
    worker = _start(cohort, out)
    events = _events_until(worker, lambda e: e.get("step") == 2 and "val_loss" in e)
    assert events[0]["event"] == "start" and all(e["event"] == "progress" for e in events[1:])
    worker.send_signal(signal.SIGTERM)
    tail = [json.loads(line) for line in worker.stdout]
    assert worker.wait(timeout=60) == 130 and tail[-1]["event"] == "cancelled"

    worker = _start(cohort, out, "--resume")  # continues after stage 1's first net, then is killed
    events = _events_until(worker, lambda e: e.get("step") == 4 and e.get("epoch") == 1 and "val_loss" in e)
    assert min(e["step"] for e in events if "step" in e) == 2
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(timeout=60) == -signal.SIGKILL
    worker.stdout.close()

    result = train_cohort(cohort, out, resume=True)
    history = read_tsv(result.history_path)
    expected = [(name, str(epoch)) for name in stage_names(("t1c", "t2w")) for epoch in range(1, EPOCHS + 1)]
    assert [(row["stage"], row["epoch"]) for row in history] == expected
    assert load_model(result.model_path).modalities == ("t1c", "t2w")
    assert sorted(p.name for p in out.iterdir() if p.name.startswith((".", "checkpoint"))) == []


def test_errors_are_json_events_with_exit_code_2(tmp_path, capsys):
    code = main(["predict", str(tmp_path / "cohort.csv"), str(tmp_path / "missing.pt"), str(tmp_path / "out")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 2 and lines[0]["event"] == "start"
    assert lines[-1] == {"event": "error", "message": f"{tmp_path / 'missing.pt'}: model file not found",
                         "kind": "ModelFileError"}


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_become_null(capsys, value):
    from DMIFLib.worker import emit

    emit("progress", val_auc=value)
    assert json.loads(capsys.readouterr().out) == {"event": "progress", "val_auc": None}
