"""The fast paths against the plain reference (``ecmlib.method.reference``): the batched
model's every training output, and the vectorised localisation's detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecmlib.method import reference as ref
from ecmlib.method.localize import LocalizeParams, localize_video
from ecmlib.method.model import ECMNet, ModelConfig


def _model(**kw) -> ECMNet:
    torch.manual_seed(0)
    cfg = ModelConfig(**{"feat_dim": 8, "hidden_dim": 12, "num_classes": 4, "num_snippets": 10,
                         "topk_ratio": 0.3, "dropout": 0.0, **kw})
    return ECMNet(cfg).eval()


@pytest.mark.parametrize("aggregation", ["features", "taps"])
@pytest.mark.parametrize("transition", ["learned", "fixed", "independent"])
def test_batched_model_equals_the_loops(aggregation: str, transition: str) -> None:
    model = _model(aggregation=aggregation, transition=transition)
    x = torch.rand(3, 8, 10)
    labels = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.float32)
    with torch.no_grad():
        fast, slow = model(x, labels), ref.forward(model, x, labels)
    for key in ("cas", "pre_scores", "aggregation_weights", "post_scores",
                "background_scores", "score_agg"):
        torch.testing.assert_close(fast[key], slow[key], rtol=1e-5, atol=1e-6, msg=key)


def test_group_sums_by_hand() -> None:
    x = torch.arange(14, dtype=torch.float32).view(2, 7)       # D=2, T=7
    w = torch.tensor([1.0, 0, 0, 2, 0, 0, 3])                  # snippets 0, 3, 6: group 0
    got = ref.group_sums(x, w)
    assert got[:, 0].tolist() == [0 * 1 + 3 * 2 + 6 * 3, 7 * 1 + 10 * 2 + 13 * 3]
    assert got[:, 1:].abs().sum() == 0


def _random_video(rng: np.random.Generator, c: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    # Smooth bumps over noise: runs of many lengths, some classes under the score threshold.
    cas = rng.normal(0, 0.3, (c, t)).astype(np.float32)
    for k in range(c):
        for _ in range(rng.integers(1, 4)):
            mid, width = rng.integers(0, t), rng.integers(2, t // 3)
            cas[k] += 2 * np.exp(-0.5 * ((np.arange(t) - mid) / width) ** 2).astype(np.float32)
    score = rng.uniform(0, 0.6, c).astype(np.float32)
    return cas, score


@pytest.mark.parametrize("mode", ["official", "clean"])
@pytest.mark.parametrize("preset", ["thumos14", "anet12"])
def test_vectorised_localisation_equals_the_steps(mode: str, preset: str) -> None:
    params = getattr(LocalizeParams, preset)(mode)
    rng = np.random.default_rng(0)
    for trial in range(8):
        cas, score = _random_video(rng, 5, 40)
        frames, base = int(rng.integers(40, 300)), float(rng.uniform(5, 60))
        fast = localize_video(cas, score, frames, base, params)
        steps = ref.localize_steps(cas, score, frames, base, params)
        assert steps.detections.shape == fast.shape, trial
        np.testing.assert_allclose(steps.detections, fast, rtol=1e-6, atol=1e-6)


def test_localisation_steps_on_a_hand_made_curve() -> None:
    # One class, T = frames = 10, fps 1: a plateau of 1.0 on frames 3..5 over zeros.
    cas = np.zeros((1, 10), np.float32)
    cas[0, 3:6] = 1.0
    params = LocalizeParams(0.1, (0.5, 0.6, 0.1), 0.6, 0.4, 0.15, "fps", "clean")
    steps = ref.localize_steps(cas, np.array([0.5], np.float32), 10, 1.0, params)
    (p,) = steps.proposals[0]
    assert (p.p0, p.p1) == (3, 5)
    assert p.inner == 1.0
    # outer: [int(3 - 1.2), 3) = frames 1, 2 and (5, int(5 + 1.2)) = frame 6 -> all zero
    assert p.outer == 0.0
    assert p.score == pytest.approx(1.0 + 0.15 * 0.5)
    assert (p.start, p.end) == (3.0, 6.0)
