"""ecmlib.views.walkthrough, headless: what each figure of notebook 02's walk-through draws,
and that bad input is refused with a ValueError naming the argument."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display in CI

import matplotlib.pyplot as plt
import numpy as np
import pytest

from ecmlib.views import walkthrough as W


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _bump(t: int) -> np.ndarray:
    return np.exp(-0.5 * ((np.arange(t) - t / 2) / (t / 8)) ** 2)


# -- plot_cas_and_weights -------------------------------------------------------------------

def test_cas_and_weights_marks_the_top_k_and_their_mean():
    cas = np.array([0.0, 3.0, 1.0, 5.0, 2.0, 4.0])
    weights = np.linspace(0.1, 0.9, 6)
    fig = W.plot_cas_and_weights(cas, weights, k=2, title="one video")
    top, bottom = fig.axes
    assert len(fig.axes) == 2 and top.get_title() == "one video"
    line, marks, mean = top.get_lines()
    np.testing.assert_array_equal(line.get_ydata(), cas)
    assert sorted(marks.get_ydata()) == [4.0, 5.0]                 # the k = 2 largest
    assert mean.get_ydata()[0] == pytest.approx(4.5)                # their mean: s_pre
    assert "s_pre = 4.500" in [t.get_text() for t in top.get_legend().get_texts()][2]
    np.testing.assert_array_equal(bottom.get_lines()[0].get_ydata(), weights)
    assert bottom.get_ylim() == (0.0, 1.0) and bottom.get_xlabel() == "snippet"


def test_cas_and_weights_in_seconds():
    fig = W.plot_cas_and_weights(_bump(10), np.full(10, 0.5), k=3, seconds_per_snippet=2.0)
    x = fig.axes[0].get_lines()[0].get_xdata()
    np.testing.assert_allclose(x, (np.arange(10) + 0.5) * 2.0)     # snippet centres
    assert fig.axes[1].get_xlabel() == "time (s)"


@pytest.mark.parametrize("kwargs, message", [
    ({"cas": np.ones(5), "weights": np.ones(4), "k": 1}, "same length"),
    ({"cas": np.ones((2, 5)), "weights": np.ones(5), "k": 1}, "cas must be a non-empty 1-D"),
    ({"cas": np.ones(5), "weights": np.ones(5), "k": 0}, "k must be in [1, T=5]"),
    ({"cas": np.ones(5), "weights": np.ones(5), "k": 6}, "k must be in [1, T=5]"),
    ({"cas": np.r_[1.0, np.nan], "weights": np.ones(2), "k": 1}, "cas holds NaN"),
    ({"cas": np.ones(5), "weights": np.ones(5), "k": 1, "seconds_per_snippet": 0.0},
     "seconds_per_snippet must be a positive number"),
])
def test_cas_and_weights_refuses_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        W.plot_cas_and_weights(**kwargs)


# -- plot_localisation_steps ----------------------------------------------------------------

def _steps_input():
    curve = _bump(100).astype(np.float32)
    thresholds = np.arange(0.01, 0.2, 0.025)
    proposals = np.array([[0.01, 1.0, 3.0, 0.4], [0.035, 1.2, 2.9, 0.5], [0.06, 1.3, 2.8, 0.45]])
    detections = np.array([[1.2, 2.9, 0.5]])
    return curve, thresholds, proposals, detections


def test_localisation_steps_draws_three_rows():
    curve, thresholds, proposals, detections = _steps_input()
    fig = W.plot_localisation_steps(curve, thresholds, proposals, detections,
                                    gt_segments=[(1.5, 3.0)], seconds_per_frame=1 / 25,
                                    title="video, class")
    top, middle, bottom = fig.axes
    assert len(fig.axes) == 3 and top.get_title() == "video, class"
    lines = top.get_lines()
    assert len(lines) == 1 + len(thresholds)                        # the curve, one line a threshold
    np.testing.assert_allclose(lines[0].get_xdata()[:3], [0.0, 0.04, 0.08])  # frame starts
    segs = middle.collections[0].get_segments()                     # one bar per proposal
    assert len(segs) == 3 and segs[1][0][1] == pytest.approx(0.035)
    assert segs[1][0][0] == pytest.approx(1.2) and segs[1][1][0] == pytest.approx(2.9)
    assert len(bottom.collections[0].get_segments()) == 1           # one detection after NMS
    assert [t.get_text() for t in bottom.get_legend().get_texts()] == ["ground truth"]
    assert bottom.get_xlabel() == "time (s)"


def test_a_detection_keeps_the_colour_of_its_proposal():
    curve, thresholds, proposals, detections = _steps_input()
    fig = W.plot_localisation_steps(curve, thresholds, proposals, detections)
    _, middle, bottom = fig.axes
    proposal_colours = middle.collections[0].get_colors()
    np.testing.assert_allclose(bottom.collections[0].get_colors()[0], proposal_colours[1])
    assert not np.allclose(proposal_colours[0], proposal_colours[1])   # scores 0.4 vs 0.5


def test_localisation_steps_accepts_empty_proposals_and_detections():
    curve, thresholds, _, _ = _steps_input()
    fig = W.plot_localisation_steps(curve, thresholds, np.zeros((0, 4)), [], title="nothing")
    _, middle, bottom = fig.axes
    assert [t.get_text() for t in middle.texts] == ["no proposal"]
    assert [t.get_text() for t in bottom.texts] == ["no detection"]
    assert not middle.collections and bottom.get_xlabel() == "frame"


def test_localisation_steps_shows_a_negative_curve():
    curve = np.r_[np.full(5, -0.4), np.linspace(0, 1, 5)]       # relu(min) = 0: stays negative
    fig = W.plot_localisation_steps(curve, [0.1], [], [])
    assert fig.axes[0].get_ylim()[0] <= -0.45


@pytest.mark.parametrize("args, message", [
    ((np.ones((2, 3)), [0.1], [], []), "curve must be a non-empty 1-D"),
    ((np.ones(5), [], [], []), "thresholds must be a non-empty 1-D"),
    ((np.ones(5), [0.1], np.ones((2, 3)), []), r"proposals must be \[n, 4\]"),
    ((np.ones(5), [0.1], [], np.ones((1, 4))), r"detections must be \[n, 3\]"),
])
def test_localisation_steps_refuses_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        W.plot_localisation_steps(*args)


def test_localisation_steps_refuses_a_bad_time_scale():
    curve, thresholds, proposals, detections = _steps_input()
    with pytest.raises(ValueError, match="seconds_per_frame must be a positive number"):
        W.plot_localisation_steps(curve, thresholds, proposals, detections,
                                  seconds_per_frame=-1.0)
