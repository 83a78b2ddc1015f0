"""The DMIFTrain worker runner: JSON-lines progress from a real subprocess, and Cancel killing its process tree."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "DMIFTrain"))

from DMIFTrainLib.process import WorkerProcess, popen_options

PROGRESS_SCRIPT = """
import json, sys
for i in range(3):
    print(json.dumps({"event": "progress", "fraction": (i + 1) / 3}), flush=True)
print("a plain log line", flush=True)
print("boom", file=sys.stderr, flush=True)
sys.exit(3)
"""

# The worker starts a child that would outlive it; both must be gone after cancel().
TREE_SCRIPT = """
import json, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(json.dumps({"event": "started", "child": child.pid}), flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_events_are_parsed_and_errors_kept():
    worker = WorkerProcess([sys.executable, "-c", PROGRESS_SCRIPT]).start()
    assert worker.wait(timeout=30) == 3
    events = worker.events()
    assert [e["fraction"] for e in events if e.get("event") == "progress"] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert {"event": "log", "message": "a plain log line"} in events
    assert worker.stderr_tail() == "boom"
    assert not worker.cancelled


@pytest.mark.skipif(sys.platform == "win32", reason="process-group check written for POSIX")
def test_cancel_kills_the_process_tree():
    worker = WorkerProcess([sys.executable, "-c", TREE_SCRIPT]).start()
    deadline = time.monotonic() + 30
    started = []
    while not started and time.monotonic() < deadline:
        started = [e for e in worker.events() if e.get("event") == "started"]
        time.sleep(0.05)
    assert started, "the worker did not report its child"
    child = started[0]["child"]
    assert _alive(child)
    worker.cancel(grace_s=2)
    assert worker.cancelled and not worker.running()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the worker's child survived cancel()"


def test_worker_gets_its_own_process_group_and_on_windows_a_hidden_console(monkeypatch):
    import subprocess

    assert popen_options("linux") == {"start_new_session": True}

    class StartupInfo:  # subprocess.STARTUPINFO exists on Windows only
        dwFlags = 0  # noqa: N815 - the names of the Windows API
        wShowWindow = 1  # noqa: N815

    for name, value in (("STARTUPINFO", StartupInfo), ("STARTF_USESHOWWINDOW", 1), ("SW_HIDE", 0),
                        ("CREATE_NEW_PROCESS_GROUP", 0x200)):
        monkeypatch.setattr(subprocess, name, value, raising=False)
    options = popen_options("win32")
    # what slicer.util.launchConsoleProcess does on Windows (v5.12.3 Base/Python/slicer/util.py)
    assert options["startupinfo"].dwFlags == 1 and options["startupinfo"].wShowWindow == 0
    assert options["creationflags"] == 0x200 and "start_new_session" not in options
