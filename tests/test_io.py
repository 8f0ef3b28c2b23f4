"""Atomic writes and run-directory protection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ecmlib.io import atomic_write, atomic_write_text, prepare_run_dir


def test_atomic_write_replaces_and_uses_normal_permissions(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "a.txt", "good")

    def boom(fh):
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, boom)
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_run_dir_is_not_reused(tmp_path: Path) -> None:
    run = prepare_run_dir(tmp_path / "run")
    (run / "metrics.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare_run_dir(run)
    assert prepare_run_dir(run, overwrite=True) == run
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        prepare_run_dir(tmp_path / "file")
