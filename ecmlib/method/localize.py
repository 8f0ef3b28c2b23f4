"""ECM localisation: from a class activation sequence (CAS) to scored temporal detections.

ECM's localisation as the authors' code computes it: min-max normalisation, class
filtering, linear up-sampling to frame resolution, multi-threshold run extraction with
outer-inner-contrast scores, and per-class greedy NMS. The same steps written plainly, one
threshold and one run at a time, are :func:`ecmlib.method.reference.localize_steps`; the
tests hold this vectorised version to it.

Two modes are offered:

* ``mode="official"`` reproduces the authors' released code, quirks included, and is the
  mode checked against the golden files (see :func:`parity_check_localize`).
* ``mode="clean"`` drops the two quirks that are plain defects (the position-0 skip and the
  "+1" in the NMS overlap); everything else is identical.

Everything is vectorised over thresholds x classes: runs come from the rises and falls of a
per-position "how many thresholds survive" count, inner and outer means from cumulative sums.
Only the greedy NMS keeps a Python loop (over one class's sorted proposals).

Precision. The golden scores are all float32 values while its times are float64, which says
the recording environment did the score arithmetic in float32 (numpy >= 2 promotion rules:
``np.float32 op python float`` stays float32, ``np.float32 array < np.float64`` compares in
float64). Accordingly, in official mode the normalised/resized curve is float32, thresholds
are compared in float64, the class-score threshold in the score's dtype, and the final
scores are rounded to float32 (means themselves use float64 cumulative sums, so scores are
within ~1 float32 ulp of the reference). Where the reference's own float32 rounding breaks
an exact real-number tie between two proposals (plateaus in a synthetic CAS), NMS may keep
them in the other order; real CAS values do not produce such ties.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

__all__ = [
    "LocalizeParams",
    "FlatDetections",
    "minmax_normalize",
    "localized_curve",
    "resize_linear",
    "localize_video",
    "localize_batch",
    "localize_batch_flat",
    "nms",
    "parity_check_localize",
]

_MODES = ("official", "clean")
_TIME_UNITS = ("fps", "duration")
# Upper bound on classes x frames resized at once, to keep memory bounded.
_CHUNK_ELEMENTS = 1 << 22
# Largest per-class proposal count for which NMS precomputes the pairwise overlap matrix.
_NMS_MATRIX_MAX = 1024


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class LocalizeParams:
    """Localisation hyper-parameters (names follow the golden files' ``post/params``).

    ``act_thresh`` is ``(start, stop, step)``; the thresholds are
    ``np.arange(start, stop, step)`` exactly as the reference builds them.
    ``time_unit`` is ``"fps"`` (THUMOS14: times = frame / fps) or ``"duration"``
    (ActivityNet: times = frame / frame_num * duration).
    """

    cls_score_th: float
    act_thresh: tuple[float, float, float]
    nms_threshold: float
    outer_lambda: float
    conf_gamma: float
    time_unit: str = "fps"
    mode: str = "official"

    def __post_init__(self) -> None:
        def _num(name: str, value: Any) -> float:
            try:
                out = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"LocalizeParams.{name} must be a number, got {value!r}") from None
            if not math.isfinite(out):
                raise ValueError(f"LocalizeParams.{name} must be finite, got {value!r}")
            return out

        # frozen dataclass: normalise field types through object.__setattr__
        for name in ("cls_score_th", "nms_threshold", "outer_lambda", "conf_gamma"):
            object.__setattr__(self, name, _num(name, getattr(self, name)))
        try:
            triple = tuple(self.act_thresh)
        except TypeError:
            raise ValueError(
                f"LocalizeParams.act_thresh must be (start, stop, step), got {self.act_thresh!r}"
            ) from None
        if len(triple) != 3:
            raise ValueError(
                f"LocalizeParams.act_thresh must have 3 values (start, stop, step), got {len(triple)}"
            )
        triple = tuple(_num("act_thresh", v) for v in triple)
        object.__setattr__(self, "act_thresh", triple)
        start, stop, step = triple
        if step <= 0:
            raise ValueError(f"LocalizeParams.act_thresh step must be > 0, got {step}")
        if start < 0:
            # thresholds act on a min-max normalised CAS; a negative one would keep negative
            # values in the zeroed curve, which the run-based outer sums do not model
            raise ValueError(f"LocalizeParams.act_thresh start must be >= 0, got {start}")
        if stop <= start:
            raise ValueError(
                f"LocalizeParams.act_thresh gives no thresholds: stop {stop} <= start {start}"
            )
        if not 0.0 < self.nms_threshold <= 1.0:
            raise ValueError(f"LocalizeParams.nms_threshold must be in (0, 1], got {self.nms_threshold}")
        if self.outer_lambda < 0:
            raise ValueError(f"LocalizeParams.outer_lambda must be >= 0, got {self.outer_lambda}")
        if self.time_unit not in _TIME_UNITS:
            raise ValueError(
                f"LocalizeParams.time_unit must be one of {_TIME_UNITS}, got {self.time_unit!r}"
            )
        if self.mode not in _MODES:
            raise ValueError(f"LocalizeParams.mode must be one of {_MODES}, got {self.mode!r}")

    @property
    def thresholds(self) -> np.ndarray:
        """Activation thresholds, ``np.arange(start, stop, step)`` (float64)."""
        return np.arange(*self.act_thresh, dtype=np.float64)

    @classmethod
    def thumos14(cls, mode: str = "official") -> "LocalizeParams":
        """THUMOS14 settings of the paper configuration."""
        return cls(0.25, (0.01, 0.2, 0.025), 0.6, 0.4, 0.15, "fps", mode)

    @classmethod
    def anet12(cls, mode: str = "official") -> "LocalizeParams":
        """ActivityNet 1.2 settings of the paper configuration."""
        return cls(0.12, (0.0, 0.175, 0.025), 0.7, 0.5, 0.45, "duration", mode)

    @classmethod
    def anet13(cls, mode: str = "official") -> "LocalizeParams":
        """ActivityNet 1.3 settings of the paper configuration."""
        return cls(0.05, (0.0, 0.175, 0.025), 0.7, 0.5, 0.45, "duration", mode)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | str, mode: str | None = None) -> "LocalizeParams":
        """Build from a mapping (or its JSON text) with the golden ``post/params`` keys.

        ``mode`` overrides a ``"mode"`` entry; the default is ``"official"``.
        """
        if isinstance(d, str):
            d = json.loads(d)
        if not isinstance(d, Mapping):
            raise ValueError(f"LocalizeParams.from_dict expects a mapping, got {type(d).__name__}")
        required = ("cls_score_th", "act_thresh", "nms_threshold", "outer_lambda", "conf_gamma", "time_unit")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"LocalizeParams.from_dict: missing keys {missing}")
        unknown = sorted(set(d) - set(required) - {"mode"})
        if unknown:
            raise ValueError(f"LocalizeParams.from_dict: unknown keys {unknown}")
        kwargs = {k: d[k] for k in required}
        kwargs["mode"] = mode if mode is not None else d.get("mode", "official")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (inverse of :meth:`from_dict`)."""
        return {
            "cls_score_th": self.cls_score_th,
            "act_thresh": list(self.act_thresh),
            "nms_threshold": self.nms_threshold,
            "outer_lambda": self.outer_lambda,
            "conf_gamma": self.conf_gamma,
            "time_unit": self.time_unit,
            "mode": self.mode,
        }


# --------------------------------------------------------------------------- helpers


def _as_float_array(x: Any, name: str) -> np.ndarray:
    """Array of float dtype (float32 kept, anything else -> float64); rejects NaN/inf."""
    arr = np.asarray(x)
    numeric = np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    if arr.dtype == np.bool_ or not numeric:
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _real_scalar(x: Any, name: str, what: str) -> float:
    """A real (not bool) scalar as a float, or a ValueError saying it must be ``what``."""
    arr = np.asarray(x)
    if arr.ndim != 0 or arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ValueError(f"{name} must be {what}, got {x!r}")
    return float(arr)


def _positive_int(x: Any, name: str) -> int:
    v = _real_scalar(x, name, "a positive integer scalar")
    if not math.isfinite(v) or v != int(v) or v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {x!r}")
    return int(v)


def _positive_float(x: Any, name: str) -> float:
    v = _real_scalar(x, name, "a positive number")
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {x!r}")
    return v


# --------------------------------------------------------------------------- step 1: normalise


def minmax_normalize(cas: np.ndarray) -> np.ndarray:
    """Per-class min-max normalisation of a CAS ``[C, T]`` or ``[B, C, T]`` (spec step 1).

    ``hi = relu(max_t A)``, ``lo = relu(min_t A)``, ``delta = hi - lo`` with ``delta := 1``
    where ``delta <= 0``; returns ``(A - lo) / delta``. Because of the relu, a class whose
    values are negative is not mapped to [0, 1] (its negative part stays negative).
    float32 input stays float32 (as in the reference); other inputs are computed in float64.
    """
    a = _as_float_array(cas, "cas")
    if a.ndim not in (2, 3):
        raise ValueError(f"cas must have shape [C, T] or [B, C, T], got shape {a.shape}")
    if a.shape[-1] < 1 or a.shape[-2] < 1:
        raise ValueError(f"cas must have at least one class and one snippet, got shape {a.shape}")
    zero = a.dtype.type(0)
    hi = np.maximum(a.max(axis=-1, keepdims=True), zero)
    lo = np.maximum(a.min(axis=-1, keepdims=True), zero)
    delta = hi - lo
    delta[delta <= 0] = 1
    return (a - lo) / delta


def localized_curve(cas: np.ndarray) -> np.ndarray:
    """One class's CAS [T] (or a CAS [C, T]) as the localisation thresholds it: min-max
    normalised (:func:`minmax_normalize`, the one normalisation of the project), values
    below 0 at 0 (a threshold >= 0 never keeps them). For drawing what is localised."""
    a = np.asarray(cas, dtype=np.float64)
    flat = a.ndim == 1
    norm = minmax_normalize(a[None, :] if flat else a)
    norm = np.maximum(norm, 0.0)
    return norm[0] if flat else norm


# --------------------------------------------------------------------------- step 3: resize


def resize_linear(x: np.ndarray, n: int) -> np.ndarray:
    """Linear resize of the last axis from ``T`` to ``n`` samples, OpenCV ``INTER_LINEAR`` style.

    Semantics of ``cv2.resize`` on a 1 x T float32 image: half-pixel centres
    (``src = (dst + 0.5) * T / n - 0.5``), source positions clamped to the edge samples, the
    fractional weight computed in float32 and the blend done in float32. Leading axes are
    resized independently. Returns float32 ``[..., n]``.
    """
    a = _as_float_array(x, "x")
    if a.ndim < 1 or a.shape[-1] < 1:
        raise ValueError(f"x must have a non-empty last axis, got shape {a.shape}")
    n = _positive_int(n, "n")
    a = a.astype(np.float32, copy=False)
    t = a.shape[-1]
    if n == t:
        return a.copy()  # OpenCV copies when the size is unchanged
    # OpenCV: scale = 1 / (n / T) in double, source coordinate rounded to float32 before the
    # floor, fraction subtracted in float32; these roundings are kept to match its output.
    scale = 1.0 / (float(n) / float(t))
    fx = ((np.arange(n, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    sx = np.floor(fx)
    fx = fx - sx
    sx = sx.astype(np.int64)
    left = sx < 0
    right = sx >= t - 1
    fx[left | right] = 0  # clamped positions take one sample with weight 1
    sx[left] = 0
    sx[right] = t - 1
    w0 = np.float32(1) - fx
    nxt = np.minimum(sx + 1, t - 1)
    return a[..., sx] * w0 + a[..., nxt] * fx


# --------------------------------------------------------------------------- step 5: NMS


def _nms_indices(
    scores: np.ndarray, starts: np.ndarray, ends: np.ndarray, thresh: float, official: bool
) -> np.ndarray:
    """Indices kept by greedy 1-D NMS, in keep order (see :func:`nms`)."""
    if scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    if official:
        # the reference's `scores.argsort()[::-1]`: numpy's default (unstable) sort, reversed
        order = np.argsort(scores)[::-1]
    else:
        order = np.argsort(-scores, kind="stable")  # ties: earlier input first
    plus = 1.0 if official else 0.0
    s = starts[order]
    e = ends[order]
    length = e - s + plus

    def suppress(i: np.ndarray | int, j: np.ndarray) -> np.ndarray:
        # same operations, in the same order, as the reference's per-step overlap
        inter = np.maximum(0.0, np.minimum(e[i], e[j]) - np.maximum(s[i], s[j]) + plus)
        union = length[i] + length[j] - inter
        if official:
            iou = inter / union  # union >= 1 with the +1, never zero
        else:
            iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        return iou >= thresh

    n = order.size
    keep: list[int] = []
    if n <= _NMS_MATRIX_MAX:
        # All pairwise decisions at once (the overlap is symmetric), then one greedy walk in
        # score order: a proposal survives unless an earlier kept one suppresses it.
        idx = np.arange(n)
        sup = suppress(idx[:, None], idx[None, :])
        removed = np.zeros(n, dtype=bool)
        for i in range(n):
            if not removed[i]:
                keep.append(i)
                removed |= sup[i]
    else:
        rest = np.arange(n)
        while rest.size:
            i = rest[0]
            keep.append(i)
            rest = rest[1:]
            rest = rest[~suppress(i, rest)]
    return order[np.asarray(keep, dtype=np.int64)]


def nms(rows: np.ndarray, thresh: float, mode: str = "official") -> np.ndarray:
    """Greedy 1-D non-maximum suppression of rows ``[N, 3]`` = (score, start, end).

    Highest score first; a row is dropped when its overlap with an already kept row is
    ``>= thresh``. Returns the kept rows ``[K, 3]`` in keep order.

    ``mode="official"`` quirks (kept to reproduce the authors' numbers):

    * the "+1" of pixel-box NMS applied to times in seconds: length = ``e - s + 1``,
      intersection = ``max(0, min(e) - max(s) + 1)``, so short proposals overlap more than
      their IoU (two disjoint segments less than 1 s apart still "intersect");
    * order = ``np.argsort(scores)[::-1]``: numpy's default sort is not stable (and
      dispatches to SIMD sorts on some CPUs), so the order of *exactly equal* scores is
      whatever the local numpy build gives, as in the reference.

    ``mode="clean"``: true IoU (no +1; zero-length segments have IoU 0) and a deterministic
    order (score descending, ties in input order).
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    r = _as_float_array(rows, "rows").astype(np.float64, copy=False)
    if r.ndim != 2 or r.shape[1] != 3:
        raise ValueError(f"rows must have shape [N, 3] (score, start, end), got shape {r.shape}")
    if np.any(r[:, 2] < r[:, 1]):
        raise ValueError("rows have end < start")
    th = float(thresh)
    if not math.isfinite(th) or not 0.0 < th <= 1.0:
        raise ValueError(f"thresh must be in (0, 1], got {thresh!r}")
    keep = _nms_indices(r[:, 0], r[:, 1], r[:, 2], th, mode == "official")
    return r[keep]


# --------------------------------------------------------------------------- steps 2-5: one video


def _run_table(level: np.ndarray, n_th: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All runs of all thresholds from per-position threshold counts.

    ``level[c, t]`` is the number of thresholds position t survives (0 where the curve is
    <= 0); thresholds ascend, so t is "on" at threshold k iff ``level[c, t] > k``. A run of
    threshold k starts at t iff level[t-1] <= k < level[t] and ends at t iff
    level[t+1] <= k < level[t]: each rise (fall) of ``level`` opens (closes) one run per
    threshold it crosses. Returns (class row, threshold index, p0, p1), sorted by class, then
    threshold, then position -- the order in which the reference builds its proposals.
    """
    k_cls, n = level.shape
    pad = np.zeros((k_cls, n + 2), dtype=np.int64)
    pad[:, 1:-1] = level
    cur = pad[:, 1:-1]

    def sorted_keys(neighbour: np.ndarray) -> np.ndarray:
        # one key (class, threshold, position) per threshold k in [neighbour, cur)
        rows, pos = np.nonzero(cur > neighbour)
        low = neighbour[rows, pos]
        m = cur[rows, pos] - low
        first = np.cumsum(m) - m
        k = np.repeat(low, m) + (np.arange(int(m.sum())) - np.repeat(first, m))
        key = (np.repeat(rows, m) * n_th + k) * (n + 1) + np.repeat(pos, m)
        key.sort()
        return key

    group, p0 = np.divmod(sorted_keys(pad[:, :-2]), n + 1)
    p1 = sorted_keys(pad[:, 2:]) % (n + 1)  # runs of one (class, threshold) are disjoint: keys pair up
    ci, ti = np.divmod(group, n_th)
    return ci, ti, p0, p1


def _localize_normalized(
    cas_norm: np.ndarray,
    video_score: np.ndarray,
    frame_num: int,
    fps_or_duration: float,
    params: LocalizeParams,
) -> np.ndarray:
    """Core of :func:`localize_video` on an already normalised float32 CAS (inputs validated)."""
    # Class filter in the score's own precision: the reference compares a float32 array with a
    # Python float, which numpy evaluates in float32.
    tau = np.asarray(params.cls_score_th).astype(video_score.dtype)
    classes = np.flatnonzero(video_score >= tau)
    chunk = max(1, _CHUNK_ELEMENTS // frame_num)
    out = [det for c0 in range(0, classes.size, chunk)
           for det in _localize_classes(cas_norm, video_score, classes[c0:c0 + chunk],
                                        frame_num, fps_or_duration, params)]
    if not out:
        return np.zeros((0, 4), dtype=np.float64)
    return np.concatenate(out, axis=0)


def _localize_classes(cas_norm: np.ndarray, video_score: np.ndarray, cls: np.ndarray,
                      n_frames: int, fps_or_duration: float,
                      params: LocalizeParams) -> list[np.ndarray]:
    """Detections [k, 4] per class of ``cls`` (one array per class with proposals)."""
    official = params.mode == "official"
    # Thresholds stay float64: the reference compares its float32 curve with np.float64
    # thresholds, which numpy >= 2 (the recording environment, see the module docstring)
    # does in float64.
    thetas = params.thresholds
    curve = resize_linear(cas_norm[cls], n_frames)  # [k, F] float32
    # "zero the values < theta, keep positions > 0": position t survives threshold k iff
    # curve >= theta_k and curve > 0, i.e. iff k < level[t].
    level = np.searchsorted(thetas, curve.astype(np.float64), side="right")
    level[curve <= 0] = 0
    ci, ti, p0, p1 = _run_table(level, thetas.size)
    if p0.size == 0:
        return []
    inner, outer = _contrast(curve, ci, ti, p0, p1, thetas.size, params.outer_lambda)
    score = inner - outer + params.conf_gamma * video_score[cls[ci]].astype(np.float64)
    if official:
        # The reference's scores are float32; rounding ours to float32 makes exact ties
        # (plateaus in the CAS) tie here too, so NMS breaks them the same way.
        score = score.astype(np.float32).astype(np.float64)
    if params.time_unit == "fps":
        t0, t1 = p0 / fps_or_duration, (p1 + 1) / fps_or_duration
    else:
        t0 = p0 / n_frames * fps_or_duration
        t1 = (p1 + 1) / n_frames * fps_or_duration
    if official:
        # Quirk: the reference tests `positions.any()`, False both for no position and
        # for the single position 0, so a threshold whose only surviving position is frame
        # 0 yields nothing. That holds for threshold k iff the run starts at 0 and
        # k >= max(level[1:]).
        rest_max = level[:, 1:].max(axis=1) if n_frames > 1 else np.zeros(curve.shape[0], np.int64)
        ok = ~((p0 == 0) & (ti >= rest_max[ci]))
        ci, score, t0, t1 = ci[ok], score[ok], t0[ok], t1[ok]
        if ci.size == 0:
            return []
    # Rows are grouped by class in (threshold, position) order: the order in which the
    # reference concatenates a class's proposals before its NMS.
    out = []
    for grp in np.split(np.arange(ci.size), np.flatnonzero(np.diff(ci)) + 1):
        keep = grp[_nms_indices(score[grp], t0[grp], t1[grp], params.nms_threshold, official)]
        det = np.empty((keep.size, 4), dtype=np.float64)
        det[:, 0] = cls[ci[keep[0]]]
        det[:, 1], det[:, 2], det[:, 3] = t0[keep], t1[keep], score[keep]
        out.append(det)
    return out


def _contrast(curve: np.ndarray, ci: np.ndarray, ti: np.ndarray, p0: np.ndarray,
              p1: np.ndarray, n_th: int, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(inner mean, outer mean) of every run, from cumulative sums (no loop over runs)."""
    n_frames = curve.shape[1]
    csum = np.zeros((curve.shape[0], n_frames + 1), dtype=np.float64)
    np.cumsum(curve, axis=-1, dtype=np.float64, out=csum[:, 1:])
    # Inner mean: on a run every value is >= theta, so the zeroed curve equals the curve.
    run_sum = csum[ci, p1 + 1] - csum[ci, p0]
    length = (p1 - p0 + 1).astype(np.float64)
    inner = run_sum / length
    # Outer region [max(0, int(p0 - lam n)), p0) U (p1, min(F, int(p1 + lam n))); int()
    # truncates toward zero, and lam * n is formed first, as in the reference.
    reach = lam * length
    lo = np.maximum(0, np.trunc(p0 - reach)).astype(np.int64)
    hi = np.minimum(n_frames, np.trunc(p1 + reach)).astype(np.int64)
    hi = np.maximum(hi, p1 + 1)  # right side empty when int(p1 + lam n) <= p1 + 1
    count = (p0 - lo) + (hi - p1 - 1)
    # The outer mean is over the zeroed curve of the run's own threshold. With thresholds
    # >= 0 that curve is the curve on that threshold's runs and 0 elsewhere, so
    # Phi(t) = sum of the zeroed curve before t follows from the runs alone: G[j] sums
    # the runs before j (groups of one class and threshold are contiguous and sums are
    # only differenced within a group), minus the part of the previous run at or after t.
    g_run = np.zeros(run_sum.size + 1, dtype=np.float64)
    np.cumsum(run_sum, out=g_run[1:])
    group = ci * n_th + ti
    start_key = group * (n_frames + 1) + p0

    def phi(t: np.ndarray) -> np.ndarray:
        j = np.searchsorted(start_key, group * (n_frames + 1) + t, side="left")
        prev = np.maximum(j - 1, 0)
        same = (j > 0) & (group[prev] == group)
        end = p1[prev] + 1
        excess = csum[ci, end] - csum[ci, np.minimum(t, end)]
        return g_run[j] - np.where(same, excess, 0.0)

    r = np.arange(p0.size)
    total = (g_run[r] - phi(lo)) + (phi(hi) - g_run[r + 1])
    outer = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return inner, outer


def _check_video(cas: Any, video_score: Any) -> tuple[np.ndarray, np.ndarray]:
    a = _as_float_array(cas, "cas")
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"cas must have shape [C, T] with C, T >= 1, got shape {a.shape}")
    s = _as_float_array(video_score, "video_score")
    if s.shape != (a.shape[0],):
        raise ValueError(f"video_score must have shape [C] = ({a.shape[0]},), got shape {s.shape}")
    return a, s


def localize_video(
    cas: np.ndarray,
    video_score: np.ndarray,
    frame_num: int,
    fps_or_duration: float,
    params: LocalizeParams,
) -> np.ndarray:
    """Detections of one video: rows ``[N, 4]`` = (class index, start s, end s, score).

    ``cas`` is the raw CAS ``[C, T]``, ``video_score`` the video-level class scores ``[C]``,
    ``frame_num`` the frame count the CAS is resized to, ``fps_or_duration`` the frame rate
    (``time_unit="fps"``) or the duration in seconds (``"duration"``).

    Order: kept classes ascending; within a class, the NMS keep order (score descending).
    For each threshold theta and kept class, the normalised and resized curve is zeroed
    below theta; each run p0..p1 (n positions) of values still > 0 scores
    ``mean(run) - mean(outer) + conf_gamma * video_score[c]`` with the outer region
    ``[max(0, int(p0 - lambda n)), p0) U (p1, min(F, int(p1 + lambda n)))`` of the zeroed
    curve (mean 0 when empty; note the asymmetry: the left end is included, the right end
    excluded, as in the reference). Start = p0, end = p1 + 1, in seconds.

    Quirks reproduced by ``params.mode="official"`` and dropped by ``"clean"``:

    * position-0 skip: a (threshold, class) pair whose only position above threshold is
      frame 0 gives no proposal (the reference tests ``positions.any()``);
    * NMS overlap with "+1" on second-valued times (see :func:`nms`).

    Thresholds (``params.act_thresh``) must be >= 0. Precision: see the module docstring;
    official scores are float32-rounded, clean-mode scores are float64.
    """
    if not isinstance(params, LocalizeParams):
        raise ValueError(f"params must be a LocalizeParams, got {type(params).__name__}")
    a, s = _check_video(cas, video_score)
    f = _positive_int(frame_num, "frame_num")
    fd = _positive_float(fps_or_duration, "fps_or_duration")
    norm = minmax_normalize(a.astype(np.float32, copy=False))
    return _localize_normalized(norm, s, f, fd, params)


# --------------------------------------------------------------------------- batches


class FlatDetections(NamedTuple):
    """Detections of many videos as parallel 1-D arrays (evaluator-ready)."""

    video: np.ndarray  # int64, index into the batch
    label: np.ndarray  # int64, 0-based class index
    start: np.ndarray  # float64 seconds
    end: np.ndarray  # float64 seconds
    score: np.ndarray  # float64


def localize_batch(
    cas: np.ndarray,
    video_scores: np.ndarray,
    frame_nums: Sequence[int] | np.ndarray,
    fps_or_durations: Sequence[float] | np.ndarray,
    params: LocalizeParams,
) -> list[np.ndarray]:
    """:func:`localize_video` for each of N videos; ``cas`` ``[N, C, T]``, ``video_scores`` ``[N, C]``.

    Returns a list of N arrays ``[n_i, 4]`` (class, start, end, score).
    """
    if not isinstance(params, LocalizeParams):
        raise ValueError(f"params must be a LocalizeParams, got {type(params).__name__}")
    a = _as_float_array(cas, "cas")
    if a.ndim != 3 or min(a.shape) < 1:
        raise ValueError(f"cas must have shape [N, C, T] with all sizes >= 1, got shape {a.shape}")
    s = _as_float_array(video_scores, "video_scores")
    if s.shape != a.shape[:2]:
        raise ValueError(f"video_scores must have shape [N, C] = {a.shape[:2]}, got shape {s.shape}")
    fn = np.asarray(frame_nums)
    fd = np.asarray(fps_or_durations)
    if fn.shape != (a.shape[0],):
        raise ValueError(f"frame_nums must have shape [N] = ({a.shape[0]},), got shape {fn.shape}")
    if fd.shape != (a.shape[0],):
        raise ValueError(f"fps_or_durations must have shape [N] = ({a.shape[0]},), got shape {fd.shape}")
    norm = minmax_normalize(a.astype(np.float32, copy=False))
    out = []
    for i in range(a.shape[0]):
        f = _positive_int(fn[i], f"frame_nums[{i}]")
        d = _positive_float(fd[i], f"fps_or_durations[{i}]")
        out.append(_localize_normalized(norm[i], s[i], f, d, params))
    return out


def localize_batch_flat(
    cas: np.ndarray,
    video_scores: np.ndarray,
    frame_nums: Sequence[int] | np.ndarray,
    fps_or_durations: Sequence[float] | np.ndarray,
    params: LocalizeParams,
) -> FlatDetections:
    """:func:`localize_batch` flattened into parallel arrays (video, label, start, end, score)."""
    dets = localize_batch(cas, video_scores, frame_nums, fps_or_durations, params)
    video = np.repeat(np.arange(len(dets), dtype=np.int64), [d.shape[0] for d in dets])
    allr = np.concatenate(dets, axis=0) if dets else np.zeros((0, 4))
    return FlatDetections(
        video=video,
        label=allr[:, 0].astype(np.int64),
        start=allr[:, 1].copy(),
        end=allr[:, 2].copy(),
        score=allr[:, 3].copy(),
    )


# --------------------------------------------------------------------------- parity


def _rows_errors(
    ours: np.ndarray, ref: np.ndarray, id_cols: slice, time_cols: slice, score_col: int
) -> tuple[float, float, float]:
    """(count/order error 0|1, max time error, max score error); inf when counts differ."""
    if ours.shape != ref.shape:
        return 1.0, math.inf, math.inf
    if ours.shape[0] == 0:
        return 0.0, 0.0, 0.0
    order = 0.0 if np.array_equal(ours[:, id_cols], ref[:, id_cols]) else 1.0
    t_err = float(np.max(np.abs(ours[:, time_cols] - ref[:, time_cols])))
    s_err = float(np.max(np.abs(ours[:, score_col] - ref[:, score_col])))
    return order, t_err, s_err


def parity_check_localize(golden: Mapping[str, np.ndarray]) -> list[tuple[str, float, float]]:
    """Compare official-mode localisation and NMS with a golden file's ``post/*`` and ``nms/*``.

    Returns ``(check name, max error, tolerance)`` triples; a check passes when
    error <= tolerance. Count-and-order checks report 0 (same count, same class sequence /
    kept rows in the same order) or 1.
    """
    params = LocalizeParams.from_dict(json.loads(str(golden["post/params"])), mode="official")
    cas = np.asarray(golden["post/cas"])
    score = np.asarray(golden["post/score"])
    if cas.ndim == 3:
        cas, score = cas[0], score[0]
    det = localize_video(cas, score, golden["post/frame_num"], golden["post/fps_or_duration"], params)
    ref = np.asarray(golden["post/detections"], dtype=np.float64).reshape(-1, 4)
    order, t_err, s_err = _rows_errors(det, ref, slice(0, 1), slice(1, 3), 3)
    checks = [
        ("localize/count_order", order, 0.0),
        ("localize/times_s", t_err, 1e-6),
        ("localize/scores", s_err, 1e-5),
    ]
    kept = nms(golden["nms/in"], float(golden["nms/thresh"]), mode="official")
    ref_keep = np.asarray(golden["nms/keep"], dtype=np.float64).reshape(-1, 3)
    # Kept rows are copies of input rows: the same count with every row matching its golden
    # counterpart means the same rows were kept in the same order.
    same = kept.shape == ref_keep.shape and bool(np.allclose(kept, ref_keep, rtol=0.0, atol=1e-6))
    korder = 0.0 if same else 1.0
    _, kt, ks = _rows_errors(kept, ref_keep, slice(0, 0), slice(1, 3), 0)
    checks += [
        ("nms/count_order", korder, 0.0),
        ("nms/times_s", kt, 1e-6),
        ("nms/scores", ks, 1e-5),
    ]
    return checks
