"""ECM's four losses as pure functions, and their weighted total.

- ``loss_pre``  / ``loss_post``: cross-entropy between softmax(scores) and the L1-normalised
  label (multi-label videos spread their mass over their classes).
- ``loss_eq``: the equivalent classification loss, MSE between the raw s_pre and s_post.
- ``loss_agg``: aggregation consistency; per video, BCE of score_agg at the label classes
  (target 1, the action half) and at the same classes shifted by C (target 0, background).

The total is ``w_pre L_pre + w_post L_post + w_eq L_eq + w_agg L_agg``; a stream that is not
trained contributes nothing (see ``total_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSS_NAMES = ("loss_pre", "loss_post", "loss_eq", "loss_agg")


@dataclass
class LossConfig:
    """Loss weights (lambda_1..4). Defaults: THUMOS14 (ANet uses w_agg = 1)."""

    w_pre: float = 1.0
    w_post: float = 1.0
    w_eq: float = 0.05
    w_agg: float = 5.0
    background: bool = True   # run the background stream (needed for L_agg)

    def __post_init__(self) -> None:
        for name in ("w_pre", "w_post", "w_eq", "w_agg"):
            if getattr(self, name) < 0:
                raise ValueError(f"LossConfig.{name} must be >= 0, got {getattr(self, name)}")


def normalized_labels(labels: torch.Tensor) -> torch.Tensor:
    """y / (sum y + 1e-10): the target distribution of the classification losses."""
    return labels / (labels.sum(dim=1, keepdim=True) + 1e-10)


def classification_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of softmax(scores) [B, C] against the normalised labels, batch mean."""
    return -(normalized_labels(labels) * F.log_softmax(scores, dim=1)).sum(dim=1).mean()


def loss_pre(pre_scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_pre: classification loss of the pre-classification stream."""
    return classification_loss(pre_scores, labels)


def loss_post(post_scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_post: classification loss of the post-classification stream."""
    return classification_loss(post_scores, labels)


def loss_eq(pre_scores: torch.Tensor, post_scores: torch.Tensor) -> torch.Tensor:
    """L_eq: MSE between the two streams' raw scores, mean over B x C."""
    return F.mse_loss(pre_scores, post_scores)


def loss_agg(score_agg: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_agg: per video, mean BCE over [label classes -> 1, label classes + C -> 0]; mean over videos.

    score_agg: [B, 2C] softmax over (post scores, background scores); labels: [B, C].
    Videos with no label class contribute nothing (there is nothing to score).
    """
    mask = labels > 0                                             # [B, C]
    p_act, p_bg = score_agg.chunk(2, dim=1)                       # [B, C] each
    # torch's BCE (as the authors use) clamps log at -100 and keeps a finite gradient when
    # a softmax entry underflows to exactly 0 or 1; a hand-written -log(p) would give NaN.
    bce = (F.binary_cross_entropy(p_act, torch.ones_like(p_act), reduction="none")
           + F.binary_cross_entropy(p_bg, torch.zeros_like(p_bg), reduction="none"))
    per_video = (bce * mask).sum(dim=1) / (2 * mask.sum(dim=1)).clamp(min=1)
    return per_video[mask.any(dim=1)].mean()


def compute_losses(out: dict[str, torch.Tensor], labels: torch.Tensor,
                   cfg: LossConfig, streams: str = "both") -> dict[str, torch.Tensor]:
    """Each loss term by name plus ``loss_total``, for the streams being trained.

    ``streams`` = 'pre' trains L_pre alone; 'post' trains L_post and L_agg; 'both' adds
    L_pre and L_eq (ECM). Terms that are not trained are reported as 0 so a history always
    has every column.
    """
    zero = out["cas"].new_zeros(())
    terms = dict.fromkeys(LOSS_NAMES, zero)
    if streams in ("pre", "both"):
        terms["loss_pre"] = loss_pre(out["pre_scores"], labels)
    if streams in ("post", "both"):
        terms["loss_post"] = loss_post(out["post_scores"], labels)
        if "score_agg" in out:
            terms["loss_agg"] = loss_agg(out["score_agg"], labels)
    if streams == "both":
        terms["loss_eq"] = loss_eq(out["pre_scores"], out["post_scores"])
    terms["loss_total"] = (cfg.w_pre * terms["loss_pre"] + cfg.w_post * terms["loss_post"]
                           + cfg.w_eq * terms["loss_eq"] + cfg.w_agg * terms["loss_agg"])
    return terms


def total_loss(out: dict[str, torch.Tensor], labels: torch.Tensor, cfg: LossConfig,
               streams: str = "both") -> torch.Tensor:
    """The weighted total of ``compute_losses``."""
    return compute_losses(out, labels, cfg, streams)["loss_total"]
