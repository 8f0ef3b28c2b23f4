"""Results files of record, read and checked before any number in them is used.

A results file (``data/results/<study>.csv``) claims one row per planned run of its study,
each with the command line that reproduces it. :func:`read_results` refuses a file that
does not hold what it claims, naming the file, the line and the column: a missing or
empty file, a missing column, a row whose command is no run of the study, a run recorded
twice, a row whose setting, seeds, world or protocol disagree with its own command, a
seed that is not an integer, and a metric that is not a fraction in [0, 1] (a percentage,
NaN, a cut-off line). ``report``, ``record`` and the notebooks read results through it.

A small validator of our own rather than a schema library: the checks that matter are
relations between a row and the study's plan (its command names the run), which a column
schema cannot state, and the per-column checks are a few lines each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Columns that must hold an integer in every row.
INTEGER_COLUMNS = ("seed", "data_seed", "epochs", "eval_every", "threads", "best_epoch")
#: Columns that a row must agree with its cell on (the run's identity and protocol).
IDENTITY = ("setting", "seed", "data_seed", "world", "preset", "epochs", "eval_every",
            "threads")


class ResultsError(ValueError):
    """A results file that does not hold what it claims."""


def _fraction_columns(columns: Sequence[str]) -> list[str]:
    """Every mAP column (best, last, last 5, bootstrap bounds): a fraction in each row."""
    return [c for c in columns if "mAP" in c]


def read_results(path: str | Path, cells: Sequence[Any], columns: Sequence[str]) -> Any:
    """The results file at ``path`` as a DataFrame, checked against the study's ``cells``
    (objects with ``command()`` and the :data:`IDENTITY` attributes, ``world`` included)
    and its ``columns``; ResultsError naming the problem otherwise."""
    import pandas as pd
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no results file (run `python -m ecmlib record` to "
                           f"produce it)")
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ResultsError(f"{path}: the file is empty (not even a header line)") from None
    except pd.errors.ParserError as err:
        raise ResultsError(f"{path}: not a readable CSV ({err})") from None
    if "dropout_mask" in columns and "dropout_mask" not in table.columns \
            and "precision" in table.columns:
        # a fast-mode file from before runs recorded their mask: every run then drew torch's
        after = "aggregation_path" if "aggregation_path" in table.columns else "precision"
        table.insert(list(table.columns).index(after) + 1, "dropout_mask", "torch")
    validate(table, cells, columns, str(path))
    return table


def validate(table: Any, cells: Sequence[Any], columns: Sequence[str], source: str) -> None:
    """Raise ResultsError unless every row of ``table`` is a distinct planned run whose
    recorded identity and metrics are what they claim (see the module docstring)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ResultsError(f"{source}: missing column(s) {', '.join(missing)}")
    by_command = {c.command(): c for c in cells}
    seen: dict[str, int] = {}
    for i, row in enumerate(table.to_dict("records")):
        line = i + 2  # line 1 is the header
        where = f"{source}, line {line}"
        command = row["command"]
        cell = by_command.get(command) if isinstance(command, str) else None
        if cell is None:
            raise ResultsError(f"{where}: the command {command!r} is no run of this study "
                               f"(setting {row['setting']!r}); remove the row")
        if command in seen:
            raise ResultsError(f"{where}: the same run as line {seen[command]} (one row per "
                               f"run); remove one of them")
        seen[command] = line
        _check_row(row, cell, where)


def _check_row(row: dict[str, Any], cell: Any, where: str) -> None:
    for col in INTEGER_COLUMNS:
        value = row[col]
        if not _is_integer(value):
            raise ResultsError(f"{where}, column {col!r}: {value!r} is not an integer")
    for col in IDENTITY:
        want = getattr(cell, col)
        got = row[col]
        same = int(got) == int(want) if col in INTEGER_COLUMNS else str(got) == str(want)
        if not same:
            raise ResultsError(f"{where}, column {col!r}: {got!r}, but the row's command is "
                               f"the run with {col} {want!r}")
    for col in _fraction_columns(list(row)):
        value = row[col]
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ResultsError(f"{where}, column {col!r}: {value!r} is not a number") from None
        if math.isnan(x):
            raise ResultsError(f"{where}, column {col!r}: missing (NaN); a cut-off or "
                               f"edited row? Re-collect it with `python -m ecmlib record "
                               f"--collect-only`")
        if not 0.0 <= x <= 1.0:
            raise ResultsError(f"{where}, column {col!r}: {x} is not a fraction in [0, 1] "
                               f"(metrics are stored as fractions, not percentages)")


def _is_integer(value: Any) -> bool:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(x) and x == int(x) and not isinstance(value, bool)
