"""Detection explorer: look at one video's CAS, weights, ground truth and detections, and
turn the localisation knobs.

Three layers, so each can be tested on its own:

* :func:`plot_video_detections` is a pure plot of one video and class (curves, ground
  truth, detections) on an ``Axes``.
* :class:`VideoAnalysis` (built by :func:`analyse_split`) runs the network **once** over a
  whole split and keeps the video scores, the CAS and the aggregation weights. Moving a
  knob then only re-runs localisation: of one video for the plot and its AP, and of every
  video for the dataset mAP@0.5 (cached per parameter set, so switching video or class
  costs nothing; ``benchmarks/bench_localize.py`` times it). That is fast enough to
  recompute on every slider release, so there is no debounce or "compute" button.
* :func:`make_explorer` wires ipywidgets (two dropdowns, five sliders) to the two with
  :func:`live_output`; every redraw shows the figure and a one-line marker
  ``video=... class=... AP@0.5=... mAP@0.5=... detections=...`` that tests (and people)
  can read.

:func:`pick_examples` / :func:`plot_examples` make notebook 05's static figure;
:func:`open_checkpoint`, :func:`load_test_split`, :func:`split_fingerprint` and
:func:`plot_per_class_ap` serve both notebooks that evaluate a checkpoint (05, 06).

Two models (notebook 05's default: the record runs' ECM and pre-only, see
:data:`RECORD_CHECKPOINTS`): :func:`check_comparable` refuses checkpoints that are not
evaluated on the same test split with the same localisation; :class:`ModelPair` holds both
analyses of one split and ranks its videos by AP@0.5 difference (:meth:`ModelPair.ranking`);
:func:`plot_video_comparison` draws both CAS and both detection sets on one timeline; and
:func:`make_pair_explorer` puts the ranking beside the explorer's controls (picking a row
opens that video) and shows :func:`pair_marker_line` on every redraw.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import re
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..training.config import ExperimentConfig
from ..data.features import FeatureSet, default_data_dir
from ..method.evaluation import (DetectionResult, GroundTruth, Predictions, evaluate_detection,
                                 predictions_from_arrays, segment_iou)
from ..method.localize import LocalizeParams, localize_batch_flat, localize_video, localized_curve
from .plots import shade_spans

if TYPE_CHECKING:  # matplotlib and ipywidgets are imported where they are used
    from matplotlib.axes import Axes

__all__ = [
    "DEMO_CHECKPOINT",
    "plot_video_detections",
    "plot_per_class_ap",
    "VideoAnalysis",
    "analyse_split",
    "pick_examples",
    "plot_examples",
    "open_checkpoint",
    "load_test_split",
    "real_features_status",
    "split_fingerprint",
    "make_explorer",
    "marker_line",
    "CHECKPOINT_DIR",
    "RECORD_CHECKPOINTS",
    "resolve_checkpoint",
    "comparability_problems",
    "check_comparable",
    "ModelPair",
    "plot_video_comparison",
    "plot_pair_examples",
    "pair_marker_line",
    "parse_pair_marker",
    "make_pair_explorer",
]

#: Where the shipped checkpoints live (see data/checkpoints/README.md).
CHECKPOINT_DIR = default_data_dir() / "checkpoints"
#: The small checkpoint shipped with the repository (see data/checkpoints/README.md).
DEMO_CHECKPOINT = CHECKPOINT_DIR / "thumos14-mini_ecm.pth"
#: The record runs' ECM and pre-only models (seed 0, paper protocol), shipped for notebook 05.
RECORD_CHECKPOINTS = {"ECM": CHECKPOINT_DIR / "thumos14-mini_record_ecm.pth",
                      "pre-only": CHECKPOINT_DIR / "thumos14-mini_record_pre_only.pth"}
MAP_TIOU = 0.5


# ------------------------------------------------------------------ pure plots


def _lanes(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Greedy lane per interval (in the given order) so that intervals of a lane never overlap."""
    lane_end: list[float] = []
    out = np.zeros(starts.size, dtype=np.int64)
    for i, (s, e) in enumerate(zip(starts, ends)):
        for k, last in enumerate(lane_end):
            if s >= last:
                lane_end[k] = e
                out[i] = k
                break
        else:
            lane_end.append(e)
            out[i] = len(lane_end) - 1
    return out


def _max_tiou(starts: np.ndarray, ends: np.ndarray,
              gt_segments: Sequence[tuple[float, float]]) -> np.ndarray:
    """Best tIoU of each detection with any ground-truth segment (0 without ground truth)."""
    if len(gt_segments) == 0 or starts.size == 0:
        return np.zeros(starts.size)
    g = np.asarray(gt_segments, dtype=np.float64).reshape(-1, 2)
    iou = segment_iou(starts[:, None], ends[:, None], g[None, :, 0], g[None, :, 1],
                      nan_as_inf=False)
    return np.nan_to_num(iou, nan=0.0).max(axis=1)      # a zero union overlaps nothing


def plot_video_detections(cas: np.ndarray, weights: np.ndarray | None,
                          gt_segments: Sequence[tuple[float, float]], detections: np.ndarray,
                          class_index: int | None, duration: float, ax: Axes | None = None,
                          title: str = "", params: LocalizeParams | None = None,
                          max_detections: int = 12) -> Axes:
    """One video and class on a timeline in seconds.

    ``cas`` [T] raw CAS of the class (drawn min-max normalised as localisation normalises
    it, negative values at 0), ``weights`` [T] its aggregation weights (or None), ``gt_segments``
    (start, end) pairs shaded green, ``detections`` rows [N, 4] (class, start, end, score)
    of which those of ``class_index`` are drawn (all rows when None) as boxes below the
    curves, the ``max_detections`` best ones, labelled with their score; a box is blue when
    it overlaps a ground-truth segment with tIoU >= 0.5, grey otherwise. ``duration`` is the
    time the T snippets span; with ``params`` the lowest activation threshold is drawn.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    cas = np.asarray(cas, dtype=np.float64).ravel()
    if cas.size == 0:
        raise ValueError("cas must have at least one snippet")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w is not None and w.shape != cas.shape:
        raise ValueError(f"weights {w.shape} and cas {cas.shape} must have the same length")
    if ax is None:
        _, ax = plt.subplots(figsize=(8.0, 2.8))
    t = cas.size
    x = (np.arange(t) + 0.5) * duration / t  # snippet centres, seconds
    shade_spans(ax, gt_segments, "tab:green", "ground truth", 0.2)
    # Localisation's normalisation (relu'd min and max) leaves negative values negative;
    # no threshold keeps them, so they are drawn at 0, clear of the detection boxes below.
    norm = localized_curve(cas)
    ax.plot(x, norm, color="tab:red", lw=1.2, label="CAS (min-max)")
    if w is not None:
        ax.plot(x, w, color="tab:purple", lw=1.0, alpha=0.8, label="aggregation weight a")
    if params is not None:
        ax.axhline(params.act_thresh[0], color="0.4", lw=0.8, ls=":",
                   label=f"lowest threshold {params.act_thresh[0]:.2f}")

    rows, lane, hit, n_all = _shown_detections(detections, class_index, gt_segments,
                                               max_detections)
    height, gap = 0.08, 0.1
    for (_, s, e, score), k, good in zip(rows, lane, hit):
        y = -gap * (k + 1)
        ax.add_patch(Rectangle((s, y), max(e - s, 1e-9), height, facecolor="tab:blue" if good else "0.6",
                               edgecolor="black", lw=0.5, alpha=0.8))
        ax.text(s, y + height / 2, f" {score:.2f}", va="center", ha="left", fontsize=6)
    bottom = -gap * (int(lane.max()) + 1 if lane.size else 0) - 0.05
    ax.set_ylim(bottom, 1.08)
    ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)")
    shown = f"{rows.shape[0]} of {n_all}" if n_all > rows.shape[0] else f"{n_all}"
    ax.set_title(f"{title}  [{shown} detections]".strip(), fontsize="small")
    ax.legend(fontsize="x-small", loc="upper right", ncol=2)
    return ax


def plot_per_class_ap(result: DetectionResult, tiou: float = MAP_TIOU,
                      ax: Axes | None = None) -> Axes:
    """Bar chart of each class's AP at ``tiou`` (classes without ground truth left out)."""
    import matplotlib.pyplot as plt

    k = int(np.argmin(np.abs(result.tiou - tiou)))
    if abs(result.tiou[k] - tiou) > 1e-9:
        raise ValueError(f"tIoU {tiou} was not evaluated (have {list(result.tiou)})")
    ap = result.ap[k]
    keep = np.flatnonzero(np.isfinite(ap))
    order = keep[np.argsort(-ap[keep], kind="stable")]
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 3.0))
    ax.bar(np.arange(order.size), 100 * ap[order], color="tab:blue")
    ax.axhline(100 * result.mAP[k], color="tab:red", lw=1, ls="--",
               label=f"mAP@{tiou:g} = {100 * result.mAP[k]:.1f}")
    ax.set_xticks(np.arange(order.size), [result.classes[c] for c in order], rotation=60,
                  ha="right", fontsize="x-small")
    ax.set_ylabel(f"AP@{tiou:g} (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize="small")
    return ax


# ------------------------------------------------------------------ cached analysis


def marker_line(video: str, class_name: str, ap: float, map_: float, detections: int) -> str:
    """The text line each explorer redraw prints (tests wait for it)."""
    ap_text = "n/a" if not np.isfinite(ap) else f"{ap:.4f}"
    return (f"video={video} class={class_name} AP@{MAP_TIOU:g}={ap_text} "
            f"mAP@{MAP_TIOU:g}={map_:.4f} detections={detections}")


@dataclass
class VideoAnalysis:
    """Network outputs of a whole split, kept so localisation can be re-run cheaply.

    ``scores`` [N, C] softmax video scores, ``cas`` [N, C, T] raw CAS, ``weights``
    [N, C, T] aggregation weights (None when the model has none); ``frame_num``, ``fps``,
    ``duration`` [N] per video; ``gt`` the split's ground truth; ``params`` the starting
    localisation parameters.
    """

    names: list[str]
    classes: list[str]
    scores: np.ndarray
    cas: np.ndarray
    weights: np.ndarray | None
    frame_num: np.ndarray
    fps: np.ndarray
    duration: np.ndarray
    gt: GroundTruth
    params: LocalizeParams
    labels: np.ndarray | None = None
    _map_cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        n, c, t = self.cas.shape
        if self.scores.shape != (n, c) or len(self.names) != n or len(self.classes) != c:
            raise ValueError(f"inconsistent shapes: cas {self.cas.shape}, scores "
                             f"{self.scores.shape}, {len(self.names)} names, {len(self.classes)} classes")
        if self.weights is not None and self.weights.shape != self.cas.shape:
            raise ValueError(f"weights {self.weights.shape} must match cas {self.cas.shape}")
        self._index = {v: i for i, v in enumerate(self.names)}
        gt_video = {v: i for i, v in enumerate(self.gt.video_names)}
        self._gt_rows = [np.flatnonzero(self.gt.video_idx == gt_video[v]) if v in gt_video
                         else np.zeros(0, np.int64) for v in self.names]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, video: str | int) -> int:
        """Position of a video given by name or index."""
        if isinstance(video, (int, np.integer)):
            if not 0 <= int(video) < len(self):
                raise IndexError(f"video index {video} outside [0, {len(self)})")
            return int(video)
        if video not in self._index:
            raise KeyError(f"video {video!r} is not in this split ({len(self)} videos)")
        return self._index[video]

    def span(self, i: int, params: LocalizeParams | None = None) -> float:
        """Seconds covered by the CAS of video i (the time axis localisation uses)."""
        p = params or self.params
        return float(self.frame_num[i] / self.fps[i] if p.time_unit == "fps" else self.duration[i])

    def _time_base(self, params: LocalizeParams) -> np.ndarray:
        return self.fps if params.time_unit == "fps" else self.duration

    def gt_classes(self, i: int) -> list[int]:
        """Classes with ground truth in video i (falling back to its video-level label)."""
        found = sorted(set(self.gt.class_idx[self._gt_rows[i]].tolist()))
        if not found and self.labels is not None:
            found = np.flatnonzero(self.labels[i] > 0).tolist()
        return found

    def gt_segments(self, i: int, class_index: int) -> list[tuple[float, float]]:
        """Ground-truth (start, end) seconds of ``class_index`` in video i."""
        rows = self._gt_rows[i]
        rows = rows[self.gt.class_idx[rows] == class_index]
        return [(float(self.gt.start[r]), float(self.gt.end[r])) for r in rows]

    def localize(self, i: int, params: LocalizeParams | None = None) -> np.ndarray:
        """Detections of video i, rows [N, 4] (class, start s, end s, score)."""
        p = params or self.params
        return localize_video(self.cas[i], self.scores[i], int(self.frame_num[i]),
                              float(self._time_base(p)[i]), p)

    def video_result(self, i: int, detections: np.ndarray) -> DetectionResult | None:
        """AP@0.5 of video i's detections against its own ground truth (None without any)."""
        if self._gt_rows[i].size == 0:
            return None
        gt = self.gt.of_video(self.names[i])
        d = np.asarray(detections, dtype=np.float64).reshape(-1, 4)
        preds = predictions_from_arrays([self.names[i]] * d.shape[0], d[:, 0].astype(np.int64),
                                        d[:, 1], d[:, 2], d[:, 3], classes=self.classes)
        return evaluate_detection(gt, preds, [MAP_TIOU])

    def video_ap(self, i: int, class_index: int, detections: np.ndarray) -> float:
        """AP@0.5 of ``class_index`` in video i (NaN when the class has no ground truth there)."""
        res = self.video_result(i, detections)
        return float("nan") if res is None else float(res.ap[0, class_index])

    def predictions(self, params: LocalizeParams | None = None) -> Predictions:
        """Detections of every video with ``params``, as evaluator predictions."""
        p = params or self.params
        flat = localize_batch_flat(self.cas, self.scores, self.frame_num, self._time_base(p), p)
        names = np.asarray(self.names, dtype=object)[flat.video]
        return predictions_from_arrays(names, flat.label, flat.start, flat.end, flat.score,
                                       classes=self.classes, source="explorer")

    def dataset_map(self, params: LocalizeParams | None = None) -> float:
        """mAP@0.5 over the split with ``params`` (cached: the last 32 parameter sets)."""
        p = params or self.params
        if p not in self._map_cache:
            res = evaluate_detection(self.gt, self.predictions(p), [MAP_TIOU])
            self._map_cache[p] = float(res.mAP[0])
            while len(self._map_cache) > 32:
                self._map_cache.popitem(last=False)
        self._map_cache.move_to_end(p)
        return self._map_cache[p]


def analyse_split(model: torch.nn.Module, feature_set: FeatureSet, cfg: ExperimentConfig,
                  gt: GroundTruth | None = None, batch_size: int = 64) -> VideoAnalysis:
    """Run ``model`` once over ``feature_set`` and keep what the explorer needs."""
    from ..training.setup import ground_truth_for
    from ..training.inference import predict
    gt = gt or ground_truth_for(cfg, feature_set)
    scores, cas, weights = predict(model, feature_set.features, batch_size, weights=True)
    return VideoAnalysis(list(feature_set.names), list(feature_set.classes), scores, cas,
                         weights, feature_set.frame_num, feature_set.fps, feature_set.duration,
                         gt, cfg.localize, labels=feature_set.labels)


def pick_examples(analysis: VideoAnalysis, n: int = 3, params: LocalizeParams | None = None,
                  max_seconds: float = 240.0) -> list[int]:
    """Up to ``n`` telling videos: the best, a middling and the worst AP@0.5 of their class.

    Candidates have ground truth of a single class, at least one detection of it (a video
    whose class is filtered out shows no localisation at all; such videos are used only when
    too few others qualify) and last at most ``max_seconds`` (so a timeline stays readable);
    ties go to the shorter video. Returned best first.
    """
    p = params or analysis.params
    cand, silent = [], []
    for i in range(len(analysis)):
        classes = analysis.gt_classes(i)
        if len(classes) == 1 and analysis.span(i, p) <= max_seconds:
            dets = analysis.localize(i, p)
            ap = analysis.video_ap(i, classes[0], dets)
            (cand if np.any(dets[:, 0] == classes[0]) else silent).append(
                (-ap, analysis.span(i, p), i))
    if len(cand) < n:
        cand += sorted(silent)[:n - len(cand)]
    if not cand:
        raise ValueError(f"no single-class video of at most {max_seconds:g} s to show")
    cand.sort()
    picks = [cand[0], cand[len(cand) // 2], cand[-1]] if n >= 3 else cand[:n]
    picks += [c for c in cand if c not in picks][:max(0, n - len(picks))]
    return [i for _, _, i in sorted(dict.fromkeys(picks))][:n]


def plot_examples(analysis: VideoAnalysis, videos: Sequence[int | str],
                  params: LocalizeParams | None = None) -> Any:
    """One :func:`plot_video_detections` row per video (its first ground-truth class) -> Figure."""
    import matplotlib.pyplot as plt
    p = params or analysis.params
    idx = [analysis.index(v) for v in videos]
    if not idx:
        raise ValueError("no videos to plot")
    fig, axes = plt.subplots(len(idx), 1, figsize=(9.0, 2.6 * len(idx)), squeeze=False)
    for ax, i in zip(axes[:, 0], idx):
        classes = analysis.gt_classes(i) or [int(np.argmax(analysis.scores[i]))]
        c = classes[0]
        dets = analysis.localize(i, p)
        ap = analysis.video_ap(i, c, dets)
        ap_text = "n/a" if not np.isfinite(ap) else f"{ap:.2f}"
        plot_video_detections(analysis.cas[i, c],
                              None if analysis.weights is None else analysis.weights[i, c],
                              analysis.gt_segments(i, c), dets, c, analysis.span(i, p), ax=ax,
                              title=f"{analysis.names[i]}: {analysis.classes[c]}, "
                                    f"AP@{MAP_TIOU:g} = {ap_text}", params=p)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ checkpoints and data


def real_features_status(data_root: str | Path | None, cfg: ExperimentConfig) -> str | None:
    """None when ``data_root`` holds features of the config's test split, else why not."""
    from ..data.features import DataError, detect_layout
    if not data_root:
        return "no data_root given"
    try:
        detect_layout(data_root, cfg.data.test_split)
    except DataError as err:
        return str(err)
    return None


def resolve_checkpoint(path: str | Path | None) -> Path:
    """The file a checkpoint argument names: the demo checkpoint when empty, else the path
    itself, or, for a bare file name that is not a file here, that shipped checkpoint in
    ``data/checkpoints/`` (so notebooks name them wherever they run)."""
    if not path:
        return DEMO_CHECKPOINT
    path = Path(path)
    if not path.is_file() and path.name == str(path) and (CHECKPOINT_DIR / path).is_file():
        return CHECKPOINT_DIR / path
    return path


def open_checkpoint(path: str | Path | None = None, dataset: str = "THUMOS14",
                    data_root: str | Path | None = None,
                    map_location: str = "cpu") -> tuple[torch.nn.Module, ExperimentConfig]:
    """(model in eval mode, config) of a checkpoint; the shipped demo one when ``path`` is empty.

    Our checkpoints carry ``ecmlib_config`` (model, localisation and synthetic data of the
    run); an official one gets ``dataset``'s preset with the widths read off its weights.
    With ``data_root`` the config points at those real features instead.
    """
    from ..training.checkpoint import infer_config, load_checkpoint
    from ..data.safeload import load_checkpoint_file
    from ..training.setup import make_config
    path = resolve_checkpoint(path)
    if not path.is_file():
        hint = (" (make it with: python scripts/make_demo_checkpoint.py)"
                if path == DEMO_CHECKPOINT else "")
        raise FileNotFoundError(f"{path}: checkpoint file not found{hint}")
    raw = load_checkpoint_file(path)  # weights_only: nothing of the file runs
    if isinstance(raw, dict) and "ecmlib_config" in raw:
        cfg = ExperimentConfig.from_dict(raw["ecmlib_config"])
        if data_root:
            cfg = cfg.with_overrides({"data.data_root": str(data_root), "data.synthetic": None})
    else:
        cfg = make_config(dataset, data_root=str(data_root) if data_root else None)
        if isinstance(raw, dict) and "state_dict" in raw:
            state = {k.removeprefix("module."): v for k, v in raw["state_dict"].items()}
            found = infer_config(state)
            cfg = cfg.with_overrides({"model.feat_dim": found.feat_dim,
                                      "model.hidden_dim": found.hidden_dim})
    model, _ = load_checkpoint(path, cfg.model, map_location=map_location)
    return model, cfg


def split_fingerprint(feature_set: FeatureSet) -> str:
    """sha256 of a split's video names and features: tells whether data changed since a run."""
    import hashlib
    h = hashlib.sha256("\n".join(feature_set.names).encode())
    h.update(np.ascontiguousarray(feature_set.features, dtype=np.float32).tobytes())
    return h.hexdigest()


def load_test_split(cfg: ExperimentConfig, max_videos: int | None = None) -> FeatureSet:
    """The config's test split (first ``max_videos``), without reading the train split."""
    from ..training.setup import load_features
    return load_features(cfg, cfg.data.test_split, max_videos)


# ------------------------------------------------------------------ widgets


def _params_from(base: LocalizeParams, cls_score_th: float, act_start: float,
                 nms_threshold: float, conf_gamma: float, outer_lambda: float) -> LocalizeParams:
    """``base`` with the slider values; the threshold ladder keeps its number of rungs and
    its step and slides so that its lowest rung is ``act_start``."""
    ladder = base.act_thresh
    if float(act_start) != ladder[0]:
        # Half a step past the last rung: np.arange then gives as many rungs as before.
        stop = float(act_start) + (base.thresholds.size - 0.5) * ladder[2]
        ladder = (float(act_start), stop, ladder[2])
    return dataclasses.replace(base, cls_score_th=float(cls_score_th), act_thresh=ladder,
                               nms_threshold=max(float(nms_threshold), 1e-3),
                               conf_gamma=float(conf_gamma), outer_lambda=float(outer_lambda))


def _localize_sliders(base: LocalizeParams, style: dict, layout: Any) -> dict[str, Any]:
    """One FloatSlider per localisation knob, starting at ``base`` (both explorers)."""
    import ipywidgets as w

    def slider(desc: str, value: float, lo: float, hi: float, step: float) -> Any:
        return w.FloatSlider(value=value, min=lo, max=hi, step=step, description=desc,
                             continuous_update=False, readout_format=".3f", style=style,
                             layout=layout)

    return {
        "cls_score_th": slider("class score threshold", base.cls_score_th, 0.0, 1.0, 0.01),
        "act_start": slider("lowest act. threshold", base.act_thresh[0], 0.0, 0.5, 0.01),
        "nms_threshold": slider("NMS threshold", base.nms_threshold, 0.05, 1.0, 0.05),
        "conf_gamma": slider("γ (conf_gamma)", base.conf_gamma, 0.0, 1.0, 0.05),
        "outer_lambda": slider("outer λ", base.outer_lambda, 0.0, 1.0, 0.05),
    }


def live_output(draw: Any, controls: dict[str, Any]) -> Any:
    """An ipywidgets Output showing ``draw(**values)`` -> (figure, text line) for the
    ``controls``' current values, redrawn whenever one of them changes.

    ``ipywidgets.interactive_output`` without its display capture: what the Output shows is
    set on the widget from the kernel (``Output.outputs``: the figure as a PNG, then the
    line). Voila runs the notebook on its server, and there a captured display makes the
    server send the kernel a message while it waits for the cell's reply, a reply it then
    sometimes never receives: the page stays at "Executing ..." for good.

    The first draw raises what ``draw`` raises (a notebook run fails on it); a later one,
    made by a moved control, shows the error in the Output instead. Unlike
    ``interactive_output``, what ``draw`` prints or warns is not shown in the Output.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt

    out = w.Output()

    def update() -> None:
        before = set(plt.get_fignums())
        # Off interactive mode, the inline backend does not queue the figure for a show
        # that never comes (a control's change runs no cell): each redraw would stay in memory.
        with plt.ioff():
            try:
                fig, line = draw(**{name: c.value for name, c in controls.items()})
            except BaseException:
                for num in set(plt.get_fignums()) - before:  # what the failed draw opened
                    plt.close(num)
                raise
        out.outputs = (figure_output(fig),
                       {"output_type": "stream", "name": "stdout", "text": line + "\n"})

    def on_change(_change: Any) -> None:
        try:
            update()
        except Exception as err:  # shown where the figure was, as a notebook shows it
            lines = "".join(traceback.format_exception(err)).splitlines()
            out.outputs = ({"output_type": "error", "ename": type(err).__name__,
                            "evalue": str(err), "traceback": lines},)

    update()
    for control in controls.values():
        control.observe(on_change, names="value")
    return out


def figure_output(fig: Any) -> dict[str, Any]:
    """A closed figure as a notebook display output (PNG, cropped as the inline backend
    crops it)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                     "text/plain": repr(fig)}}


def make_explorer(analysis: VideoAnalysis, cfg: ExperimentConfig | None = None,
                  video: int | str = 0,
                  figsize: tuple[float, float] = (9.0, 3.2)) -> tuple[Any, Any]:
    """ipywidgets explorer over ``analysis`` -> (controls + output container, Output).

    Video and class dropdowns, starting at ``video`` (the class follows the video: its
    ground-truth class with the highest video score), and sliders for the class score
    threshold, the lowest activation threshold, the NMS threshold, gamma (``conf_gamma``)
    and the outer lambda, starting from ``cfg.localize`` (else ``analysis.params``). Each
    change redraws with :func:`plot_video_detections` and shows :func:`marker_line`. The
    dataset mAP is recomputed once per new parameter set (under a second for 210 videos)
    and cached; sliders report on release (``continuous_update=False``).
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt

    base = cfg.localize if cfg is not None else analysis.params
    style = {"description_width": "150px"}
    layout = w.Layout(width="460px")

    def first_class(i: int) -> int:
        found = analysis.gt_classes(i) or list(range(len(analysis.classes)))
        return int(max(found, key=lambda c: analysis.scores[i, c]))

    def video_label(i: int) -> str:
        names = ", ".join(analysis.classes[c] for c in analysis.gt_classes(i)) or "no label"
        return f"{analysis.names[i]} ({names})"

    start = analysis.index(video)
    video_box = w.Dropdown(options=[(video_label(i), i) for i in range(len(analysis))],
                           value=start, description="video", style=style, layout=layout)
    klass = w.Dropdown(options=[(c, k) for k, c in enumerate(analysis.classes)],
                       value=first_class(start), description="class", style=style, layout=layout)

    sliders = _localize_sliders(base, style, layout)

    # Registered before live_output's own observer, so the redraw a video change
    # causes already sees the new video's class.
    video_box.observe(lambda change: setattr(klass, "value", first_class(change["new"])),
                      names="value")

    def redraw(video: int, klass: int, **knobs: float) -> tuple[Any, str]:
        params = _params_from(base, **knobs)
        dets = analysis.localize(video, params)
        ap = analysis.video_ap(video, klass, dets)
        m = analysis.dataset_map(params)
        n = int(np.sum(dets[:, 0] == klass)) if dets.size else 0
        fig, ax = plt.subplots(figsize=figsize)
        name, cname = analysis.names[video], analysis.classes[klass]
        # Looked up at call time (module global), so tests can patch the plot function.
        plot_video_detections(analysis.cas[video, klass],
                              None if analysis.weights is None else analysis.weights[video, klass],
                              analysis.gt_segments(video, klass), dets, klass,
                              analysis.span(video, params), ax=ax,
                              title=f"{name}: {cname}", params=params)
        fig.tight_layout()
        return fig, marker_line(name, cname, ap, m, n)

    out = live_output(redraw, {"video": video_box, "klass": klass, **sliders})
    controls = w.VBox([video_box, klass, *sliders.values()])
    return w.VBox([controls, out]), out


# ------------------------------------------------------------------ two models

#: Config keys two checkpoints must share to be compared on one test split with one set of
#: localisation knobs: every data key but the train split (what is evaluated), the widths of
#: the input and output, and every localisation parameter.
_PAIR_DATA_SKIP = ("train_split",)
_PAIR_MODEL_KEYS = ("feat_dim", "num_snippets", "num_classes")

#: A two-model redraw's marker line (see :func:`pair_marker_line`).
PAIR_MARKER = re.compile(
    r"video=(?P<video>\S+) class=(?P<klass>.+?)"
    r" \| (?P<label_a>\S+) AP@0\.5=(?P<ap_a>\S+) mAP@0\.5=(?P<map_a>\S+) detections=(?P<n_a>\d+)"
    r" \| (?P<label_b>\S+) AP@0\.5=(?P<ap_b>\S+) mAP@0\.5=(?P<map_b>\S+) detections=(?P<n_b>\d+)")


def comparability_problems(cfg_a: ExperimentConfig, cfg_b: ExperimentConfig) -> list[str]:
    """Why two checkpoints' configs cannot be compared on one test split (empty: they can).

    Each entry names a key and both values, e.g. ``data.synthetic_seed: 0 vs 1``.
    """
    a, b = cfg_a.to_dict(), cfg_b.to_dict()
    keys = ([("data", k) for k in a["data"] if k not in _PAIR_DATA_SKIP]
            + [("model", k) for k in _PAIR_MODEL_KEYS] + [("localize", k) for k in a["localize"]])
    return [f"{sec}.{k}: {a[sec].get(k)!r} vs {b[sec].get(k)!r}" for sec, k in keys
            if a[sec].get(k) != b[sec].get(k)]


def check_comparable(cfg_a: ExperimentConfig, cfg_b: ExperimentConfig,
                     labels: tuple[str, str] = ("A", "B")) -> None:
    """Raise a ValueError naming every differing key unless the two configs evaluate on the
    same test split with the same localisation parameters."""
    problems = comparability_problems(cfg_a, cfg_b)
    if problems:
        raise ValueError(
            f"{labels[0]} and {labels[1]} cannot be compared: they are not evaluated on the same "
            f"test split with the same localisation ({'; '.join(problems)}). Compare checkpoints "
            f"of one benchmark, or give both the same data and localize settings.")


def _clean_label(label: str) -> str:
    """A model name fit for the marker line: no spaces, no '|'."""
    out = re.sub(r"\s+", "_", str(label).strip()).replace("|", "/")
    if not out:
        raise ValueError("a model label must not be empty")
    return out


@dataclass
class ModelPair:
    """Two models' :class:`VideoAnalysis` of the same test split, to see where one beats the other.

    Construction refuses analyses of different splits (videos, classes, timing, ground truth)
    or with different localisation parameters. :meth:`ranking` ranks the videos by the
    difference of their AP@0.5 (model ``a`` minus model ``b``).
    """

    a: VideoAnalysis
    b: VideoAnalysis
    labels: tuple[str, str] = ("A", "B")
    _ap_cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        self.labels = (_clean_label(self.labels[0]), _clean_label(self.labels[1]))
        if self.labels[0] == self.labels[1]:
            raise ValueError(f"the two models need different labels, got {self.labels}")
        a, b = self.a, self.b
        problems = []
        if a.names != b.names:
            diff = next((f"{x} vs {y}" for x, y in zip(a.names, b.names) if x != y),
                        f"{len(a)} vs {len(b)} videos")
            problems.append(f"different test videos ({diff})")
        if a.classes != b.classes:
            problems.append(f"different classes ({len(a.classes)} vs {len(b.classes)})")
        if not problems:
            for name in ("frame_num", "fps", "duration"):
                if not np.array_equal(getattr(a, name), getattr(b, name)):
                    problems.append(f"different {name} per video")
            ga, gb = a.gt, b.gt
            if (ga.video_names != gb.video_names or ga.classes != gb.classes
                    or not all(np.array_equal(getattr(ga, k), getattr(gb, k))
                               for k in ("video_idx", "class_idx", "start", "end"))):
                problems.append(f"different ground truth ({ga.describe()} vs {gb.describe()})")
        if a.params != b.params:
            problems.append(f"different localisation parameters ({a.params} vs {b.params})")
        if problems:
            raise ValueError(f"{self.labels[0]} and {self.labels[1]} were not analysed on the same "
                             f"test split: {'; '.join(problems)}")

    def __len__(self) -> int:
        return len(self.a)

    @property
    def params(self) -> LocalizeParams:
        """The localisation parameters both analyses start from."""
        return self.a.params

    def localize(self, i: int, params: LocalizeParams | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(detections of model a, of model b) in video i, rows [N, 4]."""
        return self.a.localize(i, params), self.b.localize(i, params)

    def class_aps(self, params: LocalizeParams | None = None) -> tuple[np.ndarray, np.ndarray]:
        """AP@0.5 of each video and class [N, C] for model a and model b (NaN where the video
        has no ground truth of the class); cached for the last 8 parameter sets."""
        p = params or self.params
        if p not in self._ap_cache:
            out = []
            for analysis in (self.a, self.b):
                ap = np.full((len(analysis), len(analysis.classes)), np.nan)
                for i in range(len(analysis)):
                    res = analysis.video_result(i, analysis.localize(i, p))
                    if res is not None:
                        ap[i] = res.ap[0]
                out.append(ap)
            self._ap_cache[p] = tuple(out)
            while len(self._ap_cache) > 8:
                self._ap_cache.popitem(last=False)
        self._ap_cache.move_to_end(p)
        return self._ap_cache[p]

    def ranking(self, params: LocalizeParams | None = None) -> Any:
        """Test videos with ground truth ranked by AP@0.5 difference (a − b), largest first.

        A pandas DataFrame with columns ``video``, ``index`` (position in the split),
        ``classes`` (ground-truth classes), ``ap_a``, ``ap_b`` (the video's AP@0.5: mean
        over its ground-truth classes of the class AP, as evaluate_detection's mAP of that
        video alone) and ``difference``; ties keep the split's order. ``attrs['labels']``
        holds the two model names.
        """
        import pandas as pd
        ap_a, ap_b = self.class_aps(params)
        rows = []
        for i in range(len(self)):
            has_gt = ~np.isnan(ap_a[i])
            if not has_gt.any():
                continue
            a, b = float(ap_a[i, has_gt].mean()), float(ap_b[i, has_gt].mean())
            rows.append({"video": self.a.names[i], "index": i,
                         "classes": ", ".join(self.a.classes[c] for c in np.flatnonzero(has_gt)),
                         "ap_a": a, "ap_b": b, "difference": a - b})
        df = pd.DataFrame(rows, columns=["video", "index", "classes", "ap_a", "ap_b", "difference"])
        df = df.sort_values("difference", ascending=False, kind="stable").reset_index(drop=True)
        df.attrs["labels"] = self.labels
        return df

    def class_to_show(self, i: int, params: LocalizeParams | None = None) -> int:
        """The class to open video i on: of its ground-truth classes, the one whose AP@0.5
        differs most between the models (ties: the higher mean video score); without ground
        truth, the class with the highest mean video score."""
        score = (self.a.scores[i] + self.b.scores[i]) / 2
        classes = self.a.gt_classes(i)
        if not classes:
            return int(np.argmax(score))
        ap_a, ap_b = self.class_aps(params)
        gap = np.nan_to_num(np.abs(ap_a[i] - ap_b[i]), nan=-1.0)
        return int(max(classes, key=lambda c: (gap[c], score[c])))


def pair_marker_line(video: str, class_name: str, labels: tuple[str, str],
                     aps: tuple[float, float], maps: tuple[float, float],
                     detections: tuple[int, int]) -> str:
    """The line each two-model redraw prints: one ``AP@0.5 mAP@0.5 detections`` block per model."""
    def block(k: int) -> str:
        ap = aps[k]
        ap_text = "n/a" if not np.isfinite(ap) else f"{ap:.4f}"
        return (f"{_clean_label(labels[k])} AP@{MAP_TIOU:g}={ap_text} "
                f"mAP@{MAP_TIOU:g}={maps[k]:.4f} detections={int(detections[k])}")
    return f"video={video} class={class_name} | {block(0)} | {block(1)}"


def parse_pair_marker(line: str) -> dict[str, Any] | None:
    """The fields of a :func:`pair_marker_line` in ``line`` (the last one), None without one.

    APs are floats (NaN for ``n/a``), detections ints, the rest strings.
    """
    found = list(PAIR_MARKER.finditer(line))
    if not found:
        return None
    d: dict[str, Any] = found[-1].groupdict()
    for k in ("ap_a", "ap_b", "map_a", "map_b"):
        d[k] = float("nan") if d[k] == "n/a" else float(d[k])
    for k in ("n_a", "n_b"):
        d[k] = int(d[k])
    return d


#: Colours of model a and model b in the two-model plots.
PAIR_COLOURS = ("tab:red", "tab:blue")


def plot_video_comparison(cas_a: np.ndarray, cas_b: np.ndarray,
                          gt_segments: Sequence[tuple[float, float]], dets_a: np.ndarray,
                          dets_b: np.ndarray, class_index: int | None, duration: float,
                          labels: tuple[str, str] = ("A", "B"),
                          aps: tuple[float, float] | None = None, ax: Axes | None = None,
                          title: str = "", params: LocalizeParams | None = None,
                          max_detections: int = 8) -> Axes:
    """Two models' view of one video and class on one timeline in seconds.

    Both raw CAS [T] drawn min-max normalised (model a solid red, model b dashed blue),
    ground truth shaded green, and below the curves one band of detection boxes per model
    (rows [N, 4] class, start, end, score; those of ``class_index``, the ``max_detections``
    best, labelled with their score): filled in the model's colour when the box overlaps a
    ground-truth segment with tIoU >= 0.5, hatched otherwise. The band's y tick names the
    model; the title gives both ``aps`` (AP@0.5 of the class in this video).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    curves = [np.asarray(c, dtype=np.float64).ravel() for c in (cas_a, cas_b)]
    if curves[0].size == 0:
        raise ValueError("cas must have at least one snippet")
    if curves[0].shape != curves[1].shape:
        raise ValueError(f"the two CAS must have the same length, got {curves[0].shape} "
                         f"and {curves[1].shape}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    labels = (_clean_label(labels[0]), _clean_label(labels[1]))
    if ax is None:
        _, ax = plt.subplots(figsize=(9.0, 3.6))
    t = curves[0].size
    x = (np.arange(t) + 0.5) * duration / t
    shade_spans(ax, gt_segments, "tab:green", "ground truth", 0.2)
    for curve, label, colour, style in zip(curves, labels, PAIR_COLOURS, ("-", "--")):
        norm = localized_curve(curve)
        ax.plot(x, norm, color=colour, lw=1.2, ls=style, label=f"CAS {label}")
    if params is not None:
        ax.axhline(params.act_thresh[0], color="0.4", lw=0.8, ls=":",
                   label=f"lowest threshold {params.act_thresh[0]:.2f}")

    top = 0.0
    ticks, counts = [], []
    for dets, colour in zip((dets_a, dets_b), PAIR_COLOURS):
        rows, lane, hit, n_all = _shown_detections(dets, class_index, gt_segments,
                                                   max_detections)
        counts.append(n_all)
        top, tick = _detection_band(ax, rows, lane, hit, top, colour)
        ticks.append(tick)
    ax.set_ylim(top, 1.3)
    ax.set_yticks([0.0, 0.5, 1.0, *ticks], ["0", "0.5", "1", *labels])
    for tick, colour in zip(ax.get_yticklabels()[3:], PAIR_COLOURS):
        tick.set_color(colour)
    ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)")
    handles, names = ax.get_legend_handles_labels()
    handles += [Patch(facecolor="0.5", edgecolor="0.3"),
                Patch(facecolor="white", edgecolor="0.3", hatch="///")]
    names += ["detection, tIoU ≥ 0.5", "detection, miss"]
    ax.legend(handles, names, fontsize="x-small", loc="upper right", ncol=3)
    ax.set_title(_comparison_title(title, labels, aps, counts), fontsize="small")
    return ax


def _shown_detections(detections: np.ndarray, class_index: int | None,
                      gt_segments: Sequence[tuple[float, float]], max_detections: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(the ``max_detections`` best rows of ``class_index``, their lanes, whether each
    overlaps the ground truth with tIoU >= 0.5, how many rows the class had)."""
    rows = np.asarray(detections, dtype=np.float64).reshape(-1, 4)
    if class_index is not None:
        rows = rows[rows[:, 0] == class_index]
    n_all = rows.shape[0]
    rows = rows[np.argsort(-rows[:, 3], kind="stable")][:max_detections]
    lane = _lanes(rows[:, 1], rows[:, 2])
    hit = _max_tiou(rows[:, 1], rows[:, 2], gt_segments) >= 0.5
    return rows, lane, hit, n_all


def _detection_band(ax: Axes, rows: np.ndarray, lane: np.ndarray, hit: np.ndarray,
                    top: float, colour: Any) -> tuple[float, float]:
    """One model's detection boxes below ``top`` (filled: a hit, hatched: a miss);
    returns (the band's bottom, the y of its tick)."""
    from matplotlib.patches import Rectangle
    height, gap = 0.08, 0.1
    for (_, s, e, score), k, good in zip(rows, lane, hit):
        y = top - gap * (k + 1)
        ax.add_patch(Rectangle((s, y), max(e - s, 1e-9), height,
                               facecolor=colour if good else "white", edgecolor=colour,
                               hatch=None if good else "///", lw=0.8, alpha=0.85))
        ax.text(s, y + height / 2, f" {score:.2f}", va="center", ha="left", fontsize=6)
    n_lanes = int(lane.max()) + 1 if lane.size else 1
    if not rows.size:
        ax.text(0.0, top - gap + height / 2, " no detections", va="center", ha="left",
                fontsize=6, color=colour)
    return top - gap * n_lanes - 0.05, top - gap * n_lanes / 2 - gap / 2 + height / 2


def _comparison_title(title: str, labels: tuple[str, str],
                      aps: tuple[float, float] | None, counts: Sequence[int]) -> str:
    parts = []
    for k, label in enumerate(labels):
        ap = None if aps is None else aps[k]
        ap_text = "" if ap is None else (
            " AP@0.5 n/a" if not np.isfinite(ap) else f" AP@{MAP_TIOU:g} = {ap:.2f}")
        parts.append(f"{label}{ap_text} [{counts[k]} det.]")
    return f"{title}  —  {'  vs  '.join(parts)}".strip(" —")


def plot_pair_examples(pair: ModelPair, videos: Sequence[int | str],
                       params: LocalizeParams | None = None) -> Any:
    """One :func:`plot_video_comparison` row per video (at :meth:`ModelPair.class_to_show`)
    -> Figure."""
    import matplotlib.pyplot as plt
    p = params or pair.params
    idx = [pair.a.index(v) for v in videos]
    if not idx:
        raise ValueError("no videos to plot")
    fig, axes = plt.subplots(len(idx), 1, figsize=(9.5, 3.3 * len(idx)), squeeze=False)
    for ax, i in zip(axes[:, 0], idx):
        c = pair.class_to_show(i, p)
        dets_a, dets_b = pair.localize(i, p)
        aps = (pair.a.video_ap(i, c, dets_a), pair.b.video_ap(i, c, dets_b))
        plot_video_comparison(pair.a.cas[i, c], pair.b.cas[i, c], pair.a.gt_segments(i, c),
                              dets_a, dets_b, c, pair.a.span(i, p), labels=pair.labels, aps=aps,
                              ax=ax, title=f"{pair.a.names[i]}: {pair.a.classes[c]}", params=p)
    fig.tight_layout()
    return fig


def _ranking_lines(ranking: Any, labels: tuple[str, str]) -> tuple[str, list[str]]:
    """(header, one fixed-width line per ranking row) for the ranking list."""
    la, lb = (lab[:8] for lab in labels)
    head = f"{'#':>3}  {'video':<24} {'classes':<18} {la:>8} {lb:>8} {'diff':>7}"
    lines = []
    for rank, row in enumerate(ranking.itertuples(index=False), start=1):
        classes = row.classes if len(row.classes) <= 18 else row.classes[:17] + "…"
        lines.append(f"{rank:>3}  {row.video[:24]:<24} {classes:<18} {row.ap_a:>8.3f} "
                     f"{row.ap_b:>8.3f} {row.difference:>+7.3f}")
    return head, lines


def _ranking_widgets(ranking: Any, labels: tuple[str, str], start: int, rows: int
                     ) -> tuple[Any, Any]:
    """(the ranked list of test videos to pick from, its caption with the column heads)."""
    import ipywidgets as w
    head, lines = _ranking_lines(ranking, labels)
    ranked = [int(i) for i in ranking["index"]]
    ranking_list = w.Select(options=list(zip(lines, ranked)),
                            value=start if start in ranked else None, rows=rows,
                            layout=w.Layout(width="640px"))
    ranking_list.add_class("ecm-ranking")
    la, lb = labels
    caption = w.HTML(
        "<style>.ecm-ranking select, .ecm-ranking-head pre {font-family: monospace; "
        "font-size: 12px; margin: 0;} .ecm-ranking-head pre {padding-left: 4px;}</style>"
        f"<b>Test videos by AP@{MAP_TIOU:g} difference ({la} − {lb})</b> at the checkpoints' "
        "localisation parameters; pick a row to open the video."
        f"<div class='ecm-ranking-head'><pre>{head}</pre></div>")
    return ranking_list, caption


def _redraw_pair(pair: ModelPair, base: LocalizeParams, figsize: tuple[float, float],
                 video: int, klass: int, **knobs: float) -> tuple[Any, str]:
    """One redraw of the pair explorer -> (the comparison figure, its marker line)."""
    import matplotlib.pyplot as plt
    a, b = pair.a, pair.b
    params = _params_from(base, **knobs)
    dets = pair.localize(video, params)
    aps = (a.video_ap(video, klass, dets[0]), b.video_ap(video, klass, dets[1]))
    maps = (a.dataset_map(params), b.dataset_map(params))
    counts = tuple(int(np.sum(d[:, 0] == klass)) if d.size else 0 for d in dets)
    fig, ax = plt.subplots(figsize=figsize)
    name, cname = a.names[video], a.classes[klass]
    plot_video_comparison(a.cas[video, klass], b.cas[video, klass],
                          a.gt_segments(video, klass), dets[0], dets[1], klass,
                          a.span(video, params), labels=pair.labels, aps=aps, ax=ax,
                          title=f"{name}: {cname}", params=params)
    fig.tight_layout()
    return fig, pair_marker_line(name, cname, pair.labels, aps, maps, counts)


def make_pair_explorer(pair: ModelPair, cfg: ExperimentConfig | None = None,
                       video: int | str | None = None,
                       figsize: tuple[float, float] = (9.5, 4.0),
                       rows: int = 14) -> tuple[Any, Any]:
    """ipywidgets explorer of two models -> (controls + ranking + output container, Output).

    The controls of :func:`make_explorer` (video and class dropdowns, the five localisation
    sliders, shared by both models) beside a list of the test videos ranked by AP@0.5
    difference (model a − model b, at the starting parameters); picking a row opens that
    video. It starts at ``video`` (default: the top row, where model a gains most); a video
    opens on :meth:`ModelPair.class_to_show`. Each redraw draws
    :func:`plot_video_comparison` and shows :func:`pair_marker_line`.

    """
    import ipywidgets as w

    base = cfg.localize if cfg is not None else pair.params
    style = {"description_width": "150px"}
    layout = w.Layout(width="460px")
    a = pair.a

    ranking = pair.ranking(base)
    ranked = [int(i) for i in ranking["index"]]

    def video_label(i: int) -> str:
        names = ", ".join(a.classes[c] for c in a.gt_classes(i)) or "no label"
        return f"{a.names[i]} ({names})"

    if video is None:
        start = ranked[0] if ranked else 0
    else:
        start = a.index(video)
    video_box = w.Dropdown(options=[(video_label(i), i) for i in range(len(a))], value=start,
                           description="video", style=style, layout=layout)
    klass = w.Dropdown(options=[(c, k) for k, c in enumerate(a.classes)],
                       value=pair.class_to_show(start, base), description="class", style=style,
                       layout=layout)

    sliders = _localize_sliders(base, style, layout)
    ranking_list, caption = _ranking_widgets(ranking, pair.labels, start, rows)

    def open_video(change: dict) -> None:
        i = change["new"]
        klass.value = pair.class_to_show(i, base)
        if i in ranked:
            ranking_list.value = i

    def pick_row(change: dict) -> None:
        if change["new"] is not None:
            video_box.value = change["new"]

    # Registered before live_output's own observer, so the redraw a video change
    # causes already sees the new video's class.
    video_box.observe(open_video, names="value")
    ranking_list.observe(pick_row, names="value")

    redraw = functools.partial(_redraw_pair, pair, base, figsize)
    out = live_output(redraw, {"video": video_box, "klass": klass, **sliders})
    controls = w.VBox([video_box, klass, *sliders.values()])
    table = w.VBox([caption, ranking_list])
    return w.VBox([w.HBox([controls, table]), out]), out
