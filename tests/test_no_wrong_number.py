"""A run is what its files say, or it is refused: the train-side attacks that used to give a
wrong number, a lost run or a raw traceback (bad settings, a checkpoint of another run, two
writers in one folder, a full disk, a failed run's leftovers)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecmlib.training import runlock
from ecmlib.cli import main
from ecmlib.training.setup import make_config
from ecmlib.training.train import train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train", "--dataset", "THUMOS14", "--synthetic", "tiny", "--quiet"]


def _cli(args: list[str], capsys) -> tuple[int, str]:
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def _tiny_run(out: Path, seed: int, epochs: int = 2) -> None:
    cfg = make_config("THUMOS14", synthetic="tiny",
                      overrides=[f"train.seed={seed}", "train.num_threads=1"], epochs=epochs)
    train(cfg, out_dir=out, progress=False, log=None)


@pytest.mark.parametrize("setting, message", [
    ("eval.eval_every=0", "eval.eval_every must be an integer >= 1"),
    ("eval.eval_every=-1", "eval.eval_every must be an integer >= 1"),
    ("loss.w_eq=nan", "'loss.w_eq': 'nan' is not a finite number"),
    ("train.lr=inf", "'train.lr': 'inf' is not a finite number"),
])
def test_bad_settings_are_refused_before_any_folder_exists(tmp_path, capsys, setting, message):
    out = tmp_path / "run"
    rc, text = _cli([*TINY, "--epochs", "1", "--out", str(out), "--set", setting], capsys)
    assert rc == 2 and message in text and "Traceback" not in text
    assert not out.exists()


def test_resume_refuses_a_last_pth_of_another_run(tmp_path, capsys):
    a, b = tmp_path / "seed5", tmp_path / "seed16"
    _tiny_run(a, seed=5)
    _tiny_run(b, seed=16, epochs=1)
    (b / "metrics.json").unlink()
    shutil.copy2(a / "last.pth", b / "last.pth")
    rc, text = _cli([*TINY, "--epochs", "2", "--resume", str(b), "--set", "train.seed=16",
                     "train.num_threads=1"], capsys)
    assert rc == 2
    assert "written by another run" in text and "train.seed is 5 in the checkpoint, 16" in text
    assert not (b / "metrics.json").exists()


def test_resume_of_a_finished_run_without_last_pth_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    _tiny_run(run, seed=0)
    (run / "last.pth").unlink()
    rc, text = _cli([*TINY, "--epochs", "2", "--resume", str(run), "--set", "train.seed=0",
                     "train.num_threads=1"], capsys)
    assert rc == 2 and "the run is finished" in text
    (run / "metrics.json").unlink()
    rc, text = _cli([*TINY, "--epochs", "2", "--resume", str(run), "--set", "train.seed=0",
                     "train.num_threads=1"], capsys)
    assert rc == 2 and "history.csv records 2 epoch(s) but last.pth is missing" in text


def test_a_folder_has_one_writer_and_a_killed_writer_releases_it(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ecmlib.training import runlock\n"
         f"with runlock.hold({str(run)!r}):\n    print('held', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(runlock.FolderBusyError, match=rf"held by pid {holder.pid} on "):
            _tiny_run(run, seed=0, epochs=1)
        assert not run.exists()
    finally:
        holder.kill()
        holder.wait()
    _tiny_run(run, seed=0, epochs=1)  # the killed holder's lock is free again
    assert (run / "metrics.json").is_file()


def test_two_train_into_one_out_at_once_one_is_refused(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ecmlib", *TINY, "--epochs", "3", "--out", str(out),
           "--set", "train.num_threads=1", "eval.eval_every=1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ECMLIB_TENSORBOARD": "0"}
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    refused = outs[[p.returncode for p in procs].index(2)]
    assert "held by pid" in refused or "already holds results" in refused, refused
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3


def test_a_full_disk_while_writing_the_history_names_the_file(tmp_path, capsys, monkeypatch):
    import ecmlib.io as io

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(io.os, "fsync", full)
    out = tmp_path / "run"
    rc, text = _cli([*TINY, "--epochs", "1", "--out", str(out)], capsys)
    assert rc == 2 and "Traceback" not in text
    assert "history.csv: writing failed (the disk is full)" in text or \
        "config.json: writing failed (the disk is full)" in text, text
    assert not out.exists()  # nothing finished: the folder it created is gone


def test_a_full_disk_inside_torch_save_says_the_disk_is_full(tmp_path, capsys, monkeypatch):
    import ecmlib.io as io
    import ecmlib.training.train as tr

    def broken_save(*_a, **_k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    monkeypatch.setattr(tr.torch, "save", broken_save)
    monkeypatch.setattr(io.shutil if hasattr(io, "shutil") else shutil, "disk_usage",
                        lambda _p: shutil._ntuple_diskusage(100, 100, 0))
    out = tmp_path / "run"
    rc, text = _cli([*TINY, "--epochs", "1", "--out", str(out)], capsys)
    assert rc == 2 and "last.pth: writing failed (the disk is full)" in text, text


# -- sweeps -----------------------------------------------------------------------------

NB02 = ROOT / "notebooks" / "02_train_ecm.ipynb"


def test_sweep_quick_refuses_values_that_quick_mode_would_replace(tmp_path, capsys):
    out = tmp_path / "sweep"
    rc, text = _cli(["sweep", str(NB02), "-p", "hidden_dim", "8", "64", "-p", "lr", "1e-3",
                     "1e-5", "--quick", "--executor", "processes", "--out", str(out)], capsys)
    assert rc == 2 and "quick mode sets hidden_dim itself" in text
    assert not out.exists()


def test_quick_overrides_are_read_from_the_notebook_code():
    from ecmlib.studies.workbook import quick_overrides
    assert quick_overrides(NB02) == {"synthetic", "epochs", "hidden_dim", "eval_every"}


def test_a_second_sweep_on_a_busy_folder_is_refused_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from ecmlib.training import runlock\n"
         f"with runlock.hold({str(out)!r}, 'sweep'):\n    print('held', flush=True); "
         "time.sleep(60)"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        nb = ROOT / "tests" / "fixtures" / "notebooks" / "01_alpha.ipynb"
        rc, text = _cli(["sweep", str(nb), "-p", "seed", "0", "--out", str(out)], capsys)
        assert rc == 2 and f"held by pid {holder.pid}" in text, text
        assert list(out.iterdir()) == []
    finally:
        holder.kill()
        holder.wait()


def test_process_pool_workers_die_with_a_killed_driver(tmp_path):
    pid_file = tmp_path / "worker.pid"
    # The pool spawns its workers: the task must be importable, so it lives in a module.
    (tmp_path / "poolwork.py").write_text(
        "import os, time\n"
        "def work(path):\n"
        "    open(path, 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n")
    driver = subprocess.Popen([sys.executable, "-c", f"""
import time
from ecmlib.studies.executor import open_executor
from poolwork import work
pool = open_executor("processes", jobs=1, n_tasks=1)
pool.submit(work, {str(pid_file)!r})
time.sleep(120)
"""], cwd=tmp_path, env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"})
    try:
        deadline = time.monotonic() + 60
        while not pid_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        worker = int(pid_file.read_text())
    finally:
        driver.kill()
        driver.wait()
    import psutil
    deadline = time.monotonic() + 15
    while psutil.pid_exists(worker) and time.monotonic() < deadline:
        try:
            if psutil.Process(worker).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.Error:
            break
        time.sleep(0.2)
    alive = psutil.pid_exists(worker) and psutil.Process(worker).status() != psutil.STATUS_ZOMBIE
    assert not alive, "the pool worker outlived its killed driver"


# -- found in review: legitimate resumes, link spellings, infinities ---------------------

def _killed_run(tmp_path: Path, kill_at: str, *sets: str) -> tuple[list[str], Path]:
    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "tests" / "_faults.py"), *TINY, "--epochs", "3",
           "--out", str(run),
           "--set", "train.num_threads=1", "eval.eval_every=1", *sets]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ECMLIB_TENSORBOARD": "0",
           "ECMLIB_TEST_KILL_AT": kill_at}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # killed where asked, not crashed
    return cmd, run


def _resume(cmd: list[str], run: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ECMLIB_TENSORBOARD": "0"}
    env.pop("ECMLIB_TEST_KILL_AT", None)
    return subprocess.run([*cmd[:cmd.index("--out")], "--resume", str(run),
                           *cmd[cmd.index("--set"):]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_legacy_bf16_run_resumes_in_bf16(tmp_path):
    cmd, run = _killed_run(tmp_path, "history:2", "train.bf16=true")
    proc = _resume(cmd, run, tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and metrics["epochs"] == 3


def test_a_kill_between_history_and_the_first_last_pth_starts_over(tmp_path):
    cmd, run = _killed_run(tmp_path, "history:1")
    assert not (run / "last.pth").exists() and (run / "history.csv").is_file()
    proc = _resume(cmd, run, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "starting over" in proc.stdout + proc.stderr


def test_one_lock_whatever_the_spelling_of_the_folder(tmp_path):
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    with runlock.hold(real):
        for other in (tmp_path / "link", real / "sub" / "..", Path(str(real) + "/")):
            with pytest.raises(runlock.FolderBusyError):
                with runlock.hold(other):
                    pass


def test_an_infinite_integer_is_refused_by_name(tmp_path, capsys):
    import pandas as pd
    res = tmp_path / "res"
    shutil.copytree(ROOT / "data" / "results", res)
    path = res / "04_ablation_weight_transition.csv"
    t = pd.read_csv(path)
    t["best_epoch"] = t["best_epoch"].astype(float)
    t.loc[0, "best_epoch"] = float("inf")
    t.to_csv(path, index=False)
    rc, text = _cli(["record", "--study", "04", "--results", str(res), "--list"], capsys)
    assert rc == 2 and "column 'best_epoch': inf is not an integer" in text


def test_a_grid_cell_takes_its_share_of_threads(monkeypatch):
    from ecmlib.training import speed
    monkeypatch.setenv("ECMLIB_RUN_THREADS", "3")
    assert speed.default_threads()[0] == 3


def test_a_failed_run_through_a_linked_out_leaves_it_reusable(tmp_path, capsys):
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    args = [*TINY, "--epochs", "1", "--out", str(tmp_path / "link"), "--set",
            "train.num_threads=1"]
    rc, text = _cli([*args, "eval.selection_metric=bogus"], capsys)
    assert rc == 2 and "bogus" in text
    assert target.is_dir() and list(target.iterdir()) == []  # emptied, kept (it was the user's)
    rc, text = _cli(args, capsys)
    assert rc == 0, text
