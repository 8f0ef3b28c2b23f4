"""Detection mAP (the ActivityNet protocol ECM is scored with) and video classification mAP.

Detection mAP follows ActivityNet's ``eval_detection.py`` exactly, quirks included:

* per class, predictions are ranked by score, highest first;
* a prediction is a true positive at threshold ``t`` when, among the ground-truth instances of
  its class in its video that are still unmatched at ``t``, the one with the highest tIoU has
  tIoU >= ``t``; it then locks that instance for ``t``. Everything else is a false positive,
  including predictions for videos the ground truth does not hold;
* ties (equal scores, or equal tIoUs with two instances) are broken by the very call the
  reference makes on the same array, ``argsort()[::-1]`` with numpy's default (unstable)
  sort, so the order is the reference's own on the same numpy. The golden THUMOS14 file
  needs this: two CricketShot predictions overlap two instances equally;
* tIoU is intersection / union in seconds (no "+1"). A union of exactly 0 (two zero-length
  segments, or a reversed prediction against an instance of the opposite length) gives 0/0
  in the reference, and NaN passes its threshold test, so such a pair counts as a match here
  too. Reversed predictions (end < start) are kept with a warning, as the reference scores
  them; the golden ANet-protocol file holds two;
* AP is the VOC-2011 interpolated area: precision made non-increasing from the right, summed
  over the points where recall changes;
* mAP averages the classes that have ground truth in the subset (the reference only knows
  those classes). A class of the class list without ground truth gets AP = NaN and is left out
  of mAP.

The greedy matching is "serial dictatorship": predictions pick in score order. With one common
priority order on the predictions this is the unique stable matching, so it is computed here by
deferred acceptance (Gale-Shapley), which runs in a few vectorised rounds over all classes,
videos and thresholds at once instead of a Python loop over predictions.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import THUMOS14_CLASSES
from ..io import read_json

__all__ = [
    "GroundTruth", "Predictions", "DetectionResult", "load_ground_truth", "ground_truth_from_dict",
    "load_predictions", "predictions_from_arrays", "evaluate_detection", "classification_map",
    "format_table", "parse_tiou", "run_evaluate", "parity_check_map", "bootstrap_map",
    "THUMOS14_TIOU",
    "ANET_TIOU", "MAP_TOLERANCE",
]

# The thresholds of the two protocols, as the reference builds them (np.linspace), so that a
# tIoU lying exactly on a threshold is judged the same way.
THUMOS14_TIOU = np.linspace(0.1, 0.9, 9)
ANET_TIOU = np.linspace(0.5, 0.95, 10)
MAP_TOLERANCE = 1e-9


# The averages people quote: name -> (first, last, step) of the thresholds averaged.
_AVERAGE_RANGES = {
    "average_mAP@0.1:0.5": (0.1, 0.5, 0.1),
    "average_mAP@0.1:0.7": (0.1, 0.7, 0.1),
    "average_mAP@0.1:0.9": (0.1, 0.9, 0.1),
    "average_mAP@0.5:0.95": (0.5, 0.95, 0.05),
}


# --------------------------------------------------------------------------- ground truth


@dataclass
class GroundTruth:
    """Ground-truth instances of one subset, as flat arrays (M instances, V videos, C classes)."""

    classes: list[str]
    video_names: list[str]      # [V] every video of the subset, annotated or not
    video_idx: np.ndarray       # [M] int64 index into video_names
    class_idx: np.ndarray       # [M] int64 index into classes
    start: np.ndarray           # [M] float64 seconds
    end: np.ndarray             # [M] float64 seconds
    subset: str
    source: str                 # file path, or a description for in-memory data
    dataset: str = ""

    @property
    def num_videos(self) -> int:
        """Number of videos in the subset."""
        return len(self.video_names)

    @property
    def num_instances(self) -> int:
        """Number of annotated action instances."""
        return int(self.start.size)

    def of_video(self, name: str) -> GroundTruth:
        """The ground truth of one video alone (to score that video's detections)."""
        if name not in self.video_names:
            raise KeyError(f"video {name!r} is not in {self.describe()}")
        rows = np.flatnonzero(self.video_idx == self.video_names.index(name))
        return GroundTruth(self.classes, [name], np.zeros(rows.size, np.int64),
                           self.class_idx[rows], self.start[rows], self.end[rows],
                           self.subset, f"<{name}>", self.dataset)

    def describe(self) -> str:
        """One line, e.g. ``THUMOS14 test: 210 videos, 3311 instances (gt_ecm.json)``."""
        return (f"{self.dataset} {self.subset}: {self.num_videos} videos, "
                f"{self.num_instances} instances ({_short_source(self.source)})")


def _short_source(source: str) -> str:
    # File paths are shown by name only; in-memory sources are already short labels.
    return source if source.startswith("<") else Path(source).name


def _parse_segment(value: Any, where: str, allow_reversed: bool = False) -> tuple[float, float]:
    """[start, end] given as numbers or numeric strings; finite, and end >= start unless
    ``allow_reversed``."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{where}: 'segment' must be [start, end], got {value!r}")
    try:
        start, end = float(value[0]), float(value[1])
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer > 1e308
        raise ValueError(f"{where}: 'segment' {value!r:.80} is not numeric") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"{where}: 'segment' {value!r} is not finite (NaN or inf)")
    if end < start and not allow_reversed:
        raise ValueError(f"{where}: 'segment' {value!r} ends before it starts")
    return start, end


def _check_class_list(classes: Any, source: str, what: str) -> list[str]:
    if (not isinstance(classes, (list, tuple)) or not classes
            or not all(isinstance(c, str) for c in classes)):
        raise ValueError(f"{source}: {what} must be a non-empty list of class names")
    duplicated = [c for c, n in Counter(classes).items() if n > 1]
    if duplicated:
        raise ValueError(f"{source}: {what} repeats class names {duplicated[:3]}")
    return list(classes)


def _guess_dataset(data: Mapping[str, Any], classes: list[str]) -> str:
    name = data.get("dataset")
    if isinstance(name, str) and name:
        return name
    if set(classes) == set(THUMOS14_CLASSES):  # only names the data set in messages
        return "THUMOS14"
    return f"{len(classes)}-class"


def ground_truth_from_dict(data: Mapping[str, Any], subset: str,
                           classes: Sequence[str] | None = None,
                           source: str = "<ground truth dict>") -> GroundTruth:
    """Read parsed ActivityNet-format ground truth (``database`` -> video -> subset, annotations).

    Class list, in order of preference: ``classes``; the file's top-level ``classes`` list;
    else the sorted labels found in the subset. Extra per-video keys (duration, fps,
    frame_num) are accepted and ignored. Raises ValueError naming ``source`` on bad input.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("database"), Mapping):
        raise ValueError(f"{source}: missing top-level 'database' object")
    if classes is not None:
        class_list: list[str] | None = _check_class_list(classes, source, "the classes argument")
    elif "classes" in data:
        class_list = _check_class_list(data["classes"], source, "top-level 'classes'")
    else:
        class_list = None

    subsets: Counter[str] = Counter()
    video_names: list[str] = []
    rows: list[tuple[int, str, float, float]] = []
    for vid, info in data["database"].items():
        if not isinstance(info, Mapping) or "subset" not in info:
            raise ValueError(f"{source}: video {vid!r} has no 'subset'")
        subsets[str(info["subset"])] += 1
        if info["subset"] != subset:
            continue
        annotations = info.get("annotations")
        if not isinstance(annotations, list):
            raise ValueError(f"{source}: video {vid!r} has no 'annotations' list")
        vi = len(video_names)
        video_names.append(str(vid))
        for j, ann in enumerate(annotations):
            where = f"{source}: video {vid!r}, annotation {j}"
            if not isinstance(ann, Mapping):
                raise ValueError(f"{where}: not an object")
            for key in ("segment", "label"):
                if key not in ann:
                    raise ValueError(f"{where}: missing '{key}'")
            start, end = _parse_segment(ann["segment"], where)
            rows.append((vi, str(ann["label"]), start, end))
    if not video_names:
        present = ", ".join(f"{s!r} ({n})" for s, n in sorted(subsets.items())) or "none"
        raise ValueError(f"{source}: no video in subset {subset!r}; subsets present: {present}")

    _warn_odd_segments(source, rows, video_names)
    if class_list is None:
        class_list = sorted({label for _, label, _, _ in rows})
    index = {c: i for i, c in enumerate(class_list)}
    unknown = sorted({label for _, label, _, _ in rows if label not in index})
    if unknown:
        raise ValueError(f"{source}: labels {unknown[:5]} are not in the class list "
                         f"({len(class_list)} classes, e.g. {class_list[:3]})")
    return GroundTruth(
        classes=class_list,
        video_names=video_names,
        video_idx=np.array([r[0] for r in rows], dtype=np.int64),
        class_idx=np.array([index[r[1]] for r in rows], dtype=np.int64),
        start=np.array([r[2] for r in rows], dtype=np.float64),
        end=np.array([r[3] for r in rows], dtype=np.float64),
        subset=subset, source=source, dataset=_guess_dataset(data, class_list),
    )


def _warn_odd_segments(source: str, rows: list[tuple[int, str, float, float]],
                       video_names: list[str]) -> None:
    """Name ground-truth segments that are kept but are probably mistakes: zero length
    (no detection can overlap them), negative times, and exact duplicates (one instance
    counted twice, so a perfect detector misses one of them)."""
    def example(r: tuple[int, str, float, float]) -> str:
        return f"{video_names[r[0]]} {r[1]} [{r[2]:g}, {r[3]:g}]"
    checks = {
        "have zero length": [r for r in rows if r[3] == r[2]],
        "start before time 0": [r for r in rows if r[2] < 0],
        "repeat an earlier segment exactly": [
            r for r, n in Counter(rows).items() for _ in range(n - 1)],
    }
    for what, found in checks.items():
        if found:
            warnings.warn(f"{_short_source(source)}: {len(found)} ground-truth segment(s) "
                          f"{what}, e.g. {example(found[0])}; kept as they are",
                          UserWarning, stacklevel=4)


def load_ground_truth(path: str | Path, subset: str,
                      classes: Sequence[str] | None = None) -> GroundTruth:
    """Load an ActivityNet-format ground-truth file; see :func:`ground_truth_from_dict`."""
    return ground_truth_from_dict(read_json(path), subset, classes, source=str(path))


# --------------------------------------------------------------------------- predictions


@dataclass
class Predictions:
    """Detections as flat arrays (N detections over the videos of ``video_names``)."""

    video_names: list[str]      # distinct videos referred to by video_idx
    video_idx: np.ndarray       # [N] int64
    class_idx: np.ndarray       # [N] int64, index into the ground truth's class list
    start: np.ndarray           # [N] float64 seconds
    end: np.ndarray             # [N] float64 seconds
    score: np.ndarray           # [N] float64
    classes: list[str] | None = None
    source: str = "<detections>"

    def __len__(self) -> int:
        return int(self.score.size)


def _warn_reversed(source: str, count: int, example: str) -> None:
    # The reference scores reversed segments (they never overlap anything), so they are kept.
    warnings.warn(f"{_short_source(source)}: {count} detections end before they start, e.g. "
                  f"{example}; kept as the reference keeps them (false positives)", stacklevel=3)


def _warn_unknown_videos(preds: Predictions, gt: GroundTruth) -> None:
    known = set(gt.video_names)
    missing = [v for v in preds.video_names if v not in known]
    if missing:
        counts = np.bincount(preds.video_idx, minlength=len(preds.video_names))
        n_det = int(sum(counts[i] for i, v in enumerate(preds.video_names) if v not in known))
        warnings.warn(f"{_short_source(preds.source)}: {len(missing)} predicted videos "
                      f"({n_det} detections) are not in {gt.describe()}, e.g. {missing[0]!r}; "
                      f"their detections count as false positives", stacklevel=3)


def predictions_from_arrays(video_names: Sequence[str] | np.ndarray, class_idx: Any, start: Any,
                            end: Any, score: Any, classes: Sequence[str] | None = None,
                            gt: GroundTruth | None = None,
                            source: str = "<detections>") -> Predictions:
    """Detections from arrays, one entry per detection (``video_names`` too).

    ``class_idx`` indexes the ground truth's class list; row order is kept (it decides tied
    scores, as the file order does for :func:`load_predictions`). NaN/inf raise; reversed
    segments warn and are kept. With ``gt`` the class range is checked and a warning names
    predicted videos the ground truth lacks.
    """
    names = np.asarray(video_names, dtype=str).ravel()
    arrays = [np.asarray(a).ravel() for a in (class_idx, start, end, score)]
    if any(a.size != names.size for a in arrays):
        raise ValueError(f"{source}: video_names, class_idx, start, end and score must have "
                         f"the same length, got {[names.size] + [a.size for a in arrays]}")
    cls_raw, start_a, end_a, score_a = arrays

    def as_float(a: np.ndarray, name: str) -> np.ndarray:
        try:  # object / string arrays (e.g. from pandas) may hold anything
            return a.astype(np.float64)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{source}: {name} must hold numbers") from None

    if np.issubdtype(cls_raw.dtype, np.integer):
        cls = cls_raw.astype(np.int64)
    else:
        cls_f = as_float(cls_raw, "class_idx")
        if not (np.isfinite(cls_f).all() and (cls_f % 1 == 0).all() and (abs(cls_f) < 2**62).all()):
            raise ValueError(f"{source}: class_idx must hold integers")
        cls = cls_f.astype(np.int64)
    start_a, end_a, score_a = (as_float(a, n) for a, n in ((start_a, "start"), (end_a, "end"),
                                                            (score_a, "score")))
    for name, a in (("start", start_a), ("end", end_a), ("score", score_a)):
        bad = ~np.isfinite(a)
        if bad.any():
            raise ValueError(f"{source}: {name} is NaN or inf for {int(bad.sum())} detections "
                             f"(first at index {int(np.argmax(bad))})")
    reversed_ = np.flatnonzero(end_a < start_a)
    if reversed_.size:
        _warn_reversed(source, reversed_.size, f"detection {reversed_[0]}: "
                       f"[{start_a[reversed_[0]]}, {end_a[reversed_[0]]}]")
    num_classes = len(classes) if classes is not None else (len(gt.classes) if gt else None)
    if num_classes is not None and cls.size and (cls.min() < 0 or cls.max() >= num_classes):
        raise ValueError(f"{source}: class_idx outside [0, {num_classes})")
    vid_list, vid_idx = np.unique(names, return_inverse=True)
    preds = Predictions([str(v) for v in vid_list], vid_idx.astype(np.int64), cls, start_a,
                        end_a, score_a, None if classes is None else list(classes), source)
    if gt is not None:
        _warn_unknown_videos(preds, gt)
    return preds


def load_predictions(path_or_dict: str | Path | Mapping[str, Any], gt: GroundTruth) -> Predictions:
    """Read an ActivityNet result file (``results`` -> video -> [{label, segment, score}]).

    Labels are mapped onto ``gt.classes``. Predicted videos absent from the ground-truth subset
    and reversed segments (end < start) are kept, as in the reference (they are false
    positives), with a warning.
    """
    if isinstance(path_or_dict, Mapping):
        data, source = path_or_dict, "<predictions dict>"
    else:
        data, source = read_json(path_or_dict), str(path_or_dict)
    if not isinstance(data, Mapping) or not isinstance(data.get("results"), Mapping):
        raise ValueError(f"{source}: missing top-level 'results' object")
    index = {c: i for i, c in enumerate(gt.classes)}
    names: list[str] = []
    rows: list[tuple[int, float, float, float]] = []
    reversed_: list[str] = []
    for vid, entries in data["results"].items():
        if not isinstance(entries, list):
            raise ValueError(f"{source}: results of video {vid!r} must be a list")
        for j, det in enumerate(entries):
            where = f"{source}: video {vid!r}, detection {j}"
            if not isinstance(det, Mapping):
                raise ValueError(f"{where}: not an object")
            for key in ("label", "segment", "score"):
                if key not in det:
                    raise ValueError(f"{where}: missing '{key}'")
            label = det["label"]
            if not isinstance(label, str) or label not in index:
                raise ValueError(f"{where}: unknown label {label!r} (not among the "
                                 f"{len(gt.classes)} classes of {_short_source(gt.source)})")
            start, end = _parse_segment(det["segment"], where, allow_reversed=True)
            if end < start:
                reversed_.append(f"video {vid!r}, detection {j}: {det['segment']}")
            try:
                score = float(det["score"])
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"{where}: 'score' {det['score']!r:.80} is not numeric") from None
            if not math.isfinite(score):
                raise ValueError(f"{where}: 'score' is {score} (NaN or inf)")
            names.append(str(vid))
            rows.append((index[label], start, end, score))
    table = np.array(rows, dtype=np.float64).reshape(-1, 4)
    vid_list = list(dict.fromkeys(names))
    vid_of = {v: i for i, v in enumerate(vid_list)}
    preds = Predictions(vid_list, np.array([vid_of[v] for v in names], dtype=np.int64),
                        table[:, 0].astype(np.int64), table[:, 1].copy(), table[:, 2].copy(),
                        table[:, 3].copy(), list(gt.classes), source)
    if reversed_:
        _warn_reversed(source, len(reversed_), reversed_[0])
    _warn_unknown_videos(preds, gt)
    return preds


# --------------------------------------------------------------------------- detection mAP


@dataclass
class DetectionResult:
    """AP per threshold and class, mAP per threshold, and what was evaluated."""

    tiou: np.ndarray            # [K]
    ap: np.ndarray              # [K, C]; NaN for classes without ground truth
    mAP: np.ndarray             # [K]  # noqa: N815 (the name everybody uses)
    classes: list[str]
    num_gt: np.ndarray          # [C] ground-truth instances per class
    num_predictions: int
    gt_description: str = ""

    def averages(self) -> dict[str, float]:
        """The quoted averages (``average_mAP@0.1:0.5`` ... ``@0.5:0.95``) of the thresholds
        present; an average is left out when one of its thresholds is missing."""
        out = {}
        for name, (first, last, step) in _AVERAGE_RANGES.items():
            wanted = np.linspace(first, last, int(round((last - first) / step)) + 1)
            hit = np.isclose(self.tiou[:, None], wanted[None, :], rtol=0, atol=1e-9)
            if hit.any(axis=0).all():
                out[name] = float(self.mAP[hit.any(axis=1)].mean())
        return out

    def as_dict(self) -> dict[str, float]:
        """``mAP@0.5``-style entries for every threshold, then the averages."""
        out = {f"mAP@{t:g}": float(m) for t, m in zip(self.tiou, self.mAP)}
        out.update(self.averages())
        return out


def _check_tiou(tiou_thresholds: Any) -> np.ndarray:
    try:
        tiou = np.asarray(tiou_thresholds, dtype=np.float64).ravel()
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"tIoU thresholds must be a non-empty list in [0, 1], got "
                         f"{tiou_thresholds!r:.80}") from None
    if tiou.size == 0 or not np.all(np.isfinite(tiou)) or tiou.min() < 0 or tiou.max() > 1:
        raise ValueError(f"tIoU thresholds must be a non-empty list in [0, 1], got {tiou}")
    return tiou


def _group_ranks(values: np.ndarray) -> np.ndarray:
    """Dense ranks (equal values share one), so times can be packed exactly into int64 keys."""
    return np.unique(values, return_inverse=True)[1].astype(np.int64).ravel()


def _candidate_pairs(g_key: np.ndarray, g_start: np.ndarray, g_end: np.ndarray,
                     p_key: np.ndarray, p_start: np.ndarray, p_end: np.ndarray,
                     all_pairs: bool) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, instance) index pairs of the same class and video that may overlap.

    Instances are sorted by (key, start). ``all_pairs`` keeps every pair of the group (needed
    when a threshold is 0, where tIoU 0 already matches); otherwise only instances starting
    before the prediction ends and whose running maximum end lies after its start: a
    contiguous range that holds every overlapping instance.
    """
    lo = np.searchsorted(g_key, p_key, side="left")
    hi = np.searchsorted(g_key, p_key, side="right")
    if not all_pairs and g_key.size:
        # Running maximum of the ends within each group, computed on ranks packed with the
        # group key so one global maximum.accumulate never crosses a group boundary.
        end_rank = _group_ranks(g_end)
        span = int(end_rank.max()) + 1
        packed = np.maximum.accumulate(g_key * span + end_rank)
        run_max_end = np.unique(g_end)[packed - g_key * span]
        # Pack (key, time) into one sortable int64 through joint dense ranks of the times.
        r = _group_ranks(np.concatenate([g_start, p_end]))
        span = int(r.max()) + 1
        a = np.searchsorted(g_key * span + r[:g_key.size], p_key * span + r[g_key.size:], "left")
        r = _group_ranks(np.concatenate([run_max_end, p_start]))
        span = int(r.max()) + 1
        b = np.searchsorted(g_key * span + r[:g_key.size], p_key * span + r[g_key.size:], "right")
        lo, hi = np.maximum(lo, b), np.minimum(hi, a)
    counts = np.maximum(hi - lo, 0)
    pred = np.repeat(np.arange(p_key.size), counts)
    offsets = np.cumsum(counts) - counts
    inst = lo[pred] + np.arange(pred.size) - offsets[pred]
    return pred, inst


def segment_iou(p_start: Any, p_end: Any, g_start: np.ndarray, g_end: np.ndarray,
                 nan_as_inf: bool = True) -> np.ndarray:
    """tIoU with the reference's operations in the reference's order (bit-identical values).

    A zero union gives 0/0 = NaN, which passes the reference's threshold test (NaN < t is
    false); ``nan_as_inf`` turns it into +inf, which behaves the same in comparisons here.
    """
    inter = np.clip(np.minimum(p_end, g_end) - np.maximum(p_start, g_start), 0, None)
    union = (g_end - g_start) + (p_end - p_start) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where(union == 0, np.inf, iou) if nan_as_inf else iou


def _zero_union_pairs(g_key: np.ndarray, g_len: np.ndarray, p_key: np.ndarray,
                      p_len: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of the same group whose union is exactly 0 (tIoU 0/0), wherever they lie.

    That needs a prediction of length <= 0 (never overlapping anything) and an instance of
    the opposite length: two zero-length segments, or a reversed prediction.
    """
    cand_p = np.flatnonzero(p_len <= 0)
    if cand_p.size == 0 or g_key.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    r = _group_ranks(np.concatenate([g_len, -p_len[cand_p]]))
    span = int(r.max()) + 1
    g_packed = g_key * span + r[:g_key.size]
    g_sorted = np.argsort(g_packed, kind="stable")
    p_packed = p_key[cand_p] * span + r[g_key.size:]
    lo = np.searchsorted(g_packed[g_sorted], p_packed, "left")
    hi = np.searchsorted(g_packed[g_sorted], p_packed, "right")
    counts = np.where(p_key[cand_p] >= 0, hi - lo, 0)
    pred = np.repeat(cand_p, counts)
    offsets = np.cumsum(counts) - counts
    pos = np.repeat(lo - offsets, counts) + np.arange(pred.size)
    return pred, g_sorted[pos]


def _reference_tie_rank(tied_preds: np.ndarray, pair_p: np.ndarray, pair_g: np.ndarray,
                        g_key: np.ndarray, g_order: np.ndarray, g_start: np.ndarray,
                        g_end: np.ndarray, p_key: np.ndarray, p_start: np.ndarray,
                        p_end: np.ndarray) -> np.ndarray:
    """Per pair, the position of its instance in the reference's visiting order.

    Only predictions with equal tIoUs need it (rare). The reference visits the instances of
    the prediction's class and video, in file order, by ``tiou.argsort()[::-1]`` (numpy's
    default, unstable sort), so the same call on the same array is made here.
    """
    rank = np.zeros(pair_p.size, dtype=np.int64)
    visit_pos = np.zeros(g_key.size, dtype=np.int64)
    pair_lo = np.searchsorted(pair_p, tied_preds, "left")
    pair_hi = np.searchsorted(pair_p, tied_preds, "right")
    for p, a, b in zip(tied_preds, pair_lo, pair_hi):
        group = np.arange(np.searchsorted(g_key, p_key[p], "left"),
                          np.searchsorted(g_key, p_key[p], "right"))
        group = group[np.argsort(g_order[group])]                 # file order
        iou = segment_iou(p_start[p], p_end[p], g_start[group], g_end[group], nan_as_inf=False)
        visit_pos[group[iou.argsort()[::-1]]] = np.arange(group.size)
        rank[a:b] = visit_pos[pair_g[a:b]]
    return rank


def _deferred_acceptance(proposer: np.ndarray, receiver: np.ndarray,
                         num_receivers: int) -> np.ndarray:
    """Stable matching when every receiver ranks proposers by proposer id (lower wins).

    ``proposer``/``receiver`` list each proposer's acceptable receivers, grouped by proposer
    in ascending id order and in the proposer's order of preference. Returns, per receiver,
    the id of the proposer holding it (-1 if none). With one common ranking this is exactly
    what letting the proposers choose one after another in id order gives.
    """
    if proposer.size == 0:
        return np.full(num_receivers, -1, dtype=np.int64)
    # Compact proposer numbers q (same order as the ids) with their list [start, end).
    list_start = np.flatnonzero(np.r_[True, proposer[1:] != proposer[:-1]])
    list_end = np.r_[list_start[1:], proposer.size]
    ptr = list_start.copy()
    holder = np.full(num_receivers, -1, dtype=np.int64)
    active = np.arange(list_start.size)                    # kept in ascending order
    while active.size:
        target = receiver[ptr[active]]
        order = np.argsort(target, kind="stable")          # ascending q within a target
        t_sorted = target[order]
        first = np.flatnonzero(np.r_[True, t_sorted[1:] != t_sorted[:-1]])
        best, won_at = active[order[first]], t_sorted[first]
        current = holder[won_at]
        wins = (current < 0) | (best < current)
        holder[won_at[wins]] = best[wins]
        accepted = np.zeros(active.size, dtype=bool)
        accepted[order[first[wins]]] = True
        rejected = np.concatenate([active[~accepted], current[wins & (current >= 0)]])
        ptr[rejected] += 1                                 # rejected ones try their next choice
        active = np.sort(rejected[ptr[rejected] < list_end[rejected]])
    held = holder >= 0
    holder[held] = proposer[list_start[holder[held]]]
    return holder


def _interpolated_ap(tp: np.ndarray, num_gt: int) -> np.ndarray:
    """VOC-2011 AP per row of ``tp`` [K, n] (true-positive flags in ranking order)."""
    k, n = tp.shape
    tp_cum = np.cumsum(tp, axis=1, dtype=np.float64)
    precision = tp_cum / np.arange(1, n + 1, dtype=np.float64)
    recall = tp_cum / float(num_gt)
    m_prec = np.concatenate([np.zeros((k, 1)), precision, np.zeros((k, 1))], axis=1)
    m_rec = np.concatenate([np.zeros((k, 1)), recall, np.ones((k, 1))], axis=1)
    m_prec = np.maximum.accumulate(m_prec[:, ::-1], axis=1)[:, ::-1]
    step = m_rec[:, 1:] - m_rec[:, :-1]
    return np.where(step != 0, step * m_prec[:, 1:], 0.0).sum(axis=1)


@dataclass
class _Matching:
    """Every prediction's true-positive flag per threshold, in per-class ranking order."""

    tiou: np.ndarray            # [K]
    tp: np.ndarray              # [K, n] bool, predictions in ranking order
    bounds: np.ndarray          # [C + 1] class c's predictions are tp[:, bounds[c]:bounds[c+1]]
    p_vid: np.ndarray           # [n] ground-truth video index of each ranked prediction (-1: none)
    num_gt: np.ndarray          # [C] instances per class


def _match(gt: GroundTruth, preds: Predictions, tiou_thresholds: Any) -> _Matching:
    """Rank and match ``preds`` against ``gt`` at every threshold (the reference's rules)."""
    tiou = _check_tiou(tiou_thresholds)
    num_classes, num_k = len(gt.classes), tiou.size
    if gt.num_instances == 0:
        raise ValueError(f"{gt.source}: subset {gt.subset!r} has no annotated instance; "
                         f"mAP is undefined")
    if preds.classes is not None and list(preds.classes) != list(gt.classes):
        raise ValueError(f"{preds.source}: class list differs from that of {gt.source}")
    if len(preds) and (preds.class_idx.min() < 0 or preds.class_idx.max() >= num_classes):
        raise ValueError(f"{preds.source}: class_idx outside [0, {num_classes})")

    # Rank each class's predictions with the very call the reference makes on the same array
    # (file order, numpy's default unstable argsort, reversed), so tied scores come out in
    # the reference's order.
    n = len(preds)
    by_class = np.argsort(preds.class_idx, kind="stable")
    bounds = np.searchsorted(preds.class_idx[by_class], np.arange(num_classes + 1))
    order = np.concatenate([by_class[bounds[c]:bounds[c + 1]][
        preds.score[by_class[bounds[c]:bounds[c + 1]]].argsort()[::-1]]
        for c in range(num_classes)] + [np.empty(0, np.int64)])
    p_cls = preds.class_idx[order]
    p_start, p_end = preds.start[order], preds.end[order]
    gt_video = {v: i for i, v in enumerate(gt.video_names)}
    video_map = np.array([gt_video.get(v, -1) for v in preds.video_names], dtype=np.int64)
    p_vid = video_map[preds.video_idx[order]] if n else np.empty(0, np.int64)

    # Instances grouped by (class, video), by start inside a group. Unknown videos get a key
    # no instance has, so they find no candidates and stay false positives.
    num_videos = max(gt.num_videos, 1)
    g_order = np.lexsort((gt.start, gt.class_idx * num_videos + gt.video_idx))
    g_key = (gt.class_idx * num_videos + gt.video_idx)[g_order]
    g_start, g_end = gt.start[g_order], gt.end[g_order]
    p_key = np.where(p_vid >= 0, p_cls * num_videos + p_vid, -1)

    pair_p, pair_g = _candidate_pairs(g_key, g_start, g_end, p_key, p_start, p_end,
                                      all_pairs=bool(tiou.min() <= 0))
    iou = segment_iou(p_start[pair_p], p_end[pair_p], g_start[pair_g], g_end[pair_g])
    z_p, z_g = _zero_union_pairs(g_key, g_end - g_start, p_key, p_end - p_start)
    if z_p.size:
        # 0/0 tIoU passes every threshold in the reference; keep each such pair once.
        pair_p, pair_g = np.concatenate([pair_p, z_p]), np.concatenate([pair_g, z_g])
        iou = np.concatenate([iou, np.full(z_p.size, np.inf)])
        _, keep = np.unique(pair_p * max(g_key.size, 1) + pair_g, return_index=True)
        pair_p, pair_g, iou = pair_p[keep], pair_g[keep], iou[keep]
    keep = iou >= tiou.min()
    pair_p, pair_g, iou = pair_p[keep], pair_g[keep], iou[keep]

    # Preference of each prediction: tIoU descending; equal tIoUs in the reference's order.
    pref = np.lexsort((-iou, pair_p))
    pair_p, pair_g, iou = pair_p[pref], pair_g[pref], iou[pref]
    tied = (pair_p[1:] == pair_p[:-1]) & (iou[1:] == iou[:-1])
    if tied.any():
        tie_rank = _reference_tie_rank(np.unique(pair_p[1:][tied]), pair_p, pair_g, g_key,
                                       g_order, g_start, g_end, p_key, p_start, p_end)
        pref = np.lexsort((tie_rank, -iou, pair_p))
        pair_p, pair_g, iou = pair_p[pref], pair_g[pref], iou[pref]
    # One independent matching per threshold: proposers k*n + p, receivers k*M + g.
    num_inst = gt.num_instances
    proposer, receiver = [], []
    for k, t in enumerate(tiou):
        ok = iou >= t
        proposer.append(k * n + pair_p[ok])
        receiver.append(k * num_inst + pair_g[ok])
    holder = _deferred_acceptance(np.concatenate(proposer), np.concatenate(receiver),
                                  num_k * num_inst)
    matched = holder[holder >= 0]
    tp = np.zeros(num_k * n, dtype=bool)
    tp[matched] = True
    tp = tp.reshape(num_k, n)
    num_gt = np.bincount(gt.class_idx, minlength=num_classes)
    return _Matching(tiou, tp, bounds, p_vid, num_gt)


def evaluate_detection(gt: GroundTruth, preds: Predictions,
                       tiou_thresholds: Any = THUMOS14_TIOU) -> DetectionResult:
    """ActivityNet detection AP [K, C] and mAP [K] of ``preds`` against ``gt``.

    See the module docstring for the exact rules (ranking ties, matching, AP, classes without
    ground truth).
    """
    m = _match(gt, preds, tiou_thresholds)
    tiou, tp, bounds, num_gt = m.tiou, m.tp, m.bounds, m.num_gt
    num_k, num_classes, n = tiou.size, len(gt.classes), len(preds)
    ap = np.full((num_k, num_classes), np.nan)
    for c in np.flatnonzero(num_gt):
        ap[:, c] = _interpolated_ap(tp[:, bounds[c]:bounds[c + 1]], int(num_gt[c]))
    m_ap = ap[:, num_gt > 0].mean(axis=1)
    summary = (f"{gt.dataset} {gt.subset}, {gt.num_videos} videos, {gt.num_instances} "
               f"instances ({_short_source(gt.source)})")
    return DetectionResult(tiou, ap, m_ap, list(gt.classes), num_gt, n, summary)


def _weighted_ap(tp: np.ndarray, w: np.ndarray, num_gt: np.ndarray) -> np.ndarray:
    """VOC-2011 AP of one class for each row of weights ``w`` [B, n] (``tp`` [n] flags).

    A weight is how many times the prediction's video was drawn; ``num_gt`` [B] is the
    class's instance count in each draw. NaN where a draw holds no instance of the class.
    """
    b, n = w.shape
    tp_cum = np.cumsum(w * tp, axis=1)
    seen = np.cumsum(w, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(seen > 0, tp_cum / seen, 0.0)
        recall = tp_cum / num_gt[:, None]
    m_prec = np.concatenate([np.zeros((b, 1)), precision, np.zeros((b, 1))], axis=1)
    m_rec = np.concatenate([np.zeros((b, 1)), recall, np.ones((b, 1))], axis=1)
    m_prec = np.maximum.accumulate(m_prec[:, ::-1], axis=1)[:, ::-1]
    step = m_rec[:, 1:] - m_rec[:, :-1]
    ap = np.where(step != 0, step * m_prec[:, 1:], 0.0).sum(axis=1)
    return np.where(num_gt > 0, ap, np.nan)


def bootstrap_map(gt: GroundTruth, preds: Predictions, tiou: float = 0.5, n_boot: int = 1000,
                  seed: int = 0) -> np.ndarray:
    """mAP@``tiou`` of ``n_boot`` bootstrap resamples of the test videos -> [n_boot].

    Each resample draws the subset's videos with replacement; a video drawn k times counts
    its instances and its predictions k times (matching is within a video, so it is done
    once). A class without instances in a draw is left out of that draw's mean, as
    evaluate_detection leaves out classes without ground truth. With every video drawn once
    this is exactly evaluate_detection's mAP.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    m = _match(gt, preds, [tiou])
    rng = np.random.default_rng(seed)
    num_videos = gt.num_videos
    counts = rng.multinomial(num_videos, np.full(num_videos, 1.0 / num_videos), size=n_boot)
    return _map_for_counts(gt, m, counts)


def _map_for_counts(gt: GroundTruth, m: _Matching, counts: np.ndarray) -> np.ndarray:
    """mAP per row of video multiplicities ``counts`` [B, V] (see bootstrap_map)."""
    b = counts.shape[0]
    # Instances per (draw, class): counts @ one-hot(video, class).
    inst = np.zeros((gt.num_videos, len(gt.classes)))
    np.add.at(inst, (gt.video_idx, gt.class_idx), 1.0)
    num_gt = counts @ inst                                        # [B, C]
    # Index -1: predictions for videos outside the subset stay false positives in every draw.
    counts_ext = np.concatenate([counts, np.ones((b, 1))], axis=1)
    ap = np.full((b, len(gt.classes)), np.nan)
    for c in np.flatnonzero(m.num_gt):
        lo, hi = m.bounds[c], m.bounds[c + 1]
        w = counts_ext[:, m.p_vid[lo:hi]].astype(np.float64)      # [B, n_c]
        ap[:, c] = _weighted_ap(m.tp[0, lo:hi], w, num_gt[:, c])
    ap = ap[:, m.num_gt > 0]
    present = ~np.isnan(ap)
    return np.where(present, ap, 0.0).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


# --------------------------------------------------------------------------- classification


def classification_map(scores: Any, labels: Any) -> float:
    """Video-level classification mAP: mean AP over classes with at least one positive.

    AP is the non-interpolated average precision (as scikit-learn's average_precision_score):
    sum over distinct score thresholds, highest first, of (recall step) x precision; videos
    with tied scores enter together.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"scores and labels must both be [N, C], got {s.shape} and {y.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores hold NaN or inf")
    yf = y.astype(np.float64)
    if not np.all((yf == 0) | (yf == 1)):
        raise ValueError("labels must be 0/1 (multi-hot)")
    has_pos = yf.sum(axis=0) > 0
    if not has_pos.any():
        raise ValueError("labels have no positive entry: classification mAP is undefined")
    s, yf = s[:, has_pos], yf[:, has_pos]
    n = s.shape[0]
    order = np.argsort(-s, axis=0, kind="stable")                  # [N, C'] per class
    s_sorted = np.take_along_axis(s, order, axis=0)
    y_sorted = np.take_along_axis(yf, order, axis=0)
    precision = np.cumsum(y_sorted, axis=0) / np.arange(1, n + 1)[:, None]
    # Videos with equal scores form one threshold: each positive of a tie group earns the
    # precision at the group's last position.
    last = np.ones_like(s_sorted, dtype=bool)
    last[:-1] = s_sorted[:-1] != s_sorted[1:]
    group_end = np.where(last, np.arange(n)[:, None], n - 1)
    group_end = np.minimum.accumulate(group_end[::-1], axis=0)[::-1]
    earned = y_sorted * np.take_along_axis(precision, group_end, axis=0)
    ap = earned.sum(axis=0) / y_sorted.sum(axis=0)
    return float(ap.mean())


# --------------------------------------------------------------------------- text, CLI, parity


def parse_tiou(spec: str) -> np.ndarray:
    """Thresholds from ``"0.1:0.9:0.1"`` (start:stop:step, stop included) or ``"0.5,0.75"``.

    A range is built like the reference builds it, ``np.linspace(start, stop, count)``, with
    the count rounded so float drift never drops the last threshold.
    """
    text = str(spec).strip()
    try:
        if ":" in text:
            parts = [float(x) for x in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise ValueError(f"tIoU range {spec!r}: need step > 0 and stop >= start")
            count = int(round((stop - start) / step)) + 1
            if abs(start + (count - 1) * step - stop) > 1e-9:
                raise ValueError(f"tIoU range {spec!r}: step does not land on stop")
            values = np.linspace(start, stop, count)
        else:
            values = np.array([float(x) for x in text.split(",")])
    except ValueError as exc:
        if str(exc).startswith("tIoU"):
            raise
        raise ValueError(f"tIoU spec {spec!r}: expected start:stop:step or a comma list "
                         f"such as 0.5,0.75") from None
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ValueError(f"tIoU spec {spec!r}: thresholds must lie in [0, 1]")
    return values


def _tiou_label(tiou: np.ndarray) -> list[str]:
    decimals = 1 if np.allclose(np.round(tiou, 1), tiou, rtol=0, atol=1e-9) else 2
    return [f"{t:.{decimals}f}" for t in tiou]


def format_table(result: DetectionResult) -> str:
    """The README-style table (mAP in percent) with the averages and the ground truth used."""
    heads = ["threshold"] + _tiou_label(result.tiou)
    cells = ["mAP"] + [f"{100 * m:.2f}" for m in result.mAP]
    widths = [max(len(h), len(c)) for h, c in zip(heads, cells)]
    lines = [f"ground truth: {result.gt_description}",
             f"predictions: {result.num_predictions} detections",
             "",
             "| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths)) + " |",
             "| " + " | ".join("-" * w for w in widths) + " |",
             "| " + " | ".join(c.center(w) if i == 0 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(cells, widths))) + " |"]
    averages = result.averages()
    if averages:
        lines.append("")
        lines += [f"{name.replace('_', ' ')}: {100 * v:.2f}" for name, v in averages.items()]
    return "\n".join(lines)


def run_evaluate(gt_path: str | Path, pred_path: str | Path, subset: str, tiou_spec: str,
                 as_json: bool) -> str:
    """What ``python -m ecmlib evaluate`` prints: the table, or JSON with AP per class."""
    tiou = parse_tiou(tiou_spec)
    gt = load_ground_truth(gt_path, subset)
    preds = load_predictions(pred_path, gt)
    result = evaluate_detection(gt, preds, tiou)
    if not as_json:
        return format_table(result)
    payload = {
        "ground_truth": result.gt_description,
        "predictions": str(pred_path),
        "num_predictions": result.num_predictions,
        "tiou": result.tiou.tolist(),
        "metrics": result.as_dict(),
        "ap": {c: [None if math.isnan(v) else float(v) for v in result.ap[:, i]]
               for i, c in enumerate(result.classes)},
    }
    return json.dumps(payload, indent=2)


def parity_check_map(golden: Mapping[str, Any],
                     gt_path: str | Path) -> list[tuple[str, float, float]]:
    """Recompute the golden ``map/thumos/*`` and ``map/anet/*`` numbers on the THUMOS14 test gt.

    Returns (check name, max abs error, tolerance) for the AP matrix and mAP of each protocol.
    """
    classes = [str(c) for c in np.asarray(golden["map/classes"]).ravel()]
    gt = load_ground_truth(gt_path, "test", classes=classes)
    with warnings.catch_warnings():
        # The golden prediction file holds reversed segments on purpose; no need to shout.
        warnings.simplefilter("ignore", UserWarning)
        preds = load_predictions(json.loads(str(golden["map/predictions_json"])), gt)
    checks = []
    for proto in ("thumos", "anet"):
        result = evaluate_detection(gt, preds, np.asarray(golden[f"map/{proto}/tiou"]))
        for key, ours in (("ap", result.ap), ("mAP", result.mAP)):
            ref = np.asarray(golden[f"map/{proto}/{key}"], dtype=np.float64)
            err = float(np.max(np.abs(ours - ref))) if ours.shape == ref.shape else math.inf
            checks.append((f"map/{proto}/{key}", err if math.isfinite(err) else math.inf,
                           MAP_TOLERANCE))
    return checks
