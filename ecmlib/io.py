"""Files: safe writing (everything is written to a temporary file and renamed into place),
reading JSON with errors that name the file, and where the checkout is.

A crash or a full disk while saving never leaves a half-written checkpoint or result where
a good one stood, and a run directory that already holds results is never reused unless
the caller asks for it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def repo_root() -> Path:
    """The checkout that holds this package (data/, figures/, notebooks/ and runs/ live there)."""
    return Path(__file__).resolve().parent.parent


def write_failure(path: str | Path, err: BaseException) -> str:
    """Why writing ``path`` failed, in words: a full disk is named as such (torch's writer
    reports one as an 'unexpected pos' RuntimeError with no errno)."""
    import errno
    import shutil
    full = getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
    if not full:
        try:
            full = shutil.disk_usage(Path(path).parent).free < 1 << 20
        except OSError:
            pass
    why = "the disk is full" if full else str(err)
    return f"{path}: writing failed ({why}); the previous file, if any, is intact"


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync, then rename over it.

    An OSError (a full disk, a read-only folder) comes back naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; give it the usual permissions (0666 less umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(err.errno, write_failure(path, err)) from err
    except BaseException:
        # Leave the previous file untouched and remove the partial one.
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text atomically."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON (indented, trailing newline) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    """``torch.save`` atomically (a failed save keeps the old checkpoint)."""
    import torch
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def prepare_run_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Create a run directory; refuse a non-empty one unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path}: run directory already holds results; choose another "
                              f"--out or pass --overwrite to replace them")
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_json(path: str | Path) -> Any:
    """A JSON file's content, or a ValueError naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        with path.open("r", encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text, so not a JSON file ({exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to read") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
