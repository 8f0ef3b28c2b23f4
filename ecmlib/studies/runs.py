"""Training the cells of a study: each in a subprocess with its own command line, into
``ROOT/<cell id>``, resumably (a finished cell is skipped, an unfinished one restarted).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

from .design import Cell

def is_done(root: str | Path, cell: Cell) -> bool:
    """A cell is finished when its run folder holds metrics.json (written last by train)."""
    return (Path(root) / cell.cell_id / "metrics.json").is_file()


def run_cell(cell: Cell, root: str | Path, python: str | None = None,
             log: bool = True) -> Path:
    """Train one cell with its command line, in a subprocess, into ``root/<cell id>``.

    An unfinished folder (a killed run) is started again from scratch; a finished one is
    left as it is. Returns the run folder. The subprocess's output goes to ``train.log``
    beside the run (the folder itself is created by train).
    """
    root = Path(root)
    run_dir = root / cell.cell_id
    if is_done(root, cell):
        return run_dir
    from ..training.runlock import hold
    with hold(run_dir, "run of this cell"):  # never delete a folder a live run writes
        if run_dir.exists():
            shutil.rmtree(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    logfile = root / f"{cell.cell_id}.log"
    cmd = [python or sys.executable, "-m", "ecmlib", *cell.argv(), "--out", str(run_dir)]
    t0 = time.perf_counter()
    with open(logfile, "w") as fh:
        fh.write(shlex.join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{cell.cell_id}: train exited with {proc.returncode} "
                           f"after {time.perf_counter() - t0:.0f} s; see {logfile}")
    if log:
        print(f"{time.strftime('%H:%M:%S')} done {cell.cell_id} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return run_dir


def run_cells(cells: Sequence[Cell], root: str | Path, jobs: int | None = 1,
              python: str | None = None, **executor: Any) -> list[str]:
    """Run every unfinished cell, ``jobs`` at a time; returns the failures' messages.

    The cells go through the executor every grid of the workbook uses
    (:func:`ecmlib.studies.executor.open_executor`: a local Dask cluster by default, a process pool,
    this process for ``jobs=1``, or a remote cluster or Slurm through ``executor`` keywords
    such as ``scheduler="tcp://HOST:PORT"``); a remote cluster must see ``root``. Each cell
    trains in a subprocess with its own command line, so a worker only waits for it.
    """
    from .executor import open_executor
    root = Path(root).resolve()
    todo = [c for c in cells if not is_done(root, c)]
    print(f"{len(cells) - len(todo)} of {len(cells)} cells finished; {len(todo)} to run",
          flush=True)
    failures: list[str] = []
    if not todo:
        return failures
    with open_executor(jobs=jobs, n_tasks=len(todo), log=print, **executor) as pool:
        futures = {pool.submit(run_cell, c, str(root), python): c for c in todo}
        for fut in as_completed(futures):
            try:
                fut.result()
            except Exception as err:  # noqa: BLE001 - reported, the grid goes on
                failures.append(f"{futures[fut].cell_id}: {err}")
                print(f"FAILED {futures[fut].cell_id}: {err}", flush=True)
    return failures
