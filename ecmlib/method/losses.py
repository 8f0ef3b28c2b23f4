"""ECM's four losses as pure functions, and their weighted total.

- ``loss_pre``  / ``loss_post``: cross-entropy between softmax(scores) and the L1-normalised
  label (multi-label videos spread their mass over their classes).
- ``loss_eq``: the equivalent classification loss, MSE between the raw s_pre and s_post.
- ``loss_agg``: aggregation consistency; per video, BCE of score_agg at the label classes
  (target 1, the action half) and at the same classes shifted by C (target 0, background).

The total is ``w_pre L_pre + w_post L_post + w_eq L_eq + w_agg L_agg``; a stream that is not
trained contributes nothing (see ``total_loss``).

Variants add terms without touching the training loop: a function ``term(out, labels)`` of
the model's training outputs, registered in :data:`EXTRA_TERMS` (or with
:func:`register_term` for a run inside this process), switched on with the config key
``loss.terms`` (``"name=weight[,name=weight]"``). Each appears in the history as
``loss_<name>`` and enters the total with its weight.
"""

from __future__ import annotations

from collections.abc import Callable
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
    terms: str = ""           # extra terms of a variant: "name=weight[,name=weight]"

    def __post_init__(self) -> None:
        for name in ("w_pre", "w_post", "w_eq", "w_agg"):
            if getattr(self, name) < 0:
                raise ValueError(f"LossConfig.{name} must be >= 0, got {getattr(self, name)}")
        # Bad syntax or weights fail when the config is built; one spelling per value
        # (1e-4 and 0.0001 are the same run). Names are checked where terms are computed,
        # so that a saved config naming a term of another process still reads.
        self.terms = ",".join(f"{n}={w!r}" for n, w in parse_terms(self.terms).items())

    def extra_terms(self) -> dict[str, float]:
        """``terms`` read as {name: weight >= 0}."""
        return parse_terms(self.terms)

    def check_registered(self) -> None:
        """A ValueError naming any term of ``terms`` that this process does not know."""
        unknown = [n for n in self.extra_terms() if n not in EXTRA_TERMS]
        if unknown:
            raise ValueError(f"loss.terms: unknown term(s) {', '.join(map(repr, unknown))}; "
                             f"registered: {', '.join(sorted(EXTRA_TERMS)) or 'none'} (a term "
                             f"added with register_term exists only in its own process)")


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


# -- variants: extra loss terms ------------------------------------------------------------

def weight_sparsity(out: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """L1 norm over time of the aggregation weights of each video's label classes, mean over
    those (video, class) pairs.

    The sparsity loss of STPN (Nguyen et al., "Weakly Supervised Action Localization by
    Sparse Temporal Pooling Network", CVPR 2018), which adds beta * ||attention||_1 to the
    classification loss (beta = 1e-4) so that few snippets are attended. STPN's attention
    is one weight per snippet; ECM's weights are per class, and only a label class's
    weights select an action the video holds, so the norm is taken on those.
    """
    if "aggregation_weights" not in out:
        raise ValueError("loss term weight_sparsity needs the post stream's aggregation "
                         "weights; it cannot train with model.streams=pre")
    mask = (labels > 0).to(out["aggregation_weights"].dtype)         # [B, C]
    l1 = out["aggregation_weights"].abs().sum(dim=2)                 # [B, C]
    return (l1 * mask).sum() / mask.sum().clamp(min=1)


#: Extra loss terms by name: fn(training outputs, labels [B, C]) -> scalar.
EXTRA_TERMS: dict[str, Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]] = {
    "weight_sparsity": weight_sparsity,
}


#: Term names a variant may not take: their history columns are ECM's own.
RESERVED_NAMES = ("pre", "post", "eq", "agg", "total")


def _check_name(name: str) -> None:
    if not name.isidentifier():
        raise ValueError(f"loss term name {name!r} must be an identifier")
    if name in RESERVED_NAMES:
        raise ValueError(f"loss term name {name!r} is taken: loss_{name} is ECM's own column")


def register_term(name: str, fn: Callable[[dict[str, torch.Tensor], torch.Tensor],
                                          torch.Tensor]) -> None:
    """Add a loss term for runs in this process (a record grid's subprocesses see only the
    terms in :data:`EXTRA_TERMS`)."""
    _check_name(name)
    EXTRA_TERMS[name] = fn


def parse_terms(text: str) -> dict[str, float]:
    """``"name=weight[,name=weight]"`` -> {name: weight}, each name once, weights >= 0."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"loss.terms: {part!r} must look like name=weight")
        try:
            _check_name(name)
        except ValueError as err:
            raise ValueError(f"loss.terms: {err}") from None
        if name in out:
            raise ValueError(f"loss.terms: {name} is given twice")
        try:
            w = float(weight)
        except ValueError:
            raise ValueError(f"loss.terms: weight {weight!r} of {name} is not a number") from None
        if not (w >= 0 and w != float("inf")):
            raise ValueError(f"loss.terms: weight of {name} must be finite and >= 0, got {w}")
        out[name] = w
    return out


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
    total = (cfg.w_pre * terms["loss_pre"] + cfg.w_post * terms["loss_post"]
             + cfg.w_eq * terms["loss_eq"] + cfg.w_agg * terms["loss_agg"])
    extra = cfg.extra_terms() if cfg.terms else {}    # ECM alone: nothing to parse per batch
    if extra:
        cfg.check_registered()
    for name, weight in extra.items():
        terms[f"loss_{name}"] = EXTRA_TERMS[name](out, labels)
        total = total + weight * terms[f"loss_{name}"]
    terms["loss_total"] = total
    return terms


def total_loss(out: dict[str, torch.Tensor], labels: torch.Tensor, cfg: LossConfig,
               streams: str = "both") -> torch.Tensor:
    """The weighted total of ``compute_losses``."""
    return compute_losses(out, labels, cfg, streams)["loss_total"]
