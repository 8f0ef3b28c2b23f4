"""Figures of notebook 02's walk-through: ECM's steps drawn on one video.

Two figures, each a pure function from plain arrays to a new matplotlib Figure:

* :func:`plot_cas_and_weights` -- the pre-classification stream of one (video, class): the
  CAS over time with the k snippets that top-k pooling averages, the video score they give,
  and below it the aggregation weights the equivalent weight transition makes of the CAS;
* :func:`plot_localisation_steps` -- one class of one test video through localisation: the
  normalised, up-sampled CAS with the thresholds, the proposals every threshold gives, and
  the detections left after NMS against the ground-truth segments.

Times are drawn in seconds when a scale is given (seconds per snippet or per frame), else in
snippets or frames. Bad input raises ValueError naming the argument. Nothing here computes
ECM: the notebook passes in what ``ecmlib.method`` computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .plots import shade_spans

if TYPE_CHECKING:  # matplotlib is imported lazily, as in ecmlib.views.plots
    from matplotlib.figure import Figure

__all__ = ["plot_cas_and_weights", "plot_localisation_steps"]


def _series(values, name: str) -> np.ndarray:
    """A finite, non-empty 1-D float array, or a ValueError naming ``name``."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} holds NaN or inf")
    return v


def _rows(values, width: int, name: str, columns: str) -> np.ndarray:
    """An [n, width] float array (n may be 0), or a ValueError naming ``name``."""
    r = np.asarray(values, dtype=np.float64)
    if r.size == 0:
        return np.zeros((0, width))
    if r.ndim != 2 or r.shape[1] != width:
        raise ValueError(f"{name} must be [n, {width}] rows ({columns}), got shape {r.shape}")
    return r


def _scale(value: float | None, name: str) -> float:
    if value is None:
        return 1.0
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")
    return float(value)


def plot_cas_and_weights(cas, weights, k: int, seconds_per_snippet: float | None = None,
                         title: str = "") -> Figure:
    """Top: the CAS of one (video, class), its k largest snippets and their mean (the video
    score s_pre). Bottom: the aggregation weights a of the same class, in (0, 1).

    ``cas`` and ``weights`` are [T]; ``k`` is the top-k of the pre-classification stream.
    Returns a Figure with two axes (top, bottom) sharing the time axis.
    """
    import matplotlib.pyplot as plt
    c, w = _series(cas, "cas"), _series(weights, "weights")
    if c.shape != w.shape:
        raise ValueError(f"cas {c.shape} and weights {w.shape} must have the same length")
    if not 1 <= int(k) <= c.size:
        raise ValueError(f"k must be in [1, T={c.size}], got {k}")
    step = _scale(seconds_per_snippet, "seconds_per_snippet")
    t = (np.arange(c.size) + 0.5) * step if seconds_per_snippet else np.arange(c.size)
    top = np.argsort(-c, kind="stable")[:int(k)]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8.0, 4.4), sharex=True)
    ax1.plot(t, c, color="tab:red", lw=1.2, label="CAS A[b, c, t]")
    ax1.plot(t[top], c[top], "o", color="tab:red", ms=3, mfc="none",
             label=f"the k = {int(k)} largest")
    ax1.axhline(c[top].mean(), color="black", ls="--", lw=1,
                label=f"their mean: s_pre = {c[top].mean():.3f}")
    ax1.set_ylabel("CAS")
    ax1.set_title(title)
    ax1.legend(fontsize="x-small", loc="best")
    ax2.plot(t, w, color="tab:blue", lw=1.2, label="a = sigmoid(Conv1x1(A))[b, c, t]")
    ax2.set_ylim(0.0, 1.0)
    ax2.set_ylabel("aggregation weight")
    ax2.set_xlabel("time (s)" if seconds_per_snippet else "snippet")
    ax2.legend(fontsize="x-small", loc="best")
    fig.tight_layout()
    return fig


def plot_localisation_steps(curve, thresholds, proposals, detections,
                            gt_segments: Sequence[tuple[float, float]] = (),
                            seconds_per_frame: float | None = None,
                            title: str = "") -> Figure:
    """One class of one video through localisation, in three rows sharing the time axis.

    ``curve`` [F]: the min-max normalised CAS of the class, up-sampled to the F frames;
    ``thresholds`` [K]: the activation thresholds; ``proposals`` [n, 4] rows
    (threshold, start, end, score) before NMS; ``detections`` [m, 3] rows (start, end,
    score) after NMS; ``gt_segments``: (start, end) of the class's ground truth. Times are
    in seconds when ``seconds_per_frame`` is given (then starts and ends must be too),
    else in frames (frame f is drawn at its start, f x seconds_per_frame, as a proposal's
    start is). Empty proposals or detections are drawn as a note, not refused.
    """
    import matplotlib.pyplot as plt
    y = _series(curve, "curve")
    th = _series(thresholds, "thresholds")
    props = _rows(proposals, 4, "proposals", "threshold, start, end, score")
    dets = _rows(detections, 3, "detections", "start, end, score")
    step = _scale(seconds_per_frame, "seconds_per_frame")
    t = np.arange(y.size) * step             # frame f starts at f / fps, as proposals do
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(8.0, 6.2), sharex=True)
    ax1.plot(t, y, color="tab:red", lw=1.2, label="normalised CAS, up-sampled")
    for i, theta in enumerate(th):
        ax1.axhline(theta, color="grey", lw=0.6, alpha=0.6, label="thresholds" if i == 0 else None)
    ax1.set_ylim(min(-0.05, y.min() - 0.05), max(1.05, y.max() + 0.05))
    ax1.set_ylabel("normalised CAS")
    ax1.set_title(title)
    ax1.legend(fontsize="x-small", loc="upper right")
    norm = _score_norm(props[:, 3], dets[:, 2])
    _segments(ax2, props[:, 1], props[:, 2], props[:, 0], props[:, 3], norm, "no proposal")
    ax2.set_ylabel("threshold")
    ax2.set_ylim(th.min() - np.ptp(th) * 0.1 - 0.01, th.max() + np.ptp(th) * 0.1 + 0.01)
    ax2.set_title("proposals: the runs above each threshold (colour: score)", fontsize="small")
    shade_spans(ax3, gt_segments, "tab:green", "ground truth", 0.25)
    _segments(ax3, dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 2], norm, "no detection")
    ax3.set_ylabel("score")
    if len(dets):
        ax3.set_ylim(min(0.0, dets[:, 2].min()) - 0.05, dets[:, 2].max() + 0.1)
    ax3.set_title("detections: the proposals NMS keeps (same colours)", fontsize="small")
    ax3.set_xlabel("time (s)" if seconds_per_frame else "frame")
    if len(gt_segments):
        ax3.legend(fontsize="x-small", loc="upper right")
    fig.tight_layout()
    return fig


def _score_norm(*scores: np.ndarray):
    """One colour scale for every score drawn, so a detection keeps its proposal's colour."""
    from matplotlib.colors import Normalize
    every = np.concatenate([np.ravel(v) for v in scores])
    if every.size == 0:
        return Normalize(0.0, 1.0)
    low, high = float(every.min()), float(every.max())
    return Normalize(low, high if high > low else low + 1.0)


def _segments(ax, start: np.ndarray, end: np.ndarray, level: np.ndarray, score: np.ndarray,
              norm, empty: str) -> None:
    """Horizontal bars from start to end at height ``level``, coloured by ``score``."""
    if start.size == 0:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center",
                color="grey")
        return
    from matplotlib import colormaps
    ax.hlines(level, start, end, colors=colormaps["viridis"](norm(score)), lw=3)
