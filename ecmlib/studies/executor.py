"""One executor for every grid of runs: ``sweep``, ``workbook`` and ``workbook.run_grid``.

:func:`open_executor` returns a :class:`CellExecutor`, a ``concurrent.futures.Executor``
whose cells run

* on **Dask distributed** (the default): an in-process ``LocalCluster`` sized to the machine
  (``jobs`` workers, one cell at a time each, ``cores // jobs`` torch threads per cell), an
  existing cluster (``scheduler="tcp://HOST:PORT"`` or ``ECMLIB_SCHEDULER``), or Slurm jobs
  started through dask-jobqueue (``slurm=True`` with ``slurm_opts``);
* in a plain process pool (``kind="processes"``: no Dask at all);
* in this process, one after another (``kind="inline"``; what ``jobs=1`` means locally).

Dask gives the fault tolerance: a worker that dies mid-cell (SIGKILL, a lost node) has its
cell re-run on another worker by the scheduler (up to ``distributed.scheduler.allowed-
failures`` times). Cells must therefore be idempotent and publish their results atomically
(the sweep writes each cell into a temporary folder and renames it into place).

Threads: a cell calls ``torch.set_num_threads`` with its worker's share of the cores and
exports ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``ECMLIB_RUN_THREADS`` (which a notebook
kernel started by the cell inherits). The share is ``ECMLIB_RUN_THREADS`` when the worker's
environment sets it (the local cluster does), else ``host cores // worker threads``.

GPUs: with ``gpu=True`` every cell asks the scheduler for ``resources={"GPU": 1}``, so a
worker started with ``--resources GPU=1`` runs one cell at a time on its GPU; the local
cluster then has one worker per visible CUDA device, each pinned to its own device.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..env import THREADS_ENV

__all__ = [
    "EXECUTOR_KINDS",
    "SCHEDULER_ENV",
    "THREADS_ENV",
    "CellExecutor",
    "add_executor_args",
    "cores",
    "executor_options",
    "open_executor",
    "run_threads",
    "slurm_cluster_kwargs",
    "slurm_job_script",
]

EXECUTOR_KINDS = ("dask", "processes", "inline")
SCHEDULER_ENV = "ECMLIB_SCHEDULER"
_PIN_ENV = "ECMLIB_PIN_GPU_BY_WORKER"
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", THREADS_ENV)


def cores() -> int:
    """Cores this process may use (the affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ------------------------------------------------------------------ what runs in a cell


def _dask_worker():
    """The Dask worker running this code, or None outside one."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker
        return get_worker()
    except (ImportError, ValueError):
        return None


def run_threads(explicit: int | None = None) -> int:
    """Torch threads for a cell here: ``explicit``, ``ECMLIB_RUN_THREADS``, else a fair share."""
    if explicit:
        return int(explicit)
    env = os.environ.get(THREADS_ENV, "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    worker = _dask_worker()
    slots = getattr(getattr(worker, "state", None), "nthreads", None) or 1
    return max(1, cores() // slots)


def _limit_threads(threads: int) -> None:
    """Export the thread count (kernels and BLAS pools started later inherit it)."""
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)


def _die_with_parent(threads: int, parent: int) -> None:
    """Process-pool worker start-up: the thread count, and no life after the driver.

    A driver killed with SIGKILL cannot stop its pool, so each worker asks the kernel for
    a SIGTERM when its parent dies (Linux ``PR_SET_PDEATHSIG``) and on SIGTERM stops the
    notebook kernels it started (they run in sessions of their own) before it exits.
    Otherwise an orphaned worker goes on writing into the sweep folder that a re-run of
    the driver is already resuming.
    """
    import signal

    import psutil    # imported now: a handler importing it can be re-entered mid-import
    _limit_threads(threads)

    def stop(_signum: int, _frame: Any) -> None:
        # SIGTERM may come again while this runs (the driver's death signals twice): ignore
        # it, and whatever fails on the way, exit.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            for child in psutil.Process().children(recursive=True):
                try:
                    child.kill()
                except psutil.Error:
                    pass
        finally:
            os._exit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    if sys.platform.startswith("linux"):
        import ctypes
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the driver died before the request took effect
        stop(signal.SIGTERM, None)


def _pin_gpu() -> None:
    """On the local GPU cluster: worker number k sees only the k-th visible CUDA device."""
    if os.environ.get(_PIN_ENV) != "1":
        return
    worker = _dask_worker()
    if worker is None or not str(worker.name).isdigit():
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(_cuda_count())]
    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[int(worker.name) % len(devices)]
    os.environ[_PIN_ENV] = "done"


def _cuda_count() -> int:
    try:
        import torch
        return torch.cuda.device_count()
    except ImportError:
        return 0


def _run_cell(fn: Callable[..., Any], args: tuple, kwargs: dict, threads: int | None,
              gpu: bool) -> Any:
    """Wrapper every cell runs in on a worker: threads (and the GPU) first, then ``fn``."""
    if gpu:
        _pin_gpu()
    n = run_threads(threads)
    _limit_threads(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return fn(*args, **kwargs)


# ------------------------------------------------------------------ the executor


class CellExecutor(cf.Executor):
    """A ``concurrent.futures.Executor`` over Dask, a process pool, or this process.

    ``submit(fn, *args, **kwargs)`` returns a ``concurrent.futures.Future``. Attributes:
    ``kind`` ("dask", "processes", "inline"), ``slots`` (cells that can run at once, as far
    as known), ``threads`` (torch threads per cell, None = the worker decides),
    ``description`` (one line for logs), ``dashboard_link`` (Dask only) and ``client``.
    """

    def __init__(self, kind: str, inner: cf.Executor | None, slots: int,
                 threads: int | None, description: str, gpu: bool = False,
                 client: Any = None, closers: Sequence[Callable[[], Any]] = ()):
        self.kind = kind
        self.slots = slots
        self.threads = threads
        self.description = description
        self.gpu = gpu
        self.client = client
        self._inner = inner
        self._closers = list(closers)
        self._closed = False

    @property
    def dashboard_link(self) -> str | None:
        return getattr(self.client, "dashboard_link", None) if self.client is not None else None

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        if self._closed:
            raise RuntimeError("cannot submit to a closed executor")
        if self._inner is None:  # inline: run now, in this process, threads untouched
            fut: cf.Future = cf.Future()
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as err:  # noqa: BLE001 - handed to the caller via the future
                fut.set_exception(err)
            return fut
        return self._inner.submit(_run_cell, fn, args, kwargs, self.threads, self.gpu)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if self.client is not None:
            # Forget this executor's tasks (finished, or not wanted any more after an
            # interruption) before the workers go, so the scheduler does not recompute them.
            with contextlib.suppress(Exception):  # a dead cluster cannot cancel
                self.client.cancel(list(getattr(self._inner, "_futures", ())))
        if self._inner is not None:
            if cancel_futures and self.client is None:  # (the Dask cells are cancelled above)
                self._inner.shutdown(wait=wait, cancel_futures=True)
            else:
                self._inner.shutdown(wait=wait)
        for close in self._closers:  # in order: the client, then a cluster we started
            with contextlib.suppress(Exception):  # best effort (a dead cluster)
                close()

    close = shutdown

    def __exit__(self, exc_type, exc_val, exc_tb):
        # Interrupted (Ctrl-C, an error in the caller): drop the cells not started yet.
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
        return False

    def __repr__(self) -> str:
        return f"<CellExecutor {self.description}>"


def _local_gpu_count(gpu: bool) -> int:
    if not gpu:
        return 0
    n = _cuda_count()
    if n == 0:
        raise RuntimeError("gpu=True (--gpu) but no CUDA device is visible here; give "
                           "--scheduler with GPU workers (dask worker ... --resources GPU=1)")
    return n


def open_executor(kind: str | None = None, scheduler: Any = None, jobs: int | None = None,
                  n_tasks: int | None = None, slurm: bool = False,
                  slurm_opts: Mapping[str, Any] | Sequence[str] | None = None,
                  gpu: bool = False, threads: int | None = None,
                  log: Callable[[str], None] | None = None) -> CellExecutor:
    """The executor a grid runs on; close it with ``shutdown()`` or ``with``.

    * ``scheduler``: a Dask scheduler address (``tcp://HOST:PORT``), a ``distributed.Client``
      or a cluster object; default ``$ECMLIB_SCHEDULER``. The cluster's workers need this
      package installed and the run folders on a filesystem they share with this machine.
    * ``slurm``: start ``jobs`` Slurm jobs (default: one per task) through dask-jobqueue,
      with ``slurm_opts`` (see :func:`slurm_cluster_kwargs`).
    * ``kind``: "dask" (default), "processes" (a spawn process pool), "inline" (this
      process). With no scheduler and ``jobs == 1`` the default is "inline".
    * ``jobs``: cells at once on this machine (default ``min(cores, n_tasks)``); each cell
      gets ``threads`` torch threads (default ``cores // jobs``).
    * ``gpu``: every cell asks for ``resources={"GPU": 1}``.
    """
    say = log or (lambda _msg: None)
    if kind is not None and kind not in EXECUTOR_KINDS:
        raise ValueError(f"executor {kind!r}: choose one of {', '.join(EXECUTOR_KINDS)}")
    if scheduler is None and not slurm and kind in (None, "dask"):
        scheduler = os.environ.get(SCHEDULER_ENV) or None
    remote = scheduler is not None or slurm
    if remote and kind in ("processes", "inline"):
        raise ValueError(f"executor {kind!r} runs on this machine only; it cannot be combined "
                         f"with a scheduler ({SCHEDULER_ENV} or --scheduler) or --slurm")
    if scheduler is not None and slurm:
        raise ValueError("give either a scheduler address or --slurm, not both")
    if jobs is not None and int(jobs) < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    n_cores = cores()
    if remote:
        return _open_dask_remote(scheduler, slurm, slurm_opts, jobs, n_tasks, gpu, threads, say)
    ngpu = _local_gpu_count(gpu)
    if jobs is None:
        jobs = max(1, min(ngpu or n_cores, n_tasks or n_cores))
    jobs = int(jobs)
    if kind is None:
        kind = "inline" if jobs == 1 and not gpu else "dask"
    if kind == "inline":
        return CellExecutor("inline", None, 1, None, "in this process, one cell at a time")
    threads = threads or max(1, n_cores // jobs)
    if kind == "processes":
        import multiprocessing
        pool = cf.ProcessPoolExecutor(max_workers=jobs,
                                      mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_die_with_parent,
                                      initargs=(threads, os.getpid()))
        return CellExecutor("processes", pool, jobs, threads,
                            f"process pool: {jobs} process(es) x {threads} thread(s)", gpu)
    return _open_dask_local(jobs, threads, ngpu, say)


def _open_dask_local(jobs: int, threads: int, ngpu: int,
                     say: Callable[[str], None]) -> CellExecutor:
    import dask
    from distributed import Client, LocalCluster
    env = {var: str(threads) for var in _THREAD_VARS}
    extra: dict[str, Any] = {}
    if ngpu:
        jobs = min(jobs, ngpu)
        env[_PIN_ENV] = "1"
        extra["resources"] = {"GPU": 1}
    # One cell per worker at a time, handed out only when a worker is free (no pre-queueing
    # a long cell behind another on a busy worker); no statistical profiler sampling the
    # cells' stacks every 10 ms; and glibc's own malloc trimming instead of the nanny's
    # MALLOC_TRIM_THRESHOLD_=65536, which made torch training cells much slower
    # (benchmarks/bench_sweep.py measures it). The nannies hand this config to their workers.
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0,
                          "distributed.worker.profile.enabled": False,
                          "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        touched = {*env, *dask.config.get("distributed.nanny.pre-spawn-environ"), "PYTHONHASHSEED"}
        saved = {k: os.environ.get(k) for k in touched}
        try:
            cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address="127.0.0.1:0", env=env,
                                   **extra)
        finally:
            _restore_environ(saved)
    try:
        client = Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    desc = (f"local Dask cluster: {jobs} worker(s) x 1 cell, {threads} torch thread(s) per "
            f"cell{', 1 GPU per worker' if ngpu else ''}")
    say(f"{desc}; dashboard {client.dashboard_link}")

    def close_quietly() -> None:
        # Our own cluster going away on purpose: its scheduler's "lost computed tasks"
        # warnings about results already handed over are noise here.
        import logging
        logger = logging.getLogger("distributed.scheduler")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            client.close()
            cluster.close()
        finally:
            logger.setLevel(level)
            _restore_environ(saved)

    return CellExecutor("dask", _client_executor(client, bool(ngpu)), jobs, threads, desc,
                        bool(ngpu), client, [close_quietly])


def _restore_environ(saved: Mapping[str, str | None]) -> None:
    """Undo what the nannies leave in this process's environment (they export their
    workers' OMP_NUM_THREADS=1, PYTHONHASHSEED... here to spawn them), so that kernels and
    processes started later by this process do not inherit it."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        elif os.environ.get(key) != value:
            os.environ[key] = value


def _client_executor(client: Any, gpu: bool) -> cf.Executor:
    kwargs: dict[str, Any] = {"pure": False}
    if gpu:
        kwargs["resources"] = {"GPU": 1}
    return client.get_executor(**kwargs)


def _open_dask_remote(scheduler: Any, slurm: bool, slurm_opts: Any, jobs: int | None,
                      n_tasks: int | None, gpu: bool, threads: int | None,
                      say: Callable[[str], None]) -> CellExecutor:
    from distributed import Client
    closers: list[Callable[[], Any]] = []
    if slurm:
        from dask_jobqueue import SLURMCluster
        kwargs = slurm_cluster_kwargs(slurm_opts, gpu)
        cluster = SLURMCluster(**kwargs)
        closers.append(cluster.close)
        n_jobs = int(jobs or n_tasks or 1)
        cluster.scale(jobs=n_jobs)
        client = Client(cluster, set_as_default=False)
        where = f"Slurm via dask-jobqueue: {n_jobs} job(s) ({_describe_slurm(kwargs)})"
    elif isinstance(scheduler, str):
        client = Client(scheduler, timeout="20s", set_as_default=False)
        where = f"Dask cluster at {scheduler}"
    elif type(scheduler).__name__ == "Client":
        client = scheduler  # the caller's client: used, never closed here
        where = f"Dask cluster at {client.scheduler.address}"
    else:  # a cluster object (LocalCluster, SLURMCluster, ...)
        client = Client(scheduler, set_as_default=False)
        where = f"Dask cluster {type(scheduler).__name__}"
    if client is not scheduler:
        closers.insert(0, client.close)
    try:
        if not slurm:
            workers = client.scheduler_info().get("workers", {})
            slots = sum(int(w.get("nthreads", 1)) for w in workers.values())
            gpus = sum(float(w.get("resources", {}).get("GPU", 0)) for w in workers.values())
            where += f": {len(workers)} worker(s), {slots} cell slot(s)"
            if gpu:
                where += f", {gpus:g} GPU(s)"
                if not gpus:
                    say("warning: cells ask for a GPU but no worker has --resources GPU=...; "
                        "they wait until one joins")
        else:
            slots = int(jobs or n_tasks or 1)
    except BaseException:
        for close in closers:
            close()
        raise
    say(f"{where}; dashboard {client.dashboard_link}")
    return CellExecutor("dask", _client_executor(client, gpu), max(1, slots), threads, where,
                        gpu, client, closers)


# ------------------------------------------------------------------ Slurm

# --slurm-opt key=value: these keys map to SLURMCluster arguments; any other key becomes a
# job directive "#SBATCH --key=value".
_SLURM_KEYS = {"partition": "queue", "queue": "queue", "account": "account",
               "walltime": "walltime", "time": "walltime", "cores": "cores",
               "memory": "memory", "mem": "memory", "processes": "processes",
               "interface": "interface", "job-name": "job_name", "python": "python",
               "log-directory": "log_directory", "local-directory": "local_directory"}
SLURM_DEFAULTS = {"cores": 1, "memory": "8GB", "processes": 1, "walltime": "04:00:00"}


def _parse_opts(opts: Mapping[str, Any] | Sequence[str] | None) -> dict[str, str]:
    if opts is None:
        return {}
    if isinstance(opts, Mapping):
        return {str(k).replace("_", "-"): str(v) for k, v in opts.items()}
    out: dict[str, str] = {}
    for item in opts:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--slurm-opt {item!r}: expected KEY=VALUE, e.g. partition=gpu")
        out[key.strip().replace("_", "-")] = value.strip()
    return out


def slurm_cluster_kwargs(opts: Mapping[str, Any] | Sequence[str] | None = None,
                         gpu: bool = False) -> dict[str, Any]:
    """``SLURMCluster`` arguments from ``--slurm-opt KEY=VALUE`` items.

    Keys: partition, account, walltime, cores, memory, processes, interface, job-name,
    python, log-directory, local-directory; ``gpus=N`` asks Slurm for N GPUs per job
    (``#SBATCH --gpus=N``) and starts the worker with ``--resources GPU=N``;
    ``cell-threads=N`` gives each cell N torch threads (default 1: a job with ``cores=C``
    runs C cells at once); ``scheduler-host`` / ``dashboard`` set where this machine's
    scheduler listens; any other key becomes ``#SBATCH --KEY=VALUE``. Defaults: one core,
    8GB, 4 hours.
    """
    items = _parse_opts(opts)
    kwargs: dict[str, Any] = {_SLURM_KEYS[k]: v for k, v in SLURM_DEFAULTS.items()}
    directives: list[str] = []
    scheduler_options: dict[str, Any] = {}
    gpus = 1 if gpu else 0
    cell_threads = 1
    for key, value in items.items():
        if key in _SLURM_KEYS:
            kwargs[_SLURM_KEYS[key]] = value
        elif key in ("gpus", "gpu"):
            gpus = int(value)
        elif key == "cell-threads":
            cell_threads = int(value)
        elif key == "scheduler-host":
            scheduler_options["host"] = value
        elif key == "dashboard":
            scheduler_options["dashboard_address"] = value
        else:
            directives.append(f"--{key}={value}")
    for name in ("cores", "processes"):
        kwargs[name] = int(kwargs[name])
    if gpus:
        directives.append(f"--gpus={gpus}")
        kwargs["worker_extra_args"] = ["--resources", f"GPU={gpus}"]
    if directives:
        kwargs["job_extra_directives"] = directives
    if scheduler_options:
        kwargs["scheduler_options"] = scheduler_options
    # A worker runs cores/processes cells at once, one torch thread each; with
    # cell-threads=N it runs cores/processes/N cells of N threads each.
    per_cell = max(1, int(cell_threads))
    if per_cell > 1:
        slots = max(1, kwargs["cores"] // kwargs["processes"] // per_cell)
        kwargs["worker_extra_args"] = [*kwargs.get("worker_extra_args", []),
                                       "--nthreads", str(slots)]
    kwargs["job_script_prologue"] = [f"export {THREADS_ENV}={per_cell}"]
    return kwargs


def _describe_slurm(kwargs: Mapping[str, Any]) -> str:
    keys = ("queue", "account", "cores", "memory", "walltime")
    return ", ".join(f"{k}={kwargs[k]}" for k in keys if kwargs.get(k) is not None)


def slurm_job_script(opts: Mapping[str, Any] | Sequence[str] | None = None,
                     gpu: bool = False) -> str:
    """The batch script ``--slurm`` would submit for each worker (nothing is submitted)."""
    from dask_jobqueue import SLURMCluster
    kwargs = slurm_cluster_kwargs(opts, gpu)
    cluster = SLURMCluster(**kwargs)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


# ------------------------------------------------------------------ command line


def add_executor_args(p: argparse.ArgumentParser, jobs_help: str) -> None:
    """The options every grid command shares: --jobs, --executor, --scheduler, --slurm, --gpu."""
    g = p.add_argument_group("where the cells run")
    g.add_argument("--jobs", type=int, help=jobs_help)
    g.add_argument("--executor", choices=("dask", "processes"),
                   help="dask (default: a local Dask cluster, or --scheduler/--slurm) or "
                        "processes (a plain process pool on this machine, no Dask)")
    g.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help=f"run the cells on this Dask cluster (default: ${SCHEDULER_ENV})")
    g.add_argument("--slurm", action="store_true",
                   help="start --jobs Dask workers as Slurm jobs (needs dask-jobqueue)")
    g.add_argument("--slurm-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a Slurm job option, repeatable: partition=..., account=..., "
                        "walltime=HH:MM:SS, cores=N, memory=16GB, gpus=1, any other KEY=VALUE "
                        "becomes '#SBATCH --KEY=VALUE'")
    g.add_argument("--show-job-script", action="store_true",
                   help="with --slurm: print the job script each worker would be submitted "
                        "with, and exit")
    g.add_argument("--gpu", action="store_true",
                   help="every cell asks for one GPU (Dask resources GPU=1); start GPU "
                        "workers with 'dask worker ADDRESS --nthreads 1 --resources GPU=1'")


def executor_options(args: argparse.Namespace) -> dict[str, Any]:
    """``open_executor`` keywords from the parsed options of :func:`add_executor_args`."""
    if args.slurm_opt and not args.slurm:
        raise ValueError("--slurm-opt is given without --slurm")
    if args.show_job_script and not args.slurm:
        raise ValueError("--show-job-script needs --slurm")
    return {"kind": args.executor, "scheduler": args.scheduler, "jobs": args.jobs,
            "slurm": args.slurm, "slurm_opts": list(args.slurm_opt), "gpu": args.gpu}
