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

Every file is written atomically; an existing run directory is never reused unless asked.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import ExperimentConfig, preset
from .data import THUMOS14_CLASSES, FeatureSet, load_annotations
from .evaluation import (DetectionResult, GroundTruth, Predictions, classification_map,
                         evaluate_detection, format_table, ground_truth_from_dict,
                         predictions_from_arrays)
from .io import atomic_torch_save, atomic_write_json, atomic_write_text, prepare_run_dir
from .localize import localize_batch_flat
from .losses import LOSS_NAMES, compute_losses
from .model import ECMNet, check_compatible, load_checkpoint

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

    Without ``data_root`` the dataset's synthetic mini benchmark is used; its feature width
    and snippet count come from the synthetic preset, and ``SYNTHETIC_OVERRIDES`` size the
    trunk for a CPU. User overrides are applied last and win.
    """
    cfg = preset(dataset)
    if data_root:
        cfg = cfg.with_overrides({"data.data_root": str(data_root), "data.synthetic": None})
    else:
        from .synthetic import get_spec
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
    if overrides:
        cfg = cfg.with_overrides(overrides)
    return cfg


def load_data(cfg: ExperimentConfig) -> tuple[FeatureSet, FeatureSet]:
    """(train, test) feature sets: real features from ``data_root`` or the synthetic preset."""
    d = cfg.data
    if d.data_root:
        from .data import load_split
        gt = ground_truth_path(cfg)
        sets = tuple(load_split(d.data_root, d.dataset, split, cfg.model.num_snippets,
                                feat_dim=cfg.model.feat_dim, layout=d.layout, gt=gt)
                     for split in (d.train_split, d.test_split))
    else:
        from .synthetic import generate, get_spec, parse_knobs
        if not d.synthetic:
            raise ValueError("config has neither data.data_root nor data.synthetic")
        spec = get_spec(d.synthetic)
        if d.synthetic_knobs:
            spec = spec.replace(**parse_knobs(d.synthetic_knobs))
        out = generate(spec, seed=d.synthetic_seed, splits=[d.train_split, d.test_split])
        sets = (out[d.train_split], out[d.test_split])
    for fs in sets:
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
    return sets  # type: ignore[return-value]


def ground_truth_path(cfg: ExperimentConfig) -> Path:
    """The ground-truth JSON in data/ for the config's dataset and variant."""
    from .data import DATASETS, default_data_dir
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
    try:
        atomic_torch_save(path, state)
    except OSError as err:
        raise RuntimeError(f"{path}: saving the checkpoint failed ({err}); the previous "
                           f"file, if any, is intact") from err


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
           "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def train(cfg: ExperimentConfig, data: tuple[FeatureSet, FeatureSet] | None = None,
          out_dir: str | Path | None = None, overwrite: bool = False,
          progress: bool | None = None, resume: str | Path | None = None,
          log: Callable[[str], None] | None = print) -> RunResult:
    """Train ECM with ``cfg``; evaluate, keep the best checkpoint, record the history.

    ``data`` = (train, test) feature sets (default: ``load_data(cfg)``); ``out_dir`` = run
    directory (None: nothing written); ``progress`` = tqdm bar (None: only when
    interactive); ``resume`` = one of our checkpoints to continue from.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    say = log or (lambda _msg: None)
    run_dir = prepare_run_dir(out_dir, overwrite) if out_dir is not None else None
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.train.seed)
    train_set, test_set = data if data is not None else load_data(cfg)
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
    if resume is not None:
        model_r, ckpt = load_checkpoint(resume, cfg.model, map_location=device)
        model.load_state_dict(model_r.state_dict())
        if ckpt.get("optimizer"):
            optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch = int(ckpt["epoch"]) + 1
        history = list(ckpt.get("ecmlib_history", []))
        best = dict(ckpt.get("ecmlib_best", best))
        say(f"resumed from {Path(resume).name} at epoch {start_epoch - 1}")
    best_state = copy.deepcopy(model.state_dict())
    best_eval: Evaluation | None = None
    metric = cfg.eval.selection_metric
    generator = torch.Generator().manual_seed(cfg.train.seed)
    best_file = Path(resume).with_name("best.pth") if resume is not None else None
    if best_file is not None and best_file.is_file() and best["epoch"] < start_epoch - 1:
        # The best epoch came before the interruption: start from its weights, not the last.
        best_ckpt = torch.load(best_file, map_location="cpu", weights_only=False)
        if int(best_ckpt.get("epoch", -1)) == best["epoch"]:
            best_state = {k: v.to(device) for k, v in best_ckpt["state_dict"].items()}
    if resume is not None and "ecmlib_rng" in ckpt:
        # Shuffling and dropout continue exactly where the interrupted run stopped.
        generator.set_state(ckpt["ecmlib_rng"]["shuffle"])
        torch.set_rng_state(ckpt["ecmlib_rng"]["torch"])
    use_bf16 = cfg.train.bf16 and device.type == "cuda"
    background = cfg.loss.background and cfg.model.streams != "pre"
    bar = tqdm(range(start_epoch, cfg.train.epochs + 1), desc=f"ECM {cfg.name}", unit="epoch",
               disable=(not progress) if progress is not None else None, leave=True)
    for epoch in bar:
        t0 = time.perf_counter()
        lr = _lr_at(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        sums = dict.fromkeys((*LOSS_NAMES, "loss_total"), 0.0)
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
            for k in sums:
                sums[k] += terms[k].item() * len(idx)
        row: dict[str, Any] = {"epoch": epoch, "lr": lr,
                               **{k: v / len(train_set) for k, v in sums.items()}}
        if not math.isfinite(row["loss_total"]):
            raise RuntimeError(f"epoch {epoch}: the training loss is {row['loss_total']} "
                               f"(diverged); lower train.lr or check the features")
        row["train_time_s"] = time.perf_counter() - t0
        if epoch % cfg.eval.eval_every == 0 or epoch == cfg.train.epochs:
            t1 = time.perf_counter()
            ev = evaluate_model(model, test_set, cfg, gt, x_test)
            row.update(ev.metrics)
            row["eval_time_s"] = time.perf_counter() - t1
            if metric not in ev.metrics:
                raise ValueError(f"selection metric {metric!r} is not computed; "
                                 f"available: {', '.join(ev.metrics)}")
            if _is_better(ev.metrics[metric], best["value"]) or best["epoch"] == 0:
                best = {"epoch": epoch, "value": ev.metrics[metric]}
                best_state = copy.deepcopy(model.state_dict())
                best_eval = ev
                if run_dir is not None:
                    save_checkpoint(run_dir / "best.pth", model, optimizer, epoch,
                                    {"ecmlib_config": cfg.to_dict()})
            bar.set_postfix(loss=f"{row['loss_total']:.3f}", **{metric: f"{ev.metrics[metric]:.4f}"})
        history.append(row)
        if run_dir is not None:
            _write_history(run_dir, history)
            save_checkpoint(run_dir / "last.pth", model, optimizer, epoch,
                            {"ecmlib_config": cfg.to_dict(), "ecmlib_history": history,
                             "ecmlib_best": best,
                             "ecmlib_rng": {"shuffle": generator.get_state(),
                                            "torch": torch.get_rng_state()}})
    bar.close()

    model.load_state_dict(best_state)
    model.eval()
    wall = time.perf_counter() - t_start
    metrics = _final_metrics(cfg, history, best, wall, device, train_set, test_set, gt)
    if run_dir is not None:
        atomic_write_json(run_dir / "metrics.json", metrics)
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
    out = Path(args.out) if args.out else Path("runs") / (
        f"train-{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}")
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
    try:
        raw = torch.load(weight, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{weight}: checkpoint file not found") from None
    except Exception as err:
        raise ValueError(f"{weight}: cannot read checkpoint ({type(err).__name__}: {err})") from None
    if isinstance(raw, dict) and "ecmlib_config" in raw and not args.set:
        saved = ExperimentConfig.from_dict(raw["ecmlib_config"])
        cfg = cfg.with_overrides({f"model.{k}": v for k, v in vars(saved.model).items()})
    if isinstance(raw, dict) and "state_dict" in raw:
        check_compatible({k.removeprefix("module."): v for k, v in raw["state_dict"].items()},
                         cfg.model, str(weight))
    model, _ = load_checkpoint(weight, cfg.model, map_location=resolve_device(cfg.train.device))
    _, test_set = load_data(cfg)
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
