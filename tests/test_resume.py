"""Resume: a run killed with SIGKILL at any point continues in its own folder and ends exactly
as the uninterrupted run (history and metrics less the wall times, result files, weights).

The kills are deterministic: ``ECMLIB_TEST_KILL_AT=<phase>:<epoch>`` makes ``tests/_faults.py``
(the CLI with library functions wrapped from outside) SIGKILL the run at that point.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ecmlib.cli import main

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 5
# lr and cls_score_th make the tiny preset detect something within 5 epochs, so mAP@0.5 moves
# and the best epoch changes; evaluation every epoch makes every epoch an evaluation point.
SETTINGS = ["train.num_threads=1", "eval.eval_every=1", "train.lr=0.003",
            "localize.cls_score_th=0.05"]
TIME_KEYS = {"train_time_s", "eval_time_s", "wall_time_s"}


def _cmd(*extra: str, sets: list[str] = SETTINGS) -> list[str]:
    return [sys.executable, str(ROOT / "tests" / "_faults.py"), "train", "--dataset", "THUMOS14", "--synthetic",
            "tiny", "--epochs", str(EPOCHS), "--quiet", *extra, "--set", *sets]


def _env(kill_at: str | None = None) -> dict[str, str]:
    # no TensorBoard events (import time; they are not part of the comparison)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "ECMLIB_TENSORBOARD": "0"}
    env.pop("ECMLIB_TEST_KILL_AT", None)
    if kill_at:
        env["ECMLIB_TEST_KILL_AT"] = kill_at
    return env


def _run(cmd: list[str], cwd: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_env(kill_at), capture_output=True, text=True,
                          timeout=240)


def _killed(proc: subprocess.CompletedProcess, point: str) -> None:
    assert proc.returncode == -signal.SIGKILL, (
        f"{point}: expected a SIGKILL, got rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}")


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def _history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k not in TIME_KEYS} for row in csv.DictReader(fh)]


def _metrics(run: Path) -> dict:
    return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items()
            if k not in TIME_KEYS}


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


def _assert_same_run(run: Path, ref: Path) -> None:
    assert _history(run) == _history(ref)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]  # noqa: E731
    assert strip(json.loads((run / "history.json").read_text())) == \
        strip(json.loads((ref / "history.json").read_text()))
    assert _metrics(run) == _metrics(ref)
    for name in ("result.json", "result.txt", "config.json"):
        assert (run / name).read_bytes() == (ref / name).read_bytes(), name
    for name in ("best.pth", "last.pth"):
        # weights-only loadable (plain containers, numbers, strings and tensors only)
        a = torch.load(run / name, map_location="cpu", weights_only=True)
        b = torch.load(ref / name, map_location="cpu", weights_only=True)
        assert a["epoch"] == b["epoch"], name
        assert a["state_dict"].keys() == b["state_dict"].keys()
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]), name
    assert not list(run.glob(".*.tmp")), "a temp file of an interrupted write is left"


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_in_place_ends_as_the_uninterrupted_run(tmp_path) -> None:
    ref, run, copy = tmp_path / "ref", tmp_path / "run", tmp_path / "copy"
    reference = subprocess.Popen(_cmd("--out", str(ref)), cwd=tmp_path, env=_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # A fresh run killed mid-epoch 1 (no last.pth yet: the resume starts over in RUN),
        # then each resume killed one step further: while best.pth of epoch 1 sits in its
        # temp file (last.pth is written), mid-evaluation, mid-write of last.pth (history.csv,
        # written before it, is then an epoch ahead).
        _killed(_run(_cmd("--out", str(run)), tmp_path, "epoch:1"), "epoch:1")
        assert (run / "config.json").is_file() and not (run / "last.pth").exists()
        _killed(_run(_cmd("--resume", str(run)), tmp_path, "write-best:1"), "write-best:1")
        assert list(run.glob(".best.pth.*.tmp")) and not (run / "best.pth").exists()
        for point in ("eval:2", "write-last:3"):
            _killed(_run(_cmd("--resume", str(run)), tmp_path, point), point)
        assert list(run.glob(".last.pth.*.tmp"))
        last = torch.load(run / "last.pth", map_location="cpu", weights_only=True)
        assert last["epoch"] == 2 and [r["epoch"] for r in last["ecmlib_history"]] == [1, 2]
        assert [r["epoch"] for r in json.loads((run / "history.json").read_text())] == [1, 2, 3]

        # --out COPY continues into a copy and leaves the killed run untouched.
        before = _snapshot(run)
        _ok(_run(_cmd("--resume", str(run / "last.pth"), "--out", str(copy)), tmp_path))
        assert _snapshot(run) == before
        out, err = reference.communicate(timeout=240)
        assert reference.returncode == 0, err
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()
    _assert_same_run(copy, ref)

    # The last kills: mid-write of best.pth at a later best epoch (last.pth already names it
    # the best) when there is one, and between metrics.json and the result files.
    best_epochs, best = [], float("-inf")
    for row in json.loads((ref / "history.json").read_text()):
        if row["mAP@0.5"] > best:
            best_epochs.append(row["epoch"])
            best = row["mAP@0.5"]
    later = [e for e in best_epochs if e >= 3]        # last.pth is at epoch 2 here
    points = ([f"write-best:{later[-1]}"] if later else []) + [f"final:{EPOCHS}"]
    print("kill points: epoch:1 write-best:1 eval:2 write-last:3", *points)
    for point in points:
        _killed(_run(_cmd("--resume", str(run)), tmp_path, point), point)
    proc = _run(_cmd("--resume", str(run / "last.pth")), tmp_path)
    _ok(proc)
    assert f"run directory: {run}" in proc.stdout
    _assert_same_run(run, ref)
    assert not (tmp_path / "runs").exists()        # no new run directory was made


def test_resume_on_another_configuration_is_refused(tmp_path, capsys, monkeypatch) -> None:
    from ecmlib.training.setup import make_config
    from ecmlib.training.train import train
    monkeypatch.setenv("ECMLIB_TENSORBOARD", "0")
    cfg = make_config("THUMOS14", synthetic="tiny", epochs=1,
                      overrides=["eval_every=1", "train.num_threads=1"])
    run = tmp_path / "run"
    threads = torch.get_num_threads()
    try:
        train(cfg, out_dir=run, progress=False, log=None)
    finally:
        torch.set_num_threads(threads)
    before = _snapshot(run)
    args = ["train", "--dataset", "THUMOS14", "--synthetic", "tiny", "--resume", str(run),
            "--quiet", "--set", "eval_every=1", "train.num_threads=1"]
    assert main([*args, "train.lr=0.001", "batch_size=8"]) == 2
    err = capsys.readouterr().err
    # exactly the two keys; train.epochs (10 now, 1 in the run) may differ: a run may be extended
    assert f"differs from {run / 'config.json'} in train.lr, train.batch_size (" in err
    assert "train.lr is 0.0002 in the run, 0.001 now" in err
    assert main([*args, "--overwrite"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _snapshot(run) == before
    # Extending is allowed; a budget below the epochs done is not.
    with pytest.raises(ValueError, match="at epoch 1 but train.epochs is 0"):
        train(cfg.with_overrides(["train.epochs=0"]), out_dir=run, resume=run, log=None)
    assert _snapshot(run) == before
