"""Plotting for the workbook notebooks: pure functions from tables and arrays to Axes.

Every function draws on the ``ax`` it is given (or on a new figure when ``ax`` is None) and
returns what it drew on, so a notebook cell stays one call long and a test can count the
artists. Nothing here reads files except :func:`official_curves`, and nothing changes global
matplotlib state at import: :func:`use_theme` applies the workbook's seaborn theme when a
notebook asks for it. :func:`save_figure` writes ``figures/<name>.png`` and ``.svg`` with
byte-stable metadata, atomically, and does nothing when no figures folder is given (quick
runs pass a sandbox folder or none, so they never replace the committed figures).

Inputs are the DataFrames of :mod:`ecmlib.data.stats` (a ``source`` column tells real and
synthetic apart), a training history (``RunResult.history_frame()``), the ablation tables
of :func:`ecmlib.studies.workbook.aggregate`, and plain numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..io import atomic_write

if TYPE_CHECKING:  # matplotlib is imported lazily: `import ecmlib` stays light
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "OFFICIAL_LABEL",
    "use_theme",
    "save_figure",
    "official_curves",
    "plot_instances_per_class",
    "plot_instance_durations",
    "plot_coverage",
    "plot_annotation_overview",
    "plot_snippet_norms",
    "plot_foreground_background",
    "plot_feature_overview",
    "plot_context_confusion",
    "plot_loss_curves",
    "plot_map_curves",
    "plot_official_curves",
    "plot_training_vs_official",
    "plot_setting_curves",
    "plot_cas_vs_weights",
    "shade_spans",
]

#: How the authors' curves are labelled wherever they are drawn (they are not our numbers).
OFFICIAL_LABEL = "authors' code, real THUMOS14 I3D features"

# Fixed salt for the ids matplotlib writes into SVG files (random per process otherwise).
_SVG_HASHSALT = "ecm-workbench"
_PNG_DPI = 200


def use_theme() -> None:
    """Apply the workbook's plotting theme (seaborn, 'paper' context, 'ticks' style)."""
    import seaborn as sns
    sns.set_theme(context="paper", style="ticks")


def _new_ax(ax: Axes | None, figsize: tuple[float, float] = (5.0, 3.2)) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt
    _, ax = plt.subplots(figsize=figsize)
    return ax


def _subplots(nrows: int, ncols: int, figsize: tuple[float, float], **kw) -> tuple[Figure, np.ndarray]:
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, **kw)
    return fig, axes


def _palette(names: Sequence[str]) -> dict[str, tuple]:
    import seaborn as sns
    return dict(zip(names, sns.color_palette("colorblind", max(len(names), 1))))


_LINESTYLES = ("-", "--", "-.", ":")


def _styles(names: Sequence[str]) -> dict[str, tuple[tuple, str]]:
    """(colour, line style) per source: the style tells apart curves that coincide."""
    return {n: (c, _LINESTYLES[i % len(_LINESTYLES)]) for i, (n, c) in enumerate(_palette(names).items())}


def _headroom(ax: Axes, factor: float = 1.45) -> None:
    """Room above the data for a legend at the top of the axes."""
    low, high = ax.get_ylim()
    ax.set_ylim(low, low + (high - low) * factor)


def _sources(df: pd.DataFrame) -> list[str]:
    if "source" not in df.columns:
        raise ValueError(f"expected a 'source' column (an ecmlib.data.stats table); got {list(df.columns)}")
    return list(dict.fromkeys(df["source"].tolist()))


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {list(df.columns)}")


# ------------------------------------------------------------------ saving


def save_figure(fig: Figure, name: str, figures_dir: str | Path | None) -> list[Path]:
    """Write ``figures_dir/name.png`` (200 dpi) and ``name.svg``; return the paths written.

    Empty or None ``figures_dir`` writes nothing (returns []), so quick and test runs can
    call this unconditionally. Both files carry no date, and SVG ids use a fixed salt, so
    saving the same figure twice gives identical bytes (clean diffs of committed figures).
    Each file is written to a temporary name and renamed, never left half-written.
    """
    if figures_dir is None or str(figures_dir) == "":
        return []
    if not name or Path(name).name != name or name.endswith((".png", ".svg")):
        raise ValueError(f"figure name {name!r} must be a bare stem such as '01_annotations'")
    import matplotlib as mpl
    folder = Path(figures_dir)
    written = []
    with mpl.rc_context({"svg.hashsalt": _SVG_HASHSALT}):
        for ext, metadata in (("png", {"Software": None}), ("svg", {"Date": None})):
            path = folder / f"{name}.{ext}"
            atomic_write(path, lambda fh, ext=ext, metadata=metadata: fig.savefig(
                fh, format=ext, dpi=_PNG_DPI, bbox_inches="tight", metadata=metadata))
            written.append(path)
    return written


# ------------------------------------------------------------------ annotations


def plot_instances_per_class(per_class: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Instances per class, classes ranked by count, one line per ``source``.

    Datasets have different class lists (20, 100, 200 classes), so classes are compared by
    rank (x = fraction of the class list, most frequent first) rather than by name.
    """
    _require(per_class, ["source", "instances"], "instances per class")
    ax = _new_ax(ax)
    for src, (color, ls) in _styles(_sources(per_class)).items():
        counts = np.sort(per_class.loc[per_class["source"] == src, "instances"].to_numpy())[::-1]
        rank = (np.arange(len(counts)) + 0.5) / max(len(counts), 1)
        ax.plot(rank, counts, marker="o", ms=2.5, lw=1.2, color=color, ls=ls,
                label=f"{src} ({len(counts)} classes)")
    ax.set_yscale("log")
    ax.set_xlabel("class rank (fraction of classes, most frequent first)")
    ax.set_ylabel("instances per class")
    ax.set_title("Instances per class")
    ax.legend(fontsize="x-small")
    return ax


def plot_instance_durations(durations: pd.DataFrame, ax: Axes | None = None,
                            column: str = "length", bins: int = 40) -> Axes:
    """Histogram of instance lengths in seconds: log-spaced bins, fraction of each source's
    instances per bin (a density would inflate the narrow bins of a log axis).

    ``column='relative_length'`` plots the length as a fraction of the video instead.
    Non-positive lengths (a few official segments have end <= start) cannot sit on a log
    axis: they are counted in the legend instead of being dropped silently.
    """
    _require(durations, ["source", column], "instance durations")
    ax = _new_ax(ax)
    values = durations[column].to_numpy(dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        raise ValueError("instance durations: no positive length to plot")
    edges = np.geomspace(positive.min(), positive.max(), bins + 1)
    for src, (color, ls) in _styles(_sources(durations)).items():
        v = durations.loc[durations["source"] == src, column].to_numpy(dtype=float)
        bad = int(np.sum(~(v > 0)))
        label = f"{src} (median {np.median(v[v > 0]):.3g})" + (f", {bad} <= 0 not shown" if bad else "")
        shown = v[v > 0]
        ax.hist(shown, bins=edges, weights=np.full(shown.size, 1.0 / max(v.size, 1)),
                histtype="step", lw=1.4, color=color, ls=ls, label=label)
    ax.set_xscale("log")
    unit = "s" if column == "length" else "fraction of video"
    ax.set_xlabel(f"instance {column.replace('_', ' ')} ({unit})")
    ax.set_ylabel("fraction of instances")
    ax.set_title("Instance durations")
    _headroom(ax)
    ax.legend(fontsize="x-small", loc="upper left")
    return ax


def plot_coverage(coverage: pd.DataFrame, ax: Axes | None = None, bins: int = 20) -> Axes:
    """Histogram of the fraction of each video covered by actions, one outline per source."""
    _require(coverage, ["source", "coverage"], "coverage")
    ax = _new_ax(ax)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for src, (color, ls) in _styles(_sources(coverage)).items():
        v = coverage.loc[coverage["source"] == src, "coverage"].to_numpy(dtype=float)
        ax.hist(v, bins=edges, density=True, histtype="step", lw=1.4, color=color, ls=ls,
                label=f"{src} (mean {np.mean(v):.2f})")
    ax.set_xlabel("fraction of the video inside an action")
    ax.set_ylabel("density")
    ax.set_title("Action coverage per video")
    _headroom(ax)
    ax.legend(fontsize="x-small", loc="upper center")
    return ax


def plot_annotation_overview(per_class: pd.DataFrame, durations: pd.DataFrame,
                             coverage: pd.DataFrame) -> Figure:
    """The three annotation panels side by side: instances per class, durations, coverage."""
    fig, axes = _subplots(1, 3, (15.0, 3.8))
    plot_instances_per_class(per_class, axes[0, 0])
    plot_instance_durations(durations, axes[0, 1])
    plot_coverage(coverage, axes[0, 2])
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ features


def plot_snippet_norms(norms: pd.DataFrame, ax: Axes | None = None,
                       columns: Sequence[str] = ("norm_rgb", "norm_flow"), bins: int = 50) -> Axes:
    """Distribution of snippet L2 norms (``stats.snippet_norms``), per source and stream.

    Each (source, column) pair is one outline histogram, normalised to unit area so a
    small synthetic preset and a large real set can share the axes.
    """
    _require(norms, ["source", *columns], "snippet norms")
    ax = _new_ax(ax)
    styles = ["-", "--", ":", "-."]
    for src, color in _palette(_sources(norms)).items():
        part = norms[norms["source"] == src]
        for col, ls in zip(columns, styles):
            v = part[col].to_numpy(dtype=float)
            ax.hist(v, bins=bins, density=True, histtype="step", lw=1.3, ls=ls, color=color,
                    label=f"{src}: {col.removeprefix('norm_') or 'all'}")
    ax.set_xlabel("snippet L2 norm")
    ax.set_ylabel("density")
    ax.set_title("Snippet norms")
    ax.legend(fontsize="small")
    return ax


def plot_foreground_background(fgbg: pd.DataFrame, ax: Axes | None = None,
                               jitter_seed: int = 0) -> Axes:
    """Mean snippet norm inside vs outside the actions, per video (``stats.foreground_background_norms``).

    A dot per video and region, split by source, with the region's mean as a bar outline;
    a large gap means the norm alone already localises, which real I3D features only
    partly allow. The dots' horizontal jitter comes from ``jitter_seed`` (seaborn's own
    jitter draws from numpy's global RNG), so the same data give the same figure bytes.
    """
    _require(fgbg, ["source", "region", "mean_norm"], "foreground/background norms")
    import seaborn as sns
    ax = _new_ax(ax)
    data = fgbg.dropna(subset=["mean_norm"])
    order = ["foreground", "background"]
    sns.barplot(data=data, x="source", y="mean_norm", hue="region", hue_order=order, ax=ax,
                errorbar=None, fill=False, legend=False)
    before = len(ax.collections)
    sns.stripplot(data=data, x="source", y="mean_norm", hue="region", hue_order=order, ax=ax,
                  dodge=True, size=2, alpha=0.5, jitter=False)
    # seaborn's jitter=0.2 with two dodged hues: uniform in +-0.1 category widths, seeded here
    rng = np.random.default_rng(jitter_seed)
    for dots in ax.collections[before:]:
        xy = np.asarray(dots.get_offsets(), dtype=float)
        if len(xy) > 1:
            xy[:, 0] += rng.uniform(-0.2 / len(order), 0.2 / len(order), size=len(xy))
            dots.set_offsets(xy)
    ax.set_xlabel("")
    ax.set_ylabel("mean snippet norm per video")
    ax.set_title("Inside vs outside actions")
    ax.legend(fontsize="small", title=None)
    return ax


def plot_feature_overview(norms: pd.DataFrame, fgbg: pd.DataFrame,
                          sparsity: pd.DataFrame | None = None) -> Figure:
    """Feature statistics panels: snippet norms, foreground vs background, sparsity."""
    import seaborn as sns
    ncols = 3 if sparsity is not None else 2
    fig, axes = _subplots(1, ncols, (5.0 * ncols, 3.8))
    plot_snippet_norms(norms, axes[0, 0])
    plot_foreground_background(fgbg, axes[0, 1])
    if sparsity is not None:
        _require(sparsity, ["source", "stream", "sparsity"], "sparsity")
        ax = axes[0, 2]
        sns.barplot(data=sparsity, x="stream", y="sparsity", hue="source", ax=ax,
                    errorbar="sd", err_kws={"linewidth": 1.0})
        ax.set_ylabel("fraction of zeros (mean ± sd over videos)")
        ax.set_xlabel("")
        ax.set_title("Sparsity")
        ax.legend(fontsize="small", title=None)
    fig.tight_layout()
    return fig


def shade_spans(ax: Axes, spans: Sequence[tuple[float, float]], color: str, label: str,
                alpha: float, hatch: str | None = None) -> None:
    """Shade each (start, end) span on ``ax``; the first carries ``label`` for the legend."""
    for i, (s, e) in enumerate(spans):
        ax.axvspan(s, e, color=color, alpha=alpha, lw=0, hatch=hatch,
                   label=label if i == 0 else None)


def _cosine_to_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Cosine similarity of every snippet [D, T] to the mean of the masked snippets."""
    ref = x[:, mask].mean(axis=1)
    num = ref @ x
    den = np.linalg.norm(ref) * np.linalg.norm(x, axis=0)
    return num / np.maximum(den, 1e-12)


def plot_context_confusion(features: np.ndarray, duration: float,
                           gt_segments: Sequence[tuple[float, float]],
                           context_segments: Sequence[tuple[float, float]] = (),
                           title: str = "") -> Figure:
    """What context confusion looks like in one video's features.

    ``features`` [D, T] (RGB channels first, then flow). Top: the features as a heat map
    (channels sorted by their action-vs-rest contrast so the structure is visible). Bottom:
    for RGB and flow separately, the cosine similarity of each snippet to the mean action
    snippet. Ground-truth actions are shaded; ``context_segments`` (e.g. the synthetic
    generator's venue shots between actions) are hatched. Context shows up as snippets
    outside the actions whose RGB looks like the action while their flow does not.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be [D, T] with D >= 2, got {features.shape}")
    d, t = features.shape
    times = (np.arange(t) + 0.5) * duration / t
    fg = np.zeros(t, dtype=bool)
    for s, e in gt_segments:
        fg |= (times >= s) & (times <= e)
    if not fg.any():
        raise ValueError("no snippet falls inside the ground-truth segments")
    fig, axes = _subplots(2, 1, (9.0, 5.0), sharex=True, gridspec_kw={"height_ratios": [1.3, 1]})
    top, bottom = axes[0, 0], axes[1, 0]
    contrast = features[:, fg].mean(axis=1) - (features[:, ~fg].mean(axis=1) if (~fg).any() else 0)
    order = np.argsort(-contrast)
    scaled = features[order] / np.maximum(features.max(axis=1, keepdims=True)[order], 1e-12)
    top.imshow(scaled, aspect="auto", cmap="magma", interpolation="nearest",
               extent=(0.0, duration, d, 0))
    top.set_ylabel("channel (by action contrast)")
    top.set_title(title or "One synthetic video: features and ground truth")
    half = d // 2
    shade_spans(bottom, gt_segments, "tab:green", "ground-truth action", 0.25)
    shade_spans(bottom, context_segments, "tab:grey", "venue (context) shot", 0.12, hatch="//")
    bottom.plot(times, _cosine_to_mean(features[:half], fg), color="tab:red", lw=1.2,
                label="RGB similarity to mean action snippet")
    bottom.plot(times, _cosine_to_mean(features[half:], fg), color="tab:blue", lw=1.2,
                label="flow similarity to mean action snippet")
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("cosine similarity")
    bottom.set_xlim(0.0, duration)
    bottom.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=4,
                  frameon=False)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ training


def plot_loss_curves(history: pd.DataFrame, ax: Axes | None = None,
                     weights: Mapping[str, float] | None = None) -> Axes:
    """Training loss per epoch, one line per term that was trained, plus the total.

    ECM's four terms, then a variant's extra terms (``loss_<name>`` columns); terms that
    are identically zero (a stream switched off) are left out. With ``weights``
    (``{'loss_pre': w_pre, ...}``) each term is drawn as it enters the total.
    """
    from ..method.losses import LOSS_NAMES
    _require(history, ["epoch", "loss_total"], "history")
    ax = _new_ax(ax)
    names = {"loss_pre": "L_pre", "loss_post": "L_post", "loss_eq": "L_eq", "loss_agg": "L_agg"}
    extra = [c for c in history.columns if c.startswith("loss_")
             and c not in (*LOSS_NAMES, "loss_total")]
    names.update({c: c.removeprefix("loss_") for c in extra})
    for term in (*LOSS_NAMES, *extra):
        if term not in history.columns or not np.any(history[term].to_numpy(dtype=float) != 0):
            continue
        w = 1.0 if weights is None else float(weights.get(term, 1.0))
        label = names[term] if weights is None else f"{w:g} x {names[term]}"
        ax.plot(history["epoch"], w * history[term], lw=1.3, label=label)
    ax.plot(history["epoch"], history["loss_total"], color="black", lw=1.8, label="total")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (epoch mean)")
    ax.set_title("Loss by term")
    ax.legend(fontsize="small")
    return ax


def plot_map_curves(history: pd.DataFrame, ax: Axes | None = None,
                    metrics: Sequence[str] = ("mAP@0.5", "average_mAP@0.1:0.9"),
                    label: str = "ours", best_epoch: int | None = None) -> Axes:
    """Detection mAP per evaluated epoch of one of our runs (rows without mAP are skipped)."""
    _require(history, ["epoch"], "history")
    ax = _new_ax(ax)
    drawn = 0
    for m in metrics:
        if m not in history.columns:
            continue
        rows = history.dropna(subset=[m])
        ax.plot(rows["epoch"], 100 * rows[m], marker="o", ms=3, lw=1.4, label=f"{label}: {m}")
        drawn += 1
    if not drawn:
        raise ValueError(f"history has none of the metrics {list(metrics)}; was the run evaluated?")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", ls=":", lw=1, label=f"best epoch ({best_epoch})")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("mAP (%)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    return ax


# The file's ``average_mAP`` is the mean over the dataset's evaluation thresholds (checked:
# THUMOS14 = mean of mAP@0.1..0.9, ActivityNet = mean of mAP@0.5..0.95); renamed to the
# names ecmlib.method.evaluation gives the same averages, so our curves and theirs share names.
_OFFICIAL_AVERAGE = {"THUMOS14": "average_mAP@0.1:0.9", "ActivityNet1.2": "average_mAP@0.5:0.95",
                     "ActivityNet1.3": "average_mAP@0.5:0.95"}


def official_curves(dataset: str = "THUMOS14", path: str | Path | None = None) -> pd.DataFrame:
    """The authors' per-epoch evaluation curves of ``dataset`` (``data/curves/...csv``).

    Columns epoch, metric, value; ``metric`` is e.g. ``mAP@0.5`` or, for the file's
    ``average_mAP``, the explicit ``average_mAP@0.1:0.9`` (THUMOS14) /
    ``average_mAP@0.5:0.95`` (ActivityNet).
    """
    from ..data.features import default_data_dir
    path = Path(path) if path is not None else default_data_dir() / "curves" / "official_ecm_training_curves.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: official training curves not found")
    df = pd.read_csv(path)
    _require(df, ["dataset", "epoch", "metric", "value"], str(path))
    part = df[df["dataset"] == dataset]
    if part.empty:
        raise ValueError(f"{path}: no curves for {dataset!r}; datasets: {sorted(df['dataset'].unique())}")
    part = part[["epoch", "metric", "value"]].reset_index(drop=True)
    if dataset in _OFFICIAL_AVERAGE:
        part["metric"] = part["metric"].replace({"average_mAP": _OFFICIAL_AVERAGE[dataset]})
    return part


def plot_official_curves(curves: pd.DataFrame, ax: Axes | None = None,
                         metrics: Sequence[str] = ("mAP@0.5", "average_mAP@0.1:0.9"),
                         label: str = OFFICIAL_LABEL) -> Axes:
    """The authors' mAP per epoch (from :func:`official_curves`), labelled as theirs."""
    _require(curves, ["epoch", "metric", "value"], "official curves")
    ax = _new_ax(ax)
    for m in metrics:
        rows = curves[curves["metric"] == m].sort_values("epoch")
        if rows.empty:
            raise ValueError(f"official curves have no metric {m!r}; "
                             f"available: {sorted(curves['metric'].unique())}")
        ax.plot(rows["epoch"], 100 * rows["value"], lw=1.4, ls="--", label=m)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mAP (%)")
    ax.set_ylim(bottom=0)
    ax.set_title(label)
    ax.legend(fontsize="small")
    return ax


def plot_training_vs_official(history: pd.DataFrame, curves: pd.DataFrame | None,
                              title: str = "ours: synthetic benchmark",
                              best_epoch: int | None = None,
                              metrics: Sequence[str] = ("mAP@0.5", "average_mAP@0.1:0.9"),
                              official_metrics: Sequence[str] = ("mAP@0.5", "average_mAP@0.1:0.9"),
                              official_label: str = OFFICIAL_LABEL) -> Figure:
    """Our mAP per epoch (left) beside the authors' curves (right; real THUMOS14 by default).

    Two panels, not one: the runs differ in data (synthetic vs real I3D features), length
    and width, so sharing axes would invite a comparison the numbers cannot support.
    ``official_label`` titles the right panel (change it for the ActivityNet curves).
    """
    ncols = 1 if curves is None else 2
    fig, axes = _subplots(1, ncols, (5.5 * ncols, 3.6))
    plot_map_curves(history, axes[0, 0], metrics=metrics, best_epoch=best_epoch)
    axes[0, 0].set_title(title)
    if curves is not None:
        plot_official_curves(curves, axes[0, 1], metrics=official_metrics, label=official_label)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ ablations


def plot_setting_curves(histories: pd.DataFrame, metric: str = "mAP@0.5", ax: Axes | None = None,
                        setting_key: str = "setting", scale: float = 100.0) -> Axes:
    """Per setting, ``metric`` per evaluated epoch: mean over seeds, ± std as a band.

    ``histories`` holds one row per (setting, seed, epoch), e.g. a study's curves
    (:func:`ecmlib.studies.collect.read_curves`); epochs without an evaluation are skipped.
    """
    _require(histories, [setting_key, "epoch", metric], "histories")
    ax = _new_ax(ax)
    data = histories.dropna(subset=[metric])
    names = list(dict.fromkeys(data[setting_key].astype(str)))
    for name, color in _palette(names).items():
        g = data[data[setting_key].astype(str) == name].groupby("epoch")[metric]
        mean, std = scale * g.mean(), scale * g.std(ddof=1).fillna(0.0)
        ax.plot(mean.index, mean.to_numpy(), marker="o", ms=2.5, lw=1.3, color=color,
                label=f"{name} (n={g.size().max()})")
        ax.fill_between(mean.index, (mean - std).to_numpy(), (mean + std).to_numpy(),
                        color=color, alpha=0.15, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (%)" if scale == 100 else metric)
    ax.set_title(f"{metric} during training (mean ± std over seeds)")
    ax.legend(fontsize="small")
    return ax


def plot_cas_vs_weights(cas: np.ndarray, weights: np.ndarray, ax: Axes | None = None,
                        duration: float | None = None,
                        gt_segments: Sequence[tuple[float, float]] = (),
                        title: str = "", consistency: float | None = None) -> Axes:
    """One video and class: the CAS as localisation sees it next to the aggregation weights a.

    Both are [T]; time is in seconds when ``duration`` is given, else in snippets. The CAS
    is drawn as :func:`ecmlib.method.localize.localized_curve` makes it. ``consistency``
    (e.g. the Spearman rank correlation of :func:`ecmlib.studies.ablation.consistency_of`)
    is shown in the title when given.
    """
    from ..method.localize import localized_curve
    cas, weights = np.asarray(cas, dtype=float).ravel(), np.asarray(weights, dtype=float).ravel()
    if cas.shape != weights.shape:
        raise ValueError(f"cas {cas.shape} and weights {weights.shape} must have the same length")
    ax = _new_ax(ax, (6.0, 2.6))
    t = cas.size
    x = (np.arange(t) + 0.5) * duration / t if duration else np.arange(t)
    shade_spans(ax, gt_segments, "tab:green", "ground truth", 0.2)
    ax.plot(x, localized_curve(cas), color="tab:red", lw=1.2, label="CAS (min-max, as localised)")
    ax.plot(x, weights, color="tab:blue", lw=1.2, label="aggregation weight a")
    if consistency is not None:
        title = f"{title}  (Spearman rho = {consistency:.2f})".strip()
    ax.set_title(title)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("time (s)" if duration else "snippet")
    ax.legend(fontsize="x-small", loc="upper right")
    return ax


# ------------------------------------------------------------------ results of record


def plot_paired_differences(summary: pd.DataFrame, metric: str = "mAP@0.5",
                            ax: Axes | None = None, baseline: str = "ecm") -> Axes:
    """Forest plot: per setting, setting − ``baseline`` with its 95 % interval, one marker
    per model selection (best epoch on test, last epoch, mean of the last five).

    ``summary`` is :func:`ecmlib.studies.analysis.paired_summary` output (fractions; shown in points).
    """
    _require(summary, ["setting", "selection", "metric", "diff", "diff_lo", "diff_hi"],
             "paired summary")
    s = summary[(summary["metric"] == metric) & (summary["setting"] != baseline)]
    labels = {"best": "best epoch (test-selected)", "last": "last epoch",
              "last5": "mean of last 5 evaluations"}
    ax = _forest(s, "setting", "selection", labels, ax)
    ax.set_xlabel(f"Δ {metric} vs {baseline} (points, 95 % CI over paired seeds)")
    return ax


def _forest(s: pd.DataFrame, row_key: str, series_key: str, labels: Mapping[str, str],
            ax: Axes | None = None) -> Axes:
    """Rows of ``s[row_key]`` (top to bottom), one marker per ``s[series_key]``: ``diff``
    with its [diff_lo, diff_hi] interval, in points, and a line at zero."""
    names = list(dict.fromkeys(s[row_key]))
    ax = _new_ax(ax, (5.5, 0.55 * max(len(names), 1) + 1.4))
    series = list(dict.fromkeys(s[series_key]))
    markers = dict(zip(series, "osD^v"))
    offset = np.linspace(-0.22, 0.22, max(len(series), 1))
    colors = _palette(series)
    for j, key in enumerate(series):
        part = s[s[series_key] == key].set_index(row_key).reindex(names)
        y = np.arange(len(names)) + offset[j]
        d = 100 * part["diff"].to_numpy(dtype=float)
        lo = 100 * part["diff_lo"].to_numpy(dtype=float)
        hi = 100 * part["diff_hi"].to_numpy(dtype=float)
        err = np.vstack([np.nan_to_num(d - lo), np.nan_to_num(hi - d)])
        ax.errorbar(d, y, xerr=err, fmt=markers[key], ms=4, capsize=2, lw=1,
                    color=colors[key], label=labels.get(key, key))
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(np.arange(len(names)), names)
    ax.invert_yaxis()
    ax.legend(fontsize="x-small", loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2,
              frameon=False)
    return ax


def plot_ingredient_differences(summary: pd.DataFrame, selection: str = "last",
                                ax: Axes | None = None) -> Axes:
    """Notebook 07 (study 07b): ECM − pre-only with its 95 % interval in each world of the
    ingredient study, one marker per metric. ``summary`` is
    :func:`ecmlib.studies.analysis.ingredient_summary` (fractions; shown in points)."""
    _require(summary, ["factor", "level", "selection", "metric", "diff", "diff_lo", "diff_hi"],
             "ingredient summary")
    s = summary[summary["selection"] == selection].copy()
    s["world"] = s["factor"] + ": " + s["level"]
    ax = _forest(s, "world", "metric", {}, ax)
    ax.set_xlabel(f"ECM − pre-only, {selection} epoch (points, 95 % CI over paired seeds)")
    return ax


def plot_world_differences(summary: pd.DataFrame, selection: str = "last",
                           levels: Sequence[str] = ("off", "default", "strong")) -> Figure:
    """Notebook 07: ECM − pre-only (points, 95 % CI) against each factor's level, one panel
    per metric, one line per factor. ``summary`` is :func:`ecmlib.studies.analysis.world_summary`."""
    _require(summary, ["factor", "level", "selection", "metric", "diff", "diff_lo", "diff_hi"],
             "world summary")
    s = summary[summary["selection"] == selection]
    metrics = list(dict.fromkeys(s["metric"]))
    fig, axes = _subplots(1, max(len(metrics), 1), (5.0 * max(len(metrics), 1), 3.4))
    factors = list(dict.fromkeys(s["factor"]))
    colors = _palette(factors)
    offset = np.linspace(-0.15, 0.15, max(len(factors), 1))
    for ax, metric in zip(axes[0], metrics):
        for j, factor in enumerate(factors):
            part = s[(s["metric"] == metric) & (s["factor"] == factor)].set_index("level")
            part = part.reindex(list(levels))
            x = np.arange(len(levels)) + offset[j]
            d = 100 * part["diff"].to_numpy(dtype=float)
            lo = 100 * part["diff_lo"].to_numpy(dtype=float)
            hi = 100 * part["diff_hi"].to_numpy(dtype=float)
            err = np.vstack([np.nan_to_num(d - lo), np.nan_to_num(hi - d)])
            ax.errorbar(x, d, yerr=err, marker="o", ms=4, capsize=2, lw=1.2,
                        color=colors[factor], label=factor)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(np.arange(len(levels)), list(levels))
        ax.set_xlabel("level of the factor")
        ax.set_ylabel(f"ECM − pre-only, {metric} (points)")
        ax.set_title(f"{metric}, {selection} epoch (95 % CI over seeds)")
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    return fig
