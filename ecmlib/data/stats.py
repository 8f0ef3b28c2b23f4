"""Descriptive statistics of annotations and features, for the data-exploration notebook.

Every function returns a pandas DataFrame with a ``source`` column, so tables computed on the
real benchmarks and on a synthetic one can be concatenated (``pd.concat``) and plotted side by
side. Annotation functions take a gt dict in the ActivityNet style of ``data/*/gt.json``
({"database": {video: {"subset", "duration", "annotations": [{"segment", "label"}]}}});
feature functions take a :class:`ecmlib.data.features.FeatureSet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # only for annotations; avoids importing the readers at import time
    from .features import FeatureSet

__all__ = [
    "instance_table",
    "instances_per_class",
    "instance_durations",
    "video_durations",
    "action_coverage",
    "gt_summary",
    "snippet_norms",
    "feature_sparsity",
    "class_separability",
    "foreground_background_norms",
]


# ------------------------------------------------------------------ annotations


def _source(gt: dict, source: str | None) -> str:
    return source if source is not None else str(gt.get("dataset") or gt.get("version") or "gt")


def _videos(gt: dict, subset: str | Sequence[str] | None) -> list[tuple[str, dict]]:
    """Videos of ``subset`` (None: all) as (name, entry) pairs; errors name the problem."""
    if not isinstance(gt, dict) or not isinstance(gt.get("database"), dict):
        raise ValueError("gt must be a dict with a 'database' object (see data/*/gt.json)")
    wanted = None if subset is None else ({subset} if isinstance(subset, str) else set(subset))
    out = []
    present = set()
    for vid, entry in gt["database"].items():
        for key in ("subset", "duration", "annotations"):
            if key not in entry:
                raise ValueError(f"gt video {vid!r}: missing key {key!r}")
        present.add(entry["subset"])
        if wanted is None or entry["subset"] in wanted:
            out.append((vid, entry))
    if wanted is not None and not out:
        raise ValueError(f"gt has no video in subset {sorted(wanted)}; subsets present: "
                         f"{sorted(present)}")
    return out


def _segment(ann: dict, vid: str) -> tuple[float, float]:
    seg = ann.get("segment")
    try:
        start, end = float(seg[0]), float(seg[1])
    except (TypeError, ValueError, IndexError) as err:
        raise ValueError(f"gt video {vid!r}: malformed segment {seg!r}") from err
    if not (np.isfinite(start) and np.isfinite(end)):
        raise ValueError(f"gt video {vid!r}: non-finite segment {seg!r}")
    return start, end


def instance_table(gt: dict, subset: str | Sequence[str] | None = None,
                   source: str | None = None) -> pd.DataFrame:
    """One row per action instance: source, video, subset, label, start, end, length, video_duration.

    ``length`` is end - start in seconds (the official annotations contain a few segments with
    end <= start; they appear with length <= 0 rather than being hidden).
    """
    src = _source(gt, source)
    rows = []
    for vid, entry in _videos(gt, subset):
        for ann in entry["annotations"]:
            start, end = _segment(ann, vid)
            rows.append((src, vid, entry["subset"], ann.get("label"), start, end, end - start,
                         float(entry["duration"])))
    return pd.DataFrame(rows, columns=["source", "video", "subset", "label", "start", "end",
                                       "length", "video_duration"])


def instances_per_class(gt: dict, subset: str | Sequence[str] | None = None,
                        source: str | None = None) -> pd.DataFrame:
    """Per class (in the gt's class order when it has one): instances and videos containing it.

    Classes of the class list without any instance in ``subset`` appear with zero counts.
    """
    table = instance_table(gt, subset, source)
    classes = list(gt.get("classes") or sorted(table["label"].unique()))
    inst = table.groupby("label").size()
    vids = table.groupby("label")["video"].nunique()
    mean_len = table.groupby("label")["length"].mean()
    return pd.DataFrame({
        "source": _source(gt, source),
        "label": classes,
        "instances": [int(inst.get(c, 0)) for c in classes],
        "videos": [int(vids.get(c, 0)) for c in classes],
        "mean_length": [float(mean_len.get(c, np.nan)) for c in classes],
    })


def instance_durations(gt: dict, subset: str | Sequence[str] | None = None,
                       source: str | None = None) -> pd.DataFrame:
    """Instance lengths in seconds and relative to their video (length / video duration)."""
    table = instance_table(gt, subset, source)
    table["relative_length"] = table["length"] / table["video_duration"]
    return table[["source", "video", "subset", "label", "length", "relative_length"]]


def video_durations(gt: dict, subset: str | Sequence[str] | None = None,
                    source: str | None = None) -> pd.DataFrame:
    """One row per video: source, video, subset, duration (seconds)."""
    src = _source(gt, source)
    rows = [(src, vid, e["subset"], float(e["duration"])) for vid, e in _videos(gt, subset)]
    return pd.DataFrame(rows, columns=["source", "video", "subset", "duration"])


def _union_length(intervals: list[tuple[float, float]]) -> float:
    """Total length of a union of intervals (overlaps counted once)."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(i for i in intervals if i[1] > i[0]):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def action_coverage(gt: dict, subset: str | Sequence[str] | None = None,
                    source: str | None = None) -> pd.DataFrame:
    """Fraction of each video's duration covered by at least one action instance.

    Segments are clipped to [0, duration] (some official segments run past the listed
    duration) and overlapping instances, e.g. CliffDiving + Diving, count once.
    """
    src = _source(gt, source)
    rows = []
    for vid, e in _videos(gt, subset):
        duration = float(e["duration"])
        if not np.isfinite(duration) or duration <= 0:
            raise ValueError(f"gt video {vid!r}: duration {e['duration']!r} must be finite and > 0")
        clipped = [(max(0.0, s), min(duration, t))
                   for s, t in (_segment(a, vid) for a in e["annotations"])]
        covered = _union_length(clipped)
        rows.append((src, vid, e["subset"], duration, covered, covered / duration))
    return pd.DataFrame(rows, columns=["source", "video", "subset", "duration", "covered",
                                       "coverage"])


def gt_summary(gt: dict, subset: str | Sequence[str] | None = None,
               source: str | None = None) -> pd.DataFrame:
    """One-row overview: videos, instances, classes, medians of durations, mean coverage."""
    table = instance_table(gt, subset, source)
    vids = video_durations(gt, subset, source)
    cov = action_coverage(gt, subset, source)
    return pd.DataFrame([{
        "source": _source(gt, source),
        "videos": len(vids),
        "instances": len(table),
        "classes": table["label"].nunique(),
        "instances_per_video": len(table) / max(len(vids), 1),
        "median_video_duration": float(vids["duration"].median()),
        "median_instance_length": float(table["length"].median()),
        "mean_coverage": float(cov["coverage"].mean()),
    }])


# ------------------------------------------------------------------ features


def _fs_source(fs: "FeatureSet", source: str | None) -> str:
    return source if source is not None else (fs.source or f"{fs.dataset}/{fs.split}")


def snippet_norms(fs: "FeatureSet", source: str | None = None) -> pd.DataFrame:
    """L2 norm of every snippet: columns source, video, snippet, norm, norm_rgb, norm_flow.

    RGB is the first half of the channels, flow the second (FeatureSet convention).
    """
    n, d, t = fs.features.shape
    half = d // 2
    # float64 accumulation: squared I3D activations summed over 1024 channels lose digits in float32
    sq = np.square(fs.features, dtype=np.float64)
    rgb = np.sqrt(sq[:, :half].sum(axis=1))
    flow = np.sqrt(sq[:, half:].sum(axis=1))
    total = np.sqrt(sq.sum(axis=1))
    return pd.DataFrame({
        "source": _fs_source(fs, source),
        "video": np.repeat(np.asarray(fs.names, dtype=object), t),
        "snippet": np.tile(np.arange(t), n),
        "norm": total.reshape(-1),
        "norm_rgb": rgb.reshape(-1),
        "norm_flow": flow.reshape(-1),
    })


def feature_sparsity(fs: "FeatureSet", eps: float = 1e-6,
                     source: str | None = None) -> pd.DataFrame:
    """Per video and stream ('rgb', 'flow', 'all'): fraction of values with |x| <= eps."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    half = fs.feat_dim // 2
    near_zero = np.abs(fs.features) <= eps
    src = _fs_source(fs, source)
    frames = []
    for stream, part in (("rgb", near_zero[:, :half]), ("flow", near_zero[:, half:]),
                         ("all", near_zero)):
        frames.append(pd.DataFrame({"source": src, "video": fs.names, "stream": stream,
                                    "sparsity": part.mean(axis=(1, 2))}))
    return pd.concat(frames, ignore_index=True)


def class_separability(fs: "FeatureSet", source: str | None = None) -> pd.DataFrame:
    """How well video-mean features separate the classes (one row).

    Each video is summarised by its mean feature over time and counted once per label class.
    ``fisher_ratio`` = between-class / within-class variance, both as mean squared distances
    over the (video, class) pairs: between = mean ||mu_c - mu||^2, within = mean
    ||m_v - mu_c||^2. ``nc_accuracy`` is leave-one-out nearest-centroid accuracy (a video is
    right when its nearest class centroid, computed without it, is one of its labels);
    ``chance`` is the accuracy of a uniform random class guess.
    """
    means = fs.features.astype(np.float64).mean(axis=2)  # [N, D]
    labels = fs.labels > 0  # [N, C]
    vid_idx, cls_idx = np.nonzero(labels)
    if vid_idx.size == 0:
        raise ValueError(f"{_fs_source(fs, source)}: no labelled video")
    counts = labels.sum(axis=0).astype(np.float64)  # [C]
    sums = labels.T.astype(np.float64) @ means  # [C, D]
    present = counts > 0
    centroids = np.zeros_like(sums)
    centroids[present] = sums[present] / counts[present, None]
    pair_feats = means[vid_idx]
    grand = pair_feats.mean(axis=0)
    within = float(np.mean(np.sum((pair_feats - centroids[cls_idx]) ** 2, axis=1)))
    between = float(np.mean(np.sum((centroids[cls_idx] - grand) ** 2, axis=1)))
    ratio = between / within if within > 0 else float("inf")

    # Leave-one-out centroids without a loop: for a class c containing video v,
    # mu_c^(-v) - m_v = n_c / (n_c - 1) * (mu_c - m_v); other classes keep mu_c.
    n = means.shape[0]
    sq = (np.sum(means ** 2, axis=1)[:, None] + np.sum(centroids ** 2, axis=1)[None, :]
          - 2.0 * means @ centroids.T)
    sq = np.maximum(sq, 0.0)  # rounding of the expansion can dip below zero
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(labels, (counts / (counts - 1.0)) ** 2, 1.0)
        dist = sq * scale  # inf/nan only where no centroid exists; overwritten just below
    # no centroid: a class without videos, or v is the only video of its class
    no_centroid = (counts[None, :] == 0) | (labels & (counts[None, :] <= 1))
    dist[no_centroid] = np.inf
    usable = np.isfinite(dist).any(axis=1)
    pred = np.argmin(dist, axis=1)
    correct = labels[np.arange(n), pred] & usable
    acc = float(correct[usable].mean()) if usable.any() else float("nan")
    chance = float(np.mean(labels.sum(axis=1) / labels.shape[1]))
    return pd.DataFrame([{
        "source": _fs_source(fs, source),
        "videos": n,
        "between": between,
        "within": within,
        "fisher_ratio": ratio,
        "nc_accuracy": acc,
        "chance": chance,
    }])


def foreground_background_norms(fs: "FeatureSet", gt: dict,
                                source: str | None = None) -> pd.DataFrame:
    """Mean snippet L2 norm inside vs outside the gt action instances, per video.

    Snippet t of T covers [t, t+1) * duration / T; it is foreground when its centre lies in
    some instance of the video. Columns: source, video, region ('foreground' | 'background'),
    snippets, mean_norm (NaN when the region has no snippet). Every video of ``fs`` must be
    in ``gt``.
    """
    if not isinstance(gt, dict) or not isinstance(gt.get("database"), dict):
        raise ValueError("gt must be a dict with a 'database' object (see data/*/gt.json)")
    t = fs.num_snippets
    norms = np.sqrt(np.square(fs.features, dtype=np.float64).sum(axis=1))  # [N, T]
    src = _fs_source(fs, source)
    rows = []
    for i, vid in enumerate(fs.names):
        entry = gt["database"].get(vid)
        if entry is None:
            raise ValueError(f"{src}: video {vid!r} is not in the ground truth")
        centres = (np.arange(t) + 0.5) * (float(fs.duration[i]) / t)
        fg = np.zeros(t, dtype=bool)
        for ann in entry["annotations"]:
            s, e = _segment(ann, vid)
            fg |= (centres >= s) & (centres <= e)
        for region, mask in (("foreground", fg), ("background", ~fg)):
            rows.append((src, vid, region, int(mask.sum()),
                         float(norms[i, mask].mean()) if mask.any() else float("nan")))
    return pd.DataFrame(rows, columns=["source", "video", "region", "snippets", "mean_norm"])
