"""``python tests/_faults.py <ecmlib CLI arguments>``: the CLI with a deterministic kill.

``ECMLIB_TEST_KILL_AT=<phase>:<epoch>`` SIGKILLs the process at one point of a training run,
by wrapping library functions from outside (the library has no test hook):

- ``epoch``: after the first optimiser step of that epoch;
- ``eval``: its evaluation computed, not recorded;
- ``history``: its history files written, last.pth not;
- ``write-last`` / ``write-best``: that checkpoint complete in its temp file, not renamed;
- ``final``: after the last epoch, metrics.json written, the result files not
  (epoch = train.epochs).
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from ecmlib.cli import main
from ecmlib.training import checkpoint, train

KILL_ENV = "ECMLIB_TEST_KILL_AT"
_now = {"epoch": 0}


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _at(phase: str, epoch: int | None = None) -> bool:
    return os.environ.get(KILL_ENV) == f"{phase}:{_now['epoch'] if epoch is None else epoch}"


def _wrap(owner, name, after):
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        after(*args, **kwargs)
        return result
    setattr(owner, name, wrapped)


def install() -> None:
    def note_epoch(cfg, epoch):
        _now["epoch"] = epoch
    _wrap(train, "_lr_at", note_epoch)
    first_step = {"done": -1}

    def after_step(*_a, **_k):
        if first_step["done"] != _now["epoch"]:
            first_step["done"] = _now["epoch"]
            if _at("epoch"):
                _die()
    _wrap(torch.optim.Adam, "step", after_step)
    _wrap(train, "evaluate_model", lambda *a, **k: _at("eval") and _die())
    _wrap(checkpoint, "write_history", lambda run_dir, history: history and _at(
        "history", history[-1]["epoch"]) and _die())
    original_write = checkpoint.atomic_write

    def atomic_write(path, write):
        stem = os.path.splitext(os.path.basename(path))[0]

        def write_then_die(fh):
            write(fh)
            if _at(f"write-{stem}"):
                fh.flush()
                _die()
        return original_write(path, write_then_die)
    checkpoint.atomic_write = atomic_write

    def after_json(path, obj):
        # metrics.json is written after the last epoch, which is then the current one
        if os.path.basename(path) == "metrics.json" and _at("final"):
            _die()
    _wrap(train, "atomic_write_json", after_json)


if __name__ == "__main__":
    if os.environ.get(KILL_ENV):
        install()
    sys.exit(main(sys.argv[1:]))
