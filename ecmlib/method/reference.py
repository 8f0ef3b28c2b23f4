"""ECM as the method page reads, one video and one class at a time.

The library's model (``ecmlib.method.model``) and localisation (``ecmlib.method.localize``)
are batched and vectorised for speed. This module computes the same things the plain way,
with Python loops over videos, classes, groups and thresholds, so that each step can be read
against the spec and looked at in a notebook. The test suite checks the fast paths against
it (``tests/test_reference.py``); notebook 02 walks through it on a live batch.

Slow by design: use it on a handful of videos.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .localize import LocalizeParams, minmax_normalize, resize_linear
from .model import ECMNet

# -- the network ------------------------------------------------------------------------------


def group_sums(x: torch.Tensor, weights: torch.Tensor, groups: int = 3) -> torch.Tensor:
    """F[:, g] = sum over snippets t = g mod G of weights[t] * x[:, t].

    x: one video's features [D, T]; weights: one class's aggregation weights [T].
    Returns [D, G]: the G group vectors, in group order (a length-G sequence).
    """
    return torch.stack([(weights[g::groups] * x[:, g::groups]).sum(-1) for g in range(groups)], 1)


def score_groups(model: ECMNet, grouped: torch.Tensor, c: int) -> torch.Tensor:
    """Class c's score of one aggregated video: the trunk on the G group vectors as a
    length-G sequence, then W_c, then the mean over the groups. grouped: [D, G] -> scalar."""
    h = model.base_module(grouped[None])[0]                    # [H, G]
    return (model.classifier_module.conv.weight[c, :, 0] @ h).mean()


def post_scores(model: ECMNet, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """s_post [B, C]: each video's features aggregated with each class's weights, scored."""
    b, c = a.shape[:2]
    return torch.stack([torch.stack([score_groups(model, group_sums(x[i], a[i, k],
                                                                    model.cfg.groups), k)
                                     for k in range(c)]) for i in range(b)])


def background_scores(model: ECMNet, x: torch.Tensor, a: torch.Tensor,
                      labels: torch.Tensor) -> torch.Tensor:
    """s_bg [B, C]. For video b and each label class c: the features scaled by the
    background weight 1 - a[b, c], aggregated with every class's action weights and scored
    -> u^(c) [C]. s_bg[b] is the mean of u^(c) over the label classes, except that entry c
    is u^(c)[c]."""
    out = torch.zeros(a.shape[:2], dtype=a.dtype)
    for b in range(a.shape[0]):
        classes = labels[b].nonzero().flatten().tolist()
        us = [post_scores(model, (x[b] * (1 - a[b, c]))[None], a[b:b + 1])[0] for c in classes]
        row = torch.stack(us).mean(0)
        for c, u in zip(classes, us):
            row[c] = u[c]
        out[b] = row
    return out


def transition(model: ECMNet, h: torch.Tensor, cas: torch.Tensor) -> torch.Tensor:
    """The aggregation weights a [B, C, T]: sigmoid of a per-snippet linear map of the CAS
    (learned), of the trunk features (independent), or of the CAS itself (fixed)."""
    if model.cfg.transition == "fixed":
        return torch.sigmoid(cas)
    conv = model.attention_module.conv_1                       # a 1x1 convolution
    src = cas if model.cfg.transition == "learned" else h
    return torch.sigmoid(torch.einsum("ki,bit->bkt", conv.weight[:, :, 0], src)
                         + conv.bias[None, :, None])


def forward(model: ECMNet, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every training output of ``ECMNet.forward(x, labels)``, computed with loops.

    Call it with the model in eval mode (dropout off), as the batched model must be for the
    two to agree. Keys: cas, pre_scores, aggregation_weights, post_scores,
    background_scores, score_agg.
    """
    h = model.base_module(x)                                   # [B, H, T]
    cas = model.classifier_module(h)                           # [B, C, T]
    k = min(model.cfg.topk, cas.shape[-1])
    s_pre = cas.topk(k, dim=-1).values.mean(-1)                # mean of the k largest
    a = transition(model, h, cas)                              # [B, C, T] in (0, 1)
    s_post = post_scores(model, x, a)
    s_bg = background_scores(model, x, a, labels)
    return {"cas": cas, "pre_scores": s_pre, "aggregation_weights": a, "post_scores": s_post,
            "background_scores": s_bg,
            "score_agg": torch.softmax(torch.cat([s_post, s_bg], dim=1), dim=1)}


# -- localisation -----------------------------------------------------------------------------

@dataclass
class Proposal:
    """One run of one class at one threshold, before NMS."""

    cls: int
    threshold: float
    p0: int                 # first frame of the run
    p1: int                 # last frame of the run
    inner: float            # mean of the curve on the run
    outer: float            # mean of the zeroed curve around it
    score: float            # inner - outer + gamma * video score
    start: float            # seconds
    end: float


@dataclass
class LocalizationSteps:
    """Every intermediate of one video's localisation (see :func:`localize_steps`)."""

    normalized: np.ndarray                  # [C, T] min-max normalised CAS
    kept: list[int]                         # classes whose video score passes the threshold
    curves: dict[int, np.ndarray]           # class -> normalised CAS resized to frame_num
    proposals: dict[int, list[Proposal]] = field(default_factory=dict)  # before NMS
    detections: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # after NMS


def _runs(positions: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of consecutive integers: [2, 3, 4, 9] -> [(2, 4), (9, 9)]."""
    breaks = np.flatnonzero(np.diff(positions) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(positions) - 1]])
    return [(int(positions[s]), int(positions[e])) for s, e in zip(starts, ends)]


def _proposals(curve: np.ndarray, c: int, video_score: float, frame_num: int,
               fps_or_duration: float, params: LocalizeParams) -> list[Proposal]:
    """All runs of one class's curve over the thresholds, scored by outer-inner contrast."""
    out = []
    lam = params.outer_lambda
    for theta in params.thresholds:
        zeroed = np.where(curve >= theta, curve, 0).astype(np.float32)   # float64 compare
        positions = np.flatnonzero(zeroed > 0)
        # The authors test `positions.any()`: no position, or position 0 alone, is skipped.
        if len(positions) == 0 or (params.mode == "official" and not positions.any()):
            continue
        for p0, p1 in _runs(positions):
            n = p1 - p0 + 1
            inner = float(np.mean(zeroed[p0:p1 + 1], dtype=np.float64))
            left = zeroed[max(0, int(p0 - lam * n)):p0]
            right = zeroed[p1 + 1:min(frame_num, int(p1 + lam * n))]
            around = np.concatenate([left, right])
            outer = float(np.mean(around, dtype=np.float64)) if len(around) else 0.0
            score = inner - outer + params.conf_gamma * float(video_score)
            if params.mode == "official":
                score = float(np.float32(score))            # the authors' scores are float32
            if params.time_unit == "fps":
                start, end = p0 / fps_or_duration, (p1 + 1) / fps_or_duration
            else:
                start = p0 / frame_num * fps_or_duration
                end = (p1 + 1) / frame_num * fps_or_duration
            out.append(Proposal(c, float(theta), p0, p1, inner, outer, score, start, end))
    return out


def _overlap(a: Proposal, b: Proposal, official: bool) -> float:
    """tIoU of two proposals in seconds; the authors' code adds 1 to every length."""
    plus = 1.0 if official else 0.0
    inter = max(0.0, min(a.end, b.end) - max(a.start, b.start) + plus)
    union = (a.end - a.start + plus) + (b.end - b.start + plus) - inter
    return inter / union if union > 0 else 0.0


def _nms(props: list[Proposal], thresh: float, official: bool) -> list[Proposal]:
    """Greedy NMS: highest score first, drop a proposal overlapping a kept one by
    ``thresh`` or more. Ties: the authors' ``argsort()[::-1]`` (official), else input order."""
    scores = np.array([p.score for p in props])
    order = np.argsort(scores)[::-1] if official else np.argsort(-scores, kind="stable")
    kept: list[Proposal] = []
    for i in order:
        if all(_overlap(props[i], k, official) < thresh for k in kept):
            kept.append(props[i])
    return kept


def localize_steps(cas: np.ndarray, video_score: np.ndarray, frame_num: int,
                   fps_or_duration: float, params: LocalizeParams) -> LocalizationSteps:
    """One video's localisation, step by step: normalise, keep classes, resize, threshold
    into runs, score each run, NMS per class. ``detections`` equals
    :func:`ecmlib.method.localize.localize_video` (rows: class, start s, end s, score)."""
    video_score = np.asarray(video_score)
    normalized = minmax_normalize(np.asarray(cas, dtype=np.float32))
    tau = np.asarray(params.cls_score_th).astype(video_score.dtype)
    kept = [int(c) for c in np.flatnonzero(video_score >= tau)]
    steps = LocalizationSteps(normalized, kept,
                              {c: resize_linear(normalized[c], frame_num) for c in kept})
    rows = []
    for c in kept:
        props = _proposals(steps.curves[c], c, video_score[c], frame_num, fps_or_duration, params)
        steps.proposals[c] = props
        if not props:
            continue
        for p in _nms(props, params.nms_threshold, params.mode == "official"):
            rows.append([c, p.start, p.end, p.score])
    steps.detections = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return steps
