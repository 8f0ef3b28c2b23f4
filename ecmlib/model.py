"""The ECM network: one trunk, one shared classifier, two classification pipelines.

Read top to bottom:

1. ``Trunk`` f: two temporal convolutions (k=3) with LeakyReLU and dropout.
2. ``Classifier`` W: a 1x1 convolution without bias, shared by every stream.
3. Pre-classification stream: CAS ``A = W f(x)``; ``s_pre`` = mean of the top-k CAS values.
4. Equivalent weight transition (EWT): ``a = sigmoid(Conv1x1(A))`` turns the CAS into the
   post-stream's aggregation weights.
5. Post-classification stream: the *raw* input features are summed with the weights ``a``
   over three interleaved groups of snippets (t mod 3), the three group vectors run through
   the same trunk as a length-3 sequence, and the shared classifier scores them. (The sums
   are taken after the trunk's first, linear, convolution taps; see ``Trunk``.)
6. Background stream (training only): for every (video, label class) pair the features are
   re-weighted by the background weight ``1 - a`` of that class and scored as in step 5;
   ``score_agg`` = softmax over [s_post, s_bg].

Parameter names equal the authors' checkpoint keys, so an official ``*_best.pth`` loads with
``strict=True``. Everything runs batched: there is no Python loop over videos or classes.
Shapes use the glossary: B videos, D feature width, T snippets, H hidden width, C classes,
G groups, P (video, label class) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

Streams = Literal["pre", "post", "both"]
Transition = Literal["learned", "fixed", "independent"]


@dataclass
class ModelConfig:
    """Architecture of ECMNet. Defaults are the paper's THUMOS14 configuration."""

    feat_dim: int = 2048          # D: RGB (1024) + flow (1024) I3D features
    hidden_dim: int = 2048        # H: trunk width (2048 in every paper config)
    num_classes: int = 20         # C
    num_snippets: int = 750       # T the features were resampled to (sets k)
    topk_ratio: float = 0.125     # r: k = int(num_snippets * r)
    groups: int = 3               # G: interleaved snippet groups of the post stream
    dropout: float = 0.5
    streams: str = "both"         # which streams are trained: pre | post | both
    transition: str = "learned"   # EWT variant: learned | fixed | independent

    def __post_init__(self) -> None:
        for name in ("feat_dim", "hidden_dim", "num_classes", "num_snippets", "groups"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.topk_ratio <= 1.0:
            raise ValueError(f"ModelConfig.topk_ratio must be in (0, 1], got {self.topk_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.streams not in ("pre", "post", "both"):
            raise ValueError(f"ModelConfig.streams must be pre, post or both, got {self.streams!r}")
        if self.transition not in ("learned", "fixed", "independent"):
            raise ValueError(
                f"ModelConfig.transition must be learned, fixed or independent, got {self.transition!r}")
        if self.topk < 1:
            raise ValueError(
                f"top-k is int(num_snippets * topk_ratio) = {self.topk}; it must be >= 1")

    @property
    def topk(self) -> int:
        """k of the top-k pooling: int(T_cfg * r), exactly as the authors compute it."""
        return int(self.num_snippets * self.topk_ratio)


class Trunk(nn.Module):
    """f: Conv1d(D->H, k3) -> LeakyReLU -> Conv1d(H->H, k3) -> LeakyReLU -> Dropout.

    ``conv_1`` is applied through its three taps: ``taps(x)`` projects every snippet with
    each kernel tap (one matmul, [N, 3, H, T]) and ``from_taps`` adds the shifted taps and
    the bias, which is exactly the k=3, padding=1 convolution. The split exists because
    conv_1 is linear: the post and background streams aggregate the *projected* snippets
    instead of the raw D-wide features, so their trunk passes skip conv_1 entirely (the
    same numbers up to float rounding, a large saving when D >> H).
    """

    def __init__(self, feat_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.conv_1 = nn.Conv1d(feat_dim, hidden_dim, kernel_size=3, padding=1)
        self.conv_2 = nn.Conv1d(hidden_dim, hidden_dim, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(dropout)

    def taps(self, x: torch.Tensor) -> torch.Tensor:
        """z[n, k] = W1[:, :, k] @ x[n]: [N, D, T] -> [N, 3, H, T]."""
        n, _, t = x.shape
        h, d, k = self.conv_1.weight.shape
        w = self.conv_1.weight.permute(2, 0, 1).reshape(k * h, d)   # [3H, D]
        return torch.matmul(w, x).view(n, k, h, t)

    def from_taps(self, z: torch.Tensor) -> torch.Tensor:
        """Finish the trunk from tap projections: [N, 3, H, L] -> [N, H, L]."""
        # conv_1 output at l = b + z0[l-1] + z1[l] + z2[l+1], zero outside the sequence.
        y = z[:, 1] + F.pad(z[:, 0, :, :-1], (1, 0)) + F.pad(z[:, 2, :, 1:], (0, 1))
        y = F.leaky_relu(y + self.conv_1.bias[:, None], 0.01)
        y = F.leaky_relu(self.conv_2(y), 0.01)
        return self.dropout(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, D, T] -> [N, H, T]
        return self.from_taps(self.taps(x))

    def short_from_taps(self, z: torch.Tensor) -> torch.Tensor:
        """The trunk on many short sequences, channels last: [M, L, 3, H] taps -> [M, L, H].

        The post and background streams run the trunk on B*C (and P*C) sequences of
        length G = 3. A convolution kernel is slow on such sequences, so both layers are
        written as one matmul over all positions plus shifted sums of the three taps.
        """
        y = _sum_taps_rows(z) + self.conv_1.bias
        y = F.leaky_relu(y, 0.01)
        h, hin, k = self.conv_2.weight.shape
        z2 = torch.matmul(y, self.conv_2.weight.permute(1, 2, 0).reshape(hin, k * h))
        y = _sum_taps_rows(z2.view(*y.shape[:2], k, h)) + self.conv_2.bias
        return self.dropout(F.leaky_relu(y, 0.01))


def _sum_taps_rows(z: torch.Tensor) -> torch.Tensor:
    """k=3, padding=1 convolution output from per-tap projections, channels last.

    z: [M, L, 3, H] with z[m, l, k] = W[:, :, k] @ input[m, l] -> [M, L, H] where
    out[l] = z[l-1, 0] + z[l, 1] + z[l+1, 2] (zero outside the sequence).
    """
    out = z[:, :, 1].clone()
    out[:, 1:] += z[:, :-1, 0]
    out[:, :-1] += z[:, 1:, 2]
    return out


class Classifier(nn.Module):
    """W: the classifier shared by the pre, post and background streams."""

    def __init__(self, hidden_dim: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(hidden_dim, num_classes, kernel_size=1, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h)  # [N, H, L] -> [N, C, L]


class Transition(nn.Module):
    """Equivalent weight transition: CAS [B, C, T] -> aggregation weights in (0, 1)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv_1 = nn.Conv1d(in_channels, num_classes, kernel_size=1, bias=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv_1(z))


def group_matrix(num_snippets: int, groups: int, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot [T, G] matrix with M[t, g] = 1 when t mod G == g (the interleaved groups)."""
    t = torch.arange(num_snippets, device=device)
    return F.one_hot(t % groups, groups).to(dtype)


class ECMNet(nn.Module):
    """Equivalent Classification Mapping network (see the module docstring)."""

    def __init__(self, cfg: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = cfg or ModelConfig()
        if overrides:
            cfg = ModelConfig(**{**cfg.__dict__, **overrides})
        self.cfg = cfg
        self.base_module = Trunk(cfg.feat_dim, cfg.hidden_dim, cfg.dropout)
        self.classifier_module = Classifier(cfg.hidden_dim, cfg.num_classes)
        if cfg.transition == "learned":
            self.attention_module = Transition(cfg.num_classes, cfg.num_classes)
        elif cfg.transition == "independent":
            # Decoupled baseline: an attention head on the trunk features, not on the CAS.
            self.attention_module = Transition(cfg.hidden_dim, cfg.num_classes)
        # "fixed": a = sigmoid(CAS), no parameters at all.

    # -- pieces -----------------------------------------------------------------------
    def cas(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trunk features [B, H, T] and class activation sequence [B, C, T]."""
        h = self.base_module(x)
        return h, self.classifier_module(h)

    def pre_scores(self, cas: torch.Tensor) -> torch.Tensor:
        """s_pre [B, C]: mean of the k largest CAS values per class."""
        k = min(self.cfg.topk, cas.shape[-1])
        return cas.topk(k, dim=-1).values.mean(dim=-1)

    def aggregation_weights(self, h: torch.Tensor, cas: torch.Tensor) -> torch.Tensor:
        """a [B, C, T] in (0, 1): the post stream's per-class snippet weights."""
        if self.cfg.transition == "learned":
            return self.attention_module(cas)
        if self.cfg.transition == "independent":
            return self.attention_module(h)
        return torch.sigmoid(cas)

    def aggregate(self, z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Group sums F[n, c, g] = sum_{t = g mod G} weights[n, c, t] z[n, :, t].

        z: [N, K, T] (the snippets' tap projections, K = 3H), weights: [N, C, T]
        -> [N, C, G, K]. Time is folded into (T/G, G) so each group is one batched matmul
        over its own snippets (no multiplications by the zeros of a group mask).
        """
        n, k, t = z.shape
        c, g = weights.shape[1], self.cfg.groups
        pad = (-t) % g                                            # zero snippets fill the last group
        if pad:
            z, weights = F.pad(z, (0, pad)), F.pad(weights, (0, pad))
        s = (t + pad) // g
        zg = z.view(n, k, s, g).permute(0, 3, 1, 2).reshape(n * g, k, s)       # [N*G, K, T/G]
        wg = weights.reshape(n, c, s, g).permute(0, 3, 2, 1).reshape(n * g, s, c)  # [N*G, T/G, C]
        return torch.bmm(zg, wg).view(n, g, k, c).permute(0, 3, 1, 2)          # [N, C, G, K]

    def score_groups(self, grouped: torch.Tensor) -> torch.Tensor:
        """Score aggregated taps [M, C, G, 3H] with class c's own classifier row -> [M, C]."""
        m, c, g, k = grouped.shape
        hid = self.cfg.hidden_dim
        h = self.base_module.short_from_taps(grouped.reshape(m * c, g, k // hid, hid))  # [M*C, G, H]
        w = self.classifier_module.conv.weight[:, :, 0]                        # [C, H]
        return torch.einsum("mcgh,ch->mc", h.view(m, c, g, hid), w) / g

    def post_scores(self, z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """s_post [B, C] from the snippets' tap projections z [B, 3, H, T] and a [B, C, T]."""
        return self.score_groups(self.aggregate(z.flatten(1, 2), weights))

    def post_and_background_scores(self, z: torch.Tensor, weights: torch.Tensor,
                                   labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_post [B, C], s_bg [B, C]) in one pass over every (video, label class) pair.

        Background stream, pair (b, c): x_bg = x[b] * (1 - a[b, c]) is aggregated with the
        action weights of all C classes and scored -> u [C]. s_bg[b] averages u over b's
        label classes, except that entry c of s_bg[b] is u^(c)[c] of that class's own pair.
        Aggregating x[b] * bg with a[b] equals aggregating x[b] with a[b] * bg, so each video
        contributes 1 + (its label count) weight sets to a single batched matmul: slot 0 holds
        the post stream's weights, slot l the background weights of its l-th label class.
        """
        b, c, t = weights.shape
        counts = labels.gt(0).sum(dim=1)                            # [B] label classes per video
        if int(counts.min()) == 0:
            raise ValueError("background stream: a video in the batch has an empty label")
        slots = int(counts.max())
        # label_idx[b, l]: the l-th label class of video b (padding repeats the last one).
        order = torch.argsort(labels.gt(0).to(torch.int8), dim=1, descending=True, stable=True)
        label_idx = order[:, :slots]                               # [B, L]
        valid = torch.arange(slots, device=labels.device) < counts[:, None]   # [B, L]
        bg = 1.0 - torch.gather(weights, 1, label_idx[:, :, None].expand(b, slots, t))  # [B, L, T]
        w_all = torch.cat([weights[:, None], weights[:, None] * bg[:, :, None]], dim=1)  # [B, 1+L, C, T]
        f = self.aggregate(z.flatten(1, 2), w_all.view(b, (1 + slots) * c, t))
        f = f.view(b, 1 + slots, c, *f.shape[2:])                  # [B, 1+L, C, G, K]
        s_post = self.score_groups(f[:, 0])                        # [B, C]
        u = self.score_groups(f[:, 1:][valid])                     # [P, C], pairs in (b, l) order
        pb = valid.nonzero(as_tuple=True)[0]
        pc = label_idx[valid]
        s_bg = torch.zeros(b, c, dtype=u.dtype, device=u.device).index_add(0, pb, u)
        s_bg = s_bg / counts[:, None].to(u.dtype)                  # mean over label classes
        own = u[torch.arange(pb.numel(), device=u.device), pc]    # u^(c)[c]
        return s_post, s_bg.index_put((pb, pc), own)

    # -- forward ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                background: bool = True) -> dict[str, torch.Tensor]:
        """Run the streams.

        x: [B, D, T] features. With ``labels`` ([B, C] multi-hot) the training outputs are
        returned: ``pre_scores``, ``post_scores`` and ``score_agg`` (when ``background``);
        without, the inference outputs ``score`` (softmax of s_pre) and ``cas``. Both
        include ``cas`` and ``aggregation_weights``.
        """
        if x.dim() != 3 or x.shape[1] != self.cfg.feat_dim:
            raise ValueError(f"features must be [B, {self.cfg.feat_dim}, T], got {tuple(x.shape)}")
        z = self.base_module.taps(x)                              # [B, 3, H, T]
        h = self.base_module.from_taps(z)                         # [B, H, T]
        cas = self.classifier_module(h)                           # [B, C, T]
        out: dict[str, torch.Tensor] = {"cas": cas}
        s_pre = self.pre_scores(cas)                              # [B, C]
        if labels is None:
            out["score"] = torch.softmax(s_pre, dim=1)
            return out
        out["pre_scores"] = s_pre
        if self.cfg.streams == "pre":
            return out
        a = self.aggregation_weights(h, cas)                      # [B, C, T]
        out["aggregation_weights"] = a
        if background:
            out["post_scores"], s_bg = self.post_and_background_scores(z, a, labels)
            out["background_scores"] = s_bg
            out["score_agg"] = torch.softmax(torch.cat([out["post_scores"], s_bg], dim=1), dim=1)
        else:
            out["post_scores"] = self.post_scores(z, a)
        return out

    @torch.no_grad()
    def infer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference outputs (softmax(s_pre) [B, C], raw CAS [B, C, T]) with dropout off."""
        was_training = self.training
        self.eval()
        try:
            out = self.forward(x)
        finally:
            self.train(was_training)
        return out["score"], out["cas"]


# -- checkpoints ---------------------------------------------------------------------------

def describe_state_dict(state: dict[str, torch.Tensor]) -> str:
    """One line per tensor: name and shape (for error messages)."""
    return ", ".join(f"{k} {tuple(v.shape)}" for k, v in state.items())


def infer_config(state: dict[str, torch.Tensor], **defaults: Any) -> ModelConfig:
    """Read feat_dim, hidden_dim and num_classes off an official state dict."""
    try:
        hidden, feat, _ = state["base_module.conv_1.weight"].shape
        num_classes = state["classifier_module.conv.weight"].shape[0]
    except KeyError as err:
        raise ValueError(f"state dict lacks {err}: not an ECM checkpoint") from None
    return ModelConfig(**{**defaults, "feat_dim": int(feat), "hidden_dim": int(hidden),
                          "num_classes": int(num_classes)})


def check_compatible(state: dict[str, torch.Tensor], cfg: ModelConfig, source: str) -> None:
    """Raise a clear error when a checkpoint was trained for another width or class count."""
    found = infer_config(state, num_snippets=cfg.num_snippets, topk_ratio=cfg.topk_ratio)
    problems = [f"{name} is {getattr(found, name)} in the checkpoint but {getattr(cfg, name)} "
                f"in the config" for name in ("feat_dim", "hidden_dim", "num_classes")
                if getattr(found, name) != getattr(cfg, name)]
    if problems:
        raise ValueError(f"{source}: checkpoint does not fit the model: " + "; ".join(problems))


def load_checkpoint(path: str | Path, cfg: ModelConfig | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[ECMNet, dict[str, Any]]:
    """Load an official-format checkpoint ``{'epoch', 'state_dict', 'optimizer'}``.

    With ``cfg`` the checkpoint must fit it (else a ValueError says which value differs);
    without, the widths are read off the weights. Returns (model in eval mode, raw dict).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # corrupt or not a torch file
        raise ValueError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not an official ECM checkpoint (expected a dict with "
                         f"'epoch', 'state_dict', 'optimizer'; found {keys})")
    state = ckpt["state_dict"]
    # Checkpoints saved from nn.DataParallel prefix every key with 'module.'.
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if cfg is None:
        cfg = infer_config(state)
    else:
        check_compatible(state, cfg, str(path))
    model = ECMNet(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: state dict does not match ECMNet({cfg.transition}): {err}") from None
    model.eval()
    return model, ckpt
