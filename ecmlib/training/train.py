"""The training run: the authors' ``train.py`` / ``eval.py`` protocol as functions.

``train_epoch`` is one epoch (shuffle, then per batch: forward, ``compute_losses``,
backward, step); ``train(cfg)`` loops it. It runs Adam over the training split with every feature tensor loaded once and
kept on the device, evaluates every ``eval.eval_every`` epochs (localisation + detection
mAP), keeps the best checkpoint by the dataset's metric (THUMOS14 mAP@0.5, ActivityNet
average mAP 0.5:0.95) and records a per-epoch history. A run directory holds::

    config.json      every value of the run's ExperimentConfig
    history.csv      one row per epoch: each loss term, lr, wall time, every mAP
    history.json     the same, as records
    metrics.json     the best epoch's mAP@tIoU, every average, best_epoch, wall time
    best.pth         official checkpoint format {'epoch', 'state_dict', 'optimizer'}
    last.pth         the same for the last epoch (resume from it)
    result.json      the best epoch's detections, ActivityNet result format
    result.txt       the same, one detection per line (see ``write_txt_results``)
    events.out.tfevents.*  TensorBoard scalars per epoch (``ecmlib.training.tblog``; when installed)

Every file is written atomically; an existing run directory is never reused unless asked.

Resuming (``train(..., resume=RUN)``, ``python -m ecmlib train ... --resume RUN``): ``RUN``
or ``RUN/last.pth`` continues after the last finished epoch, in ``RUN`` itself by default
(``--out COPY``: into a new folder, ``RUN`` untouched). ``last.pth`` is the record: weights,
Adam state, history, the best epoch and its score, and the RNG states (shuffling generator,
torch CPU and CUDA: dropout); it is written at the end of each epoch after the history and
before ``best.pth``, so ``best.pth`` is never ahead of it, and a kill between the two is
repaired from ``last.pth``. A kill at any moment (SIGKILL mid-epoch, mid-evaluation,
mid-write) therefore leaves ``RUN`` resumable, and on the CPU with the same thread count
the finished run equals the uninterrupted one, wall times aside. The configuration must be
``RUN/config.json``'s: any difference is refused naming the keys, except ``train.epochs``
(extend; never below the epochs done) and ``train.device`` / ``train.num_threads``
(accepted with a warning: the continuation is then not bit-identical). Checkpoints hold
only tensors, plain containers, numbers and strings (``torch.load(weights_only=True)``).
``tests/_faults.py`` kills a run at each of these points to test this.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from ..data.features import FeatureSet
from ..data.safeload import load_checkpoint_file
from ..io import atomic_write_json, prepare_run_dir
from ..method.evaluation import GroundTruth, format_table
from ..method.model import ECMNet, aggregates_taps
from . import runlock, speed
from .checkpoint import (OpenedResume, RunState, check_compatible, load_checkpoint,
                         open_resume, remove_stale_temp_files, restore_run, resume_checkpoint,
                         save_epoch)
from .config import ExperimentConfig
from .inference import Evaluation, evaluate_model, result_json, write_txt_results
from .setup import (ground_truth_for, load_data, load_features, make_config, resolve_device,
                    seed_everything)
from .step import step_losses, take_videos, training_inputs
from .tblog import ScalarLog


def _resolve_speed(cfg: ExperimentConfig, ckpt: dict[str, Any] | None, device: torch.device,
                   say: Callable[[str], None]) -> ExperimentConfig:
    """``cfg`` with concrete precision, aggregation path and dropout mask: a resumed run
    keeps what its checkpoint ran with, a new one resolves fast mode's requests
    (``ecmlib.training.speed``)."""
    saved = (ckpt or {}).get("ecmlib_config")
    if isinstance(saved, dict):
        old = ExperimentConfig.from_dict(saved)
        return cfg.with_overrides({"train.precision": old.train.precision,
                                   "model.aggregation": old.model.aggregation,
                                   "model.dropout_mask": old.model.drawn_mask})
    return speed.resolve(cfg, device, say)


# -- training -------------------------------------------------------------------------------

@dataclass
class RunResult:
    """What ``train`` returns: the best model and everything recorded on the way."""

    config: ExperimentConfig
    model: ECMNet
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    best_epoch: int
    run_dir: Path | None
    best_evaluation: Evaluation | None = field(default=None, repr=False)

    def history_frame(self):  # -> pandas.DataFrame
        """The history as a pandas DataFrame (one row per epoch)."""
        import pandas as pd
        return pd.DataFrame(self.history)


def _lr_at(cfg: ExperimentConfig, epoch: int) -> float:
    t = cfg.train
    decayed = t.lr_decay_epoch is not None and epoch > t.lr_decay_epoch
    return t.lr * (t.lr_decay_factor if decayed else 1.0)


def _is_better(value: float, best: float) -> bool:
    return math.isfinite(value) and (not math.isfinite(best) or value > best)


def _environment(device: torch.device) -> dict[str, Any]:
    env = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
           "cpu_threads": torch.get_num_threads(), "cpu_bf16": speed.cpu_bf16()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def train(cfg: ExperimentConfig, data: tuple[FeatureSet, FeatureSet] | None = None,
          out_dir: str | Path | None = None, overwrite: bool = False,
          progress: bool | None = None, resume: str | Path | None = None,
          log: Callable[[str], None] | None = print) -> RunResult:
    """Train ECM with ``cfg`` (see :func:`_train`), as the only writer of ``out_dir``.

    A second process training into the same folder is refused (``runlock``). A run that
    fails before its first epoch is saved removes the folder it created, so the same
    command can run again; one that fails later keeps its epochs for ``--resume``.
    """
    if out_dir is None:
        return _train(cfg, data, out_dir, overwrite, progress, resume, log)
    with runlock.hold(out_dir, "train"):
        folder = Path(out_dir).resolve()  # through a link, the folder it names
        existed = folder.exists()
        was_empty = not existed or (folder.is_dir() and not any(folder.iterdir()))
        try:
            return _train(cfg, data, out_dir, overwrite, progress, resume, log)
        except BaseException as err:
            if was_empty and folder.is_dir() and not (folder / "last.pth").exists():
                # Everything in it is this run's: remove it (the folder too, if ours).
                shutil.rmtree(folder, ignore_errors=True)
                if existed:
                    folder.mkdir(exist_ok=True)
            elif (folder / "last.pth").exists() and log and not isinstance(err, ValueError):
                # (a ValueError is a refused setting or input: nothing ran to continue)
                log(f"{folder}: the epochs saved so far are kept; continue with the same "
                    f"command plus --resume {folder}")
            raise


def _train(cfg: ExperimentConfig, data: tuple[FeatureSet, FeatureSet] | None = None,
           out_dir: str | Path | None = None, overwrite: bool = False,
           progress: bool | None = None, resume: str | Path | None = None,
           log: Callable[[str], None] | None = print) -> RunResult:
    """Train ECM with ``cfg``; evaluate, keep the best checkpoint, record the history.

    ``data`` = (train, test) feature sets (default: ``load_data(cfg)``); ``out_dir`` = run
    directory (None: nothing written); ``progress`` = tqdm bar (None: only when
    interactive); ``resume`` = a run directory (its ``last.pth``) or a checkpoint to continue
    from. With ``out_dir`` = that run directory the run continues in place; another
    ``out_dir`` (empty) receives a copy of what the continuation needs, the source untouched.
    The configuration must be the run's (see ``checkpoint.RESUME_MAY_EXTEND`` / ``_MOVE``).
    """
    t_start = time.perf_counter()
    cfg.loss.check_registered()          # before anything is read or written
    say = log or (lambda _msg: None)
    warn = log or (lambda msg: warnings.warn(msg, RuntimeWarning, stacklevel=3))
    opened = open_resume(cfg, resume, out_dir, overwrite, say, warn)
    run_dir, fresh_folder = _run_folder(out_dir, overwrite, opened)
    _set_threads(cfg, say)
    device = resolve_device(cfg.train.device)
    cfg = _resolve_speed(cfg, opened.ckpt, device, say)
    seed_everything(cfg.train.seed)
    train_set, test_set = _load(cfg, data, run_dir, fresh_folder)
    gt = ground_truth_for(cfg, test_set)
    if run_dir is not None:
        cfg.save(run_dir / "config.json")
    # Features live on the device for the whole run (the authors reload them every epoch).
    x_train = torch.from_numpy(train_set.features).to(device)
    y_train = torch.from_numpy(train_set.labels).to(device)
    x_test = torch.from_numpy(test_set.features).to(device)
    model = ECMNet(cfg.model).to(device)
    x_train, grouped = training_inputs(model, x_train, cfg)
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    state = (restore_run(opened, cfg, run_dir, model, optimizer, generator, device, say, warn)
             if opened.ckpt is not None else RunState.fresh(model))
    bar = tqdm(range(state.start_epoch, cfg.train.epochs + 1), desc=f"ECM {cfg.name}",
               unit="epoch", leave=True,
               disable=(not progress) if progress is not None else None)
    tb = ScalarLog(run_dir)  # TensorBoard scalars in the run folder (when installed)
    for epoch in bar:
        t0 = time.perf_counter()
        row = train_epoch(model, optimizer, x_train, y_train, cfg, epoch, generator, grouped)
        row["train_time_s"] = time.perf_counter() - t0
        new_best = _evaluate_epoch(model, test_set, cfg, gt, x_test, epoch, row, state, bar)
        state.history.append(row)
        tb.log(row)
        if run_dir is not None:
            elapsed = state.elapsed_before + time.perf_counter() - t_start
            save_epoch(run_dir, model, optimizer, cfg, state, epoch, generator, device,
                       new_best, elapsed)
    bar.close()
    tb.close()
    return _finish(cfg, model, state, run_dir, test_set, gt, x_test, train_set, device,
                   state.elapsed_before + time.perf_counter() - t_start, opened.source, say)


def make_optimizer(model: ECMNet, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    """The authors' optimiser: Adam with the config's lr, betas and weight decay."""
    return torch.optim.Adam(model.parameters(), lr=cfg.train.lr, betas=cfg.train.betas,
                            weight_decay=cfg.train.weight_decay)


def train_epoch(model: ECMNet, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor, cfg: ExperimentConfig, epoch: int,
                generator: torch.Generator, grouped: torch.Tensor | None = None,
                ) -> dict[str, Any]:
    """One epoch: shuffle with ``generator``, then per batch forward, losses, backward, step.

    ``grouped`` is ``model.grouped_features(x)``, kept by the caller across epochs (the
    same numbers as without it, without regrouping every batch's features).
    Returns the history row: ``epoch``, ``lr`` and each loss term's mean over the videos.
    """
    lr = _lr_at(cfg, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    sums: dict[str, float] = {}            # every term compute_losses reports, in its order
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    with speed.cuda_math(x.device, cfg.train.precision):  # fp32 means fp32 on a GPU too
        for i in range(0, len(perm), cfg.train.batch_size):
            idx = perm[i:i + cfg.train.batch_size]
            terms = step_losses(model, take_videos(x, idx), take_videos(y, idx), cfg,
                                None if grouped is None else take_videos(grouped, idx))
            optimizer.zero_grad(set_to_none=True)
            terms["loss_total"].backward()
            optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item() * len(idx)
    row: dict[str, Any] = {"epoch": epoch, "lr": lr, **{k: v / len(x) for k, v in sums.items()}}
    if not math.isfinite(row["loss_total"]):
        raise RuntimeError(f"epoch {epoch}: the training loss is {row['loss_total']} "
                           f"(diverged); lower train.lr or check the features")
    return row


def _run_folder(out_dir: str | Path | None, overwrite: bool,
                opened: OpenedResume) -> tuple[Path | None, bool]:
    """(the run folder, whether this run created it); a resume in place reuses its own."""
    if opened.in_place and opened.source is not None:
        run_dir = opened.source.parent
        remove_stale_temp_files(run_dir)
        return run_dir, False
    existed = out_dir is not None and Path(out_dir).exists()
    return (prepare_run_dir(out_dir, overwrite) if out_dir is not None else None), not existed


def _set_threads(cfg: ExperimentConfig, say: Callable[[str], None]) -> None:
    threads, why = ((cfg.train.num_threads, "train.num_threads") if cfg.train.num_threads
                    else speed.default_threads())
    torch.set_num_threads(threads)
    if not cfg.train.num_threads:
        say(f"threads: {threads} ({why}; set train.num_threads to choose)")


def _load(cfg: ExperimentConfig, data: tuple[FeatureSet, FeatureSet] | None,
          run_dir: Path | None, fresh_folder: bool) -> tuple[FeatureSet, FeatureSet]:
    """The (train, test) sets; bad data leaves no empty run folder behind."""
    try:
        train_set, test_set = data if data is not None else load_data(cfg)
    except Exception:
        if run_dir is not None and fresh_folder and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    empty = (train_set.labels.sum(1) == 0).nonzero()[0]
    if len(empty):
        raise ValueError(f"{train_set.source}: {len(empty)} training video(s) have no label "
                         f"(e.g. {train_set.names[empty[0]]}); WTAL needs a video-level label")
    return train_set, test_set


def _evaluate_epoch(model: ECMNet, test_set: FeatureSet, cfg: ExperimentConfig,
                    gt: GroundTruth, x_test: torch.Tensor, epoch: int, row: dict[str, Any],
                    state: RunState, bar: Any) -> bool:
    """Evaluate on the evaluation epochs: metrics into ``row``; True when a new best."""
    if epoch % cfg.eval.eval_every and epoch != cfg.train.epochs:
        return False
    metric = cfg.eval.selection_metric
    t1 = time.perf_counter()
    ev = evaluate_model(model, test_set, cfg, gt, x_test)
    row.update(ev.metrics)
    row["eval_time_s"] = time.perf_counter() - t1
    if metric not in ev.metrics:
        raise ValueError(f"selection metric {metric!r} is not computed; "
                         f"available: {', '.join(ev.metrics)}")
    bar.set_postfix(loss=f"{row['loss_total']:.3f}", **{metric: f"{ev.metrics[metric]:.4f}"})
    if not (_is_better(ev.metrics[metric], state.best["value"]) or state.best["epoch"] == 0):
        return False
    state.best = {"epoch": epoch, "value": ev.metrics[metric]}
    state.best_state = copy.deepcopy(model.state_dict())
    state.best_eval = ev
    state.lost_best = 0
    return True


def _finish(cfg: ExperimentConfig, model: ECMNet, state: RunState, run_dir: Path | None,
            test_set: FeatureSet, gt: GroundTruth, x_test: torch.Tensor, train_set: FeatureSet,
            device: torch.device, wall: float, source: Path | None,
            say: Callable[[str], None]) -> RunResult:
    """The best model back in place, metrics.json and the result files written."""
    best = state.best
    if state.lost_best and int(best["epoch"]) == state.lost_best and source is not None:
        raise RuntimeError(f"{source.with_name('best.pth')}: the weights of the run's best "
                           f"epoch {state.lost_best} are not there (written before this ecmlib "
                           f"kept best.pth behind last.pth); train the run again")
    model.load_state_dict(state.best_state)
    model.eval()
    if state.best_eval is None and int(best["epoch"]) > 0:
        # Resumed after the best epoch: its detections again (inference is deterministic).
        state.best_eval = evaluate_model(model, test_set, cfg, gt, x_test)
    metrics = _final_metrics(cfg, state.history, best, wall, device, train_set, test_set, gt)
    if run_dir is not None:
        atomic_write_json(run_dir / "metrics.json", metrics)
        if state.best_eval is not None:
            atomic_write_json(run_dir / "result.json", result_json(state.best_eval.predictions))
            write_txt_results(run_dir / "result.txt", state.best_eval.predictions)
    if state.best_eval is not None:
        say(f"best epoch {best['epoch']} of {cfg.train.epochs}: {cfg.eval.selection_metric} = "
            f"{best['value']:.4f} ({wall:.1f} s)")
    return RunResult(cfg, model, state.history, metrics, int(best["epoch"]), run_dir,
                     state.best_eval)


def _final_metrics(cfg: ExperimentConfig, history: list[dict[str, Any]], best: dict,
                   wall: float, device: torch.device, train_set: FeatureSet,
                   test_set: FeatureSet, gt: GroundTruth) -> dict[str, Any]:
    """metrics.json: the best epoch's every mAP and average, by name, plus run facts."""
    best_row = next((r for r in history if r["epoch"] == best["epoch"]), {})
    evaluated = [r for r in history if "classification_mAP" in r]
    keys = [k for k in best_row if k.startswith(("mAP@", "average_mAP@"))]
    return {
        "dataset": cfg.data.dataset,
        "data_source": cfg.data.data_root and "real features" or f"synthetic:{cfg.data.synthetic}",
        "selection_metric": cfg.eval.selection_metric,
        "best_epoch": int(best["epoch"]),
        "epochs": cfg.train.epochs,
        **{k: best_row[k] for k in keys},
        "classification_mAP": best_row.get("classification_mAP"),
        "last_epoch": {k: evaluated[-1][k] for k in keys} if evaluated else {},
        "wall_time_s": wall,
        "train_videos": len(train_set), "test_videos": len(test_set),
        "ground_truth": gt.describe(),
        "seed": cfg.train.seed,
        "precision": cfg.train.precision,
        "aggregation_path": "taps" if aggregates_taps(cfg.model) else "features",
        "dropout_mask": cfg.model.dropout_mask,
        **_environment(device),
    }


# -- command-line entry points ------------------------------------------------------------

def _config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    overrides = list(args.set or [])
    if getattr(args, "device", None):
        overrides.append(f"train.device={args.device}")
    return make_config(args.dataset, synthetic=args.synthetic, data_root=args.data_root,
                       overrides=overrides, epochs=getattr(args, "epochs", None))


def train_main(args: argparse.Namespace) -> int:
    """``python -m ecmlib train``: train, write the run directory, print the seed's table."""
    cfg = _config_from_args(args)
    resume = resume_checkpoint(args.resume) if args.resume else None
    if args.out:
        out = Path(args.out)
    elif resume is not None and resume.name == "last.pth":
        out = resume.parent                  # a run continues in its own folder
    else:
        out = Path("runs") / f"train-{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}"
    res = train(cfg, out_dir=out, overwrite=args.overwrite, resume=args.resume,
                progress=False if args.quiet else None)
    if res.best_evaluation is not None:
        print(format_table(res.best_evaluation.result))
    print(f"run directory: {out}")
    return 0


def eval_main(args: argparse.Namespace) -> int:
    """``python -m ecmlib eval``: evaluate a checkpoint, print the table, write the results."""
    weight = Path(args.weight_file)
    cfg = _config_from_args(args)
    # Our own checkpoints carry their model config; official ones are read by the preset.
    raw = load_checkpoint_file(weight)  # weights_only: nothing of the file runs
    if isinstance(raw, dict) and "ecmlib_config" in raw and not args.set:
        saved = ExperimentConfig.from_dict(raw["ecmlib_config"])
        cfg = cfg.with_overrides({f"model.{k}": v for k, v in vars(saved.model).items()})
    if isinstance(raw, dict) and "state_dict" in raw:
        check_compatible({k.removeprefix("module."): v for k, v in raw["state_dict"].items()},
                         cfg.model, str(weight))
    model, _ = load_checkpoint(weight, cfg.model, map_location=resolve_device(cfg.train.device))
    test_set = load_features(cfg, cfg.data.test_split)  # the train split is not needed
    ev = evaluate_model(model, test_set, cfg)
    print(format_table(ev.result))
    out = Path(args.out) if args.out else weight.parent
    stem = weight.stem
    targets = [out / f"{stem}_result.json", out / f"{stem}_result.txt", out / f"{stem}_metrics.json"]
    clash = [p for p in targets if p.exists()]
    if clash and not args.overwrite:
        raise FileExistsError(f"{clash[0]} exists; pass --overwrite or choose --out")
    atomic_write_json(targets[0], result_json(ev.predictions))
    write_txt_results(targets[1], ev.predictions)
    atomic_write_json(targets[2], {**ev.metrics, "weight_file": weight.name,
                                   "ground_truth": ev.result.gt_description})
    print(f"results: {', '.join(str(p) for p in targets)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
