"""One writer per run directory: a lock file holding the writer's pid and host.

``run.lock`` is created atomically (``O_CREAT | O_EXCL``) by whatever writes a run directory
(``linsteer run``, ``sweep``, ``report``, ``analyze``, the Ray driver) and removed when it is done,
also after an error. A second writer is refused in one line naming the holder. A lock left by a
process that died (same host, pid gone; or an unreadable lock older than a minute) is stale: it is
broken (renamed away atomically, so two processes cannot both break it) and taken. A lock held
from another host cannot be checked from here, so it is refused with how to clear it. The same
process may take the lock again (nested stages); it is released by the outermost holder.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from linsteer.errors import LinsteerError

LOCK_FILE = "run.lock"
STALE_UNREADABLE_SECONDS = 60.0  # a lock file without a readable holder, older than this, is stale

_held: dict[Path, int] = {}  # lock path -> nesting depth in this process


@dataclass(frozen=True)
class Holder:
    """Who holds a run directory's lock."""

    pid: int
    host: str
    since: float

    def alive(self) -> bool:
        """Whether the holder still runs (only checkable on this host; elsewhere: assume so)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process
            return True
        return True


def read_holder(path: Path) -> Holder | None:
    """The holder written in a lock file (None: missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
        return Holder(int(data["pid"]), str(data["host"]), float(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _stale(path: Path, holder: Holder | None) -> bool:
    if holder is not None:
        return not holder.alive()
    try:
        return time.time() - path.stat().st_mtime > STALE_UNREADABLE_SECONDS
    except FileNotFoundError:
        return True


def _break(path: Path) -> None:
    """Move a stale lock away; only one of several processes doing this at once succeeds."""
    try:
        os.replace(path, path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}"))
    except FileNotFoundError:
        return
    path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}").unlink(missing_ok=True)


def acquire(run_dir: Path) -> Path:
    """Take ``run_dir``'s lock (breaking a stale one) or refuse in one line; returns its path."""
    path = (Path(run_dir) / LOCK_FILE).resolve()
    if path in _held:
        _held[path] += 1
        return path
    for _ in range(5):
        try:
            if _create(path):
                _held[path] = 1
                return path
        except OSError as exc:
            raise LinsteerError(f"cannot write to the run directory {run_dir}: {exc.strerror or exc}; "
                                "make it writable or use another --run-dir") from exc
        holder = read_holder(path)
        if not _stale(path, holder):
            who = (f"process {holder.pid} on {holder.host} since "
                   f"{time.strftime('%H:%M:%S', time.localtime(holder.since))}"
                   if holder is not None else "another process")
            raise LinsteerError(f"{run_dir} is in use by {who}; wait for it to finish (the same "
                                f"command then resumes or reuses it), or delete {path} if that "
                                "process is gone")
        _break(path)
    raise LinsteerError(f"could not lock {run_dir}: its lock file keeps changing; try again")


def release(path: Path) -> None:
    """Give back a lock taken by :func:`acquire` (the outermost holder removes the file)."""
    depth = _held.get(path, 0) - 1
    if depth > 0:
        _held[path] = depth
        return
    _held.pop(path, None)
    holder = read_holder(path)
    if holder is not None and holder.pid == os.getpid() and holder.host == socket.gethostname():
        path.unlink(missing_ok=True)


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s one-writer lock for the ``with`` block."""
    path = acquire(run_dir)
    try:
        yield
    finally:
        release(path)
