"""One writer per output folder: an advisory lock beside the folder it guards.

Two ``train`` (or two ``sweep``) processes writing into one folder would interleave their
files into a run that is neither. :func:`hold` takes an exclusive, non-blocking
``filelock`` lock on ``.<name>.lock`` next to the folder and records who holds it; a second
writer gets :class:`FolderBusyError` naming that process. The lock is the operating
system's (``flock``): a writer killed by any signal releases it, so the next one takes over
with no stale-lock cleanup. The lock file lies beside the folder, not in it, so the folder
holds only what the run writes (``.<name>.lock`` and ``.<name>.lock.holder``).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import filelock


class FolderBusyError(RuntimeError):
    """Another live process writes into the folder."""


def lock_path(folder: str | Path) -> Path:
    """The lock file that guards ``folder``."""
    folder = Path(folder).resolve()  # one lock whatever the spelling (links, '..')
    return folder.parent / f".{folder.name}.lock"


def _info(path: Path) -> Path:
    """Who holds the lock: beside the lock file (some filelock versions truncate the lock
    file itself on every attempt)."""
    return path.with_name(path.name + ".holder")


def _holder(path: Path) -> str:
    try:
        info = json.loads(_info(path).read_text())
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError):
        return "another process"


@contextmanager
def hold(folder: str | Path, what: str = "run") -> Iterator[None]:
    """Hold the lock of ``folder`` for the body; FolderBusyError when a live process has it."""
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise FolderBusyError(
            f"{folder}: held by {_holder(path)} (another {what} writes into this folder); "
            f"wait for it to finish, or choose another --out") from None
    try:
        _info(path).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                    "since": datetime.now().isoformat(timespec="seconds")}))
        yield
    finally:
        lock.release()
