"""Training and evaluation: the authors' ``train.py`` / ``eval.py`` protocol as functions.

``train(cfg)`` runs Adam over the training split with every feature tensor loaded once and
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
The test hook ``ECMLIB_TEST_KILL_AT=<phase>:<epoch>`` SIGKILLs the process at a point
(see ``_kill_point``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import signal
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import SECTIONS, ExperimentConfig, preset
from ..data.features import THUMOS14_CLASSES, FeatureSet, load_annotations
from ..method.evaluation import (DetectionResult, GroundTruth, Predictions, classification_map,
                         evaluate_detection, format_table, ground_truth_from_dict,
                         predictions_from_arrays)
from ..io import (atomic_write, atomic_write_json, atomic_write_text, prepare_run_dir,
                 write_failure)
from ..method.localize import localize_batch_flat
from ..method.losses import compute_losses
from ..method.model import ECMNet, aggregates_taps, check_compatible, load_checkpoint
from ..data.safeload import load_checkpoint_file
from .tblog import ScalarLog
from . import runlock, speed

# The synthetic benchmark each dataset falls back to when no real features are given, and
# the values that differ from the paper config on it: a CPU-sized trunk and an evaluation
# every few epochs (the paper's widths and per-epoch evaluation are for a GPU).
DEFAULT_SYNTHETIC = {"THUMOS14": "thumos14-mini", "ActivityNet1.2": "anet12-mini",
                     "ActivityNet1.3": "anet13-mini"}
SYNTHETIC_OVERRIDES: dict[str, dict[str, Any]] = {
    "thumos14-mini": {"hidden_dim": 128, "epochs": 100, "eval_every": 5},
    "anet12-mini": {"hidden_dim": 128, "epochs": 36, "eval_every": 4},
    "anet13-mini": {"hidden_dim": 128, "epochs": 36, "eval_every": 4},
    "tiny": {"hidden_dim": 32, "epochs": 10, "eval_every": 5, "batch_size": 16},
    "thumos14-full": {},
}


# -- setup ----------------------------------------------------------------------------------

def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; an explicit CUDA request must be satisfiable."""
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available "
                           f"(torch {torch.__version__}); use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {name!r} was asked for but only "
                           f"{torch.cuda.device_count()} CUDA device(s) exist")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (a CPU run then repeats exactly)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_config(dataset: str = "THUMOS14", synthetic: str | None = None,
                data_root: str | None = None, overrides: list[str] | dict | None = None,
                epochs: int | None = None) -> ExperimentConfig:
    """The preset of ``dataset``, pointed at real features or a synthetic preset, plus overrides.

    ``ECMLIB_FAST=1`` in the environment (what ``sweep --fast`` sets for its runs) turns fast
    mode on before the overrides, which may still turn it off.

    Without ``data_root`` the dataset's synthetic mini benchmark is used; its feature width
    and snippet count come from the synthetic preset, and ``SYNTHETIC_OVERRIDES`` size the
    trunk for a CPU. User overrides are applied last and win.
    """
    cfg = preset(dataset)
    if data_root:
        cfg = cfg.with_overrides({"data.data_root": str(data_root), "data.synthetic": None})
    else:
        from ..data.synthetic import get_spec
        name = synthetic or DEFAULT_SYNTHETIC[dataset]
        spec = get_spec(name)
        if spec.dataset != dataset:
            raise ValueError(f"synthetic preset {name!r} is built on {spec.dataset}, "
                             f"not {dataset}; pass --dataset {spec.dataset}")
        base = {"data.synthetic": name, "feat_dim": spec.feat_dim,
                "num_snippets": spec.num_snippets}
        extra = SYNTHETIC_OVERRIDES.get(name, {})
        base.update({k if k in ("hidden_dim",) else
                     {"epochs": "train.epochs", "eval_every": "eval.eval_every",
                      "batch_size": "train.batch_size"}[k]: v for k, v in extra.items()})
        cfg = cfg.with_overrides(base)
    if epochs is not None:
        cfg = cfg.with_overrides({"train.epochs": epochs})
    if os.environ.get(speed.FAST_ENV) == "1":  # a grid run with --fast (sweep --fast)
        cfg = cfg.with_overrides({"train.fast": True})
    if overrides:
        cfg = cfg.with_overrides(overrides)
    return cfg


def load_features(cfg: ExperimentConfig, split: str,
                  max_videos: int | None = None) -> FeatureSet:
    """One split's feature set: real features from ``data_root`` or the synthetic preset
    (with ``data.synthetic_knobs``); ``max_videos`` keeps the first videos of the split.

    Only this split is read or generated: a synthetic video depends on (preset, seed,
    video) alone, so a split made here equals the same split made beside the others.
    """
    d = cfg.data
    if d.data_root:
        from ..data.features import load_split
        fs = load_split(d.data_root, d.dataset, split, cfg.model.num_snippets,
                        feat_dim=cfg.model.feat_dim, layout=d.layout,
                        gt=ground_truth_path(cfg), labels=d.labels)
        if max_videos is not None:
            fs = fs.subset(np.arange(min(max_videos, len(fs))))
    else:
        from ..data.synthetic import generate, get_spec, parse_knobs, video_names
        if not d.synthetic:
            raise ValueError("config has neither data.data_root nor data.synthetic")
        spec = get_spec(d.synthetic)
        if d.synthetic_knobs:
            spec = spec.replace(**parse_knobs(d.synthetic_knobs))
        names = None if max_videos is None else video_names(spec, split)[:max_videos]
        fs = generate(spec, seed=d.synthetic_seed, splits=[split], videos=names)[split]
    if fs.feat_dim != cfg.model.feat_dim or fs.num_snippets != cfg.model.num_snippets:
        raise ValueError(
            f"{fs.source or fs.split}: features are {fs.feat_dim}-d with {fs.num_snippets} "
            f"snippets but the config says feat_dim={cfg.model.feat_dim}, "
            f"num_snippets={cfg.model.num_snippets}; use --set feat_dim=... num_snippets=...")
    if len(fs) == 0:
        raise ValueError(f"{fs.source or fs.split}: split {fs.split!r} is empty")
    if fs.num_classes != cfg.model.num_classes:
        raise ValueError(f"{fs.source}: {fs.num_classes} classes but the config has "
                         f"num_classes={cfg.model.num_classes}")
    return fs


def load_data(cfg: ExperimentConfig) -> tuple[FeatureSet, FeatureSet]:
    """(train, test) feature sets: real features from ``data_root`` or the synthetic preset."""
    return load_features(cfg, cfg.data.train_split), load_features(cfg, cfg.data.test_split)


def ground_truth_path(cfg: ExperimentConfig) -> Path:
    """The ground-truth JSON in data/ for the config's dataset and variant."""
    from ..data.features import DATASETS, default_data_dir
    folder = DATASETS[cfg.data.dataset]["folder"]
    name = "gt.json" if cfg.data.gt_variant == "official" else f"gt_{cfg.data.gt_variant}.json"
    return default_data_dir() / folder / name


def ground_truth_for(cfg: ExperimentConfig, test_set: FeatureSet) -> GroundTruth:
    """Ground truth of the test subset.

    On the synthetic benchmark (which may hold a subset of the real videos) it is
    restricted to the generated videos; on real features it is the whole subset, so a
    missing feature file costs recall instead of silently shrinking the benchmark.
    """
    gt = load_annotations(cfg.data.dataset, cfg.data.gt_variant)
    if not cfg.data.data_root:
        keep = set(test_set.names)
        gt = {**gt, "database": {k: v for k, v in gt["database"].items() if k in keep}}
    return ground_truth_from_dict(gt, cfg.data.gt_subset, classes=test_set.classes,
                                  source=str(ground_truth_path(cfg).name))


# -- inference and evaluation --------------------------------------------------------------

@torch.no_grad()
def predict(model: ECMNet, features: torch.Tensor | np.ndarray, batch_size: int = 64,
            device: torch.device | None = None, weights: bool = False) -> tuple[np.ndarray, ...]:
    """(softmax video scores [N, C], raw CAS [N, C, T]) for every video, dropout off.

    With ``weights`` the post stream's aggregation weights a [N, C, T] are returned third
    (they exist for every stream setting; the explorer draws them).
    """
    device = device or next(model.parameters()).device
    x_all = torch.as_tensor(features)
    outs: list[list[torch.Tensor]] = [[], [], []]
    was_training = model.training
    model.eval()
    try:
        for i in range(0, x_all.shape[0], batch_size):
            h, cas = model.cas(x_all[i:i + batch_size].to(device, non_blocking=True))
            outs[0].append(torch.softmax(model.pre_scores(cas), dim=1).float().cpu())
            outs[1].append(cas.float().cpu())
            if weights:
                outs[2].append(model.aggregation_weights(h, cas).float().cpu())
    finally:
        model.train(was_training)
    return tuple(torch.cat(o).numpy() for o in outs if o)


def detect(scores: np.ndarray, cas: np.ndarray, fs: FeatureSet,
           cfg: ExperimentConfig) -> Predictions:
    """Localise every video and return the detections as evaluator predictions."""
    params = cfg.localize
    time_base = fs.fps if params.time_unit == "fps" else fs.duration
    flat = localize_batch_flat(cas, scores, fs.frame_num, time_base, params)
    names = np.asarray(fs.names, dtype=object)[flat.video]
    return predictions_from_arrays(names, flat.label, flat.start, flat.end, flat.score,
                                   classes=fs.classes, source="detections")


@dataclass
class Evaluation:
    """Everything one evaluation produced."""

    metrics: dict[str, float]
    result: DetectionResult
    predictions: Predictions
    scores: np.ndarray
    cas: np.ndarray


def evaluate_model(model: ECMNet, test_set: FeatureSet, cfg: ExperimentConfig,
                   gt: GroundTruth | None = None, features: torch.Tensor | None = None) -> Evaluation:
    """Inference, localisation and detection mAP (+ video classification mAP) on a split."""
    gt = gt or ground_truth_for(cfg, test_set)
    feats = features if features is not None else torch.from_numpy(test_set.features)
    scores, cas = predict(model, feats)
    if not (np.isfinite(scores).all() and np.isfinite(cas).all()):
        raise RuntimeError("the model's scores or CAS are NaN/inf: training diverged; "
                           "lower train.lr or check the features")
    preds = detect(scores, cas, test_set, cfg)
    result = evaluate_detection(gt, preds, np.asarray(cfg.eval.tiou))
    metrics = {k: float(v) for k, v in result.as_dict().items()}
    metrics["classification_mAP"] = float(classification_map(scores, test_set.labels))
    metrics["num_detections"] = int(len(preds.score))
    return Evaluation(metrics, result, preds, scores, cas)


# -- results files --------------------------------------------------------------------------

THUMOS101_INDEX = dict(zip(
    THUMOS14_CLASSES,
    [7, 9, 12, 21, 22, 23, 24, 26, 31, 33, 36, 40, 45, 51, 68, 79, 85, 92, 93, 97]))


def result_json(preds: Predictions) -> dict[str, Any]:
    """ActivityNet result-file dict: {'version', 'results': {vid: [{label, segment, score}]}}."""
    results: dict[str, list] = {}
    for v, c, s, e, sc in zip(preds.video_idx, preds.class_idx, preds.start, preds.end, preds.score):
        results.setdefault(preds.video_names[v], []).append(
            {"label": preds.classes[c], "segment": [float(s), float(e)], "score": float(sc)})
    return {"version": "VERSION 1.3", "results": results,
            "external_data": {"used": True, "details": "I3D features (or ecmlib synthetic)"}}


def write_txt_results(path: str | Path, preds: Predictions) -> None:
    """One detection a line: ``video start end class score``.

    THUMOS14 classes are written as their THUMOS-101 index (the challenge's detection
    format, which the authors' evaluation writes); other datasets use the class name.
    """
    lines = []
    for v, c, s, e, sc in zip(preds.video_idx, preds.class_idx, preds.start, preds.end, preds.score):
        name = preds.classes[c]
        label = THUMOS101_INDEX.get(name, name.replace(" ", "_"))
        lines.append(f"{preds.video_names[v]} {s:.2f} {e:.2f} {label} {sc:.4f}")
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def save_checkpoint(path: str | Path, model: ECMNet, optimizer: torch.optim.Optimizer | None,
                    epoch: int, extra: dict[str, Any] | None = None) -> None:
    """Official checkpoint format ``{'epoch', 'state_dict', 'optimizer'}`` (+ our extras).

    Extra keys (config, history) are ignored by the authors' loader. The file is written
    atomically: a failed save (disk full) keeps the previous checkpoint and says so.
    """
    state = {"epoch": epoch, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict() if optimizer is not None else {}}
    state.update(extra or {})

    def write(fh) -> None:
        torch.save(state, fh)
        _kill_point(f"write-{Path(path).stem}", epoch)   # test hook: temp file written, not renamed

    try:
        atomic_write(path, write)
    except OSError as err:
        raise RuntimeError(f"saving the checkpoint failed: {err.strerror}") from err
    except RuntimeError as err:  # torch's own writer (e.g. a full disk mid-file)
        raise RuntimeError(f"saving the checkpoint failed: {write_failure(path, err)}") from err


# -- resuming -------------------------------------------------------------------------------

# A resume runs on the run's own configuration. Two kinds of keys may differ: the epoch
# budget (a run may be extended, never cut below the epochs it has done), and where the run
# executes (device, CPU threads: the continuation runs, with a warning that it cannot repeat
# the uninterrupted run bit for bit). Any other difference is refused, naming the keys.
RESUME_MAY_EXTEND = ("train.epochs",)
RESUME_MAY_MOVE = ("train.device", "train.num_threads")
RUN_FILES = ("config.json", "history.csv", "history.json", "metrics.json", "best.pth",
             "last.pth", "result.json", "result.txt")
KILL_ENV = "ECMLIB_TEST_KILL_AT"


def _kill_point(phase: str, epoch: int) -> None:
    """Test hook: ``ECMLIB_TEST_KILL_AT=<phase>:<epoch>`` SIGKILLs this process right here.

    Phases: ``epoch`` (mid-epoch: after its first batch), ``eval`` (evaluation computed, not
    recorded), ``history`` (history files written, last.pth not), ``write-last`` /
    ``write-best`` (checkpoint complete in its temp file, not renamed), ``final`` (after the
    last epoch: metrics.json written, result files not; epoch = train.epochs).
    """
    if os.environ.get(KILL_ENV) == f"{phase}:{epoch}":
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def resume_checkpoint(resume: str | Path) -> Path:
    """The checkpoint a ``--resume`` value names: a run directory stands for its ``last.pth``.

    A run directory killed before its first epoch ended has a ``config.json`` but no
    ``last.pth`` yet: the missing path is returned, and the run starts over in place.
    """
    path = Path(resume)
    if path.is_dir():
        path = path / "last.pth"
        if not path.exists() and (path.parent / "config.json").is_file():
            _check_nothing_lost(path.parent)
            return path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint to resume from not found")
    return path


def _check_nothing_lost(run_dir: Path) -> None:
    """A run folder without last.pth starts over only if it never finished an epoch."""
    if (run_dir / "metrics.json").is_file():
        raise ValueError(f"{run_dir}: the run is finished (metrics.json) and has no last.pth; "
                         f"there is nothing to resume")
    epochs = 0
    if (run_dir / "history.csv").is_file():
        lines = (run_dir / "history.csv").read_text().splitlines()
        epochs = max(len(lines) - 1, 0)
    # history.csv is written just before last.pth: one epoch ahead of it is a kill between
    # the two (the run starts over); more means last.pth was lost.
    if epochs > 1:
        raise ValueError(f"{run_dir}: history.csv records {epochs} epoch(s) but last.pth is "
                         f"missing, so the run cannot continue; restore last.pth, or train "
                         f"again into a new --out")


def _flat_config(d: dict[str, Any]) -> dict[str, Any]:
    flat = {"name": d.get("name")}
    for sec in SECTIONS:
        flat.update({f"{sec}.{k}": v for k, v in d.get(sec, {}).items()})
    return flat


def config_differences(saved: dict[str, Any], cfg: ExperimentConfig,
                       source: str = "config") -> dict[str, tuple[Any, Any]]:
    """``{key: (run's value, cfg's value)}`` for every key where a saved config and ``cfg`` differ.

    ``saved`` is read as ``config.json`` is (keys it lacks take their defaults).
    """
    try:
        old = _flat_config(ExperimentConfig.from_dict(saved).to_dict())
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{source}: cannot read the run's configuration ({err})") from None
    new = _flat_config(cfg.to_dict())
    keys = [*new, *(k for k in old if k not in new)]
    diff = {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}
    # What fast mode resolves at run time is saved concrete: a request for it matches.
    for key in RESOLVED_AT_RUN_TIME:
        if key in diff and _asks_resolution(cfg, key):
            del diff[key]
    return diff


#: Config keys whose request ('auto', 'fastest', fast mode) becomes a value when a run starts.
RESOLVED_AT_RUN_TIME = ("train.precision", "model.aggregation")


def _asks_resolution(cfg: ExperimentConfig, key: str) -> bool:
    if key == "train.precision":
        return cfg.train.fast or cfg.train.precision == "auto"
    return cfg.train.fast or cfg.model.aggregation == "fastest"


def _check_resume(cfg: ExperimentConfig, ckpt: dict[str, Any], resume: Path,
                  warn: Callable[[str], None]) -> None:
    """Refuse a resume on another configuration than the run's (see ``RESUME_MAY_*``)."""
    source: Path = resume.parent / "config.json"
    saved: dict[str, Any] | None = None
    if source.is_file():
        try:
            saved = json.loads(source.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{source}: cannot read the run's configuration ({err})") from None
        if isinstance(ckpt.get("ecmlib_config"), dict):
            _check_same_run(ckpt["ecmlib_config"], saved, resume, source)
    elif isinstance(ckpt.get("ecmlib_config"), dict):
        saved, source = ckpt["ecmlib_config"], resume
    if saved is not None:   # else an official checkpoint: only the model must fit
        diff = config_differences(saved, cfg, str(source))

        def show(items: list) -> str:
            return "; ".join(f"{k} is {a!r} in the run, {b!r} now" for k, (a, b) in items)

        refused = [(k, v) for k, v in diff.items() if k not in RESUME_MAY_EXTEND + RESUME_MAY_MOVE]
        if refused:
            raise ValueError(
                f"cannot resume {resume}: the configuration differs from {source} in "
                f"{', '.join(k for k, _ in refused)} ({show(refused)}); resume with the run's "
                f"values, or start a new run (a resume may change only train.epochs, and "
                f"train.device / train.num_threads with a warning)")
        moved = [(k, v) for k, v in diff.items() if k in RESUME_MAY_MOVE]
        if moved:
            warn(f"warning: resuming {resume} with {show(moved)}: the run continues, but "
                 f"not bit for bit as it would have uninterrupted")
    done = int(ckpt.get("epoch", 0))
    if cfg.train.epochs < done:
        raise ValueError(f"cannot resume {resume}: it is at epoch {done} but train.epochs is "
                         f"{cfg.train.epochs}; pass --epochs {done} or more")


def _resolve_speed(cfg: ExperimentConfig, ckpt: dict[str, Any] | None, device: torch.device,
                   say: Callable[[str], None]) -> ExperimentConfig:
    """``cfg`` with concrete precision and aggregation path: a resumed run keeps what its
    checkpoint ran with, a new one resolves fast mode's requests (``ecmlib.training.speed``)."""
    saved = (ckpt or {}).get("ecmlib_config")
    if isinstance(saved, dict):
        old = ExperimentConfig.from_dict(saved)
        return cfg.with_overrides({"train.precision": old.train.precision,
                                   "model.aggregation": old.model.aggregation})
    return speed.resolve(cfg, device, say)


def _check_same_run(ckpt_config: dict[str, Any], saved: dict[str, Any], resume: Path,
                    source: Path) -> None:
    """A checkpoint resumes only the run that wrote it: its own config must be the run
    folder's (a ``last.pth`` copied in from another run is refused, naming the keys)."""
    diff = config_differences(ckpt_config, ExperimentConfig.from_dict(saved), str(resume))
    other = {k: v for k, v in diff.items() if k not in RESUME_MAY_EXTEND + RESUME_MAY_MOVE}
    if other:
        shown = "; ".join(f"{k} is {a!r} in the checkpoint, {b!r} in {source.name}"
                          for k, (a, b) in other.items())
        raise ValueError(f"cannot resume {resume}: it was written by another run than "
                         f"{source} ({shown}); resume from the run's own last.pth")


def _best_on_resume(resume: Path, best_epoch: int, last_epoch: int, cfg: ExperimentConfig
                    ) -> tuple[str, dict[str, torch.Tensor] | None]:
    """Where a resumed run's best weights are: ('none' | 'last' | 'file' | 'lost', weights).

    ``train`` writes best.pth after last.pth, so last.pth's record of the best epoch is the
    truth: best.pth is trusted only when it holds that epoch; a best epoch equal to
    last.pth's epoch has last.pth's weights (best.pth may not have been written yet).
    """
    if best_epoch <= 0:
        return "none", None
    if best_epoch == last_epoch:
        return "last", None
    path = resume.with_name("best.pth")
    if path.is_file():
        _, raw = load_checkpoint(path, cfg.model)
        if int(raw.get("epoch", -1)) == best_epoch:
            return "file", {k.removeprefix("module."): v for k, v in raw["state_dict"].items()}
    return "lost", None


def _copy_atomic(src: Path, dst: Path) -> None:
    atomic_write(dst, lambda fh: fh.write(Path(src).read_bytes()))


def _remove_stale_temp_files(run_dir: Path) -> None:
    """Temp files of writes a kill interrupted (``.<name>.<random>.tmp``) are garbage."""
    for name in RUN_FILES:
        for tmp in run_dir.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


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
    The configuration must be the run's (see ``RESUME_MAY_EXTEND`` / ``RESUME_MAY_MOVE``).
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    say = log or (lambda _msg: None)
    warn = log or (lambda msg: warnings.warn(msg, RuntimeWarning, stacklevel=3))
    ckpt: dict[str, Any] | None = None
    source: Path | None = None                           # the checkpoint resumed from
    in_place = False
    if resume is not None:
        source = resume_checkpoint(resume)
        if source.is_file():
            _, ckpt = load_checkpoint(source, None)      # on the CPU; moved to the device below
            _check_resume(cfg, ckpt, source, warn)
            check_compatible({k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()},
                             cfg.model, str(source))
        else:    # killed in its first epoch: nothing to continue, the run starts over
            _check_resume(cfg, {}, source, warn)
            say(f"{source.parent}: no epoch finished before the interruption; starting over")
        in_place = out_dir is not None and Path(out_dir).resolve() == source.parent.resolve()
        if in_place and source.name != "last.pth":
            raise ValueError(f"{source}: a run continues in place only from its last.pth; "
                             f"to continue from {source.name}, choose another --out")
        if in_place and overwrite:
            raise ValueError(f"{out_dir}: --overwrite would replace the run that --resume "
                             f"continues; drop --overwrite (or choose another --out)")
    if in_place and source is not None:
        run_dir = source.parent
        _remove_stale_temp_files(run_dir)
    else:
        existed = out_dir is not None and Path(out_dir).exists()
        run_dir = prepare_run_dir(out_dir, overwrite) if out_dir is not None else None
    threads, why = ((cfg.train.num_threads, "train.num_threads") if cfg.train.num_threads
                    else speed.default_threads())
    torch.set_num_threads(threads)
    if not cfg.train.num_threads:
        say(f"threads: {threads} ({why}; set train.num_threads to choose)")
    device = resolve_device(cfg.train.device)
    cfg = _resolve_speed(cfg, ckpt, device, say)
    seed_everything(cfg.train.seed)
    try:
        train_set, test_set = data if data is not None else load_data(cfg)
    except Exception:
        # Bad data: leave no empty run folder behind (one that held anything stays).
        if run_dir is not None and not in_place and not existed and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    gt = ground_truth_for(cfg, test_set)
    if run_dir is not None:
        cfg.save(run_dir / "config.json")

    # Features live on the device for the whole run (the authors reload them every epoch).
    x_train = torch.from_numpy(train_set.features).to(device)
    y_train = torch.from_numpy(train_set.labels).to(device)
    x_test = torch.from_numpy(test_set.features).to(device)
    empty = (train_set.labels.sum(1) == 0).nonzero()[0]
    if len(empty):
        raise ValueError(f"{train_set.source}: {len(empty)} training video(s) have no label "
                         f"(e.g. {train_set.names[empty[0]]}); WTAL needs a video-level label")

    model = ECMNet(cfg.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, betas=cfg.train.betas,
                                 weight_decay=cfg.train.weight_decay)
    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "value": float("nan")}
    start_epoch = 1
    elapsed_before = 0.0                                 # wall time of the epochs resumed
    if ckpt is not None:
        model.load_state_dict({k.removeprefix("module."): v
                               for k, v in ckpt["state_dict"].items()})
        if ckpt.get("optimizer"):
            optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch = int(ckpt["epoch"]) + 1
        # last.pth is the truth: history.csv may be an epoch ahead (killed before last.pth).
        history = [r for r in ckpt.get("ecmlib_history", []) if r.get("epoch", 0) < start_epoch]
        best = dict(ckpt.get("ecmlib_best", best))
        elapsed_before = float(ckpt.get("ecmlib_elapsed_s", 0.0))
        say(f"resumed from {source} at epoch {start_epoch - 1}")
    best_state = copy.deepcopy(model.state_dict())
    best_eval: Evaluation | None = None
    metric = cfg.eval.selection_metric
    generator = torch.Generator().manual_seed(cfg.train.seed)
    lost_best = 0                                        # a best epoch whose weights are gone
    if ckpt is not None and source is not None:
        where, weights = _best_on_resume(source, int(best["epoch"]), start_epoch - 1, cfg)
        if where == "file" and weights is not None:
            best_state = weights                         # the best epoch came before the last
        elif where == "lost":
            lost_best = int(best["epoch"])
            warn(f"warning: {source.with_name('best.pth')} does not hold the run's best epoch "
                 f"{lost_best}; training continues, but fails at the end unless a later "
                 f"epoch is better")
        if run_dir is not None:
            _write_history(run_dir, history)
            if where == "last":      # killed between last.pth and best.pth: write it now
                save_checkpoint(run_dir / "best.pth", model, optimizer, start_epoch - 1,
                                {"ecmlib_config": cfg.to_dict()})
            elif where == "file" and not in_place:
                _copy_atomic(source.with_name("best.pth"), run_dir / "best.pth")
            if not in_place and source.name == "last.pth":
                _copy_atomic(source, run_dir / "last.pth")
        rng = ckpt.get("ecmlib_rng")
        if rng:
            # Shuffling and dropout continue exactly where the interrupted run stopped.
            generator.set_state(rng["shuffle"])
            torch.set_rng_state(rng["torch"])
            if device.type == "cuda" and rng.get("cuda") is not None:
                torch.cuda.set_rng_state(rng["cuda"], device)
    use_bf16 = cfg.train.precision == "bf16"
    background = cfg.loss.background and cfg.model.streams != "pre"
    bar = tqdm(range(start_epoch, cfg.train.epochs + 1), desc=f"ECM {cfg.name}", unit="epoch",
               disable=(not progress) if progress is not None else None, leave=True)
    tb = ScalarLog(run_dir)  # TensorBoard scalars in the run folder (when installed)
    for epoch in bar:
        t0 = time.perf_counter()
        lr = _lr_at(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        sums: dict[str, float] = {}         # every term compute_losses reports, in its order
        perm = torch.randperm(len(train_set), generator=generator).to(device)
        for i in range(0, len(perm), cfg.train.batch_size):
            idx = perm[i:i + cfg.train.batch_size]
            x, y = x_train[idx], y_train[idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = model(x, y, background=background)
            out = {k: v.float() for k, v in out.items()}
            terms = compute_losses(out, y, cfg.loss, cfg.model.streams)
            optimizer.zero_grad(set_to_none=True)
            terms["loss_total"].backward()
            optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item() * len(idx)
            if i == 0:
                _kill_point("epoch", epoch)
        row: dict[str, Any] = {"epoch": epoch, "lr": lr,
                               **{k: v / len(train_set) for k, v in sums.items()}}
        if not math.isfinite(row["loss_total"]):
            raise RuntimeError(f"epoch {epoch}: the training loss is {row['loss_total']} "
                               f"(diverged); lower train.lr or check the features")
        row["train_time_s"] = time.perf_counter() - t0
        new_best = False
        if epoch % cfg.eval.eval_every == 0 or epoch == cfg.train.epochs:
            t1 = time.perf_counter()
            ev = evaluate_model(model, test_set, cfg, gt, x_test)
            _kill_point("eval", epoch)
            row.update(ev.metrics)
            row["eval_time_s"] = time.perf_counter() - t1
            if metric not in ev.metrics:
                raise ValueError(f"selection metric {metric!r} is not computed; "
                                 f"available: {', '.join(ev.metrics)}")
            if _is_better(ev.metrics[metric], best["value"]) or best["epoch"] == 0:
                best = {"epoch": epoch, "value": ev.metrics[metric]}
                best_state = copy.deepcopy(model.state_dict())
                best_eval = ev
                new_best, lost_best = True, 0
            bar.set_postfix(loss=f"{row['loss_total']:.3f}", **{metric: f"{ev.metrics[metric]:.4f}"})
        history.append(row)
        tb.log(row)
        if run_dir is not None:
            _write_history(run_dir, history)
            _kill_point("history", epoch)
            # last.pth before best.pth: a kill between them leaves a last.pth whose record
            # names its own epoch as the best, and a resume rewrites best.pth from it.
            rng = {"shuffle": generator.get_state(), "torch": torch.get_rng_state()}
            if device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(device)
            save_checkpoint(run_dir / "last.pth", model, optimizer, epoch,
                            {"ecmlib_config": cfg.to_dict(), "ecmlib_history": history,
                             "ecmlib_best": best, "ecmlib_rng": rng,
                             "ecmlib_elapsed_s": elapsed_before + time.perf_counter() - t_start})
            if new_best:
                save_checkpoint(run_dir / "best.pth", model, optimizer, epoch,
                                {"ecmlib_config": cfg.to_dict()})
    bar.close()
    tb.close()

    if lost_best and int(best["epoch"]) == lost_best and source is not None:
        raise RuntimeError(f"{source.with_name('best.pth')}: the weights of the run's best "
                           f"epoch {lost_best} are not there (written before this ecmlib kept "
                           f"best.pth behind last.pth); train the run again")
    model.load_state_dict(best_state)
    model.eval()
    if best_eval is None and int(best["epoch"]) > 0:
        # Resumed after the best epoch: its detections again (inference is deterministic).
        best_eval = evaluate_model(model, test_set, cfg, gt, x_test)
    wall = elapsed_before + time.perf_counter() - t_start
    metrics = _final_metrics(cfg, history, best, wall, device, train_set, test_set, gt)
    if run_dir is not None:
        atomic_write_json(run_dir / "metrics.json", metrics)
        _kill_point("final", cfg.train.epochs)
        if best_eval is not None:
            atomic_write_json(run_dir / "result.json", result_json(best_eval.predictions))
            write_txt_results(run_dir / "result.txt", best_eval.predictions)
    if best_eval is not None:
        say(f"best epoch {best['epoch']} of {cfg.train.epochs}: {metric} = {best['value']:.4f} "
            f"({wall:.1f} s)")
    return RunResult(cfg, model, history, metrics, int(best["epoch"]), run_dir, best_eval)


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    import pandas as pd
    atomic_write_text(run_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
    atomic_write_json(run_dir / "history.json", history)


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
