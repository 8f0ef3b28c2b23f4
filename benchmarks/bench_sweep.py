"""Grid throughput: the local Dask cluster vs a plain process pool vs one cell after another.

Side by side in one run, on this machine:
  1. 8 short training cells (``tiny`` synthetic benchmark, ``--epochs`` epochs, one torch
     thread per cell, data generated once per worker process and cached there) through
     ``run_grid`` three ways: in this process one after another, a spawn process pool
     (``executor="processes"``), the local Dask cluster (the default). "cold" wall times
     include starting the pool, the workers' first imports and data, and stopping it;
     "warm" ones time only the cells, on workers that have imported torch and made the
     data (this process too, for the sequential run).
     Targets: Dask within 10 % of the process pool, and >= 1.7x the sequential run.
  2. Scheduler overhead per empty cell on the running local Dask cluster: 400 no-op cells
     submitted at once (wall / cells), and 50 submit-and-wait round trips (latency).
     Target: <= 50 ms per cell.

The machine is shared: run it when it is idle, or read the ratios with the load printed.
Usage: python benchmarks/bench_sweep.py [--cells 8] [--epochs 60] [--jobs N]
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
    from ecmlib.training.setup import load_data, make_config
    return load_data(make_config("THUMOS14", synthetic="tiny"))


def cell(seed: int, epochs: int) -> dict:
    """One short training run (module level: the process pool imports it by name)."""
    import torch

    from ecmlib.training.setup import make_config
    from ecmlib.training.train import train
    cfg = make_config("THUMOS14", synthetic="tiny", epochs=epochs,
                      overrides={"train.seed": seed, "eval.eval_every": epochs})
    t0 = time.perf_counter()
    res = train(cfg, data=_data(), progress=False, log=None)
    return {"loss": res.history[-1]["loss_total"], "cell_s": time.perf_counter() - t0,
            "threads": torch.get_num_threads(), "pid": os.getpid()}


def noop() -> None:
    return None


def warm() -> int:
    """Import torch and make the data in a worker, then hold it a moment (so the next
    warm-up lands on another worker)."""
    import torch  # noqa: F401
    _data()
    time.sleep(1.0)
    return os.getpid()


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
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--jobs", type=int, help="parallel cells (default: cores)")
    args = ap.parse_args()

    import bench_sweep as me  # by name, so both pools pickle the cell by reference
    import torch

    from ecmlib.studies.executor import cores, open_executor
    from ecmlib.studies.workbook import run_grid
    jobs = args.jobs or cores()
    grid = _grid(args.cells, args.epochs)
    print(f"{args.cells} training cells (tiny, {args.epochs} epochs); {cores()} core(s), "
          f"jobs={jobs}; load average {os.getloadavg()[0]:.1f} at start; torch {torch.__version__}")

    torch.set_num_threads(1)  # the sequential run: the same one thread per cell as the pools
    _data()
    seq, ref = _timed("sequential, warm (this process)",
                      lambda: run_grid(me.cell, grid, jobs=1, progress=False))
    cold = {kind: _timed(f"{kind}, cold (start + cells + stop)", lambda kind=kind: run_grid(
        me.cell, grid, jobs=jobs, progress=False, executor=kind)) for kind in ("processes", "dask")}
    warm = {}
    for kind in ("processes", "dask"):
        with open_executor(kind, jobs=jobs, n_tasks=args.cells) as ex:
            pids: set[int] = set()
            for _ in range(5):  # until every worker has imported torch and made the data
                pids |= {f.result() for f in [ex.submit(me.warm) for _ in range(2 * jobs)]}
                if len(pids) >= jobs:
                    break
            warm[kind] = _timed(f"{kind}, warm (cells only)", lambda ex=ex: run_grid(
                me.cell, grid, progress=False, executor=ex))
    losses = [[r["loss"] for r in recs] for _, recs in [*cold.values(), *warm.values()]]
    assert all(x == [r["loss"] for r in ref] for x in losses), "the runs computed different results"

    for label, t in (("cold", cold), ("warm", warm)):
        d, p = t["dask"][0], t["processes"][0]
        print(f"{label}: Dask / process pool {d / p:.2f} (target <= 1.10); speed-up over "
              f"sequential: Dask {seq / d:.2f}x, process pool {seq / p:.2f}x (target >= 1.7x)")

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
