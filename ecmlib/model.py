"""The ECM network: one trunk, one shared classifier, two classification pipelines.

Read top to bottom:

1. ``Trunk`` f: two temporal convolutions (k=3) with LeakyReLU and dropout.
2. ``Classifier`` W: a 1x1 convolution without bias, shared by every stream.
3. Pre-classification stream: CAS ``A = W f(x)``; ``s_pre`` = mean of the top-k CAS values.
4. Equivalent weight transition (EWT): ``a = sigmoid(Conv1x1(A))`` turns the CAS into the
   post-stream's aggregation weights.
5. Post-classification stream: the *raw* input features are summed with the weights ``a``
   over three interleaved groups of snippets (t mod 3), the three group vectors run through
   the same trunk as a length-3 sequence, and the shared classifier scores them.
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

    ``forward`` runs the convolutions on long [N, D, T] sequences. ``forward_rows`` runs
    the same layers on many *short*, channels-last sequences (the post and background
    streams score B*C + P*C sequences of length G = 3): each convolution becomes one large
    matmul with its three kernel taps side by side plus a shifted sum of the taps, which
    is far faster than a convolution kernel on such short inputs and gives the same
    numbers up to float rounding.
    """

    def __init__(self, feat_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.conv_1 = nn.Conv1d(feat_dim, hidden_dim, kernel_size=3, padding=1)
        self.conv_2 = nn.Conv1d(hidden_dim, hidden_dim, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, D, T] -> [N, H, T]
        x = F.leaky_relu(self.conv_1(x), 0.01)
        x = F.leaky_relu(self.conv_2(x), 0.01)
        return self.dropout(x)

    def forward_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The trunk on channels-last sequences along dim 1: [N, L, *, D] -> [N, L, *, H]."""
        y = F.leaky_relu(_conv3_rows(rows, self.conv_1), 0.01)
        y = F.leaky_relu(_conv3_rows(y, self.conv_2), 0.01)
        return self.dropout(y)


def _conv3_rows(rows: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """A k=3, padding=1 Conv1d applied along dim 1 of channels-last rows [N, L, *, C_in]."""
    c_out, c_in, k = conv.weight.shape
    taps = torch.matmul(rows, conv.weight.permute(1, 2, 0).reshape(c_in, k * c_out))
    return _sum_taps(taps.view(*rows.shape[:-1], k, c_out)) + conv.bias


class _SumTaps(torch.autograd.Function):
    """out[l] = z[l-1, tap 0] + z[l, tap 1] + z[l+1, tap 2] along dim 1 (zero outside).

    z: [N, L, *, 3, H] -> [N, L, *, H]. Written as an autograd Function because slicing
    the taps in autograd allocates and zero-fills a full-size gradient per slice; here the
    backward writes each tap's gradient once.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = z[..., 1, :].clone()
        out[:, 1:] += z[:, :-1, ..., 0, :]
        out[:, :-1] += z[:, 1:, ..., 2, :]
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        gz = grad.new_empty(*grad.shape[:-1], 3, grad.shape[-1])
        gz[..., 1, :] = grad
        gz[:, :-1, ..., 0, :] = grad[:, 1:]
        gz[:, -1:, ..., 0, :] = 0
        gz[:, 1:, ..., 2, :] = grad[:, :-1]
        gz[:, :1, ..., 2, :] = 0
        return gz


def _sum_taps(z: torch.Tensor) -> torch.Tensor:
    """k=3, padding=1 convolution from per-tap projections z [N, L, *, 3, H] -> [N, L, *, H]."""
    return _SumTaps.apply(z)


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

    def aggregate(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Group sums F[n, g, c] = sum_{t = g mod G} weights[n, c, t] x[n, :, t].

        x: [N, D, T] raw features, weights: [N, C', T] -> [N, G, C', D] (channels last,
        the groups as a length-G sequence along dim 1). Time is folded into (T/G, G) so
        each group is one batched matmul over its own snippets.
        """
        n, d, t = x.shape
        c, g = weights.shape[1], self.cfg.groups
        pad = (-t) % g                                            # zero snippets fill the last group
        if pad:
            x, weights = F.pad(x, (0, pad)), F.pad(weights, (0, pad))
        s = (t + pad) // g
        xg = x.reshape(n, d, s, g).permute(0, 3, 2, 1)            # [N, G, T/G, D]
        wg = weights.reshape(n, c, s, g).permute(0, 3, 1, 2)      # [N, G, C', T/G]
        return torch.matmul(wg, xg)                               # [N, G, C', D]

    def score_groups(self, grouped: torch.Tensor) -> torch.Tensor:
        """Score aggregated features [N, G, *, C, D] with class c's own classifier row -> [N, *, C]."""
        h = self.base_module.forward_rows(grouped)                # [N, G, *, C, H]
        w = self.classifier_module.conv.weight[:, :, 0]           # [C, H]
        return (h * w).sum(-1).mean(1)                            # mean over the G groups

    def post_scores(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """s_post [B, C] from the raw features x [B, D, T] and weights a [B, C, T]."""
        return self.score_groups(self.aggregate(x, weights))

    def post_and_background_scores(self, x: torch.Tensor, weights: torch.Tensor,
                                   labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_post [B, C], s_bg [B, C]) in one pass over every (video, label class) pair.

        Background stream, pair (b, c): x_bg = x[b] * (1 - a[b, c]) is aggregated with the
        action weights of all C classes and scored -> u [C]. s_bg[b] averages u over b's
        label classes, except that entry c of s_bg[b] is u^(c)[c] of that class's own pair.
        Aggregating x[b] * bg with a[b] equals aggregating x[b] with a[b] * bg, so every
        video contributes 1 + L weight sets to one batched matmul (L = the batch's largest
        label count): slot 0 holds the post stream's weights, slot l the background weights
        of the video's l-th label class; only real pairs are then scored.
        """
        b, c, t = weights.shape
        is_label = labels > 0
        counts = is_label.sum(dim=1)                              # [B] label classes per video
        if int(counts.min()) == 0:
            raise ValueError("background stream: a video in the batch has an empty label")
        slots = int(counts.max())
        # label_idx[b, l]: the l-th label class of video b (label classes sort first).
        order = torch.argsort(is_label.to(torch.int8), dim=1, descending=True, stable=True)
        label_idx = order[:, :slots]                              # [B, L]
        valid = torch.arange(slots, device=labels.device) < counts[:, None]   # [B, L]
        bg = 1.0 - torch.gather(weights, 1, label_idx[:, :, None].expand(b, slots, t))  # [B, L, T]
        w_all = torch.cat([weights[:, None], weights[:, None] * bg[:, :, None]], dim=1)  # [B, 1+L, C, T]
        f = self.aggregate(x, w_all.view(b, (1 + slots) * c, t))
        f = f.view(b, f.shape[1], 1 + slots, c, -1)               # [B, G, 1+L, C, D]
        pb, pl = valid.nonzero(as_tuple=True)                     # the P real pairs
        rows = torch.cat([f[:, :, 0], f[pb, :, pl + 1]])          # [B + P, G, C, D]
        scores = self.score_groups(rows)                          # [B + P, C]
        s_post, u = scores[:b], scores[b:]                        # u: [P, C]
        pc = label_idx[pb, pl]
        s_bg = torch.zeros_like(s_post).index_add(0, pb, u)
        s_bg = s_bg / counts[:, None].to(u.dtype)                 # mean over label classes
        own = u[torch.arange(pb.numel(), device=u.device), pc]   # u^(c)[c]
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
        h, cas = self.cas(x)                                      # [B, H, T], [B, C, T]
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
            out["post_scores"], s_bg = self.post_and_background_scores(x, a, labels)
            out["background_scores"] = s_bg
            out["score_agg"] = torch.softmax(torch.cat([out["post_scores"], s_bg], dim=1), dim=1)
        else:
            out["post_scores"] = self.post_scores(x, a)
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
