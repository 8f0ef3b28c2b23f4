"""Typed experiment configuration: one fresh dataclass tree per run, no global state.

``preset('THUMOS14')`` (or ``'ActivityNet1.2'``, ``'ActivityNet1.3'``) returns every value of
the authors' configuration: model, losses, localisation, evaluation and training. Any value
can be overridden by name, e.g. ``cfg.with_overrides(['feat_dim=128', 'train.lr=1e-4'])``;
a bare name works whenever it is unique across sections. Each run saves its config as JSON
next to its outputs (``save``/``load``).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import DATASETS
from ..method.localize import LocalizeParams
from ..method.losses import LossConfig
from ..method.model import ModelConfig



@dataclass
class DataConfig:
    """Where the features come from and which splits are used."""

    dataset: str = "THUMOS14"
    data_root: str | None = None      # real features; None = the synthetic benchmark
    synthetic: str | None = None      # synthetic preset name, e.g. 'thumos14-mini'
    synthetic_seed: int = 0
    # SyntheticSpec knob changes on top of the preset, e.g. ('context_strength=2.0',):
    # a generated world of its own (the difficulty study of notebook 07).
    synthetic_knobs: tuple[str, ...] = ()
    layout: str = "auto"              # official | wtalc | basnet | npy | auto
    train_split: str = "val"          # on-disk split names
    test_split: str = "test"
    gt_subset: str = "test"           # ground-truth subset the test split is scored on
    gt_variant: str = "official"      # THUMOS14: official (210 test videos) | wtalc212
    # Source of the video labels where the layout has its own (W-TALC labels_all.npy):
    # ground_truth = the labels of the gt segments used for evaluation (as ECM derives them);
    # labels_all = W-TALC's per-video labels. Disagreements are reported once as a warning.
    labels: str = "ground_truth"

    def __post_init__(self) -> None:
        if self.labels not in ("ground_truth", "labels_all"):
            raise ValueError(f"DataConfig: data.labels must be 'ground_truth' or 'labels_all', "
                             f"got {self.labels!r}")


@dataclass
class EvalConfig:
    """Detection evaluation: thresholds, model-selection metric and its frequency."""

    # np.linspace values, bit-identical to the thresholds of the authors' evaluator.
    tiou: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.1, 0.9, 9))
    selection_metric: str = "mAP@0.5"
    eval_every: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) \
                or self.eval_every < 1:
            raise ValueError(f"EvalConfig: eval.eval_every must be an integer >= 1 (evaluate "
                             f"every N epochs), got {self.eval_every!r}")


@dataclass
class TrainConfig:
    """Optimiser and schedule (Adam as in the paper)."""

    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    batch_size: int = 16
    epochs: int = 150
    seed: int = 16
    lr_decay_epoch: int | None = None   # multiply lr by lr_decay_factor after this epoch
    lr_decay_factor: float = 0.1
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    bf16: bool = False                  # legacy switch: the same as precision=bf16
    # fp32 | bf16 (autocast) | auto: bf16 on a GPU with bf16 and on a CPU with native bf16
    # (AVX-512 BF16 or AMX), fp32 elsewhere. The record keeps fp32 (its numbers).
    precision: str = "fp32"
    # Fast mode: precision=auto, bits dropout masks and the aggregation path measured
    # fastest at the run's thread count (ecmlib.training.speed); what was chosen is saved
    # in config.json and metrics.json.
    fast: bool = False
    # torch CPU threads; None = a safe default (ecmlib.training.speed.default_threads, printed)
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs < 0 or self.lr <= 0:
            raise ValueError(f"TrainConfig: need batch_size >= 1, epochs >= 0, lr > 0 "
                             f"(got {self.batch_size}, {self.epochs}, {self.lr})")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"TrainConfig: train.precision must be fp32, bf16 or auto, "
                             f"got {self.precision!r}")
        if self.bf16:  # the legacy switch (and configs saved before precision existed)
            self.precision = "bf16"
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"TrainConfig: train.num_threads must be >= 1 (or none for the "
                             f"default), got {self.num_threads}")


SECTIONS = ("model", "loss", "localize", "eval", "train", "data")


@dataclass
class ExperimentConfig:
    """Everything a run needs; saved as ``config.json`` in the run directory."""

    name: str = "THUMOS14"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    localize: LocalizeParams = field(default_factory=LocalizeParams.thumos14)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    # -- (de)serialisation ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentConfig:
        """Inverse of ``to_dict``; unknown keys are an error, missing keys keep defaults."""
        unknown = set(d) - set(SECTIONS) - {"name"}
        if unknown:
            raise ValueError(f"config: unknown section(s) {sorted(unknown)}")
        cfg = cls(name=d.get("name", "custom"))
        pairs = [f"{sec}.{k}={_to_text(v)}" for sec in SECTIONS for k, v in d.get(sec, {}).items()]
        return cfg.with_overrides(pairs)

    def save(self, path: str | Path) -> None:
        """Write the config as JSON, atomically."""
        from ..io import atomic_write_text
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ExperimentConfig:
        """Read a config written by ``save``."""
        from ..io import read_json
        return cls.from_dict(read_json(path))     # a ValueError naming the file

    # -- overrides --------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Every settable key as 'section.name'."""
        return [f"{sec}.{f.name}" for sec in SECTIONS
                for f in dataclasses.fields(getattr(self, sec))]

    def resolve_key(self, key: str) -> tuple[str, str]:
        """'feat_dim' or 'model.feat_dim' -> ('model', 'feat_dim'); clear error otherwise."""
        if "." in key:
            sec, name = key.split(".", 1)
            if sec in SECTIONS and name in _field_types(getattr(self, sec)):
                return sec, name
        else:
            hits = [sec for sec in SECTIONS if key in _field_types(getattr(self, sec))]
            if len(hits) == 1:
                return hits[0], key
            if len(hits) > 1:
                raise ValueError(f"config key {key!r} is ambiguous: use one of "
                                 + ", ".join(f"{h}.{key}" for h in hits))
        raise ValueError(f"unknown config key {key!r}; known keys: {', '.join(self.keys())}")

    def with_overrides(self, pairs: typing.Iterable[str] | dict[str, Any]) -> ExperimentConfig:
        """A new config with 'key=value' overrides applied (values parsed by field type)."""
        items = pairs.items() if isinstance(pairs, dict) else (_split_pair(p) for p in pairs)
        changes: dict[str, dict[str, Any]] = {}
        for key, value in items:
            sec, name = self.resolve_key(key)
            typ = _field_types(getattr(self, sec))[name]
            changes.setdefault(sec, {})[name] = (_parse(value, typ, key)
                                                 if isinstance(value, str) else value)
        new = {sec: dataclasses.replace(getattr(self, sec), **kv) for sec, kv in changes.items()}
        return dataclasses.replace(self, **new)


def _split_pair(pair: str) -> tuple[str, str]:
    if "=" not in pair:
        raise ValueError(f"override {pair!r} must look like key=value")
    key, value = pair.split("=", 1)
    return key.strip(), value.strip()


def _field_types(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


def _to_text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return "none" if v is None else str(v)


def _parse(text: str, typ: Any, key: str) -> Any:
    """Parse a command-line string into the field's declared type."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if text.lower() in ("none", "null", ""):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _parse(text, inner[0], key)
    if origin is tuple:
        parts = [p for p in text.replace(":", ",").split(",") if p.strip()] if text else []
        elem = args[0] if args else str
        return tuple(_parse(p.strip(), elem, key) for p in parts)
    try:
        if typ is bool:
            low = text.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return low in ("true", "1", "yes")
        if typ is int:
            return int(text)
        if typ is float:
            value = float(text)
    except ValueError:
        raise ValueError(f"config key {key!r}: cannot read {text!r} as {typ.__name__}") from None
    if typ is float:
        if not np.isfinite(value):
            raise ValueError(f"config key {key!r}: {text!r} is not a finite number")
        return value
    return text


def preset(dataset: str) -> ExperimentConfig:
    """The authors' full configuration for a dataset (a fresh object each call)."""
    if dataset == "THUMOS14":
        return ExperimentConfig(name="THUMOS14")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    anet13 = dataset == "ActivityNet1.3"
    return ExperimentConfig(
        name=dataset,
        model=ModelConfig(num_classes=200 if anet13 else 100, num_snippets=100,
                          topk_ratio=0.6 if anet13 else 0.25),
        loss=LossConfig(w_agg=1.0),
        localize=LocalizeParams.anet13() if anet13 else LocalizeParams.anet12(),
        eval=EvalConfig(tiou=tuple(float(t) for t in np.linspace(0.5, 0.95, 10)),
                        selection_metric="average_mAP@0.5:0.95"),
        train=TrainConfig(batch_size=128, epochs=36, seed=1 if anet13 else 7,
                          lr_decay_epoch=26 if anet13 else None),
        data=DataConfig(dataset=dataset, train_split="training", test_split="validation",
                        gt_subset="validation"),
    )
