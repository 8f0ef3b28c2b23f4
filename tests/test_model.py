"""ECMNet and the losses: golden parity, hand-computed cases, properties, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ecmlib.method.losses import LossConfig, compute_losses, loss_agg, loss_eq, loss_pre
from ecmlib.method import reference
from ecmlib.method.model import ECMNet, ModelConfig
from ecmlib.training.checkpoint import load_checkpoint
from ecmlib.parity import load_golden, model_checks

DATA = Path(__file__).parent / "data"
GOLDEN = [DATA / "official_thumos_s1.npz", DATA / "official_anet_s2.npz"]


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_model_matches_official_code(path: Path) -> None:
    checks = model_checks(load_golden(path), str(path))
    assert len(checks) == 2 * (3 + 5 + 7) + 2          # training checks on both paths
    assert sum(c.name.startswith("taps:") for c in checks) == 3 + 5 + 7
    bad = [(c.name, c.error) for c in checks if not c.ok]
    assert not bad, bad


def small_model(**kw) -> ECMNet:
    torch.manual_seed(0)
    cfg = ModelConfig(**{"feat_dim": 8, "hidden_dim": 12, "num_classes": 4, "num_snippets": 10,
                         "topk_ratio": 0.3, "dropout": 0.0, **kw})
    return ECMNet(cfg).eval()


def conv_trunk(model: ECMNet, x: torch.Tensor) -> torch.Tensor:
    """The trunk with plain k=3 convolutions and no dropout."""
    t = model.base_module
    y = torch.nn.functional.leaky_relu(t.conv_1(x), 0.01)
    return torch.nn.functional.leaky_relu(t.conv_2(y), 0.01)


def test_tap_trunk_equals_convolution() -> None:
    model = small_model()
    for length in (1, 2, 3, 10):
        x = torch.rand(2, 8, length)
        torch.testing.assert_close(model.base_module(x), conv_trunk(model, x), rtol=1e-5, atol=1e-6)
        h, z = model.base_module.forward_taps(x)
        torch.testing.assert_close(h, conv_trunk(model, x), rtol=1e-5, atol=1e-6)
        assert z.shape == (2, 3, 12, length)
        # Rows: the same sequences channels-last along dim 1, through conv_1's row taps.
        rows = x.transpose(1, 2)[:, :, None]                     # [2, L, 1, 8]
        got = model.base_module.forward_rows(model.base_module.row_taps(rows))[:, :, 0]
        torch.testing.assert_close(got, conv_trunk(model, x).transpose(1, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tap_dim, seq_dim", [(1, 3), (-2, 1), (3, 1)])
def test_sum_taps_gradient(tap_dim: int, seq_dim: int) -> None:
    from ecmlib.method.model import _sum_taps
    shape = [2, 4, 5, 3] if tap_dim == 3 else ([2, 3, 4, 5] if tap_dim == 1 else [2, 5, 4, 3, 2])
    z = torch.rand(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _sum_taps(t, tap_dim, seq_dim), (z,))
    for length in (1, 2):                                   # edges: no neighbours / one
        short = z.detach().narrow(seq_dim, 0, length).clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda t: _sum_taps(t, tap_dim, seq_dim), (short,))


def test_sum_taps_is_shifted_sum() -> None:
    from ecmlib.method.model import _sum_taps
    z = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 1, 4)   # [N, tap, H, T]
    out = _sum_taps(z, tap_dim=1, seq_dim=3)[0, 0]
    t0, t1, t2 = z[0, 0, 0], z[0, 1, 0], z[0, 2, 0]
    expected = t1.clone()
    expected[1:] += t0[:-1]
    expected[:-1] += t2[1:]
    assert out.tolist() == expected.tolist()


@pytest.mark.parametrize("taps", [False, True], ids=["features", "taps"])
def test_batched_background_equals_per_video_loops(taps: bool) -> None:
    model = small_model()
    model.aggregate_taps = taps
    x = torch.rand(3, 8, 10)
    labels = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.float32)
    with torch.no_grad():
        out = model(x, labels)
        ref = reference.background_scores(model, x, out["aggregation_weights"], labels)
    torch.testing.assert_close(out["background_scores"], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("taps", [False, True], ids=["features", "taps"])
def test_post_scores_equal_explicit_group_sums(taps: bool) -> None:
    model = small_model()
    x = torch.rand(2, 8, 10)
    with torch.no_grad():
        a = torch.rand(2, 4, 10)
        got = model.post_scores(model.base_module.taps(x) if taps else x, a)
        w = model.classifier_module.conv.weight[:, :, 0]
        for b in range(2):
            for c in range(4):
                g = torch.stack([(a[b, c, i::3] * x[b, :, i::3]).sum(-1) for i in range(3)], 1)
                s = (w[c] @ conv_trunk(model, g[None])[0]).mean()
                assert torch.isclose(got[b, c], s, rtol=1e-5, atol=1e-6)


def test_topk_is_int_of_configured_snippets() -> None:
    assert ModelConfig(num_snippets=750, topk_ratio=0.125).topk == 93
    assert ModelConfig(num_snippets=100, topk_ratio=0.6).topk == 60
    model = small_model()                                   # k = int(10 * 0.3) = 3
    cas = torch.tensor([[[1.0, 5, 2, 4, 3, 0, 0, 0, 0, 0]]])
    assert model.pre_scores(cas).item() == pytest.approx(4.0)


def test_inference_outputs_softmax_and_cas() -> None:
    from ecmlib.training.inference import predict
    model = small_model(dropout=0.5).train()
    x = torch.rand(2, 8, 10)
    score, cas = predict(model, x)            # numpy, dropout off, the model's mode restored
    assert score.shape == (2, 4) and cas.shape == (2, 4, 10) and model.training
    np.testing.assert_allclose(score.sum(1), np.ones(2), rtol=1e-6)
    with torch.no_grad():
        out = model.eval()(x)                 # no labels: the inference outputs
    np.testing.assert_allclose(score, out["score"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(cas, out["cas"].numpy(), rtol=1e-6)


@pytest.mark.parametrize("transition", ["learned", "fixed", "independent"])
@pytest.mark.parametrize("streams", ["pre", "post", "both"])
def test_ablation_switches_train(streams: str, transition: str) -> None:
    model = small_model(streams=streams, transition=transition).train()
    x = torch.rand(4, 8, 10)
    labels = torch.eye(4)
    out = model(x, labels)
    terms = compute_losses(out, labels, LossConfig(), streams)
    terms["loss_total"].backward()
    assert torch.isfinite(terms["loss_total"])
    assert (terms["loss_post"] == 0) == (streams == "pre")
    assert (terms["loss_pre"] == 0) == (streams == "post")
    assert (terms["loss_eq"] != 0) == (streams == "both")
    has_attention = any(n.startswith("attention_module") for n, _ in model.named_parameters())
    assert has_attention == (transition != "fixed")
    if streams != "pre":
        a = out["aggregation_weights"]
        assert ((a > 0) & (a < 1)).all()
    if transition == "fixed" and streams != "pre":
        torch.testing.assert_close(out["aggregation_weights"], torch.sigmoid(out["cas"]))


def test_loss_hand_values() -> None:
    # Two equal scores, label on class 0: CE = log 2.
    s = torch.zeros(1, 2)
    assert loss_pre(s, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(np.log(2))
    # Two-label video: target 0.5/0.5 and uniform softmax over 4 -> CE = log 4.
    assert loss_pre(torch.zeros(1, 4), torch.tensor([[1.0, 1, 0, 0]])).item() == pytest.approx(np.log(4))
    assert loss_eq(torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 1.0]])).item() == pytest.approx(2.5)
    # score_agg: C=2, label class 0: entries p_act[0]=0.5 (target 1), p_bg[0]=0.25 (target 0).
    agg = torch.tensor([[0.5, 0.1, 0.25, 0.15]])
    want = -(np.log(0.5) + np.log(0.75)) / 2
    assert loss_agg(agg, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(want)


def test_loss_agg_ignores_unlabelled_videos() -> None:
    agg = torch.tensor([[0.5, 0.1, 0.25, 0.15], [0.25, 0.25, 0.25, 0.25]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert loss_agg(agg, labels).item() == pytest.approx(loss_agg(agg[:1], labels[:1]).item())


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="features must be"):
        small_model()(torch.rand(2, 9, 10))
    with pytest.raises(ValueError, match="streams"):
        ModelConfig(streams="neither")
    with pytest.raises(ValueError, match="transition"):
        ModelConfig(transition="magic")
    with pytest.raises(ValueError, match="top-k"):
        ModelConfig(num_snippets=4, topk_ratio=0.1)
    with pytest.raises(ValueError, match="empty label"):
        small_model()(torch.rand(2, 8, 10), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="w_eq"):
        LossConfig(w_eq=-1)


def test_official_checkpoint_roundtrip_and_mismatch(tmp_path: Path) -> None:
    golden = load_golden(GOLDEN[0])
    state = {k.removeprefix("weight/"): torch.from_numpy(v) for k, v in golden.items()
             if k.startswith("weight/")}
    path = tmp_path / "THUMOS14_best.pth"
    torch.save({"epoch": 3, "state_dict": state, "optimizer": {}}, path)
    model, ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 3
    assert (model.cfg.feat_dim, model.cfg.hidden_dim, model.cfg.num_classes) == (32, 64, 5)
    with pytest.raises(ValueError, match="num_classes is 5 in the checkpoint but 20"):
        load_checkpoint(path, ModelConfig(feat_dim=32, hidden_dim=64, num_classes=20))
    with pytest.raises(ValueError, match="hidden_dim is 64 in the checkpoint but 2048"):
        load_checkpoint(path, ModelConfig(feat_dim=32, num_classes=5))
    bad = tmp_path / "bad.pth"
    torch.save({"weights": state}, bad)
    with pytest.raises(ValueError, match="not an official ECM checkpoint"):
        load_checkpoint(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(junk)


def test_loss_agg_gradient_stays_finite_when_softmax_saturates() -> None:
    # A score_agg entry that underflowed to exactly 0 (or 1) must not turn the step into NaN.
    logits = torch.tensor([[200.0, -200.0, -200.0, -200.0]], requires_grad=True)
    agg = torch.softmax(logits, dim=1)
    assert agg[0, 1].item() == 0.0
    loss = loss_agg(agg, torch.tensor([[0.0, 1.0]]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() == pytest.approx(50.0)   # (BCE clamp 100 + 0) / 2


def test_aggregation_paths_agree_in_training() -> None:
    """Features path and taps path: same outputs and gradients with dropout on (same seed)."""
    results = []
    for taps in (False, True):
        model = small_model(dropout=0.5).train()
        model.aggregate_taps = taps
        x = torch.rand(3, 8, 11, generator=torch.Generator().manual_seed(1))   # T not a multiple of G
        labels = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.float32)
        out = model(x, labels)
        compute_losses(out, labels, LossConfig())["loss_total"].backward()
        results.append((out, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (o1, g1), (o2, g2) = results
    for k in ("pre_scores", "post_scores", "score_agg", "background_scores"):
        torch.testing.assert_close(o1[k], o2[k], rtol=1e-5, atol=1e-6)
    for n in g1:
        torch.testing.assert_close(g1[n], g2[n], rtol=1e-4, atol=1e-6)


def test_aggregation_path_follows_model_size() -> None:
    assert not ECMNet(ModelConfig(feat_dim=256, hidden_dim=128)).aggregate_taps
    assert ECMNet(ModelConfig(feat_dim=2048, hidden_dim=512)).aggregate_taps
    # narrow trunk on wide features (25x slower on the feature path at C=200, H=16)
    assert ECMNet(ModelConfig(feat_dim=2048, hidden_dim=16)).aggregate_taps
    # the record runs (thumos14-mini, H = 128) and the README's anet12-mini run keep the
    # path they were trained with
    assert not ECMNet(ModelConfig(feat_dim=256, hidden_dim=128, num_classes=20)).aggregate_taps
    assert not ECMNet(ModelConfig(feat_dim=256, hidden_dim=128, num_classes=100)).aggregate_taps


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.5, 0.3, 0.9])
def test_dropout_is_torchs_dropout_bit_for_bit(dtype, p) -> None:
    from ecmlib.method.model import Dropout
    x = torch.randn(4, 16, 33).to(dtype).requires_grad_()
    torch.manual_seed(7)
    ref = torch.nn.functional.dropout(x, p, training=True)
    ref.float().pow(2).sum().backward()
    ref_grad, ref_next = x.grad.clone(), torch.rand(4)
    x.grad = None
    torch.manual_seed(7)
    got = Dropout(p).train()(x)
    got.float().pow(2).sum().backward()
    assert torch.equal(got, ref) and torch.equal(x.grad, ref_grad)
    assert torch.equal(torch.rand(4), ref_next)           # the random stream goes on alike
    assert torch.equal(Dropout(p).eval()(x), x)


def test_dropout_corner_cases_are_torchs() -> None:
    from ecmlib.method.model import Dropout
    x = torch.randn(4, 6, 5)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    strided = x[:, :, ::2]                    # neither contiguous nor time-major: torch's own
    torch.manual_seed(3)
    ref = torch.nn.functional.dropout(strided, 0.5, training=True)
    torch.manual_seed(3)
    assert torch.equal(Dropout(0.5).train()(strided), ref)
    # a time-major view draws its contiguous copy's mask (test_dropout_draws_the_same_mask...)


def test_group_snippets_by_hand() -> None:
    from ecmlib.method.model import group_snippets
    x = torch.arange(2 * 3 * 7, dtype=torch.float32).view(2, 3, 7)   # T=7: groups of 3, 2, 2
    g = group_snippets(x, 3)
    assert g.shape == (2, 3, 3, 3) and g.is_contiguous()
    for n in range(2):
        for grp in range(3):
            for s in range(3):
                t = s * 3 + grp
                want = x[n, :, t] if t < 7 else torch.zeros(3)       # zero snippets pad T
                assert torch.equal(g[n, grp, :, s], want)


@pytest.mark.parametrize("background", [True, False])
def test_kept_grouped_features_give_the_same_step_bit_for_bit(background: bool) -> None:
    """A training step with the caller's grouped features equals the step without them."""
    x = torch.rand(5, 8, 11, generator=torch.Generator().manual_seed(2))  # T not a multiple of G
    labels = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 0], [1, 0, 0, 0]],
                          dtype=torch.float32)
    idx = torch.tensor([4, 0, 2])
    steps = []
    for keep in (False, True):
        torch.manual_seed(0)
        model = small_model(dropout=0.5).train()
        assert model.aggregates_features
        kept = model.grouped_features(x)
        torch.manual_seed(1)
        out = model(x[idx], labels[idx], background=background,
                    grouped=kept.index_select(0, idx) if keep else None)
        compute_losses(out, labels[idx], LossConfig(background=background))["loss_total"].backward()
        steps.append((out, [p.grad.clone() for p in model.parameters()]))
    (o1, g1), (o2, g2) = steps
    assert o1.keys() == o2.keys() and all(torch.equal(o1[k], o2[k]) for k in o1)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
    # ... and the kept groups are what the streams read: other groups, other scores
    torch.manual_seed(1)
    other = model(x[idx], labels[idx], background=background,
                  grouped=2 * kept.index_select(0, idx))
    assert not torch.allclose(other["post_scores"], o1["post_scores"])


def test_grouped_features_refused_where_they_cannot_apply() -> None:
    x = torch.rand(2, 8, 10)
    labels = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]], dtype=torch.float32)
    model = small_model()
    good = model.grouped_features(x)
    with pytest.raises(ValueError, match=r"grouped must be group_snippets\(x\)"):
        model(x, labels, grouped=good[:, :, :, :-1])                 # wrong shape
    with pytest.raises(ValueError, match=r"grouped must be group_snippets\(x\)"):
        model.post_scores(x, torch.rand(2, 4, 10), good[:1])         # another batch's
    taps = small_model()
    taps.aggregate_taps = True                                       # aggregates conv_1's taps
    assert taps.grouped_features(x) is None
    with pytest.raises(ValueError, match="aggregate the features"):
        taps(x, labels, grouped=good)
    pre = ECMNet(ModelConfig(feat_dim=8, hidden_dim=6, num_classes=4, num_snippets=10,
                             streams="pre"))
    assert pre.grouped_features(x) is None


@pytest.mark.parametrize("shape", [(1000, 1003), (7,), (3, 5, 8)])
def test_random_keep_is_fair_and_independent(shape) -> None:
    from ecmlib.method.model import random_keep
    torch.manual_seed(0)
    keep = random_keep(shape, 0.5)
    assert keep.shape == torch.Size(shape) and keep.dtype == torch.bool
    if keep.numel() < 1000:
        return
    k = keep.flatten().double()
    assert abs(k.mean().item() - 0.5) < 0.003                  # sd of the mean: 0.0005
    for lag in range(1, 9):                                     # bits of one byte, and the next
        corr = torch.corrcoef(torch.stack([k[:-lag], k[lag:]]))[0, 1].item()
        assert abs(corr) < 0.006, (lag, corr)
    assert abs(random_keep(shape, 0.3).double().mean().item() - 0.3) < 0.003


def test_bits_dropout_keeps_and_scales_like_dropout() -> None:
    from ecmlib.method.model import Dropout
    x = torch.rand(8, 16, 33).add_(0.5).requires_grad_()
    torch.manual_seed(1)
    for p in (0.5, 0.3):
        out = Dropout(p, mask="bits").train()(x)
        kept = out != 0
        assert torch.allclose(out[kept], (x / (1 - p))[kept])
        assert abs(kept.double().mean().item() - (1 - p)) < 0.02
        (g,) = torch.autograd.grad(out.sum(), x)
        assert torch.equal(g, kept.float() / (1 - p))           # the gradient uses the same mask
    drawn = Dropout(0.5, mask="bits").train()
    torch.manual_seed(2)
    first = drawn(x)
    torch.manual_seed(2)
    assert torch.equal(drawn(x), first)                         # seeded like any torch draw
    assert torch.equal(Dropout(0.5, mask="bits").eval()(x), x)
    model = ECMNet(ModelConfig(feat_dim=8, hidden_dim=6, num_classes=4, num_snippets=10,
                               dropout_mask="bits"))
    assert model.base_module.dropout.mask == "bits"
    assert ECMNet(ModelConfig(feat_dim=8, hidden_dim=6, num_classes=4,
                              num_snippets=10)).base_module.dropout.mask == "torch"
    assert "mask=bits" in repr(Dropout(0.5, mask="bits"))
    assert Dropout(0.5, True).inplace                             # nn.Dropout's own arguments
    with pytest.raises(ValueError, match="mask must be torch or bits"):
        Dropout(0.5, mask="coin")


def _layout_step(x: torch.Tensor, labels: torch.Tensor, bf16: bool, taps: bool,
                 transition: str, mask: str) -> tuple[dict, dict]:
    """Outputs and gradients of one training step of a mid-sized model on x, as held."""
    torch.manual_seed(0)
    model = ECMNet(ModelConfig(feat_dim=64, hidden_dim=32, num_classes=4, num_snippets=48,
                               dropout_mask=mask, transition=transition)).train()
    model.aggregate_taps = taps
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(x, labels)
    out = {k: v.float() for k, v in out.items()}
    compute_losses(out, labels, LossConfig())["loss_total"].backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("taps, transition, mask", [
    (False, "learned", "bits"), (True, "learned", "bits"), (False, "independent", "bits"),
    (False, "learned", "torch"), (True, "learned", "torch")])
def test_time_major_features_give_the_same_bf16_step(taps: bool, transition: str,
                                                     mask: str) -> None:
    """Features stored time-major (how bf16 runs hold them on the CPU) train exactly as
    contiguous ones in bf16 where the CPU has native bf16 (the channels-last kernels sum
    in the same order), and to rounding in fp32 and elsewhere."""
    from ecmlib.method.model import channels_last, is_channels_last
    from ecmlib.training.speed import cpu_bf16
    x = torch.rand(5, 64, 47, generator=torch.Generator().manual_seed(3))   # T % G != 0
    labels = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 0], [1, 0, 0, 0]],
                          dtype=torch.float32)
    assert is_channels_last(channels_last(x)) and not is_channels_last(x)
    for bf16 in (True, False):
        x_in = x.to(torch.bfloat16) if bf16 else x
        o1, g1 = _layout_step(x_in, labels, bf16, taps, transition, mask)
        o2, g2 = _layout_step(channels_last(x_in), labels, bf16, taps, transition, mask)
        assert o1.keys() == o2.keys() and g1.keys() == g2.keys()
        if bf16 and cpu_bf16():
            assert all(torch.equal(o1[k], o2[k]) for k in o1)
            assert all(torch.equal(g1[n], g2[n]) for n in g1), \
                [n for n in g1 if not torch.equal(g1[n], g2[n])]
        else:
            tol = dict(rtol=2e-2, atol=2e-2) if bf16 else dict(rtol=1e-4, atol=1e-5)
            for k in o1:
                torch.testing.assert_close(o1[k], o2[k], **tol)
            for n in g1:
                torch.testing.assert_close(g1[n], g2[n], **tol)


def test_conv1d_keeps_the_layout_it_is_given() -> None:
    from ecmlib.method.model import Conv1d, channels_last, conv1d, is_channels_last
    x = torch.rand(3, 10, 17, generator=torch.Generator().manual_seed(4))
    conv = Conv1d(10, 6, kernel_size=3, padding=1)
    want = torch.nn.functional.conv1d(x, conv.weight, conv.bias, padding=1)
    assert torch.equal(conv(x), want) and conv(x).is_contiguous()     # nn.Conv1d's own kernel
    got = conv(channels_last(x))
    assert is_channels_last(got)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(conv1d(channels_last(x), conv.weight[:, :, :1]),
                               torch.nn.functional.conv1d(x, conv.weight[:, :, :1]))
    seen = []
    conv.register_forward_hook(lambda _m, _i, o: seen.append(o.shape))   # still a module call
    conv(channels_last(x))
    assert seen == [torch.Size([3, 6, 17])]
    strided = Conv1d(10, 6, kernel_size=3, stride=2)                  # not the plain case
    out = strided(channels_last(x))
    assert out.shape == (3, 6, 8)
    torch.testing.assert_close(out, strided(x))


@pytest.mark.parametrize("mask", ["bits", "torch"])
def test_dropout_draws_the_same_mask_in_either_layout(mask: str) -> None:
    from ecmlib.method.model import Dropout, channels_last, is_channels_last
    x = torch.rand(4, 16, 33).add_(0.5)
    drop = Dropout(0.5, mask=mask).train()
    torch.manual_seed(5)
    want = drop(x)
    torch.manual_seed(5)
    got = drop(channels_last(x))
    assert is_channels_last(got) and torch.equal(got, want)
    if mask == "torch":
        torch.manual_seed(5)
        assert torch.equal(want, torch.nn.functional.dropout(x, 0.5))
