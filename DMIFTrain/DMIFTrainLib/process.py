"""A worker subprocess that reports progress as JSON lines on stdout, and can be cancelled with its children.

Like SlicerMONAIAuto3DSeg: the heavy work runs in a separate Python process (``PythonSlicer -m DMIFLib.worker``)
so that Slicer stays responsive; a reader thread turns each stdout line into an event dict (a line that is not
JSON becomes ``{"event": "log", "message": line}``), the GUI polls :meth:`WorkerProcess.events` from a timer.
Cancel kills the whole process tree (the worker's own data-loader processes included).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence


def popen_options(platform: str = sys.platform) -> dict:
    """Popen options for the worker: its own process group (so that Cancel can kill the whole tree) and, on
    Windows, a hidden console window, as Slicer's ``slicer.util.launchConsoleProcess`` does (STARTUPINFO with
    STARTF_USESHOWWINDOW and SW_HIDE): PythonSlicer is a console program and would open a window."""
    if platform == "win32":
        info = subprocess.STARTUPINFO()
        info.dwFlags |= subprocess.STARTF_USESHOWWINDOW
        info.wShowWindow = subprocess.SW_HIDE
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP, "startupinfo": info}
    return {"start_new_session": True}


class WorkerProcess:
    """One run of ``command``; stdout is parsed as JSON lines, stderr is kept for the error message."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        self.command = [str(part) for part in command]
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._process: subprocess.Popen | None = None
        self._events: queue.Queue[dict] = queue.Queue()
        self._stderr: list[str] = []
        self._threads: list[threading.Thread] = []
        self.cancelled = False

    def start(self) -> WorkerProcess:
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                                         bufsize=1, env=self._env, cwd=self._cwd, **popen_options())
        for target, stream in ((self._read_stdout, self._process.stdout), (self._read_stderr, self._process.stderr)):
            thread = threading.Thread(target=target, args=(stream,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _read_stdout(self, stream) -> None:
        for line in stream:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = None
            self._events.put(event if isinstance(event, dict) else {"event": "log", "message": line})

    def _read_stderr(self, stream) -> None:
        for line in stream:
            self._stderr.append(line)
            del self._stderr[:-200]  # the tail is enough for an error message

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process else None

    def events(self) -> list[dict]:
        """The events received since the last call (non-blocking)."""
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process and its output readers; returns the exit code."""
        code = self._process.wait(timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        return code

    def stderr_tail(self, lines: int = 20) -> str:
        return "".join(self._stderr[-lines:]).strip()

    def cancel(self, grace_s: float = 5.0) -> None:
        """Stop the worker and every process it started: terminate, then kill after ``grace_s`` seconds."""
        if not self.running():
            return
        self.cancelled = True
        pid = self._process.pid
        if sys.platform == "win32":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, check=False)
        else:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self._process.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(pid, signal.SIGKILL)  # also children that outlived their parent
            except ProcessLookupError:
                pass
        self._process.wait()
