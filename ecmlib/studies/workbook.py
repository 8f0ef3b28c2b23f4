"""Run the workbook: every notebook in order, parameter sweeps, and notebook hygiene.

Three entry points share one execution path (papermill, kernel ``python3``, a timeout per
notebook cell, the notebooks' folder as working directory):

* ``python -m ecmlib workbook`` (:func:`workbook_main`, :func:`run_workbook`) executes
  ``notebooks/NN_name.ipynb`` in order into a fresh ``runs/<YYYYmmdd-HHMMSS>/`` folder:
  the executed copy ``NN_name.ipynb`` and the notebook's own outputs in ``NN_name/``
  (passed as the ``out_dir`` parameter), plus ``summary.json``.
* ``python -m ecmlib sweep NOTEBOOK -p seed 0 1 2 -p lr 1e-3 1e-4`` (:func:`sweep_main`,
  :func:`run_sweep`) runs the Cartesian grid of parameters, one papermill run per setting
  in parallel processes, each into ``<out>/lr=0.001__seed=0/``; the notebook writes
  ``metrics.json`` into its ``out_dir`` (the contract) and the sweep aggregates them over
  seeds into ``sweep.csv`` / ``sweep.md``.
* From Python: :func:`run_grid` runs a picklable function of the parameters over a grid
  on the same executor and :func:`aggregate` / :func:`to_markdown`
  summarise the records as mean ± std over seeds.

``sweep.csv`` is *wide*: one row per setting, the non-seed parameters, ``n`` (runs in the
setting), ``seeds`` and, for every numeric metric ``m``, ``m_mean``, ``m_std`` (ddof=1, so
empty for a single seed) and ``m_n`` (runs that reported ``m``). ``runs.csv`` beside it
holds one row per run.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import math
import numbers
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, as_completed
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ..training import runlock
from .executor import add_executor_args, executor_options, open_executor
from ..env import FAST_ENV
from ..io import atomic_write_json, atomic_write_text, prepare_run_dir, repo_root

__all__ = [
    "NOTEBOOK_PATTERN",
    "aggregate",
    "default_figures_dir",
    "default_notebooks_dir",
    "expand_grid",
    "find_notebooks",
    "has_outputs",
    "notebook_parameters",
    "parse_value",
    "run_grid",
    "run_sweep",
    "run_workbook",
    "setting_dirname",
    "sweep_main",
    "to_markdown",
    "workbook_main",
]

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[A-Za-z0-9][A-Za-z0-9_\-]*\.ipynb$")
KERNEL_NAME = "python3"
DEFAULT_TIMEOUT_S = 3600  # per notebook cell; full (non-quick) training cells take minutes
SEED_KEY = "seed"


# ------------------------------------------------------------------ locations


def default_notebooks_dir() -> Path:
    """``notebooks/`` of the checkout."""
    return repo_root() / "notebooks"


def default_figures_dir() -> Path:
    """``figures/`` of the checkout, computed at run time (never a stored path)."""
    return repo_root() / "figures"


def _timestamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def _fresh_timestamped_dir(parent: Path, prefix: str = "") -> Path:
    """Create ``parent/<prefix><timestamp>`` (suffix ``-2``, ``-3``… if taken this second)."""
    parent.mkdir(parents=True, exist_ok=True)
    base = f"{prefix}{_timestamp()}"
    for i in itertools.count(1):
        path = parent / (base if i == 1 else f"{base}-{i}")
        try:
            # mkdir without exist_ok is atomic, so two runs started together never share one.
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def _out_dir(out: str | Path | None, default_prefix: str) -> Path:
    """Resolve ``--out``: a given folder must be new or empty; none means a fresh one."""
    if out is None or str(out) == "":
        return _fresh_timestamped_dir(repo_root() / "runs", default_prefix).resolve()
    return prepare_run_dir(Path(out)).resolve()


# ------------------------------------------------------------------ notebooks and parameters


def find_notebooks(notebooks_dir: str | Path, only: Sequence[str] | None = None) -> list[Path]:
    """The ``NN_name.ipynb`` notebooks of a folder in order, optionally only numbers ``only``."""
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise FileNotFoundError(f"{notebooks_dir}: notebooks folder not found")
    found = sorted(p for p in notebooks_dir.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))
    if not only:
        return found
    by_number: dict[str, list[Path]] = {}
    for p in found:
        by_number.setdefault(p.name[:2], []).append(p)
    wanted = []
    for item in only:
        key = item.strip()
        key = key.zfill(2) if key.isdigit() else key
        if key not in by_number:
            have = ", ".join(sorted(by_number)) or "none"
            raise ValueError(f"--only {item!r}: no notebook numbered {key} in {notebooks_dir} "
                             f"(numbers found: {have})")
        wanted.extend(p for p in by_number[key] if p not in wanted)
    return sorted(wanted)


def parse_value(text: str) -> Any:
    """Parse a command-line value like papermill's ``-p``: bool, None, int, float, else str."""
    if text == "True":
        return True
    if text == "False":
        return False
    if text == "None":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def notebook_parameters(path: str | Path) -> dict[str, dict[str, Any]]:
    """Parameters of a notebook's ``parameters`` cell: name -> {inferred_type_name, default, help}."""
    import papermill
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: notebook not found")
    return {name: dict(info) for name, info in papermill.inspect_notebook(str(path)).items()}


def _check_parameter_names(path: Path, names: Sequence[str], declared: Mapping[str, Any]) -> None:
    unknown = [n for n in names if n not in declared]
    if unknown:
        listed = ", ".join(declared) or "(none: the notebook has no cell tagged 'parameters')"
        raise ValueError(f"{path.name}: unknown parameter(s) {', '.join(unknown)}; "
                         f"the notebook's parameters are: {listed}")


# ------------------------------------------------------------------ executing one notebook


def _is_kernel_start_clash(err: BaseException) -> bool:
    """A kernel that could not bind its ports (parallel starts race for free ports)."""
    text = f"{type(err).__name__}: {err}"
    return ("ZMQError" in text or "Address already in use" in text
            or "Kernel died before replying to kernel_info" in text)


def _source_cell_index(input_path: Path, executed_index: int, injected: bool) -> int:
    """Map a notebook cell index of the executed copy back to the source notebook.

    papermill inserts its ``injected-parameters`` cell right after the ``parameters`` cell
    (or first, when there is none), so later cells shift by one.
    """
    if not injected:
        return executed_index
    import nbformat
    nb = nbformat.read(input_path, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    injected_at = tagged[0] + 1 if tagged else 0
    return executed_index - 1 if executed_index > injected_at else executed_index


def _last_started_cell(output_path: Path, input_path: Path, injected: bool) -> int | None:
    """Source index of the last notebook cell the kernel started (where a timeout or crash
    struck)."""
    import nbformat
    try:
        nb = nbformat.read(output_path, as_version=4)
    except (OSError, ValueError):
        return None
    started = [i for i, c in enumerate(nb.cells)
               if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    return _source_cell_index(input_path, started[-1], injected) if started else None


def _ensure_papermill_logging() -> None:
    """Make papermill's ``log_output`` visible when nobody configured logging."""
    logger = logging.getLogger("papermill")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _execute(input_path: str, output_path: str, parameters: dict[str, Any], cwd: str,
             timeout: float | None, progress_bar: bool = False, log_output: bool = False) -> dict:
    """Run one notebook with papermill; never raises for notebook errors, returns a record.

    The record has ``status`` ("ok", "failed": a notebook cell raised, "error": the run itself broke,
    e.g. timeout or dead kernel), ``wall_s`` and, when not ok, ``error`` with the details.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    if log_output:
        _ensure_papermill_logging()
    start = time.perf_counter()
    record: dict[str, Any] = {"status": "ok", "error": None}
    for attempt in (1, 2):
        try:
            papermill.execute_notebook(
                input_path, output_path, parameters=parameters or None,
                kernel_name=KERNEL_NAME, cwd=cwd, execution_timeout=timeout,
                progress_bar=progress_bar, log_output=log_output)
            record = {"status": "ok", "error": None}
        except PapermillExecutionError as err:
            source = str(err.source or "")
            first = next((ln for ln in source.splitlines() if ln.strip()), "")
            record = {"status": "failed", "error": {
                "cell_index": _source_cell_index(Path(input_path), err.cell_index, bool(parameters)),
                "execution_count": err.exec_count,
                "ename": err.ename,
                "evalue": err.evalue,
                "source_first_line": first,
            }}
        except Exception as err:  # noqa: BLE001 - a broken run is reported, not fatal
            if attempt == 1 and _is_kernel_start_clash(err):
                continue  # retry once: another process took the port between pick and bind
            lines = str(err).strip().splitlines()
            record = {"status": "error", "error": {
                "ename": type(err).__name__, "evalue": lines[0] if lines else "",
                "cell_index": _last_started_cell(Path(output_path), Path(input_path),
                                                 bool(parameters))}}
        break
    record["wall_s"] = round(time.perf_counter() - start, 2)
    return record


def _describe(record: dict) -> str:
    """One or two lines saying how a run went (which notebook cell failed, and why)."""
    if record["status"] == "ok":
        return "ok"
    err = record["error"] or {}
    if record["status"] == "failed":
        return (f"FAILED at notebook cell {err['cell_index']} (0-based, source notebook; "
                f"In [{err['execution_count']}]): {err['ename']}: {err['evalue']}\n"
                f"    > {err['source_first_line']}")
    where = "" if err.get("cell_index") is None else f" in notebook cell {err['cell_index']} (0-based)"
    return f"ERROR{where}: {err.get('ename')}: {err.get('evalue')}"


# ------------------------------------------------------------------ workbook


def _notebook_job(job: dict) -> dict:
    """Worker: execute one workbook notebook (a module-level function, so it pickles)."""
    return _execute(job["input"], job["output"], job["parameters"], job["cwd"], job["timeout"],
                    job["progress_bar"], job["log_output"])


def _git_commit(root: Path) -> str | None:
    """The checkout's commit (for the record), or None outside git."""
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _environment() -> dict[str, Any]:
    import ecmlib
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "ecmlib": ecmlib.__version__,
            "git_commit": _git_commit(repo_root())}


def _table(rows: list[dict], columns: Sequence[str]) -> str:
    return to_markdown(pd.DataFrame(rows, columns=list(columns)))


def run_workbook(notebooks_dir: str | Path | None = None, out: str | Path | None = None,
                 only: Sequence[str] | None = None, quick: bool = False,
                 timeout: float | None = DEFAULT_TIMEOUT_S, jobs: int = 1,
                 figures_dir: str | Path | None = None, command: str | None = None,
                 executor: str | None = None, scheduler: Any = None, slurm: bool = False,
                 slurm_opts: Sequence[str] | Mapping[str, Any] | None = None,
                 gpu: bool = False, update_figures: bool = False) -> dict:
    """Execute the workbook's notebooks in order into a fresh folder; return the summary.

    Each notebook gets ``out_dir`` (``<out>/NN_name/``), ``figures_dir`` and, with ``quick``,
    ``quick=True`` (each only if its parameters cell declares it). ``jobs > 1`` runs notebooks
    side by side, which is only right when they do not read each other's outputs.
    ``executor``, ``scheduler``, ``slurm``, ``slurm_opts``, ``gpu``: where the notebooks run
    (:func:`ecmlib.studies.executor.open_executor`; by default here, one after another, and with
    ``jobs > 1`` on a local Dask cluster). With a scheduler, notebooks still run one at a
    time unless ``jobs > 1``, and the output folder must be one the workers see.

    Figures go to ``<out>/figures`` so that a run never changes the checkout;
    ``update_figures`` writes them over the committed ``figures/`` instead (the maintainers'
    ``make figures``), and ``figures_dir`` names any other folder.
    """
    notebooks_dir = Path(notebooks_dir) if notebooks_dir else default_notebooks_dir()
    # Check every notebook before creating anything, so a bad call leaves no folder behind.
    declared_by_nb = _checked_notebooks(notebooks_dir, only, quick, jobs,
                                        update_figures and (quick or bool(figures_dir)))
    out_path = _out_dir(out, "")
    # A run's figures stay beside the run: the checkout changes only when asked to.
    if figures_dir:
        figures_dir = Path(figures_dir).resolve()
    else:
        figures_dir = default_figures_dir() if update_figures else out_path / "figures"
    jobs_list = _workbook_jobs(declared_by_nb, out_path, Path(figures_dir), quick, timeout)

    summary: dict[str, Any] = {
        "command": command, "started": datetime.now().isoformat(timespec="seconds"),
        "notebooks_dir": str(notebooks_dir), "quick": quick, "timeout_per_cell_s": timeout,
        "jobs": jobs, "environment": _environment(), "notebooks": [],
    }
    results: dict[str, dict] = {}
    start = time.perf_counter()

    def finish(job: dict, record: dict, bar: tqdm) -> None:
        entry = {"notebook": job["name"], **record, "executed": Path(job["output"]).name,
                 "out_dir": job["name"], "parameters": {
                     k: (Path(v).name if k == "out_dir" else v) for k, v in job["parameters"].items()
                     if k != "figures_dir"}}
        results[job["name"]] = entry
        bar.update(1)
        tqdm.write(f"{job['name']}: {_describe(record)} ({record['wall_s']:.1f} s)")
        summary["notebooks"] = [results[j["name"]] for j in jobs_list if j["name"] in results]
        # Rewritten after every notebook, so a crash still leaves a record of what ran.
        atomic_write_json(out_path / "summary.json", summary)

    pool = open_executor(executor, scheduler, min(jobs, len(jobs_list)), len(jobs_list),
                         slurm=slurm, slurm_opts=slurm_opts, gpu=gpu, log=tqdm.write)
    summary["executor"] = pool.description
    if pool.client is None:  # on this machine: the notebooks' output reaches this terminal
        # A per-cell bar only for a person at a terminal running one notebook at a time;
        # otherwise stream the notebooks' output into the log (CI, make workbook | tee).
        interactive = sys.stderr.isatty()
        for job in jobs_list:
            job.update(progress_bar=interactive and jobs == 1,
                       log_output=not interactive and jobs == 1)
    with pool, tqdm(total=len(jobs_list), desc="workbook", unit="notebook") as bar:
        if jobs == 1:
            for job in jobs_list:
                bar.set_postfix_str(job["name"])
                finish(job, _cell_result(pool.submit(_notebook_job, job)), bar)
        else:
            for i, fut in _as_done(pool, _notebook_job, dict(enumerate(jobs_list))):
                finish(jobs_list[i], _cell_result(fut), bar)

    summary["finished"] = datetime.now().isoformat(timespec="seconds")
    summary["total_wall_s"] = round(time.perf_counter() - start, 2)
    summary["failed"] = [e["notebook"] for e in summary["notebooks"] if e["status"] != "ok"]
    atomic_write_json(out_path / "summary.json", summary)
    summary["out_dir"] = str(out_path)
    return summary


def _checked_notebooks(notebooks_dir: Path, only: Sequence[str] | None, quick: bool,
                       jobs: int, figures_clash: bool) -> dict[Path, dict[str, Any]]:
    """{notebook: its declared parameters}, after every check of a workbook call."""
    notebooks = find_notebooks(notebooks_dir, only)
    if not notebooks:
        raise FileNotFoundError(f"{notebooks_dir}: no NN_name.ipynb notebooks to run")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    declared_by_nb = {nb: notebook_parameters(nb) for nb in notebooks}
    if quick:
        lacking = [nb.name for nb, d in declared_by_nb.items() if "quick" not in d]
        if lacking:
            raise ValueError(f"--quick given but these notebooks have no 'quick' parameter: "
                             f"{', '.join(lacking)}")
    if figures_clash:
        raise ValueError("--update-figures refreshes figures/ from a full run: it does not "
                         "go with --quick or --figures-dir")
    return declared_by_nb


def _workbook_jobs(declared_by_nb: Mapping[Path, Mapping[str, Any]], out_path: Path,
                   figures_dir: Path, quick: bool, timeout: float | None) -> list[dict]:
    """One papermill job per notebook, each with its own output folder (created here)."""
    jobs_list = []
    for nb, declared in declared_by_nb.items():
        params: dict[str, Any] = {}
        nb_out = out_path / nb.stem
        nb_out.mkdir()
        if "out_dir" in declared:
            params["out_dir"] = str(nb_out)
        if "figures_dir" in declared:
            params["figures_dir"] = str(figures_dir)
        if quick:
            params["quick"] = True
        jobs_list.append({
            "name": nb.stem, "input": str(nb.resolve()), "output": str(out_path / nb.name),
            "parameters": params, "cwd": str(nb.parent.resolve()), "timeout": timeout,
            "progress_bar": False, "log_output": False,
        })
    return jobs_list


def _as_done(pool: Executor, fn: Callable[[Any], Any], items: Mapping[Any, Any]):
    """``(key, future)`` as the cells ``fn(item)`` finish; an inline pool runs each when asked
    (so results are recorded, and bars move, one cell at a time)."""
    if getattr(pool, "kind", None) == "inline":
        for key, item in items.items():
            yield key, pool.submit(fn, item)
        return
    futures = {pool.submit(fn, item): key for key, item in items.items()}
    for fut in as_completed(futures):
        yield futures[fut], fut


def _cell_result(fut: Future) -> dict:
    """A cell's record; a cell that raised (or whose workers kept dying) is an "error" record."""
    try:
        return fut.result()
    except Exception as err:  # noqa: BLE001 - a broken cell is reported, not fatal
        lines = str(err).strip().splitlines()
        return {"status": "error", "wall_s": math.nan, "metrics": {},
                "error": {"ename": type(err).__name__, "evalue": lines[0] if lines else "",
                          "cell_index": None}}


def _workbook_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ecmlib workbook",
        description="Execute every notebooks/NN_name.ipynb in order with papermill into a "
                    "fresh runs/<YYYYmmdd-HHMMSS>/ folder (executed copies, each notebook's "
                    "outputs in NN_name/, summary.json, figures/). The committed figures/ "
                    "change only with --update-figures.")
    p.add_argument("--quick", action="store_true", help="pass quick=True (small CI-sized runs)")
    p.add_argument("--only", help="comma list of notebook numbers, e.g. 01,03")
    p.add_argument("--out", help="output folder, new or empty (default: runs/<timestamp>)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds per notebook cell before the notebook is stopped (default {DEFAULT_TIMEOUT_S})")
    add_executor_args(p, "notebooks run side by side (default 1; >1 only if they are "
                         "independent)")
    p.add_argument("--notebooks-dir", help="folder of NN_name.ipynb notebooks (default: notebooks/)")
    p.add_argument("--figures-dir", help="folder the notebooks save figures into "
                                          "(default: the run folder's figures/)")
    p.add_argument("--update-figures", action="store_true",
                   help="save the figures over the committed figures/ (maintainers: "
                        "`make figures`, then commit what changed)")
    return p


def workbook_main(argv: list[str] | None = None) -> int:
    """``python -m ecmlib workbook``: 0 if every notebook ran, 1 if one failed, 2 on bad usage."""
    args = _workbook_parser().parse_args(sys.argv[1:] if argv is None else argv)
    only = [s for s in args.only.split(",") if s.strip()] if args.only else None
    command = "python -m ecmlib workbook " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        where = executor_options(args)
        if args.show_job_script:
            return _show_job_script(where)
        where["jobs"] = 1 if args.jobs is None else args.jobs
        summary = run_workbook(args.notebooks_dir, args.out, only, args.quick,
                               args.timeout, figures_dir=args.figures_dir,
                               command=command.strip(), executor=where.pop("kind"),
                               update_figures=args.update_figures, **where)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        print(f"error: {_usage_error(err)}", file=sys.stderr)
        return 2
    rows = [{"notebook": e["notebook"], "status": e["status"], "wall_s": f"{e['wall_s']:.1f}",
             "detail": "" if e["status"] == "ok" else _describe(e).splitlines()[0]}
            for e in summary["notebooks"]]
    print()
    print(_table(rows, ["notebook", "status", "wall_s", "detail"]))
    print(f"\ntotal wall time {summary['total_wall_s']:.1f} s; executed notebooks and "
          f"outputs in {summary['out_dir']}")
    if summary["failed"]:
        print(f"{len(summary['failed'])} of {len(rows)} notebook(s) failed: "
              f"{', '.join(summary['failed'])}", file=sys.stderr)
        return 1
    return 0


def _usage_error(err: BaseException) -> str:
    """What a command prints for an error before or while setting up its cells."""
    if isinstance(err, ImportError) and "dask_jobqueue" in str(err):
        return "--slurm needs dask-jobqueue: pip install 'ecmlib[slurm]'"
    if isinstance(err, OSError) and not isinstance(err, (FileNotFoundError, FileExistsError)):
        return f"{err} (is the Dask scheduler running and reachable?)"
    return str(err)


def _show_job_script(where: dict[str, Any]) -> int:
    from .executor import slurm_job_script
    print(slurm_job_script(where["slurm_opts"], where["gpu"]))
    return 0


# ------------------------------------------------------------------ grids


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of a parameter grid, first parameter varying slowest."""
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError("grid must be a non-empty mapping of parameter name -> list of values")
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ValueError(f"grid[{name!r}] must be a list of values, got {values!r}")
        if len(values) == 0:
            raise ValueError(f"grid[{name!r}] is empty")
        if len(set(map(repr, values))) != len(values):
            raise ValueError(f"grid[{name!r}] repeats a value: {list(values)!r}")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def _value_token(value: Any) -> str:
    # Folder names must survive every filesystem: keep a conservative alphabet.
    return re.sub(r"[^A-Za-z0-9._+\-]", "_", str(value))


def setting_dirname(params: Mapping[str, Any], seed_key: str = SEED_KEY) -> str:
    """``p1=v1__p2=v2__seed=s``: the folder of one run (the seed last, others in order)."""
    keys = [k for k in params if k != seed_key] + ([seed_key] if seed_key in params else [])
    return "__".join(f"{_value_token(k)}={_value_token(params[k])}" for k in keys)


def _call_grid_point(fn: Callable[..., Mapping[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    metrics = fn(**params)
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{getattr(fn, '__name__', fn)} must return a dict of metrics, "
                        f"got {type(metrics).__name__}")
    return dict(metrics)


def _failure_text(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def run_grid(fn: Callable[..., Mapping[str, Any]], grid: Mapping[str, Sequence[Any]],
             jobs: int | None = None, progress: bool = True, scheduler: Any = None,
             executor: str | Executor | None = None, gpu: bool = False) -> list[dict[str, Any]]:
    """Call ``fn(**params)`` for every point of ``grid``; return ``params | metrics`` per point.

    Where the points run (see :func:`ecmlib.studies.executor.open_executor`): by default a local
    Dask cluster of ``jobs`` workers (default: min(cores, grid size)), each point with
    ``cores // jobs`` torch threads; ``jobs=1`` runs in this process, so any function
    works. ``scheduler`` (``"tcp://HOST:PORT"``, a ``distributed.Client`` or a cluster;
    default ``$ECMLIB_SCHEDULER``) sends the points to an existing Dask cluster, whose
    workers must be able to import ``fn``'s module (a function defined in a notebook is
    shipped by value). ``executor="processes"`` uses a plain process pool (``fn`` must then
    be importable: defined in a module such as ``ecmlib``, not in a notebook); an
    ``Executor`` instance is used as given and left open. ``gpu=True``: every point asks
    for ``resources={"GPU": 1}``. Records come back in grid order; if any point raises
    (or its worker dies more often than Dask retries), the others still finish and a
    RuntimeError lists the failures.
    """
    points = expand_grid(grid)
    if jobs is not None and int(jobs) < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    given = executor if isinstance(executor, Executor) else None
    kind = None if given is not None else executor
    if kind == "processes" and getattr(fn, "__module__", None) == "__main__" and jobs != 1:
        raise ValueError(f"{getattr(fn, '__name__', fn)} is defined in __main__ (a notebook or "
                         f"script), which worker processes cannot import: move it into a "
                         f"module (e.g. ecmlib), use the Dask executor or jobs=1")
    results: list[dict | None] = [None] * len(points)
    failures: list[str] = []

    def keep(i: int, fut: Future) -> None:
        try:
            metrics = fut.result()
            clash = set(metrics) & set(points[i])
            if clash:
                raise ValueError(f"metric name(s) {sorted(clash)} clash with grid parameters")
            results[i] = {**points[i], **metrics}
        except Exception as err:  # noqa: BLE001 - collected and raised below
            failures.append(f"{points[i]}: {_failure_text(err)}")

    say = tqdm.write if progress else None
    pool = given or open_executor(kind, scheduler, jobs, len(points), gpu=gpu, log=say)
    try:
        with tqdm(total=len(points), desc="grid", unit="run", disable=not progress) as bar:
            call = functools.partial(_call_grid_point, fn)
            for i, fut in _as_done(pool, call, dict(enumerate(points))):
                keep(i, fut)
                bar.update(1)
    finally:
        if given is None:
            pool.shutdown()
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(points)} grid point(s) failed:\n  "
                           + "\n  ".join(failures))
    return [r for r in results if r is not None]


# ------------------------------------------------------------------ aggregation


def _is_number(value: Any) -> bool:
    # numbers.Real takes numpy scalars too; bool is an int, but a flag is no metric to average.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"mAP": {"0.5": 0.3}}`` -> ``{"mAP.0.5": 0.3}`` (lists are left out)."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif not isinstance(value, (list, tuple)):
            flat[name] = value
    return flat


def aggregate(records: Sequence[Mapping[str, Any]], group_keys: Sequence[str],
              seed_key: str = SEED_KEY, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, std (ddof=1) and count of every numeric metric per setting, over seeds.

    One row per distinct combination of ``group_keys`` (in first-seen order) with columns
    ``*group_keys, n, seeds, <m>_mean, <m>_std, <m>_n``. Numeric metrics are the other keys
    whose values are numbers (not bools; numpy scalars count, tensors need ``.item()``);
    ``metrics`` picks a subset. Missing values (NaN,
    None) are left out of that metric's statistics and its ``<m>_n``.
    """
    if not records:
        raise ValueError("no records to aggregate")
    group_keys = list(group_keys)
    df = pd.DataFrame([dict(r) for r in records])
    missing = [k for k in group_keys if k not in df.columns]
    if missing:
        raise ValueError(f"group key(s) {missing} not in the records (keys: {list(df.columns)})")
    skip = set(group_keys) | {seed_key}
    numeric = [c for c in df.columns if c not in skip
               and df[c].map(lambda v: _is_number(v) or v is None).all()
               and df[c].map(_is_number).any()]
    if metrics is not None:
        unknown = [m for m in metrics if m not in numeric]
        if unknown:
            raise ValueError(f"metric(s) {unknown} not found among the numeric metrics: "
                             f"{', '.join(numeric) or '(none)'}")
        numeric = list(metrics)
    if not numeric:
        raise ValueError(f"no numeric metrics in the records (keys: {list(df.columns)})")
    values = df[numeric].apply(pd.to_numeric, errors="coerce").astype(float)

    # A constant key column stands in when nothing but the seed varies.
    keys = group_keys or ["__all__"]
    frame = pd.concat([df[group_keys].astype(object), values], axis=1)
    frame["__all__"] = 0
    if seed_key in df.columns:
        frame["__seed__"] = df[seed_key]
    rows = []
    for key, group in frame.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(group_keys, key[:len(group_keys)]))
        row["n"] = len(group)
        if "__seed__" in group:
            row["seeds"] = ",".join(str(s) for s in group["__seed__"])
        for m in numeric:
            col = group[m].dropna()
            row[f"{m}_mean"] = col.mean() if len(col) else math.nan
            row[f"{m}_std"] = col.std(ddof=1) if len(col) > 1 else math.nan
            row[f"{m}_n"] = len(col)
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(value: Any, precision: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{precision}g}"
    return str(value)


def to_markdown(df: pd.DataFrame, precision: int = 4) -> str:
    """A GitHub markdown table of ``df``; ``m_mean``/``m_std`` pairs become ``mean ± std``.

    ``m_n`` columns are dropped, and noted as ``(n=k)`` in a cell only where fewer runs than
    the row's ``n`` reported the metric. Floats get ``precision`` significant digits.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"to_markdown expects a pandas DataFrame, got {type(df).__name__}")
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()
    pairs = {c[:-5] for c in df.columns if isinstance(c, str) and c.endswith("_mean")
             and f"{c[:-5]}_std" in df.columns}
    header: list[str] = []
    cells: list[list[str]] = [[] for _ in range(len(df))]
    for col in df.columns:
        name = str(col)
        if name.endswith("_std") and name[:-4] in pairs:
            continue
        if name.endswith("_n") and name[:-2] in pairs:
            continue
        if name.endswith("_mean") and name[:-5] in pairs:
            m = name[:-5]
            header.append(m)
            for i, (_, row) in enumerate(df.iterrows()):
                text = _fmt(row[f"{m}_mean"], precision)
                std = _fmt(row[f"{m}_std"], precision)
                if text and std:
                    text = f"{text} ± {std}"
                if f"{m}_n" in df.columns and "n" in df.columns and row[f"{m}_n"] != row["n"]:
                    text = f"{text} (n={row[f'{m}_n']})".strip()
                cells[i].append(text)
            continue
        header.append(name)
        for i, value in enumerate(df[col].tolist()):
            cells[i].append(_fmt(value, precision))

    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    header = [esc(h) for h in header]
    cells = [[esc(c) for c in row] for row in cells]
    widths = [max([len(h), 3] + [len(r[j]) for r in cells]) for j, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "| " + " | ".join("-" * w for w in widths) + " |"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ papermill sweeps


CELL_FILE = "cell.json"          # a cell's record, written last inside its folder
PARTIAL_PREFIX = ".partial-"     # a cell being written (renamed to its name when complete)
STALE_PREFIX = ".stale-"         # a folder set aside on resume (a failed cell re-run, ...)


def _read_cell(run_dir: Path) -> dict | None:
    """The record of a finished cell folder, or None when the cell has not finished."""
    try:
        record = json.loads((run_dir / CELL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "status" in record else None


def _where_am_i() -> str:
    """host:pid of this process (the worker that ran a cell)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _sweep_job(job: dict) -> dict:
    """Worker: execute one setting of a sweep and publish its folder atomically.

    The notebook runs into ``<out>/.partial-<name>-<random>/`` (its executed copy beside it
    until it ends, so the notebook finds an empty run folder); its ``metrics.json`` is read
    back, the record is written as ``cell.json`` and the folder is renamed to ``<out>/<name>``
    in one step, so a cell folder under its own name is always complete. A killed worker
    leaves only a ``.partial-`` folder (removed by the sweep). If another attempt of the same
    cell published first (Dask re-ran a cell whose worker it thought lost), its record wins.
    """
    final = Path(job["run_dir"])
    published = _read_cell(final)
    if published is not None:
        return published
    tmp = final.parent / f"{PARTIAL_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    executed = tmp.with_name(f"{tmp.name}.ipynb")
    params = {**job["parameters"], "out_dir": str(tmp)}
    if "figures_dir" in params:
        # Runs side by side must not overwrite each other's (or the repo's) figures.
        params["figures_dir"] = str(tmp / "figures")
    record = _execute(job["input"], str(executed), params, job["cwd"], job["timeout"])
    if executed.is_file() and tmp.is_dir():
        os.replace(executed, tmp / Path(job["input"]).name)
    record["metrics"] = {}
    if record["status"] == "ok":
        try:
            metrics = json.loads((tmp / "metrics.json").read_text(encoding="utf-8"))
            if not isinstance(metrics, dict):
                raise ValueError("metrics.json does not hold a JSON object")
            record["metrics"] = _flatten(metrics)
        except FileNotFoundError:
            record["status"] = "error"
            record["error"] = {"ename": "FileNotFoundError", "evalue":
                               "the notebook wrote no metrics.json into its out_dir"}
        except ValueError as err:
            record["status"] = "error"
            record["error"] = {"ename": type(err).__name__, "evalue": f"metrics.json: {err}"}
    record["worker"] = _where_am_i()
    if not tmp.is_dir():  # swept away meanwhile (a resumed sweep took over): publish nothing
        raise RuntimeError(f"{tmp}: the cell's folder vanished while it ran")
    atomic_write_json(tmp / CELL_FILE, record)
    try:
        os.rename(tmp, final)
    except OSError:
        published = _read_cell(final)
        shutil.rmtree(tmp, ignore_errors=True)
        if published is None:
            raise
        return published
    return record


def quick_overrides(notebook: str | Path) -> set[str]:
    """The parameters a notebook assigns itself under ``if quick:`` (read from its code,
    so a sweep can refuse to sweep a value that quick mode would replace)."""
    import ast
    import nbformat
    names: set[str] = set()
    for cell in nbformat.read(str(notebook), as_version=4).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics: not parameter assignments
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                    and node.test.id == "quick":
                for sub in node.body:
                    for target in ast.walk(sub):
                        if isinstance(target, ast.Name) and isinstance(target.ctx, ast.Store):
                            names.add(target.id)
    return names & set(notebook_parameters(Path(notebook)))


def _grid_spec(notebook: Path, grid: Mapping[str, Sequence[Any]], quick: bool) -> dict:
    """What identifies a sweep folder's grid (compared when a sweep is resumed)."""
    return {"notebook": notebook.name, "quick": bool(quick),
            "fast": os.environ.get(FAST_ENV) == "1",
            "grid": json.loads(json.dumps([[k, list(v)] for k, v in grid.items()]))}


def _sweep_folder(out_dir: str | Path | None, notebook: Path, spec: dict) -> tuple[Path, bool]:
    """(folder, resumed): a fresh or empty folder, or an earlier sweep of the same grid."""
    if out_dir is not None and str(out_dir) != "":
        path = Path(out_dir)
        stored_file = path / "sweep.json"
        if stored_file.is_file():
            try:
                stored = json.loads(stored_file.read_text(encoding="utf-8"))
            except ValueError as err:
                raise ValueError(f"{stored_file}: unreadable ({err}); cannot resume it") from None
            have = {"notebook": Path(str(stored.get("notebook", ""))).name,
                    "quick": bool(stored.get("quick", False)),
                    "fast": bool(stored.get("fast", False)),
                    "grid": [[k, list(v)] for k, v in (stored.get("grid") or {}).items()]}
            if have != spec:
                def show(s: dict) -> str:
                    grid = " ".join(f"-p {k} {' '.join(map(str, v))}" for k, v in s["grid"])
                    return (f"{s['notebook']} {grid}{' --quick' if s['quick'] else ''}"
                            f"{' --fast' if s.get('fast') else ''}")
                raise ValueError(
                    f"{path} holds a sweep of a different grid, so it cannot be resumed:\n"
                    f"  in the folder: {show(have)}\n  this command:  {show(spec)}\n"
                    f"give the same notebook, -p values (in the same order) and --quick to "
                    f"resume it, or another --out")
            return path.resolve(), True
    return _out_dir(out_dir, f"sweep-{notebook.stem}-"), False


def _clean_partials(out_path: Path) -> None:
    for p in out_path.glob(f"{PARTIAL_PREFIX}*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _set_aside(run_dir: Path) -> None:
    """Move a cell folder out of the way before the cell runs again."""
    if run_dir.exists():
        os.rename(run_dir, run_dir.with_name(f"{STALE_PREFIX}{run_dir.name}-{_timestamp()}-"
                                             f"{uuid.uuid4().hex[:4]}"))


def _run_row(job: dict, result: dict) -> dict:
    """One row of runs.csv.

    A metric named like a parameter (a notebook's metrics.json echoing its ``seed``) is
    dropped when it equals the parameter; a different value makes the run an error.
    """
    metrics = dict(result.get("metrics") or {})
    clash = [k for k in metrics if k in job["params"]]
    differ = [f"{k}={metrics[k]!r} (the sweep set {job['params'][k]!r})" for k in clash
              if metrics[k] != job["params"][k]]
    for k in clash:
        del metrics[k]
    if differ and result["status"] == "ok":
        result = {**result, "status": "error", "error": {
            "ename": "ValueError", "evalue": f"metrics.json reports {', '.join(differ)}"}}
    return {**job["params"], **metrics, "status": result["status"],
            "wall_s": result.get("wall_s"), "run_dir": job["name"],
            "error": _describe(result) if result["status"] != "ok" else "",
            "worker": result.get("worker", "")}


def _execute_sweep(notebook: str | Path, grid: Mapping[str, Sequence[Any]],
                   out_dir: str | Path | None = None, jobs: int | None = None,
                   quick: bool = False, timeout: float | None = DEFAULT_TIMEOUT_S,
                   metrics: Sequence[str] | None = None, command: str | None = None,
                   executor: str | None = None, scheduler: Any = None, slurm: bool = False,
                   slurm_opts: Sequence[str] | Mapping[str, Any] | None = None,
                   gpu: bool = False, rerun_failed: bool = False,
                   ) -> tuple[list[dict], pd.DataFrame | None, Path]:
    """Run (or resume) a papermill sweep; return (per-run records, aggregate or None, folder)."""
    notebook = Path(notebook)
    declared = notebook_parameters(notebook)
    _check_parameter_names(notebook, list(grid), declared)
    if "out_dir" not in declared:
        raise ValueError(f"{notebook.name}: has no 'out_dir' parameter, so runs cannot write "
                         f"their metrics.json where the sweep reads them")
    reserved = {"out_dir", "figures_dir"} & set(grid)
    if reserved:
        raise ValueError(f"{', '.join(sorted(reserved))} is set by the sweep for each run")
    if quick and "quick" in grid:
        raise ValueError("give either --quick or -p quick ..., not both")
    if quick and "quick" not in declared:
        raise ValueError(f"{notebook.name}: --quick given but the notebook has no 'quick' parameter")
    points = expand_grid(grid)
    names = [setting_dirname(p) for p in points]
    if len(set(names)) != len(names):
        raise ValueError("two settings map to the same folder name; use values that differ "
                         "in letters, digits or . _ + -")
    if jobs is not None and int(jobs) < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if quick:
        replaced = [k for k in grid if k in quick_overrides(notebook)]
        if replaced:
            raise ValueError(
                f"{notebook.name}: quick mode sets {', '.join(replaced)} itself, so the swept "
                f"values would be replaced and the results mislabelled; sweep "
                f"{', '.join(replaced)} without --quick, or drop the -p")
    out_path, resumed = _sweep_folder(out_dir, notebook, _grid_spec(notebook, grid, quick))
    # One sweep writes into a folder at a time (a second is refused, naming the first).
    with runlock.hold(out_path, "sweep"):
        job_list = _sweep_jobs(notebook, points, names, out_path, declared, quick, timeout)
        return _sweep_in(notebook, grid, job_list, out_path, resumed, jobs, quick, timeout,
                         metrics, command, executor, scheduler, slurm, slurm_opts, gpu,
                         rerun_failed)


def _sweep_jobs(notebook: Path, points: Sequence[Mapping[str, Any]], names: Sequence[str],
                out_path: Path, declared: Mapping[str, Any], quick: bool,
                timeout: float | None) -> list[dict]:
    """One job per setting of the grid: its parameters, folder and notebook."""
    job_list = []
    for params, name in zip(points, names):
        nb_params = {**params, "out_dir": str(out_path / name)}
        if "figures_dir" in declared:
            nb_params["figures_dir"] = str(out_path / name / "figures")
        if quick:
            nb_params["quick"] = True
        job_list.append({"params": params, "name": name, "run_dir": str(out_path / name),
                         "input": str(notebook.resolve()), "parameters": nb_params,
                         "cwd": str(notebook.parent.resolve()), "timeout": timeout})
    return job_list


def _sweep_in(notebook: Path, grid: Mapping[str, Sequence[Any]], job_list: list[dict],
              out_path: Path, resumed: bool, jobs: int | None, quick: bool,
              timeout: float | None, metrics: Sequence[str] | None, command: str | None,
              executor: str | None, scheduler: Any, slurm: bool,
              slurm_opts: Sequence[str] | Mapping[str, Any] | None, gpu: bool,
              rerun_failed: bool) -> tuple[list[dict], pd.DataFrame | None, Path]:
    """The body of :func:`_execute_sweep` in its checked, locked folder."""
    # Resume: finished cells are kept (failed ones too, unless rerun_failed); a folder that
    # is not a finished cell is set aside; what a killed attempt left half-written goes.
    records: list[dict | None] = [None] * len(job_list)
    todo: list[int] = []
    for i, job in enumerate(job_list):
        done = _read_cell(Path(job["run_dir"])) if resumed else None
        if done is not None and (done["status"] == "ok" or not rerun_failed):
            records[i] = _run_row(job, done)
        else:
            _set_aside(Path(job["run_dir"]))
            todo.append(i)
    if resumed:
        _clean_partials(out_path)
        tqdm.write(f"resuming {out_path}: {len(job_list) - len(todo)} of {len(job_list)} "
                   f"cell(s) already done, {len(todo)} to run")
    info: dict[str, Any] = {
        "command": command, "notebook": str(notebook), "grid": {k: list(v) for k, v in grid.items()},
        "quick": quick, "fast": os.environ.get(FAST_ENV) == "1", "jobs": jobs,
        "timeout_per_cell_s": timeout,
        "metrics": list(metrics) if metrics else None, "status": "running",
        "started": datetime.now().isoformat(timespec="seconds"),
        "kept": [job_list[i]["name"] for i in range(len(job_list)) if records[i] is not None],
        "environment": _environment()}
    atomic_write_json(out_path / "sweep.json", info)

    def write_runs() -> None:
        done = [r for r in records if r is not None]
        if done:
            atomic_write_text(out_path / "runs.csv", pd.DataFrame(done).to_csv(index=False))

    write_runs()
    start = time.perf_counter()
    if todo:
        pool = open_executor(executor, scheduler, jobs, len(todo), slurm=slurm,
                             slurm_opts=slurm_opts, gpu=gpu, log=tqdm.write)
        info["executor"] = pool.description
        with pool, tqdm(total=len(todo), desc=f"sweep {notebook.stem}", unit="run") as bar:
            for i, fut in _as_done(pool, _sweep_job, {i: job_list[i] for i in todo}):
                job = job_list[i]
                result = _cell_result(fut)
                records[i] = _run_row(job, result)
                write_runs()  # after every cell: an interrupted sweep still shows what ran
                bar.update(1)
                wall = result.get("wall_s")
                took = f" ({wall:.1f} s)" if isinstance(wall, float) and math.isfinite(wall) else ""
                tqdm.write(f"{job['name']}: {_describe(result)}{took}")
        _clean_partials(out_path)
    done = [r for r in records if r is not None]
    table = _write_aggregate(out_path, notebook, grid, done, metrics)
    info.update(status="finished", ran=[job_list[i]["name"] for i in todo],
                total_wall_s=round(time.perf_counter() - start, 2),
                failed=[r["run_dir"] for r in done if r["status"] != "ok"])
    atomic_write_json(out_path / "sweep.json", info)
    return done, table, out_path


def _write_aggregate(out_path: Path, notebook: Path, grid: Mapping[str, Sequence[Any]],
                     done: list[dict], metrics: Sequence[str] | None) -> pd.DataFrame | None:
    """sweep.csv and sweep.md from the finished runs (removed when none succeeded)."""
    ok = [r for r in done if r["status"] == "ok"]
    group_keys = [k for k in grid if k != SEED_KEY]
    table = None
    if ok:
        strip = ("status", "wall_s", "run_dir", "error", "worker")
        table = aggregate([{k: v for k, v in r.items() if k not in strip} for r in ok],
                          group_keys, SEED_KEY, metrics)
        atomic_write_text(out_path / "sweep.csv", table.to_csv(index=False))
        failed_note = "" if len(ok) == len(done) else (
            f"\n{len(done) - len(ok)} of {len(done)} runs failed and are left out (runs.csv).\n")
        atomic_write_text(out_path / "sweep.md",
                          f"Sweep of `{notebook.name}` (mean ± std over seeds, ddof=1; "
                          f"n = runs per setting)\n\n{to_markdown(table)}{failed_note}")
    else:
        for stale in ("sweep.csv", "sweep.md"):  # an earlier aggregate no longer holds
            (out_path / stale).unlink(missing_ok=True)
    return table


def run_sweep(notebook: str | Path, grid: Mapping[str, Sequence[Any]],
              out_dir: str | Path | None = None, jobs: int | None = None, quick: bool = False,
              timeout: float | None = DEFAULT_TIMEOUT_S,
              metrics: Sequence[str] | None = None, *, executor: str | None = None,
              scheduler: Any = None, slurm: bool = False,
              slurm_opts: Sequence[str] | Mapping[str, Any] | None = None, gpu: bool = False,
              rerun_failed: bool = False) -> pd.DataFrame:
    """Run ``notebook`` over the Cartesian ``grid`` with papermill; return the aggregate.

    Writes ``runs.csv``, ``sweep.csv``, ``sweep.md`` and ``sweep.json`` into ``out_dir``
    (new or empty, or an earlier sweep of the same grid, which is resumed: finished cells
    are kept, missing ones run, failed ones only with ``rerun_failed``; default
    ``runs/sweep-<name>-<timestamp>``). ``executor``, ``scheduler``, ``slurm``,
    ``slurm_opts``, ``gpu``: where the cells run (:func:`ecmlib.studies.executor.open_executor`).
    Raises RuntimeError, after writing those files, if any run failed.
    """
    records, table, out_path = _execute_sweep(
        notebook, grid, out_dir, jobs, quick, timeout, metrics, executor=executor,
        scheduler=scheduler, slurm=slurm, slurm_opts=slurm_opts, gpu=gpu,
        rerun_failed=rerun_failed)
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(records)} runs failed (see {out_path}/runs.csv):\n  "
                           + "\n  ".join(f"{r['run_dir']}: {r['error']}" for r in failed))
    assert table is not None
    return table


class _ParamAction(argparse.Action):
    """``-p NAME V1 V2 ...`` repeated: collect an ordered dict of parsed values."""

    def __call__(self, parser, namespace, values, option_string=None):
        grid = getattr(namespace, self.dest) or {}
        name, raw = values[0], values[1:]
        if not raw:
            parser.error(f"{option_string} {name}: give at least one value")
        if name in grid:
            parser.error(f"{option_string} {name} given twice; list all its values once")
        grid[name] = [parse_value(v) for v in raw]
        setattr(namespace, self.dest, grid)


def _sweep_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ecmlib sweep",
        description="Run a notebook over the full grid of parameter values with papermill, in "
                    "parallel (a local Dask cluster, an existing one with --scheduler, Slurm "
                    "with --slurm); each run writes metrics.json into its out_dir; the sweep "
                    "writes runs.csv, sweep.csv (wide: <metric>_mean/_std/_n per setting), "
                    "sweep.md. Re-running with the same --out resumes the sweep.")
    p.add_argument("notebook", help="the notebook to run (its parameters cell names the knobs)")
    p.add_argument("-p", "--parameter", dest="grid", nargs="+", action=_ParamAction,
                   metavar=("NAME", "VALUE"), help="a parameter and its values, e.g. -p seed 0 1 2")
    p.add_argument("--out", help="output folder: new or empty, or an earlier sweep's folder to "
                                 "resume it (default: runs/sweep-<name>-<timestamp>)")
    p.add_argument("--rerun-failed", action="store_true",
                   help="when resuming, run the failed cells again (default: keep their record)")
    p.add_argument("--quick", action="store_true", help="pass quick=True to every run")
    p.add_argument("--fast", action="store_true",
                   help="every training in fast mode (train.fast=true: bf16 where native, the "
                        "fastest aggregation path, bits dropout masks); numbers differ from "
                        "the record's by rounding and dropout draws")
    p.add_argument("--metric", nargs="+", help="aggregate only these metrics (default: all numeric)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds per notebook cell (default {DEFAULT_TIMEOUT_S})")
    add_executor_args(p, "runs at once on this machine (default: min(cores, grid size)); with "
                         "--slurm: Slurm jobs to start (default: one per run)")
    return p


def sweep_main(argv: list[str] | None = None) -> int:
    """``python -m ecmlib sweep``: 0 if every run worked, 1 if one failed, 2 on bad usage."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _sweep_parser().parse_args(argv)
    if not args.grid:
        print("error: give at least one -p NAME VALUE ... (e.g. -p seed 0 1 2)", file=sys.stderr)
        return 2
    try:
        where = executor_options(args)
        if args.show_job_script:
            return _show_job_script(where)
        if args.fast:
            if where.get("scheduler") or where.get("slurm"):
                raise ValueError(f"--fast reaches the runs of this machine's executors; on a "
                                 f"cluster, set {FAST_ENV}=1 in the workers' environment")
            os.environ[FAST_ENV] = "1"  # inherited by the pool's workers and their kernels
        records, table, out_path = _execute_sweep(
            args.notebook, args.grid, args.out, where.pop("jobs"), args.quick, args.timeout,
            args.metric, "python -m ecmlib sweep " + " ".join(argv),
            executor=where.pop("kind"), rerun_failed=args.rerun_failed, **where)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        print(f"error: {_usage_error(err)}", file=sys.stderr)
        return 2
    if table is not None:
        print()
        print(to_markdown(table))
    failed = [r for r in records if r["status"] != "ok"]
    print(f"{len(records)} runs, {len(failed)} failed; results in {out_path}")
    for r in failed:
        print(f"  {r['run_dir']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


# ------------------------------------------------------------------ hygiene


def has_outputs(path: str | Path) -> bool:
    """Whether a notebook holds outputs, execution counts or papermill run metadata."""
    import nbformat
    nb = nbformat.read(Path(path), as_version=4)
    if "papermill" in nb.metadata:
        return True
    for cell in nb.cells:
        if "papermill" in cell.get("metadata", {}) or "execution" in cell.get("metadata", {}):
            return True
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            return True
    return False

