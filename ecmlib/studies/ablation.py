"""The paper's ablations as named config overrides, one training run per (setting, seed).

``SETTINGS`` maps a setting name to the overrides it applies on top of the dataset's
preset (see :func:`setting_config`):

============================  ===============================================================
``ecm``                       full ECM: both streams, L_eq weight 0.05, L_agg weight of the
                              preset (5 on THUMOS14), learned equivalent weight transition
``pre_only``                  pre-classification stream alone (a plain top-k MIL baseline)
``post_only``                 post-classification stream alone (attention-style aggregation,
                              with L_agg); the CAS is still the shared classifier's
``no_leq``                    both streams, no equivalent classification loss (w_eq = 0)
``leq_0.5``                   both streams, L_eq ten times stronger (w_eq = 0.5)
``no_lagg``                   both streams, no aggregation consistency loss: w_agg = 0 and
                              the background stream is not run at all
``fixed_transition``          a = sigmoid(CAS): the transition has no parameters
``independent_transition``    a = sigmoid(Conv1x1(trunk features)): the weights no longer
                              come from the CAS (the "decoupled" baseline)
``weight_sparsity``           ECM plus STPN's L1 sparsity loss on the label classes'
                              aggregation weights, weight 1e-4 (notebook 08's variant)
============================  ===============================================================

:func:`run_setting` trains one setting with one seed on a synthetic preset and returns
flat metrics, so notebooks can hand it to :func:`ecmlib.studies.workbook.run_grid` (it is a
module-level function: worker processes can import it) and summarise with
:func:`ecmlib.studies.workbook.aggregate`. Only the training seed varies between seeds; the
synthetic features are generated once per process (seed ``data_seed``, default 0) and
cached, so the spread over seeds is the spread of training, not of the data.

Consistency of the transition
-----------------------------
:func:`transition_consistency` measures how closely the post stream's aggregation weights
follow the pre stream's CAS: for every (video, label class) pair of a split, the Spearman
rank correlation over snippets between ``cas[b, c, :]`` and ``a[b, c, :]``, averaged over
the pairs. A rank correlation is used because the property of interest is "the snippets
the CAS ranks high are the snippets aggregated most", whatever monotone squashing maps
one to the other: with the fixed transition a = sigmoid(CAS) it is exactly 1, while
Pearson's r of min-max(CAS) vs sigmoid(CAS) is below 1 whenever the sigmoid bends (and
min-max normalisation never changes Pearson's r: it is an affine map). Pearson's r is
reported too (``consistency_pearson``). Pairs where either sequence is constant are
skipped.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # annotations only: importing these at run time is not needed here
    import pandas as pd

    from ..training.config import ExperimentConfig
    from ..data.features import FeatureSet
    from ..method.model import ECMNet
    from ..data.synthetic import SyntheticSpec

__all__ = [
    "SETTINGS",
    "EQUIVALENT_LOSS_SETTINGS",
    "TRANSITION_SETTINGS",
    "VARIANT_SETTINGS",
    "DERIVED_PRESETS",
    "METRICS",
    "ablation_spec",
    "setting_config",
    "load_setting_data",
    "transition_consistency",
    "consistency_of",
    "consistency_examples",
    "run_name",
    "run_setting",
    "collect_histories",
]

#: Overrides per setting (keys as accepted by ExperimentConfig.with_overrides).
SETTINGS: dict[str, dict[str, Any]] = {
    "ecm": {"model.streams": "both", "loss.w_eq": 0.05, "loss.background": True,
            "model.transition": "learned"},
    "pre_only": {"model.streams": "pre"},
    "post_only": {"model.streams": "post"},
    "no_leq": {"loss.w_eq": 0.0},
    "leq_0.5": {"loss.w_eq": 0.5},
    "no_lagg": {"loss.w_agg": 0.0, "loss.background": False},
    "fixed_transition": {"model.transition": "fixed"},
    "independent_transition": {"model.transition": "independent"},
    # Notebook 08's variant: ECM plus STPN's sparsity loss on the aggregation weights, at
    # STPN's weight 1e-4 (declared before any run; see ecmlib.method.losses.weight_sparsity).
    "weight_sparsity": {"loss.terms": "weight_sparsity=0.0001"},
}

#: The settings of notebook 03 (equivalent classification loss) and 04 (weight transition).
EQUIVALENT_LOSS_SETTINGS = ("ecm", "pre_only", "post_only", "no_leq", "leq_0.5", "no_lagg")
TRANSITION_SETTINGS = ("ecm", "fixed_transition", "independent_transition")
#: Variants from the literature, each against ECM (notebook 08).
VARIANT_SETTINGS = ("weight_sparsity",)

#: Smaller benchmarks derived from a preset of ecmlib.data.synthetic, for CPU-sized sweeps:
#: name -> (base preset, SyntheticSpec changes). Same videos and annotations as the base.
DERIVED_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "thumos14-small": ("thumos14-mini", {"num_snippets": 128, "feat_dim": 128}),
}

#: The metrics run_setting returns (a record has exactly these keys).
METRICS = ("mAP@0.5", "average_mAP@0.1:0.7", "average_mAP@0.1:0.5", "classification_mAP",
           "best_epoch", "final_mAP@0.5", "final_average_mAP@0.1:0.7", "consistency",
           "consistency_pearson", "diverged", "diverged_epoch", "wall_time_s")


def ablation_spec(preset: str) -> SyntheticSpec:
    """The synthetic spec of ``preset``: a name of ecmlib.data.synthetic.PRESETS or DERIVED_PRESETS."""
    from ..data.synthetic import get_spec
    if preset in DERIVED_PRESETS:
        base, changes = DERIVED_PRESETS[preset]
        return get_spec(base).replace(name=preset, **changes)
    return get_spec(preset)


def setting_config(setting: str, seed: int = 0, preset: str = "thumos14-small",
                   epochs: int = 10, eval_every: int = 5,
                   extra: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """The ExperimentConfig of one ablation run.

    The dataset's paper preset (``make_config``), resized to the synthetic ``preset``
    (feature width, snippet count, the CPU-sized trunk of ``train.SYNTHETIC_OVERRIDES``),
    then the setting's overrides, then ``train.seed = seed``, ``epochs``, ``eval_every``,
    and finally ``extra`` (any config key, e.g. ``{'hidden_dim': 64, 'train.lr': 1e-3}``),
    which wins over everything else.
    """
    from ..training.setup import make_config
    if setting not in SETTINGS:
        raise ValueError(f"unknown ablation setting {setting!r}; choose one of {', '.join(SETTINGS)}")
    spec = ablation_spec(preset)
    base = DERIVED_PRESETS[preset][0] if preset in DERIVED_PRESETS else preset
    cfg = make_config(spec.dataset, synthetic=base)
    cfg = cfg.with_overrides({"data.synthetic": spec.name, "feat_dim": spec.feat_dim,
                              "num_snippets": spec.num_snippets})
    cfg = cfg.with_overrides(SETTINGS[setting])
    cfg = cfg.with_overrides({"train.seed": int(seed), "train.epochs": int(epochs),
                              "eval.eval_every": int(eval_every)})
    if extra:
        cfg = cfg.with_overrides(dict(extra))
    return cfg


@functools.lru_cache(maxsize=2)
def load_setting_data(preset: str, data_seed: int = 0) -> tuple[FeatureSet, FeatureSet]:
    """(train, test) feature sets of a synthetic preset, generated once per process.

    Cached: every run of a sweep that lands in the same worker process reuses the arrays
    (generating thumos14-mini takes tens of seconds; training never modifies them).
    """
    from ..data.synthetic import generate
    spec = ablation_spec(preset)
    splits = {"THUMOS14": ("val", "test")}.get(spec.dataset, ("training", "validation"))
    out = generate(spec, seed=data_seed, splits=list(splits))
    return out[splits[0]], out[splits[1]]


# ecmlib.training.train's message when the training loss stops being finite.
_DIVERGED = re.compile(r"epoch (\d+): the training loss is .* \(diverged\)")


def _diverged_epoch(err: Exception, run_dir: Path | None) -> float | None:
    """The epoch at which a run diverged, NaN if unknown; None if ``err`` is no divergence.

    Two symptoms: train's own check (the epoch's mean loss is not finite), and weights that
    turned non-finite in an epoch's last steps, which the loss check misses and the next
    evaluation meets as scores or a CAS with NaN/inf (reported by the evaluation or by the
    localisation; the epoch is then the one after the last in history.csv).
    """
    text = str(err)
    found = _DIVERGED.match(text)
    if isinstance(err, RuntimeError) and found:
        return int(found.group(1))
    if any(sign in text for sign in ("diverged", "NaN or inf", "NaN/inf")):
        history = run_dir / "history.csv" if run_dir is not None else None
        if history is not None and history.is_file():
            import pandas as pd
            return int(pd.read_csv(history)["epoch"].max()) + 1
        return float("nan")
    return None


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair of [P, T] arrays (average ranks for ties)."""
    import pandas as pd
    rx = pd.DataFrame(x).rank(axis=1, method="average").to_numpy()
    ry = pd.DataFrame(y).rank(axis=1, method="average").to_numpy()
    return _pearson_rows(rx, ry)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of [P, T] arrays; NaN where a row is constant."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    sx, sy = np.sqrt((x * x).sum(axis=1)), np.sqrt((y * y).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (x * y).sum(axis=1) / (sx * sy)
    # A row is constant when its spread is nothing next to its values' rounding.
    r[(sx <= 1e-12) | (sy <= 1e-12)] = np.nan
    return r


@torch.no_grad()
def _cas_and_weights(model: ECMNet, features: np.ndarray | torch.Tensor, labels: np.ndarray,
                     batch_size: int = 64) -> tuple[np.ndarray, np.ndarray] | None:
    """(CAS [N, C, T], aggregation weights [N, C, T]) in eval mode; None for a pre-only model.

    ``labels`` is unused (the weights do not depend on them); kept for the callers.
    """
    if model.cfg.streams == "pre":
        return None
    from ..training.inference import predict
    _, cas, weights = predict(model, features, batch_size, weights=True)
    return cas, weights


def transition_consistency(model: ECMNet, features: np.ndarray | torch.Tensor, labels: np.ndarray,
                           method: str = "spearman") -> float:
    """Mean over (video, label class) of the correlation over time of CAS and weights a.

    ``features`` [N, D, T], ``labels`` [N, C] multi-hot (the pairs scored are the label
    classes of each video). ``method`` 'spearman' (rank correlation, the default; 1.0 for
    a = sigmoid(CAS)) or 'pearson'. NaN for a model without a post stream, or when every
    pair is constant. See the module docstring for why ranks.
    """
    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")
    got = _cas_and_weights(model, features, labels)
    if got is None:
        return float("nan")
    return consistency_of(*got, labels, method)


def consistency_of(cas: np.ndarray, weights: np.ndarray, labels: np.ndarray,
                   method: str = "spearman") -> float:
    """:func:`transition_consistency` from a model's outputs already computed:
    CAS and aggregation weights [N, C, T], ``labels`` [N, C] multi-hot."""
    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")
    vid, cls = np.nonzero(np.asarray(labels) > 0)
    if vid.size == 0:
        raise ValueError("transition_consistency: no video has a label class")
    x, y = cas[vid, cls].astype(np.float64), weights[vid, cls].astype(np.float64)
    r = _spearman_rows(x, y) if method == "spearman" else _pearson_rows(x, y)
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def consistency_examples(model: ECMNet, features: np.ndarray, labels: np.ndarray, video: int
                         ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{label class: (CAS [T], weights [T])} of one video, for plots.plot_cas_vs_weights."""
    got = _cas_and_weights(model, features[video:video + 1], labels[video:video + 1])
    if got is None:
        return {}
    cas, weights = got
    return {int(c): (cas[0, c], weights[0, c]) for c in np.nonzero(labels[video] > 0)[0]}


def run_name(setting: str, seed: int) -> str:
    """Folder name of one run under a sweep's ``runs_root``: ``<setting>__seed=<seed>``."""
    return f"{setting}__seed={int(seed)}"


def run_setting(setting: str, seed: int, preset: str = "thumos14-small", epochs: int = 10,
                eval_every: int = 5, extra: Mapping[str, Any] | None = None,
                data_seed: int = 0, runs_root: str | None = None) -> dict[str, float]:
    """Train one ablation setting with one seed; return flat metrics (keys: ``METRICS``).

    ``mAP@0.5`` and the averages are those of the best evaluated epoch (selected on the
    test split by mAP@0.5, the authors' protocol); ``final_*`` are the last epoch's,
    which is the honest number when model selection on the test split is a concern.
    ``consistency`` (Spearman) and ``consistency_pearson`` are measured on the test split
    with the best model (NaN for ``pre_only``: it has no aggregation weights). Torch runs
    on one thread: sweeps run one process per core. With ``runs_root`` the run keeps its
    run directory (config, history, best checkpoint; see ``ecmlib.training.train``) in
    ``runs_root/run_name(setting, seed)``.

    A run whose training loss becomes NaN/inf is a result, not a crash of the sweep: it
    returns ``diverged = 1``, ``diverged_epoch`` (the epoch whose loss was not finite) and
    NaN for every other metric, so tables count it (``aggregate`` leaves NaN out of a
    metric's statistics and its ``_n``) instead of silently averaging the survivors.
    ``diverged`` is 0 and ``diverged_epoch`` NaN otherwise.
    """
    from ..training.train import train
    torch.set_num_threads(1)
    cfg = setting_config(setting, seed, preset, epochs, eval_every, extra)
    train_set, test_set = load_setting_data(preset, data_seed)
    run_dir = Path(runs_root) / run_name(setting, seed) if runs_root else None
    t0 = time.perf_counter()
    nan = float("nan")
    try:
        res = train(cfg, data=(train_set, test_set), out_dir=run_dir, progress=False, log=None)
    except (RuntimeError, ValueError) as err:
        epoch = _diverged_epoch(err, run_dir)
        if epoch is None:
            raise
        out = dict.fromkeys(METRICS, nan)
        out.update(diverged=1, diverged_epoch=epoch, wall_time_s=time.perf_counter() - t0)
        return out
    wall = time.perf_counter() - t0
    m = res.metrics
    last = m.get("last_epoch") or {}
    return {
        "mAP@0.5": float(m.get("mAP@0.5", nan)),
        "average_mAP@0.1:0.7": float(m.get("average_mAP@0.1:0.7", nan)),
        "average_mAP@0.1:0.5": float(m.get("average_mAP@0.1:0.5", nan)),
        "classification_mAP": float(m.get("classification_mAP") or nan),
        "best_epoch": int(res.best_epoch),
        "final_mAP@0.5": float(last.get("mAP@0.5", nan)),
        "final_average_mAP@0.1:0.7": float(last.get("average_mAP@0.1:0.7", nan)),
        "consistency": transition_consistency(res.model, test_set.features, test_set.labels),
        "consistency_pearson": transition_consistency(res.model, test_set.features,
                                                      test_set.labels, "pearson"),
        "diverged": 0,
        "diverged_epoch": nan,
        "wall_time_s": float(wall),
    }


def collect_histories(runs_root: str, records: Sequence[Mapping[str, Any]],
                      setting_key: str = "setting", seed_key: str = "seed") -> pd.DataFrame:
    """Every run's per-epoch history (``history.csv`` under ``runs_root``) in one DataFrame.

    ``records`` are run_grid's records (they name the setting and seed of each run); the
    result has the columns ``setting``, ``seed`` and the history's own. A missing history
    is an error naming the file, not a silently shorter table.
    """
    import pandas as pd
    frames = []
    for rec in records:
        path = Path(runs_root) / run_name(rec[setting_key], rec[seed_key]) / "history.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no history (was run_setting given runs_root?)")
        df = pd.read_csv(path)
        df.insert(0, "seed", rec[seed_key])
        df.insert(0, "setting", rec[setting_key])
        frames.append(df)
    if not frames:
        raise ValueError("no records: nothing to collect")
    return pd.concat(frames, ignore_index=True)
