"""Grids on Dask distributed: the executor factory, fault tolerance, resume, Slurm, TensorBoard.

The slow tests start real processes on 127.0.0.1 only: a ``dask scheduler`` and two
``dask worker`` processes (the kill-a-worker test), a sweep driver (the resume test) and
notebook kernels. Every process a test starts is stopped by its id when the test ends,
even on failure: process groups first, then any process still carrying the test's own
``ECMLIB_TEST_TAG`` in its environment (a kernel orphaned by a killed worker).

The fixture notebook ``fixtures/dask/train_tiny.ipynb`` trains the ``tiny`` synthetic
benchmark for ``epochs`` epochs (0: none) and logs ``start``/``end SEED PPID PID`` lines
to ``$ECMLIB_TEST_LOG``; ``$ECMLIB_TEST_HOLD`` keeps a cell running a little longer and
``$ECMLIB_TEST_FAIL_SEEDS`` makes seeds fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from ecmlib.studies import executor as ex
from ecmlib.studies import workbook as wb

NB = Path(__file__).parent / "fixtures" / "dask" / "train_tiny.ipynb"
DASK = Path(sys.executable).parent / "dask"
SEEDS = ["0", "1", "2", "3"]


@pytest.fixture(autouse=True)
def _no_outside_scheduler(monkeypatch):
    """A scheduler named in the caller's environment must not capture these tests."""
    monkeypatch.delenv(ex.SCHEDULER_ENV, raising=False)
    for var in ("ECMLIB_TEST_LOG", "ECMLIB_TEST_HOLD", "ECMLIB_TEST_FAIL_SEEDS"):
        monkeypatch.delenv(var, raising=False)


# ------------------------------------------------------------------ process hygiene


def _tagged_pids(tag: str) -> list[int]:
    """Processes whose environment carries ECMLIB_TEST_TAG=tag (all started by this test)."""
    found = []
    needle = f"ECMLIB_TEST_TAG={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _stop(procs: list[subprocess.Popen], tag: str) -> None:
    """Stop what a test started: each process group by id, then tagged stragglers."""
    for p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
    for _ in range(20):
        left = _tagged_pids(tag)
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"processes of this test still alive: {_tagged_pids(tag)}")


def _env(tag: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "ECMLIB_TEST_TAG": tag, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}
    env.pop(ex.SCHEDULER_ENV, None)
    env.update(extra)
    return env


@contextmanager
def dask_cluster(tmp_path: Path, n_workers: int, **env_extra: str):
    """A real ``dask scheduler`` and ``n_workers`` ``dask worker`` processes on 127.0.0.1."""
    from distributed import Client
    tag = uuid.uuid4().hex
    env = _env(tag, ECMLIB_RUN_THREADS="1", **env_extra)
    procs: list[subprocess.Popen] = []
    logs = tmp_path / "dask-logs"
    logs.mkdir()

    def start(name: str, *args: str) -> subprocess.Popen:
        out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen([str(DASK), *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=tmp_path)
        out.close()
        procs.append(p)
        return p

    try:
        sched_file = tmp_path / "scheduler.json"
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(sched_file))
        deadline = time.monotonic() + 60
        while not sched_file.is_file():
            assert procs[0].poll() is None, (logs / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for i in range(n_workers):
            start(f"worker{i}", "worker", address, "--nworkers", "1", "--nthreads", "1",
                  "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}")
        with Client(address, timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(n_workers, timeout=90)
            pids = client.run(os.getpid)  # worker address -> pid of the worker process
        yield address, pids
    finally:
        _stop(procs, tag)


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _log_lines(path: Path) -> list[tuple[str, int, int]]:
    if not path.is_file():
        return []
    return [(e, int(s), int(pp)) for e, s, pp, _ in
            (line.split() for line in path.read_text().splitlines() if line.strip())]


def _local_reference(seed: int, epochs: int = 1) -> dict[str, float]:
    """What the fixture notebook computes, here in this process (CPU, one torch thread)."""
    import torch

    from ecmlib.training.setup import make_config
    from ecmlib.training.train import train
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = make_config("THUMOS14", synthetic="tiny", epochs=epochs,
                          overrides={"train.seed": seed, "train.num_threads": 1,
                                     "eval.eval_every": epochs})
        res = train(cfg, progress=False, log=None)
    finally:
        torch.set_num_threads(before)
    return {"loss_total": res.history[-1]["loss_total"],
            "classification_mAP": res.metrics["classification_mAP"],
            "mAP_05": res.metrics["mAP@0.5"]}


# ------------------------------------------------------------------ the factory (fast)


def _twice(x):
    import os as _os
    return {"x2": 2 * x, "omp": _os.environ.get("OMP_NUM_THREADS")}


def test_open_executor_picks_inline_processes_or_dask_and_refuses_bad_combinations():
    with ex.open_executor(jobs=1) as pool:
        assert pool.kind == "inline" and pool.slots == 1
        assert pool.submit(_twice, 3).result()["x2"] == 6
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result()
    with ex.open_executor("processes", jobs=2, threads=1) as pool:
        assert pool.kind == "processes" and pool.slots == 2 and pool.threads == 1
        assert [f.result() for f in [pool.submit(_twice, i) for i in (1, 2)]] == [
            {"x2": 2, "omp": "1"}, {"x2": 4, "omp": "1"}]
    with pytest.raises(ValueError, match="choose one of dask, processes, inline"):
        ex.open_executor("threads")
    with pytest.raises(ValueError, match="cannot be combined"):
        ex.open_executor("processes", scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="not both"):
        ex.open_executor(scheduler="tcp://127.0.0.1:1", slurm=True)
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        ex.open_executor(jobs=0)
    if not ex._cuda_count():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            ex.open_executor(gpu=True)


def test_run_threads_follow_the_environment_or_the_cores(monkeypatch):
    monkeypatch.setenv(ex.THREADS_ENV, "3")
    assert ex.run_threads() == 3 and ex.run_threads(5) == 5
    monkeypatch.delenv(ex.THREADS_ENV)
    assert ex.run_threads() == ex.cores()  # not on a Dask worker: the whole machine


def test_slurm_options_and_the_job_script_it_would_submit(capsys):
    pytest.importorskip("dask_jobqueue")
    opts = ["partition=gpu", "gpus=1", "walltime=02:00:00", "cores=4", "memory=16GB",
            "account=lab", "constraint=a100", "scheduler-host=127.0.0.1"]
    kwargs = ex.slurm_cluster_kwargs(opts)
    assert kwargs["queue"] == "gpu" and kwargs["walltime"] == "02:00:00" and kwargs["cores"] == 4
    assert kwargs["job_extra_directives"] == ["--constraint=a100", "--gpus=1"]
    assert kwargs["worker_extra_args"] == ["--resources", "GPU=1"]
    script = ex.slurm_job_script(opts)
    for line in ("#SBATCH -p gpu", "#SBATCH -A lab", "#SBATCH -t 02:00:00",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --gpus=1", "#SBATCH --constraint=a100",
                 f"export {ex.THREADS_ENV}=1"):
        assert line in script, (line, script)
    assert "--resources GPU=1" in script and "--nthreads 4" in script
    assert "tcp://127.0.0.1:" in script  # the workers call back to this machine's scheduler
    # cell-threads=2: two cells of two threads in a 4-core job
    assert "--nthreads 2" in ex.slurm_job_script(opts + ["cell-threads=2"])
    # the command line prints the same script and submits nothing
    rc = wb.sweep_main([str(NB), "-p", "seed", "0", "--slurm", "--show-job-script",
                        *[x for o in opts for x in ("--slurm-opt", o)]])
    assert rc == 0 and "#SBATCH -p gpu" in capsys.readouterr().out
    with pytest.raises(ValueError, match="KEY=VALUE"):
        ex.slurm_cluster_kwargs(["partition"])
    assert wb.sweep_main([str(NB), "-p", "seed", "0", "--slurm-opt", "gpus=1"]) == 2
    assert "without --slurm" in capsys.readouterr().err


# ------------------------------------------------------------------ sweep folders (fast)


def test_a_cell_folder_appears_only_complete_and_only_once(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    out.mkdir()
    seen = []

    def fake_execute(input_path, output_path, parameters, cwd, timeout):
        run = Path(parameters["out_dir"])
        seen.append(run.name)
        assert run.parent == out and run.name.startswith(".partial-seed=0-")
        assert not (out / "seed=0").exists()  # nothing under the cell's name while it runs
        assert list(run.iterdir()) == []  # the notebook finds an empty run folder
        (run / "metrics.json").write_text('{"value": 1}')
        Path(output_path).write_text("{}")
        return {"status": "ok", "error": None, "wall_s": 0.1}

    monkeypatch.setattr(wb, "_execute", fake_execute)
    job = {"run_dir": str(out / "seed=0"), "input": str(NB), "cwd": str(NB.parent),
           "timeout": 10, "parameters": {"seed": 0, "out_dir": str(out / "seed=0")}}
    first = wb._sweep_job(job)
    assert first["status"] == "ok" and first["metrics"] == {"value": 1}
    assert sorted(p.name for p in out.iterdir()) == ["seed=0"]
    assert {"cell.json", "metrics.json", NB.name} <= {p.name for p in (out / "seed=0").iterdir()}
    # a second attempt of the same cell (Dask re-ran it) returns the published record
    assert wb._sweep_job(job) == first and len(seen) == 1


def test_a_metric_echoing_a_parameter_is_dropped_a_contradicting_one_is_an_error():
    job = {"params": {"seed": 3}, "name": "seed=3"}
    ok = {"status": "ok", "error": None, "wall_s": 1.0, "metrics": {"seed": 3, "mAP": 0.5}}
    row = wb._run_row(job, ok)
    assert row["seed"] == 3 and row["mAP"] == 0.5 and row["status"] == "ok"
    row = wb._run_row(job, {**ok, "metrics": {"seed": 4, "mAP": 0.5}})
    assert row["status"] == "error" and "seed=4 (the sweep set 3)" in row["error"]


def test_resuming_a_different_grid_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"notebook": str(NB), "quick": False,
                                                "grid": {"epochs": [0], "seed": [0, 1]}}))
    rc = wb.sweep_main([str(NB), "-p", "epochs", "0", "-p", "seed", "0", "1", "2",
                        "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "holds a sweep of a different grid" in err
    assert "-p epochs 0 -p seed 0 1\n" in err and "-p epochs 0 -p seed 0 1 2\n" in err
    assert sorted(p.name for p in out.iterdir()) == ["sweep.json"]  # nothing ran or moved


# ------------------------------------------------------------------ TensorBoard (fast)


def test_training_writes_tensorboard_scalars_into_the_run_folder(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ecmlib.training.setup import make_config
    from ecmlib.training.train import train
    cfg = make_config("THUMOS14", synthetic="tiny", epochs=2,
                      overrides={"train.num_threads": 1, "eval.eval_every": 1})
    res = train(cfg, out_dir=tmp_path / "run", progress=False, log=None)
    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/pre", "loss/post", "loss/eq", "loss/agg", "loss/total", "lr", "mAP/0.5",
            "average_mAP/0.1:0.7", "classification_mAP"} <= tags
    total = [(e.step, e.value) for e in acc.Scalars("loss/total")]
    assert [s for s, _ in total] == [1, 2]
    assert [v for _, v in total] == pytest.approx([r["loss_total"] for r in res.history])


def test_without_tensorboard_nothing_breaks(tmp_path, monkeypatch):
    from ecmlib.training.tblog import ScalarLog, scalar_tag
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    log = ScalarLog(tmp_path)
    log.log({"epoch": 1, "loss_total": 1.0})
    log.close()
    assert log.writer is None and list(tmp_path.iterdir()) == []
    assert [scalar_tag(k) for k in ("loss_eq", "mAP@0.5", "average_mAP@0.1:0.7", "lr")] == [
        "loss/eq", "mAP/0.5", "average_mAP/0.1:0.7", "lr"]


# ------------------------------------------------------------------ real processes (slow)


@pytest.mark.slow
def test_run_grid_on_a_local_dask_cluster_ships_notebook_functions():
    def in_notebook(x, seed):
        import os

        import torch
        return {"v": x * 10 + seed, "threads": torch.get_num_threads(),
                "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset")}
    in_notebook.__module__ = "__main__"  # as if defined in a notebook: shipped by value
    before = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "PYTHONHASHSEED")}
    records = wb.run_grid(in_notebook, {"x": [1, 2], "seed": [0, 1]}, jobs=2, progress=False)
    assert [r["v"] for r in records] == [10, 11, 20, 21]
    assert {r["threads"] for r in records} == {max(1, ex.cores() // 2)}
    assert {r["trim"] for r in records} == {"unset"}  # glibc's trimming, not Dask's 64 KiB
    # the nannies' exports for their workers do not stay in this process's environment
    assert {k: os.environ.get(k) for k in before} == before


@pytest.mark.slow
def test_a_worker_killed_mid_cell_is_rerun_on_the_other_worker(tmp_path, capsys):
    log = tmp_path / "cells.log"
    out = tmp_path / "sweep"
    with dask_cluster(tmp_path, 2, ECMLIB_TEST_LOG=str(log)) as (addr, pids):
        result: dict = {}
        driver = threading.Thread(target=lambda: result.update(rc=wb.sweep_main(
            [str(NB), "-p", "seed", *SEEDS, "--scheduler", addr, "--out", str(out),
             "--timeout", "300"])))
        driver.start()
        deadline = time.monotonic() + 120
        while not [ln for ln in _log_lines(log) if ln[0] == "start"]:
            assert driver.is_alive() and time.monotonic() < deadline, "no cell started"
            time.sleep(0.1)
        _, killed_seed, victim = next(ln for ln in _log_lines(log) if ln[0] == "start")
        assert victim in pids.values()  # the kernel's parent is a worker process
        nanny = _ppid(victim)
        os.kill(victim, signal.SIGKILL)  # the worker and its nanny: a crashed machine
        os.kill(nanny, signal.SIGKILL)
        print(f"SIGKILLed worker pid {victim} (nanny {nanny}) while it ran seed={killed_seed}")
        driver.join(timeout=300)
        assert not driver.is_alive(), "the sweep did not finish"
    survivor = next(pid for pid in pids.values() if pid != victim)
    lines = _log_lines(log)
    starts = [s for e, s, _ in lines if e == "start"]
    ends = [(s, pp) for e, s, pp in lines if e == "end"]
    assert result["rc"] == 0
    assert sorted(s for s, _ in ends) == [0, 1, 2, 3]  # every cell finished exactly once
    assert starts.count(killed_seed) == 2  # ... the killed one after a second start
    assert dict(ends)[killed_seed] == survivor  # on the other worker
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["seed"]) == [0, 1, 2, 3] and set(runs["status"]) == {"ok"}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"seed={s}" for s in SEEDS]
    for seed in range(4):
        row = runs[runs["seed"] == seed].iloc[0]
        local = _local_reference(seed)
        assert {k: row[k] for k in local} == local, (seed, dict(row), local)
    sys.stdout.write(f"{len(starts)} cell starts, {len(ends)} cell ends; seed={killed_seed} "
                     f"re-ran on worker pid {survivor}; metrics equal the local runs\n")
    print((out / "runs.csv").read_text())


@pytest.mark.slow
def test_a_killed_sweep_resumes_with_only_the_missing_cells(tmp_path, monkeypatch):
    log = tmp_path / "cells.log"
    out = tmp_path / "sweep"
    args = [str(NB), "-p", "epochs", "0", "-p", "seed", *SEEDS, "--out", str(out),
            "--timeout", "120"]
    tag = uuid.uuid4().hex
    driver = subprocess.Popen([sys.executable, "-m", "ecmlib", "sweep", *args, "--jobs", "1"],
                              env=_env(tag, ECMLIB_TEST_LOG=str(log), ECMLIB_TEST_HOLD="1"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*/cell.json"))) < 2:
            assert driver.poll() is None and time.monotonic() < deadline, "cells did not finish"
            time.sleep(0.1)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver dies mid-sweep
        driver.wait(timeout=10)
    finally:
        _stop([driver], tag)
    first = sorted(p.parent.name for p in out.glob("*/cell.json"))
    print(f"driver SIGKILLed after {first}; runs.csv then had "
          f"{len(pd.read_csv(out / 'runs.csv'))} rows")
    assert len(first) >= 2
    before = len(_log_lines(log))
    monkeypatch.setenv("ECMLIB_TEST_LOG", str(log))
    assert wb.sweep_main(args) == 0  # the same command again: resumes
    rerun = sorted(s for e, s, _ in _log_lines(log)[before:] if e == "start")
    missing = sorted(int(s) for s in SEEDS if f"epochs=0__seed={s}" not in first)
    assert rerun == missing  # only the missing cells ran again
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["seed"]) == [0, 1, 2, 3] and set(runs["status"]) == {"ok"}
    info = json.loads((out / "sweep.json").read_text())
    assert info["kept"] == first and sorted(info["ran"]) == [f"epochs=0__seed={s}" for s in missing]
    assert not list(out.glob(".partial-*"))  # a half-written cell is never left or read
    print(f"resumed: ran only seeds {missing}; runs.csv has {len(runs)} rows, all ok")


@pytest.mark.slow
def test_a_failing_cell_is_recorded_the_others_finish_and_rerun_failed_retries_it(
        tmp_path, monkeypatch, capsys):
    log = tmp_path / "cells.log"
    out = tmp_path / "sweep"
    monkeypatch.setenv("ECMLIB_TEST_LOG", str(log))
    monkeypatch.setenv("ECMLIB_TEST_FAIL_SEEDS", "1")
    args = [str(NB), "-p", "epochs", "0", "-p", "seed", "0", "1", "2", "--out", str(out),
            "--timeout", "120"]
    assert wb.sweep_main(args + ["--executor", "processes", "--jobs", "2"]) == 1
    runs = pd.read_csv(out / "runs.csv")
    assert runs.set_index("seed")["status"].to_dict() == {0: "ok", 1: "failed", 2: "ok"}
    assert "seed 1 fails on purpose" in runs.set_index("seed").loc[1, "error"]
    assert pd.read_csv(out / "sweep.csv")["n"].tolist() == [2]
    monkeypatch.delenv("ECMLIB_TEST_FAIL_SEEDS")
    n = len(_log_lines(log))
    assert wb.sweep_main(args) == 1  # resumed: the failure is kept, nothing runs
    assert len(_log_lines(log)) == n
    assert wb.sweep_main(args + ["--rerun-failed"]) == 0
    assert [s for e, s, _ in _log_lines(log)[n:] if e == "start"] == [1]
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["status"]) == {"ok"} and len(runs) == 3
    assert pd.read_csv(out / "sweep.csv")["n"].tolist() == [3]
    assert len(list(out.glob(".stale-epochs=0__seed=1-*"))) == 1  # the failed run, set aside
    capsys.readouterr()
