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

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Streams = Literal["pre", "post", "both"]
TransitionKind = Literal["learned", "fixed", "independent"]


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
    # How the post/background streams reach conv_1: auto (prefer_taps' rule, what the
    # record used) | features | taps | fastest (measured at start, see ecmlib.training.speed)
    aggregation: str = "auto"
    # Dropout's mask: torch (the mask torch's dropout draws, what the record used) | bits
    # (cheap random bits on the CPU: fast mode) | auto (torch; fast mode resolves it to bits)
    dropout_mask: str = "auto"

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
        if self.aggregation not in ("auto", "features", "taps", "fastest"):
            raise ValueError(f"ModelConfig: aggregation must be auto, features, taps or "
                             f"fastest, got {self.aggregation!r}")
        if self.dropout_mask not in ("auto", "torch", "bits"):
            raise ValueError(f"ModelConfig: dropout_mask must be auto, torch or bits, "
                             f"got {self.dropout_mask!r}")
        if self.transition not in ("learned", "fixed", "independent"):
            raise ValueError(
                f"ModelConfig.transition must be learned, fixed or independent, got {self.transition!r}")
        if self.topk < 1:
            raise ValueError(
                f"top-k is int(num_snippets * topk_ratio) = {self.topk}; it must be >= 1")

    @property
    def drawn_mask(self) -> str:
        """The dropout mask a model of this config draws on the CPU: 'bits' or 'torch'
        ('auto' is torch's, as every run drew before the option existed)."""
        return "bits" if self.dropout_mask == "bits" else "torch"

    @property
    def topk(self) -> int:
        """k of the top-k pooling: int(T_cfg * r), exactly as the authors compute it."""
        return int(self.num_snippets * self.topk_ratio)


class Dropout(nn.Dropout):
    """``nn.Dropout`` drawing its mask faster on the CPU, in one of two ways (``mask``).

    ``"torch"``: the same mask, output, gradient and random stream as ``nn.Dropout``.
    torch's CPU dropout draws its mask with ``bernoulli_(1 - p)``, one double-precision
    uniform per element compared with ``1 - p``; ``torch.rand(..., dtype=float64)`` draws
    the same doubles from the same generator at about half the cost, so the run is
    bit-identical (``tests/test_model.py`` holds it to ``F.dropout``).

    ``"bits"`` (fast mode): another draw of the same distribution, cheaper still: at p = 0.5
    each random byte gives eight independent fair keep bits (``random_keep``). The numbers
    then differ from a ``"torch"`` run as one random seed differs from another.

    A time-major x (:func:`is_channels_last`) gets the same mask as its contiguous copy,
    laid out as x. Elsewhere (CUDA) torch's own dropout runs, which is fast there.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, mask: str = "torch") -> None:
        super().__init__(p, inplace)
        if mask not in ("torch", "bits"):
            raise ValueError(f"Dropout: mask must be torch or bits, got {mask!r}")
        self.mask = mask

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask={self.mask}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        time_major = is_channels_last(x)
        if self.mask == "bits":
            keep = random_keep(x.shape, 1 - self.p)
        elif x.is_contiguous() or time_major:
            keep = torch.rand(x.shape, dtype=torch.float64) < 1 - self.p
        else:                                     # torch's own, where the masks could differ
            return super().forward(x)
        if time_major:              # the same mask laid out as x: mixed layouts multiply slowly
            keep = channels_last(keep)
        return x * keep.to(x.dtype).div_(1 - self.p)


def random_keep(shape: torch.Size | tuple[int, ...], q: float) -> torch.Tensor:
    """A boolean CPU mask of ``shape``, each entry True with probability ``q``, independently.

    At q = 0.5 one random byte from torch's generator (uniform on 0..255, so its 8 bits are
    independent fair coins) gives 8 entries, unpacked by ``numpy.unpackbits``; at any other
    q one float32 uniform per entry is compared with q.
    """
    if q != 0.5:
        return torch.rand(shape) < q
    n = math.prod(shape)
    draws = torch.randint(0, 256, ((n + 7) // 8,), dtype=torch.uint8)
    bits = np.unpackbits(draws.numpy(), count=n)              # uint8 0/1, one per entry
    return torch.from_numpy(bits).view(torch.bool).view(shape)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether x [N, C, T] is stored time-major ([N, T, C] in memory: a channels-last view)."""
    return x.dim() == 3 and not x.is_contiguous() and x.transpose(1, 2).is_contiguous()


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """x [N, C, T] with the same values stored time-major (see :func:`conv1d`)."""
    return x.transpose(1, 2).contiguous().transpose(1, 2)


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           padding: int = 0) -> torch.Tensor:
    """``F.conv1d(x, weight, bias, padding=padding)``, in x's memory layout.

    A contiguous x takes ``F.conv1d`` itself (the record's kernels, bit for bit). A
    channels-last x (:func:`is_channels_last`) runs as a 2-D convolution over [N, C, 1, T]
    in torch's channels_last format and returns a channels-last output: torch picks
    channels-last oneDNN kernels only for 4-D tensors, and in bf16 oneDNN otherwise
    reorders every input, output and gradient between layouts (on the CPU these copies
    cost about as much as the convolutions). The bf16 numbers are the same either way
    (``tests/test_model.py``); in fp32 the two layouts run different kernels that round
    differently, so fp32 runs keep contiguous features.
    """
    if not is_channels_last(x):
        return F.conv1d(x, weight, bias, padding=padding)
    return F.conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, padding=(0, padding)).squeeze(2)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters, names and hooks) that keeps a channels-last input's
    layout (:func:`conv1d`); any other input runs ``nn.Conv1d`` itself.

    The choice follows x's strides: a transposed view such as ``y.mT`` counts as
    channels-last and takes the 2-D kernels, which in fp32 round differently from
    ``nn.Conv1d``'s; fp32 callers that must match it pass contiguous input.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = (self.stride, self.dilation, self.groups, self.padding_mode) == \
            ((1,), (1,), 1, "zeros")
        if not plain or isinstance(self.padding, str):
            return super().forward(x)
        return conv1d(x, self.weight, self.bias, self.padding[0])    # F.conv1d unless time-major


class Trunk(nn.Module):
    """f: Conv1d(D->H, k3) -> LeakyReLU -> Conv1d(H->H, k3) -> LeakyReLU -> Dropout.

    ``forward`` is the plain trunk on [N, D, T] sequences (inference, pre-only training).
    Training with the post/background streams uses ``forward_taps``: conv_1 is computed as
    its three per-tap projections z_k = W_k x (one 1x1 convolution to 3H channels, the
    same FLOPs as the k=3 convolution) that are then shifted and summed. The taps are
    returned because conv_1 is linear: conv_1 of a weighted group sum of snippets equals
    the same weighted group sum of their tap projections. At large widths the post and
    background streams therefore aggregate z (3H wide) instead of x and never run conv_1
    on their rows (``ECMNet.aggregate_taps``); ``forward_rows`` finishes the trunk on the
    aggregated taps either way.
    """

    def __init__(self, feat_dim: int, hidden_dim: int, dropout: float,
                 dropout_mask: str = "torch") -> None:
        super().__init__()
        self.conv_1 = Conv1d(feat_dim, hidden_dim, kernel_size=3, padding=1)
        self.conv_2 = Conv1d(hidden_dim, hidden_dim, kernel_size=3, padding=1)
        self.dropout = Dropout(dropout, mask=dropout_mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, D, T] -> [N, H, T], in x's memory layout (see conv1d)
        x = F.leaky_relu(self.conv_1(x), 0.01)
        x = F.leaky_relu(self.conv_2(x), 0.01)
        return self.dropout(x)

    def taps(self, x: torch.Tensor) -> torch.Tensor:
        """conv_1's per-tap projections without bias: x [N, D, T] -> z [N, 3, H, T]."""
        h, d, k = self.conv_1.weight.shape
        w = self.conv_1.weight.permute(2, 0, 1).reshape(k * h, d, 1)   # row k*H + o = W[o, :, k]
        return conv1d(x, w).view(x.shape[0], k, h, x.shape[-1])

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(trunk output [N, H, T], conv_1 taps z [N, 3, H, T]); the output equals ``forward``."""
        z = self.taps(x)
        y = F.leaky_relu(_sum_taps(z, tap_dim=1, seq_dim=3) + self.conv_1.bias[:, None], 0.01)
        y = F.leaky_relu(self.conv_2(y), 0.01)
        return self.dropout(y), z

    def row_taps(self, rows: torch.Tensor) -> torch.Tensor:
        """conv_1's taps of channels-last rows: [N, L, *, D] -> [N, L, *, 3, H] (one matmul)."""
        return _row_taps(rows, self.conv_1)

    def forward_rows(self, z_rows: torch.Tensor) -> torch.Tensor:
        """The trunk on short channels-last sequences given conv_1's taps.

        z_rows: [N, L, *, 3, H], the tap projections (``row_taps`` or aggregated ``taps``)
        of sequences of length L along dim 1 -> [N, L, *, H]. conv_2 becomes one matmul with
        its three taps side by side plus a shifted sum, far faster than a convolution
        kernel on length-3 inputs.
        """
        # The biases join in the rows' dtype: under bf16 autocast an fp32 bias would promote
        # every row to fp32 and the next matmul would cast it back (in fp32 .to is a no-op).
        y = _sum_taps(z_rows, tap_dim=-2, seq_dim=1) + self.conv_1.bias.to(z_rows.dtype)
        y = F.leaky_relu(y, 0.01)
        y = _sum_taps(_row_taps(y, self.conv_2), tap_dim=-2, seq_dim=1)
        y = y + self.conv_2.bias.to(y.dtype)
        return self.dropout(F.leaky_relu(y, 0.01))


def _row_taps(rows: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """Per-tap projections of channels-last rows by a k=3 Conv1d: [..., C_in] -> [..., 3, C_out]."""
    c_out, c_in, k = conv.weight.shape
    z = torch.matmul(rows, conv.weight.permute(1, 2, 0).reshape(c_in, k * c_out))
    return z.view(*rows.shape[:-1], k, c_out)


class _SumTaps(torch.autograd.Function):
    """A k=3, padding=1 convolution from its per-tap projections.

    out[l] = z[l-1, tap 0] + z[l, tap 1] + z[l+1, tap 2] along ``seq_dim`` (zero outside);
    ``tap_dim`` (size 3) is removed. Written as an autograd Function because slicing the
    taps in autograd allocates and zero-fills a full-size gradient per slice; here the
    backward writes each tap's gradient once.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, tap_dim: int, seq_dim: int) -> torch.Tensor:  # type: ignore[override]
        tap_dim, seq_dim = tap_dim % z.dim(), seq_dim % z.dim()
        s = seq_dim - (seq_dim > tap_dim)                        # seq dim once taps are removed
        n = z.shape[seq_dim]
        ctx.dims = (tap_dim, s, n)
        out = z.select(tap_dim, 1).clone(memory_format=torch.contiguous_format)
        if n > 1:
            out.narrow(s, 1, n - 1).add_(z.select(tap_dim, 0).narrow(s, 0, n - 1))
            out.narrow(s, 0, n - 1).add_(z.select(tap_dim, 2).narrow(s, 1, n - 1))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        tap_dim, s, n = ctx.dims
        shape = list(grad.shape)
        shape.insert(tap_dim, 3)
        gz = grad.new_empty(shape)
        gz.select(tap_dim, 1).copy_(grad)
        g0, g2 = gz.select(tap_dim, 0), gz.select(tap_dim, 2)
        g0.narrow(s, n - 1, 1).zero_()
        g2.narrow(s, 0, 1).zero_()
        if n > 1:
            g0.narrow(s, 0, n - 1).copy_(grad.narrow(s, 1, n - 1))
            g2.narrow(s, 1, n - 1).copy_(grad.narrow(s, 0, n - 1))
        return gz, None, None


def _sum_taps(z: torch.Tensor, tap_dim: int, seq_dim: int) -> torch.Tensor:
    """Shifted sum of k=3 tap projections (see ``_SumTaps``); removes ``tap_dim``."""
    return _SumTaps.apply(z, tap_dim, seq_dim)


def group_snippets(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Snippets by group: x [N, D, T] -> [N, G, D, ceil(T/G)], entry [n, g, :, s] = x[n, :, s*G + g].

    Zero snippets pad T to a multiple of G (they add nothing to a group sum). The copy
    keeps D-rows contiguous ([N, G, D, T/G]; a copy straight to [N, G, T/G, D] is a
    transpose and twice as slow from a contiguous x); the aggregation's matmul reads it
    transposed. From a time-major x (bf16 training) the copy transposes: the training
    loop makes it once per run (``grouped_features``).
    """
    n, d, t = x.shape
    pad = (-t) % groups
    if pad:
        x = F.pad(x, (0, pad))
    return x.reshape(n, d, -1, groups).permute(0, 3, 1, 2).contiguous()


class Classifier(nn.Module):
    """W: the classifier shared by the pre, post and background streams."""

    def __init__(self, hidden_dim: int, num_classes: int) -> None:
        super().__init__()
        self.conv = Conv1d(hidden_dim, num_classes, kernel_size=1, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # [N, H, L] -> [N, C, L], contiguous whatever h's layout: top-k and the streams then
        # read the CAS exactly as from a contiguous trunk (ties included)
        return self.conv(h).contiguous()


class Transition(nn.Module):
    """Equivalent weight transition: CAS [B, C, T] -> aggregation weights in (0, 1)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv_1 = Conv1d(in_channels, num_classes, kernel_size=1, bias=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv_1(z).contiguous())


def prefer_taps(cfg: ModelConfig) -> bool:
    """Which way the post/background streams reach conv_1 (the same numbers up to rounding).

    True aggregates conv_1's taps of every snippet (3H wide) and never runs conv_1 on the
    aggregated rows; False aggregates the D-wide features and runs conv_1 on every
    aggregated row. Every (video, label, class, group) row costs D-wide work on the
    feature path and 3H-wide work on the tap path, so taps win when 3H < D and at large
    widths. Where 3H >= D on small models the two are close, and the feature path is kept
    because the results of record were trained on it (switching would change them by
    rounding). ``benchmarks/bench_aggregate_paths.py`` measures both; the README reports it.
    """
    return 3 * cfg.hidden_dim < cfg.feat_dim or cfg.feat_dim * cfg.hidden_dim >= 2 ** 18


def aggregates_taps(cfg: ModelConfig) -> bool:
    """The path a model of ``cfg`` takes: ``model.aggregation`` when it names one, else
    :func:`prefer_taps`' rule ("fastest" is resolved before a model is built, by
    ``ecmlib.training.speed``; a model built straight from such a config follows the rule)."""
    if cfg.aggregation in ("features", "taps"):
        return cfg.aggregation == "taps"
    return prefer_taps(cfg)


class ECMNet(nn.Module):
    """Equivalent Classification Mapping network (see the module docstring)."""

    def __init__(self, cfg: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = cfg or ModelConfig()
        if overrides:
            cfg = ModelConfig(**{**cfg.__dict__, **overrides})
        self.cfg = cfg
        self.base_module = Trunk(cfg.feat_dim, cfg.hidden_dim, cfg.dropout, cfg.drawn_mask)
        self.classifier_module = Classifier(cfg.hidden_dim, cfg.num_classes)
        if cfg.transition == "learned":
            self.attention_module = Transition(cfg.num_classes, cfg.num_classes)
        elif cfg.transition == "independent":
            # Decoupled baseline: an attention head on the trunk features, not on the CAS.
            self.attention_module = Transition(cfg.hidden_dim, cfg.num_classes)
        # "fixed": a = sigmoid(CAS), no parameters at all.
        self.aggregate_taps = aggregates_taps(cfg)

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

    def aggregate(self, x: torch.Tensor, weights: torch.Tensor,
                  grouped: torch.Tensor | None = None) -> torch.Tensor:
        """Group sums F[n, g, c] = sum_{t = g mod G} weights[n, c, t] x[n, :, t].

        x: [N, D', T] per-snippet vectors (features or conv_1 taps), weights: [N, C', T]
        -> [N, G, C', D'] (channels last, the groups as a length-G sequence along dim 1).
        Time is folded into (T/G, G) so each group is one batched matmul over its own
        snippets. ``grouped`` is ``group_snippets(x, G)`` when the caller already holds it
        (the training loop keeps it for the whole split: the features never change).
        """
        n, d, t = x.shape
        c, g = weights.shape[1], self.cfg.groups
        if grouped is not None and tuple(grouped.shape) != (n, g, d, -(-t // g)):
            raise ValueError(f"grouped must be group_snippets(x) {[n, g, d, -(-t // g)]}, "
                             f"got {list(grouped.shape)}")
        xg = group_snippets(x, g) if grouped is None else grouped     # [N, G, D, T/G]
        pad = xg.shape[-1] * g - t
        if pad:
            weights = F.pad(weights, (0, pad))
        wg = weights.reshape(n, c, -1, g).permute(0, 3, 1, 2)         # [N, G, C', T/G]
        return torch.matmul(wg, xg.mT)                                # [N, G, C', D]

    def grouped_features(self, x: torch.Tensor) -> torch.Tensor | None:
        """``group_snippets(x, G)`` where this model's streams aggregate the features x
        (a caller passes rows of it back as ``forward(..., grouped=)``), else None."""
        return group_snippets(x, self.cfg.groups) if self.aggregates_features else None

    @property
    def aggregates_features(self) -> bool:
        """Whether the post/background streams aggregate the features x (not conv_1's taps)."""
        return self.cfg.streams != "pre" and not self.aggregate_taps

    def score_groups(self, grouped: torch.Tensor) -> torch.Tensor:
        """Score aggregated conv_1 taps [N, G, *, C, 3, H] with class c's own classifier row.

        Returns [N, *, C]: the trunk on each length-G group sequence, then W_c, then the
        mean over the G groups.
        """
        h = self.base_module.forward_rows(grouped)                # [N, G, *, C, H]
        w = self.classifier_module.conv.weight[:, :, 0]           # [C, H]
        return (h * w).sum(-1).mean(1)                            # mean over the G groups

    def grouped_taps(self, src: torch.Tensor, weights: torch.Tensor,
                     grouped: torch.Tensor | None = None) -> torch.Tensor:
        """conv_1 taps of the weighted group sums of ``src`` -> [N, G, C', 3, H].

        src is either the features x [N, D, T] (aggregated, then projected by conv_1) or
        their conv_1 taps z [N, 3, H, T] from ``Trunk.taps`` (aggregated only: conv_1 is
        linear, so both give the same numbers); ``grouped``: see :meth:`aggregate`.
        """
        return self._as_taps(self.aggregate(src.flatten(1, -2), weights, grouped), src)

    def _as_taps(self, rows: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        """Aggregated rows [..., D'] of ``src`` as conv_1 taps [..., 3, H]."""
        if src.dim() == 4:                                        # already taps: D' = 3H
            return rows.unflatten(-1, tuple(src.shape[1:3]))
        return self.base_module.row_taps(rows)

    def post_scores(self, src: torch.Tensor, weights: torch.Tensor,
                    grouped: torch.Tensor | None = None) -> torch.Tensor:
        """s_post [B, C] from the features x [B, D, T] (or their taps) and weights a [B, C, T]."""
        return self.score_groups(self.grouped_taps(src, weights, grouped))

    def post_and_background_scores(self, src: torch.Tensor, weights: torch.Tensor,
                                   labels: torch.Tensor, grouped: torch.Tensor | None = None,
                                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_post [B, C], s_bg [B, C]) in one pass over every (video, label class) pair.

        src: the features x [B, D, T] or their conv_1 taps [B, 3, H, T] (``grouped_taps``);
        weights: a [B, C, T]; ``grouped``: see :meth:`aggregate`.

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
        f = self.aggregate(src.flatten(1, -2), w_all.view(b, (1 + slots) * c, t), grouped)
        f = f.view(b, f.shape[1], 1 + slots, c, -1)               # [B, G, 1+L, C, D']
        pb, pl = valid.nonzero(as_tuple=True)                     # the P real pairs
        # One gather (one zero-filled gradient): slot 0 of every video, then the P pairs.
        vid = torch.cat([torch.arange(b, device=pb.device), pb])
        slot = torch.cat([pl.new_zeros(b), pl + 1])
        rows = f[vid, :, slot]                                    # [B + P, G, C, D']
        scores = self.score_groups(self._as_taps(rows, src))      # [B + P, C]
        s_post, u = scores[:b], scores[b:]                        # u: [P, C]
        pc = label_idx[pb, pl]
        s_bg = torch.zeros_like(s_post).index_add(0, pb, u)
        s_bg = s_bg / counts[:, None].to(u.dtype)                 # mean over label classes
        own = u[torch.arange(pb.numel(), device=u.device), pc]   # u^(c)[c]
        return s_post, s_bg.index_put((pb, pc), own)

    # -- forward ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                background: bool = True, grouped: torch.Tensor | None = None,
                ) -> dict[str, torch.Tensor]:
        """Run the streams.

        x: [B, D, T] features. With ``labels`` ([B, C] multi-hot) the training outputs are
        returned: ``cas``, ``pre_scores``, and unless the model trains the pre stream
        alone, ``aggregation_weights``, ``post_scores`` and, with ``background``,
        ``background_scores`` and ``score_agg``; without labels, the inference outputs
        ``score`` (softmax of s_pre) and ``cas``. ``grouped``: x's snippets by group
        (rows of :meth:`grouped_features`), when the caller keeps them; the same numbers.
        """
        if x.dim() != 3 or x.shape[1] != self.cfg.feat_dim:
            raise ValueError(f"features must be [B, {self.cfg.feat_dim}, T], got {tuple(x.shape)}")
        if grouped is not None and not self.aggregates_features:
            raise ValueError("grouped: only a model whose streams aggregate the features x "
                             "takes group_snippets(x) (see grouped_features)")
        if labels is not None and self.cfg.streams != "pre" and self.aggregate_taps:
            h, src = self.base_module.forward_taps(x)             # [B, H, T], taps [B, 3, H, T]
            cas = self.classifier_module(h)                       # [B, C, T]
        else:
            h, cas = self.cas(x)
            src = x                                               # the streams aggregate x
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
            out["post_scores"], s_bg = self.post_and_background_scores(src, a, labels, grouped)
            out["background_scores"] = s_bg
            out["score_agg"] = torch.softmax(torch.cat([out["post_scores"], s_bg], dim=1), dim=1)
        else:
            out["post_scores"] = self.post_scores(src, a, grouped)
        return out


# -- checkpoints ---------------------------------------------------------------------------

