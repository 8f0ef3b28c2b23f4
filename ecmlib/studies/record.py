"""``python -m ecmlib record`` and what the notebooks call: train a study's missing cells,
collect them into its results file, and read the results back for a notebook.

The pieces, one job each: :mod:`.design` declares the studies and their cells,
:mod:`.runs` trains cells, :mod:`.collect` turns run folders into checked rows,
:mod:`.analysis` computes the paired statistics, :mod:`.report` writes tables, sentences
and the README blocks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from .collect import collect_curves, collect_row, columns_of, default_results_dir, read_study
from .design import Study, plan, studies
from .report import summary_markdown
from .runs import is_done, run_cells


def write_study(study: Study, root: str | Path, out_dir: str | Path,
                previous: Any = None) -> Any:
    """Collect every finished cell of ``study`` into ``out_dir/<name>.csv`` (+ curves, .md).

    Rows already in ``previous`` (a DataFrame of the same file) are kept as they are, so a
    later session adds the cells it ran without recomputing (or losing) earlier ones.
    Returns the table.
    """
    import pandas as pd
    out_dir = Path(out_dir)
    known = {}
    if previous is not None and len(previous):
        for rec in previous.to_dict("records"):
            known[rec["command"]] = rec
    rows, cache = [], {}
    # Group by world so that each world's features are generated once.
    for cell in sorted(study.cells, key=lambda c: (c.data_seed, c.knobs)):
        if cell.command() in known:
            rows.append(known[cell.command()])
        elif is_done(root, cell):
            rows.append(collect_row(cell, root, cache))
    order = {c.command(): i for i, c in enumerate(study.cells)}
    rows.sort(key=lambda r: order.get(r["command"], len(order)))
    table = pd.DataFrame(rows, columns=list(columns_of(study)))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / study.csv_name, table.to_csv(index=False))
    curves_path = out_dir / f"{study.name}_curves.csv"
    curves = collect_curves(study.cells, root)
    if curves_path.is_file():
        # Curves of runs trained elsewhere (an earlier session) whose folders are not here.
        old = pd.read_csv(curves_path)
        here = {(c.setting, c.seed, c.data_seed, c.world) for c in study.cells
                if is_done(root, c)}
        keys = list(zip(old["setting"], old["seed"], old["data_seed"], old["world"]))
        old = old[[k not in here for k in keys]]
        curves = pd.concat([old, curves], ignore_index=True) if len(old) else curves
    atomic_write_text(curves_path, curves.to_csv(index=False))
    atomic_write_text(out_dir / f"{study.name}.md", summary_markdown(study, table, curves))
    return table


def record_main(argv: list[str] | None = None) -> int:
    """``python -m ecmlib record``: run the cells of record and write data/results/."""
    import argparse
    parser = argparse.ArgumentParser(
        prog="python -m ecmlib record",
        description="Train the runs of record (notebooks 03, 04, 07, 08) at the paper protocol, "
                    "resumably, then collect them into data/results/<study>.csv.")
    parser.add_argument("--study", nargs="+", default=["03", "04", "07"],
                        choices=["03", "04", "07", "07b", "07c", "08", "09"])
    parser.add_argument("--root", default="runs/record", help="run folders (default: %(default)s)")
    parser.add_argument("--results", default=None, help="results folder (default: data/results)")
    from .executor import add_executor_args, executor_options
    add_executor_args(parser, "runs at a time on this machine (each run uses one torch "
                              "thread; default: one per core)")
    parser.add_argument("--collect-only", action="store_true",
                        help="do not train: collect the finished cells only")
    parser.add_argument("--list", action="store_true", help="print each cell's command and exit")
    parser.add_argument("--fast", action="store_true",
                        help="every run in fast mode (train.fast=true), into <study>_fast.csv: "
                             "numbers that differ from the record by rounding and dropout "
                             "draws (see study 09)")
    args = parser.parse_args(argv)
    if args.fast and "09" in args.study:
        parser.error("--fast: study 09 is fast mode already")
    all_studies = studies(fast=args.fast)
    cells = plan(args.study, fast=args.fast)
    from .results import read_results
    out = Path(args.results or default_results_dir())
    # Runs already in a results file (e.g. trained in an earlier session) are not re-run;
    # a file is checked before any of its rows is kept.
    previous: dict[str, Any] = {}
    in_file: dict[str, set[str]] = {}
    for key in args.study:
        study = all_studies[key]
        path = out / study.csv_name
        if path.is_file():
            previous[key] = read_results(path, study.cells, columns_of(study))
        in_file[key] = set(previous[key]["command"]) if key in previous else set()
    # A cell shared by several studies (ECM's) is recorded only when every selected study
    # that holds it has its row: a study's rows are its own runs, never borrowed.
    holds = {k: {c.command() for c in all_studies[k].cells} for k in args.study}
    recorded = {cmd for cmd in (c.command() for c in cells)
                if all(cmd in in_file[k] for k in args.study if cmd in holds[k])}
    if args.list:
        for c in cells:
            state = ("recorded" if c.command() in recorded
                     else "done" if is_done(args.root, c) else "todo")
            print(f"{state:<9} {c.command()}")
        return 0
    todo = [c for c in cells if c.command() not in recorded]
    if len(todo) < len(cells):
        print(f"{len(cells) - len(todo)} cell(s) already in the results files: not re-run")
    opts = executor_options(args)
    jobs = opts.pop("jobs")
    failures = [] if args.collect_only else run_cells(todo, args.root, jobs, **opts)
    for key in args.study:
        study = all_studies[key]
        table = write_study(study, args.root, out, previous.get(key))
        print(f"{out / study.csv_name}: {len(table)} of {len(study.cells)} runs")
    if failures:
        print(f"{len(failures)} cell(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


# -- what the notebooks call ----------------------------------------------------------------

#: The cells of each study's quick check (a tiny grid through the same code as the record).
QUICK_CELLS = {"03": ("ecm", "pre_only"), "04": ("fixed_transition", "independent_transition"),
               "07": ("ecm", "pre_only"), "07b": ("ecm", "pre_only"), "07c": ("ecm", "pre_only"),
               "08": ("ecm", "weight_sparsity"), "09": ("ecm", "pre_only")}
#: The one world of each world study that its quick check trains.
QUICK_WORLD = {"07": ("context", "off"), "07b": ("minimal", "all_off"), "07c": ("", "default")}
QUICK_PROTOCOL = {"preset": "tiny", "epochs": 2, "eval_every": 1}


def quick_grid(key: str, out: str | Path, jobs: int = 2) -> Any:
    """Train and collect a tiny grid of study ``key`` under ``out`` (``tiny`` preset,
    2 epochs, one seed): proves that the record's code runs, in seconds. Returns the table."""
    study = studies(seeds=1, data_seeds=(), world_seeds=1, protocol=QUICK_PROTOCOL)[key]
    cells = [c for c in study.cells if c.setting in QUICK_CELLS[key]
             and (key not in QUICK_WORLD or (c.factor, c.level) == QUICK_WORLD[key])]
    out = Path(out)
    failures = run_cells(cells, out / "runs", jobs=jobs)
    if failures:
        raise RuntimeError("quick grid failed:\n  " + "\n  ".join(failures))
    return write_study(Study(study.name, tuple(cells)), out / "runs", out / "results")


def load_results(key: str, mode: str = "record", results_dir: str | Path | None = None,
                 runs_root: str | Path = "runs/record", jobs: int = 1,
                 scheduler: str | None = None) -> tuple[Any, Any]:
    """(results table, curves) of study ``key`` for a notebook.

    ``mode='record'`` reads the committed files; ``'full'`` first trains every missing cell
    of the study under ``runs_root`` and rewrites the results files (hours on a CPU), on
    the local Dask cluster or on ``scheduler`` (``tcp://HOST:PORT``).
    """
    import pandas as pd
    if mode not in ("record", "full"):
        raise ValueError(f"mode must be 'record' or 'full', got {mode!r}")
    study = studies()[key]
    if mode == "full":
        argv = ["--study", key, "--root", str(runs_root), "--jobs", str(jobs)]
        if scheduler:
            argv += ["--scheduler", str(scheduler)]
        if results_dir:
            argv += ["--results", str(results_dir)]
        if record_main(argv) != 0:
            raise RuntimeError(f"study {key}: some cells failed (see above)")
    table = read_study(study.name, results_dir)
    curves_path = Path(results_dir or default_results_dir()) / f"{study.name}_curves.csv"
    curves = pd.read_csv(curves_path) if curves_path.is_file() else pd.DataFrame()
    return table, curves


def progress_table(key: str, table: Any) -> Any:
    """Finished vs planned runs per setting (and world) of study ``key``."""
    import pandas as pd
    study = studies()[key]
    planned = pd.DataFrame([{"setting": c.setting, "data_seed": c.data_seed, "world": c.world}
                            for c in study.cells])
    keys = ["setting", "data_seed", "world"]
    out = planned.groupby(keys, sort=False).size().rename("planned").to_frame()
    done = table.groupby(keys, sort=False).size().rename("finished")
    out = out.join(done).fillna({"finished": 0}).astype(int).reset_index()
    return out
