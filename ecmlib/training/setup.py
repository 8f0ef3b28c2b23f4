"""What a run starts from: its configuration, its device and seeds, its data and ground truth.

``make_config`` is the one config builder (dataset preset, synthetic or real features,
overrides); ``load_data`` gives the (train, test) feature sets it names, and
``ground_truth_for`` the test split's annotations.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.features import FeatureSet, load_annotations
from ..method.evaluation import GroundTruth, ground_truth_from_dict
from ..env import FAST_ENV
from .config import ExperimentConfig, preset

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
    if os.environ.get(FAST_ENV) == "1":  # a grid run with --fast (sweep --fast)
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
    from ..data.features import default_data_dir
    from ..datasets import DATASETS
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
