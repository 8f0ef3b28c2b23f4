"""Grid throughput: the local Dask cluster vs a plain process pool vs one cell after another.

Side by side in one run, on this machine:
  1. 8 short training cells (``tiny`` synthetic benchmark, ``--epochs`` epochs, one torch
     thread per cell, data generated once per worker process and cached there) through
     ``run_grid`` three ways: in this process one after another, a spawn process pool
     (``executor="processes"``), the local Dask cluster (the default). Wall times include
     starting and stopping the pool; "cells only" starts the clock at the first submit.
     Targets: Dask within 10 % of the process pool, and >= 1.7x the sequential run.
  2. Scheduler overhead per empty cell on the running local Dask cluster: 400 no-op cells
     submitted at once (wall / cells), and 50 submit-and-wait round trips (latency).
     Target: <= 50 ms per cell.

The machine is shared: run it when it is idle, or read the ratios with the load printed.
Usage: python benchmarks/bench_sweep.py [--cells 8] [--epochs 8] [--jobs N]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import this module by name


@functools.lru_cache(maxsize=1)
def _data():
    from ecmlib.train import load_data, make_config
    return load_data(make_config("THUMOS14", synthetic="tiny"))


def cell(seed: int, epochs: int) -> dict:
    """One short training run (module level: the process pool imports it by name)."""
    import torch

    from ecmlib.train import make_config, train
    cfg = make_config("THUMOS14", synthetic="tiny", epochs=epochs,
                      overrides={"train.seed": seed, "eval.eval_every": epochs})
    t0 = time.perf_counter()
    res = train(cfg, data=_data(), progress=False, log=None)
    return {"loss": res.history[-1]["loss_total"], "cell_s": time.perf_counter() - t0,
            "threads": torch.get_num_threads(), "pid": os.getpid()}


def noop() -> None:
    return None


def _grid(cells: int, epochs: int) -> dict:
    return {"seed": list(range(cells)), "epochs": [epochs]}


def _timed(label: str, run) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    records = run()
    wall = time.perf_counter() - t0
    procs = len({r["pid"] for r in records})
    mean_cell = sum(r["cell_s"] for r in records) / len(records)
    print(f"  {label:<34} {wall:7.1f} s   ({procs} process(es), {records[0]['threads']} "
          f"thread(s)/cell, mean cell {mean_cell:.1f} s)", flush=True)
    return wall, records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--jobs", type=int, help="parallel cells (default: cores)")
    args = ap.parse_args()

    import torch

    import bench_sweep as me  # by name, so both pools pickle the cell by reference
    from ecmlib.executor import cores, open_executor
    from ecmlib.workbook import run_grid
    jobs = args.jobs or cores()
    grid = _grid(args.cells, args.epochs)
    print(f"{args.cells} training cells (tiny, {args.epochs} epochs); {cores()} core(s), "
          f"jobs={jobs}; load average {os.getloadavg()[0]:.1f} at start; torch {torch.__version__}")

    torch.set_num_threads(1)  # the sequential run: the same one thread per cell as the pools
    seq, ref = _timed("sequential (this process)",
                      lambda: run_grid(me.cell, grid, jobs=1, progress=False))
    pool, rec_p = _timed("process pool (start + cells + stop)", lambda: run_grid(
        me.cell, grid, jobs=jobs, progress=False, executor="processes"))
    dask, rec_d = _timed("local Dask (start + cells + stop)", lambda: run_grid(
        me.cell, grid, jobs=jobs, progress=False))
    assert [r["loss"] for r in rec_p] == [r["loss"] for r in ref] == [r["loss"] for r in rec_d], \
        "the three ways computed different results"

    # Cells only: the executor is already up; its workers are cold (they import torch and
    # generate the data in their first cell, as in a real sweep).
    cells_only = {}
    for kind in ("processes", "dask"):
        with open_executor(kind, jobs=jobs, n_tasks=args.cells) as ex:
            ex.submit(noop).result()
            cells_only[kind], _ = _timed(f"{kind} (cells only)", lambda ex=ex: run_grid(
                me.cell, grid, progress=False, executor=ex))

    print(f"Dask / process pool: {dask / pool:.2f} (start to stop; target <= 1.10), "
          f"{cells_only['dask'] / cells_only['processes']:.2f} (cells only)")
    print(f"speed-up over sequential: Dask {seq / dask:.2f}x, process pool {seq / pool:.2f}x "
          f"(target >= 1.7x); cells only: Dask {seq / cells_only['dask']:.2f}x")

    with open_executor("dask", jobs=jobs) as ex:
        ex.submit(noop).result()
        n = 400
        t0 = time.perf_counter()
        futures = [ex.submit(noop) for _ in range(n)]
        for f in futures:
            f.result()
        burst = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for _ in range(50):
            ex.submit(noop).result()
        latency = (time.perf_counter() - t0) / 50
    print(f"scheduler overhead per empty cell: {burst * 1e3:.1f} ms ({n} at once), "
          f"{latency * 1e3:.1f} ms round trip (target <= 50 ms); "
          f"load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
