"""The output-folder rule shared by every command: one run per folder, an exclusive lock, ``--overwrite``.

A command writes its outputs inside ``with run_folder(out, "predict", overwrite=...)``; that:

1. creates the folder (and its parents) and checks that it can write there, before any work starts;
2. takes an exclusive lock on the folder for the whole run (:class:`FolderLock`), so a second run into the
   same folder is refused while the first one is alive;
3. refuses a folder that holds another run (its manifest, or output names an earlier DMIFLib wrote) unless
   ``overwrite`` — or ``resume`` for a command that continues its own run (``dmif train --resume``, a
   ``dmif preprocess`` or ``dmif demo`` of the same inputs that skips the finished cases);
4. with ``overwrite``, removes the earlier run's outputs (the names its manifest lists; never another file,
   never one of the new run's inputs) before the new run writes anything, so no stale file survives;
5. writes the manifest ``.dmif-run.json`` when it starts (``status: running``, and ``foreign``: the entries
   that were there before, which are not this run's) and again at the end (success, error or Ctrl-C): the
   command, its identifying ``key``, ``status`` (``complete`` / ``incomplete``) and ``outputs`` — the folder's
   top-level entries this run created or rewrote. A run killed before its end (``kill -9``) leaves
   ``running``: its outputs are then everything but ``foreign``. A run that failed before writing anything
   leaves the folder as it found it.

How the tool knows what it wrote: only the manifest's ``outputs`` (plus, for a folder written before manifests
existed, the fixed output names in :data:`LEGACY_OUTPUTS`) are ever removed; a user's own files in the folder
are never listed there and are never touched.

Refusals raise :class:`OutputFolderError` (a ``ValueError``; the CLI prints it on one line and exits 2).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatch
from pathlib import Path

from DMIFLib.atomic import atomic_write_text

MANIFEST_NAME = ".dmif-run.json"
LOCK_NAME = ".dmif.lock"
MANIFEST_FORMAT = "dmif-run"
#: Output names of the DMIFLib versions that wrote no manifest (a folder holding one holds an earlier run).
LEGACY_OUTPUTS = ("model.pt", "checkpoint.pt", "predictions.tsv", "slice_predictions.tsv", "metrics.tsv",
                  "history.tsv", "split.tsv", "run.json", "failures.tsv", "table2_*.tsv", "table3_*.tsv",
                  "metrics_ci.tsv", "delong_tests.tsv", "separability.tsv", "tsne.tsv", "scores_*.tsv",
                  "*.mrml", "slices", "slice_cache", "cases")


class OutputFolderError(ValueError):
    """An output folder that cannot be used (busy, not writable, holds another run); a one-line message."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (POSIX); True where that cannot be told."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """An exclusive, non-blocking lock on ``folder/.dmif.lock`` that the OS drops when the process dies.

    POSIX: ``fcntl.flock``; Windows: ``msvcrt.locking`` on the file's first byte. Where neither works (no such
    module, or a file system without locks, e.g. some network shares) the fallback is an ``O_EXCL`` lock file
    holding ``pid host``: a lock file left by a dead process of this machine is taken over; one from another
    machine can only be removed by hand (the message names it). The lock file is removed on release.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self._fd: int | None = None
        self._exclusive_file = False

    def _holder(self) -> str:
        try:
            pid, _, host = self.path.read_text(encoding="utf-8").strip().partition(" ")
        except (OSError, UnicodeDecodeError):
            return "another dmif process"
        return f"process {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")

    def _busy(self) -> OutputFolderError:
        return OutputFolderError(f"{self.path.parent}: in use by another dmif run ({self._holder()}); wait for it "
                                 f"to finish or choose another output folder")

    def _os_lock(self, fd: int) -> bool | None:
        """True: locked; False: held by another process; None: this system or file system cannot lock."""
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            return None
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EDEADLK):
                return False
            if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return None
            raise
        return True

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutputFolderError` (busy) / ``OSError`` (cannot write the folder)."""
        for _ in range(5):
            existed = self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                locked = self._os_lock(fd)
            except OSError:
                os.close(fd)
                raise
            if locked is None:
                os.close(fd)
                if not existed:  # the empty file just made here is no one's lock
                    self.path.unlink(missing_ok=True)
                self._acquire_exclusive_file()
                return
            if not locked:
                os.close(fd)
                raise self._busy()
            try:  # the holder may have removed the file between our open and lock: lock the current file
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
                self._fd = fd
                return
            os.close(fd)
        raise self._busy()

    def _acquire_exclusive_file(self) -> None:
        text = f"{os.getpid()} {socket.gethostname()}\n".encode()
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                try:
                    pid, _, host = self.path.read_text(encoding="utf-8").strip().partition(" ")
                    stale = host == socket.gethostname() and not _pid_alive(int(pid))
                except (OSError, ValueError):
                    stale = False
                if not stale:
                    raise OutputFolderError(f"{self.path.parent}: in use by another dmif run ({self._holder()}); "
                                            f"if none is running, delete {self.path}") from None
                self.path.unlink(missing_ok=True)
                continue
            os.write(fd, text)
            os.close(fd)
            self._exclusive_file = True
            return
        raise self._busy()

    def release(self) -> None:
        """Drop the lock and remove the lock file."""
        if self._exclusive_file:
            self.path.unlink(missing_ok=True)
            self._exclusive_file = False
        if self._fd is None:
            return
        if os.name == "nt":  # unlock the byte locked in acquire (from offset 0) before closing
            import msvcrt

            os.lseek(self._fd, 0, os.SEEK_SET)
            with contextlib.suppress(OSError):
                msvcrt.locking(self._fd, msvcrt.LK_UNLCK, 1)
        else:  # POSIX: remove while still holding it; a waiting opener re-checks the file
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        if os.name == "nt":
            with contextlib.suppress(OSError):  # another process may hold it open by now; it is harmless
                self.path.unlink()


def _entries(folder: Path) -> dict[str, tuple[int, int]]:
    """Top-level entries of ``folder`` (except the manifest and the lock) -> (mtime_ns, size)."""
    out = {}
    for entry in os.scandir(folder):
        if entry.name in (MANIFEST_NAME, LOCK_NAME):
            continue
        with contextlib.suppress(OSError):
            stat = entry.stat(follow_symlinks=False)
            out[entry.name] = (stat.st_mtime_ns, stat.st_size)
    return out


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The run manifest of ``folder``; a folder without one that holds :data:`LEGACY_OUTPUTS` gets
    ``{"command": None, "outputs": [those names]}``; None for a folder that holds no run."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT:
            if manifest.get("status") == "running":  # its process died (kill -9): all but what it found there
                foreign = set(manifest.get("foreign", []))
                manifest["outputs"] = sorted(n for n in _entries(folder) if n not in foreign)
            return manifest
    except (OSError, ValueError):
        pass
    if not folder.is_dir():
        return None
    legacy = sorted(name for name in _entries(folder) if any(fnmatch(name, p) for p in LEGACY_OUTPUTS))
    return {"format": MANIFEST_FORMAT, "command": None, "key": None, "outputs": legacy} if legacy else None


def _describe(manifest: dict) -> str:
    command = f"of dmif {manifest['command']}" if manifest.get("command") else "(files an earlier dmif wrote)"
    status = ", unfinished" if manifest.get("status") in ("incomplete", "running") else ""
    return f"a run {command}{status}"


def _inside(path: Path, protected: Iterable[Path]) -> bool:
    """Whether removing ``path`` would remove one of ``protected`` (resolved paths)."""
    return any(p == path or path in p.parents for p in protected)


@dataclass
class RunFolder:
    """The folder a run writes into (see the module docstring); ``previous`` is the run it continues or replaced."""

    path: Path
    command: str
    key: dict | None = None
    previous: dict | None = None
    continued: bool = False
    removed: list[str] = field(default_factory=list)


def _remove_outputs(folder: Path, names: Iterable[str], protect: Iterable[str | os.PathLike]) -> list[str]:
    protected = [Path(p).resolve() for p in protect]
    removed = []
    for name in names:
        target = folder / name
        if Path(name).name != name or name in ("", ".", "..") or not os.path.lexists(target):
            continue
        if _inside(target.resolve(), protected):
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
        removed.append(name)
    return removed


@contextlib.contextmanager
def run_folder(path: str | os.PathLike, command: str, overwrite: bool = False, resume: bool = False,
               key: dict | None = None, protect: Iterable[str | os.PathLike] = (),
               resume_hint: str | None = None) -> Iterator[RunFolder]:
    """Hold ``path`` as the output folder of one ``command`` run (the rule is in the module docstring).

    ``resume``: continuing an earlier run of the same ``command`` (and equal ``key``, when given) in ``path`` is
    allowed; ``overwrite``: an earlier run there is replaced (its outputs removed first); ``protect``: the new
    run's inputs, never removed; ``resume_hint``: how to continue, named in the refusal (e.g. ``"--resume"``).
    Raises :class:`OutputFolderError` before any work when the folder is busy, not writable or holds another run.
    """
    folder = Path(path)
    key = None if key is None else json.loads(json.dumps(key))  # as the manifest stores it (lists, not tuples)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder}: exists and is not a folder; choose another output folder")
    lock, created = _create_and_lock(folder)
    try:
        run = RunFolder(folder, command, key, previous=read_manifest(folder))
        old = run.previous
        if old is not None:
            same = old.get("command") in (command, None) and (key is None or old.get("key") in (key, None))
            if overwrite:
                run.removed = _remove_outputs(folder, old.get("outputs", []), protect)
                (folder / MANIFEST_NAME).unlink(missing_ok=True)
            elif resume and same:
                run.continued = True
            else:
                how = f"use {resume_hint} to continue it, " if resume_hint and same else ""
                raise OutputFolderError(f"{folder}: already holds {_describe(old)}; {how}pass --overwrite to "
                                        f"replace it, or choose another output folder")
        before = _entries(folder)
        carried = [n for n in run.previous.get("outputs", []) if n in before] if run.continued else []
        manifest = {"format": MANIFEST_FORMAT, "command": command, "key": key, "status": "running",
                    "started_utc": _now(), "pid": os.getpid(), "outputs": carried,
                    "foreign": sorted(set(before) - set(carried))}  # for a run killed before its end
        atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
        status = "incomplete"
        refused = False
        try:
            yield run
            status = "complete"
        except Exception as error:
            refused = folder in created and _is_refusal(error)
            raise
        finally:
            after = _entries(folder)
            changed = {n for n, stamp in after.items() if before.get(n) != stamp}
            if refused:  # a new folder of a run refused for its input (e.g. a bad case found while slicing the
                # cohort): nothing partial is left; an interrupted or cancelled run keeps its work for resuming
                _remove_outputs(folder, sorted(changed), protect)
                after, changed = _entries(folder), set()
            written = changed | {n for n in carried if n in after}
            if run.continued and not changed and status != "complete" and run.previous.get("status") == "complete":
                status = "complete"  # a continuation that stopped before writing leaves the finished run as it was
            with contextlib.suppress(OSError):
                if written or run.continued:
                    manifest.update(status=status, finished_utc=_now(), outputs=sorted(written))
                    del manifest["foreign"]
                    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
                else:  # nothing written: leave the folder as it was found
                    (folder / MANIFEST_NAME).unlink()
    finally:
        lock.release()
        _remove_empty(created)  # a run that wrote nothing (e.g. refused its input and returned 2) leaves no folder


def _is_refusal(error: Exception) -> bool:
    """True for an error about the user's input (:func:`DMIFLib.training.errors.user_errors`), not a cancel."""
    from DMIFLib.training.errors import user_errors

    return isinstance(error, user_errors())


def _create_and_lock(folder: Path) -> tuple[FolderLock, list[Path]]:
    """Create ``folder`` (and its missing parents) and lock it; returns the held lock and the folders created,
    deepest first. Raises :class:`OutputFolderError` when it cannot be written or is in use, leaving no folder."""
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(folder)
        lock.acquire()
    except OSError as error:
        _remove_empty(created)
        raise OutputFolderError(f"{folder}: cannot write there ({error.strerror or error})") from None
    except OutputFolderError:
        _remove_empty(created)
        raise
    return lock, created


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders this run created (deepest first) while they are empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return


def add_output_file(path: str | os.PathLike, overwrite: bool = False) -> contextlib.AbstractContextManager:
    """For a command whose output is one file inside another run's folder (``dmif report``): lock the folder,
    refuse an existing ``path`` unless ``overwrite``, and list ``path`` in the folder's manifest afterwards so
    that an overwrite of that run removes it too. Use as ``with add_output_file(path, overwrite): write(path)``."""
    return _output_file(Path(path), overwrite)


@contextlib.contextmanager
def _output_file(path: Path, overwrite: bool) -> Iterator[Path]:
    folder = path.parent
    if path.is_dir():
        raise OutputFolderError(f"{path}: is a folder; give a file name")
    lock, created = _create_and_lock(folder)
    try:
        if path.exists() and not overwrite:
            raise OutputFolderError(f"{path}: already exists (an earlier run); pass --overwrite to replace it, "
                                    f"or choose another output file")
        yield path
        manifest_path = folder / MANIFEST_NAME
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = None
        if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT and path.exists():
            manifest["outputs"] = sorted({*manifest.get("outputs", []), path.name})
            atomic_write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")
    finally:
        lock.release()
        _remove_empty(created)  # a run that wrote nothing (e.g. refused its input and returned 2) leaves no folder
