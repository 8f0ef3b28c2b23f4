"""TensorBoard scalars of a training run, written into its run folder (optional).

``train`` logs every epoch's row of the history here: each loss term (``loss/pre``,
``loss/post``, ``loss/eq``, ``loss/agg``, ``loss/total``), ``lr``, every ``mAP@tIoU``
(``mAP/0.5``), every average (``average_mAP/0.1:0.7``), ``classification_mAP``,
``num_detections`` and the epoch's times (``time/train_s``, ``time/eval_s``), with the epoch
as the step. ``tensorboard --logdir SWEEP_FOLDER`` then shows every run of a sweep.

TensorBoard is an optional extra (``pip install 'ecmlib[tensorboard]'``): without it, or
with ``ECMLIB_TENSORBOARD=0``, :class:`ScalarLog` does nothing.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ScalarLog", "scalar_tag"]

_PREFIXES = (("loss_", "loss/"), ("average_mAP@", "average_mAP/"), ("mAP@", "mAP/"))
_TAGS = {"train_time_s": "time/train_s", "eval_time_s": "time/eval_s"}
_SKIP = {"epoch"}


def scalar_tag(key: str) -> str:
    """The TensorBoard tag of a history column (``loss_eq`` -> ``loss/eq``)."""
    if key in _TAGS:
        return _TAGS[key]
    for prefix, group in _PREFIXES:
        if key.startswith(prefix):
            return group + key[len(prefix):]
    return key


class ScalarLog:
    """``log(row)`` writes a history row's numbers at step ``row['epoch']``; a no-op when
    ``run_dir`` is None or TensorBoard is not installed. Files are flushed every row."""

    def __init__(self, run_dir: str | Path | None):
        self.writer = None
        if run_dir is None or os.environ.get("ECMLIB_TENSORBOARD", "1") == "0":
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.writer = SummaryWriter(log_dir=str(run_dir), flush_secs=3600)

    def log(self, row: Mapping[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(row["epoch"])
        for key, value in row.items():
            if key in _SKIP or isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            if math.isfinite(float(value)):
                self.writer.add_scalar(scalar_tag(key), float(value), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
