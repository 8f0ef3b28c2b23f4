"""The detection explorer: its pure plot, the cached analysis, and the widget wiring.

Everything runs on a crafted two-video split (no model, no synthetic data) except the last
tests, which analyse the ``tiny`` synthetic preset with a freshly initialised network and,
when it exists, open the shipped demo checkpoint.
"""

from __future__ import annotations

import base64
import dataclasses
from collections import OrderedDict
from pathlib import Path
from unittest import mock

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ecmlib.views import explorer  # noqa: E402
from ecmlib.method.evaluation import GroundTruth  # noqa: E402
from ecmlib.method.localize import LocalizeParams  # noqa: E402

T = 40


def _bump(lo: int, hi: int) -> np.ndarray:
    curve = np.full(T, -1.0)
    curve[lo:hi] = 3.0
    return curve


@pytest.fixture
def analysis() -> explorer.VideoAnalysis:
    """Two videos, two classes, 1 snippet = 1 frame = 1 s; each video has one clear action."""
    cas = np.stack([np.stack([_bump(5, 12), _bump(30, 33)]),      # v0: class 0 at 5-12 s
                    np.stack([_bump(0, 2), _bump(20, 28)])]).astype(np.float32)  # v1: class 1
    scores = np.array([[0.8, 0.2], [0.3, 0.7]], dtype=np.float32)
    weights = 1 / (1 + np.exp(-cas))
    gt = GroundTruth(classes=["Jump", "Throw"], video_names=["v0", "v1"],
                     video_idx=np.array([0, 1]), class_idx=np.array([0, 1]),
                     start=np.array([5.0, 20.0]), end=np.array([12.0, 28.0]),
                     subset="test", source="<crafted>", dataset="crafted")
    return explorer.VideoAnalysis(["v0", "v1"], ["Jump", "Throw"], scores, cas, weights,
                                  frame_num=np.array([T, T]), fps=np.array([1.0, 1.0]),
                                  duration=np.array([float(T), float(T)]), gt=gt,
                                  params=LocalizeParams.thumos14("clean"))


# ------------------------------------------------------------------ plot


def test_plot_draws_curves_ground_truth_and_scored_boxes():
    cas = _bump(5, 12)
    dets = np.array([[0, 5.0, 12.0, 0.9], [0, 20.0, 24.0, 0.3], [1, 0.0, 3.0, 0.5]])
    ax = explorer.plot_video_detections(cas, 1 / (1 + np.exp(-cas)), [(5.0, 12.0)], dets, 0,
                                        duration=80.0, title="v0: Jump",
                                        params=LocalizeParams.thumos14())
    labels = [line.get_label() for line in ax.get_lines()]
    assert "CAS (min-max)" in labels and "aggregation weight a" in labels
    cas_line = ax.get_lines()[0]
    # min-max normalised, x in seconds at the snippet centres of an 80 s span
    assert np.isclose(np.min(cas_line.get_ydata()), 0) and np.isclose(np.max(cas_line.get_ydata()), 1)
    assert np.isclose(cas_line.get_xdata()[0], 1.0) and ax.get_xlim() == (0.0, 80.0)
    boxes = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_y() < 0]
    assert len(boxes) == 2  # only class 0's rows
    assert sorted(round(b.get_x(), 3) for b in boxes) == [5.0, 20.0]
    texts = sorted(t.get_text().strip() for t in ax.texts)
    assert texts == ["0.30", "0.90"]
    # the detection matching the ground truth is coloured differently from the miss
    colours = {round(b.get_x()): b.get_facecolor() for b in boxes}
    assert colours[5] != colours[20]
    assert len(ax.patches) >= 3  # + the shaded ground truth
    assert "[2 detections]" in ax.get_title()
    plt.close(ax.figure)


def test_plot_overlapping_boxes_go_to_separate_lanes_and_are_capped():
    dets = np.array([[0, 0.0, 10.0, 0.9 - i * 0.01] for i in range(20)])
    ax = explorer.plot_video_detections(np.arange(T, dtype=float), None, [], dets, None,
                                        duration=40.0, max_detections=5)
    ys = sorted({round(p.get_y(), 3) for p in ax.patches})
    assert len(ys) == 5 and "[5 of 20 detections]" in ax.get_title()
    assert len(ax.get_lines()) == 1  # no weights curve, no threshold line
    plt.close(ax.figure)


def test_plot_rejects_bad_inputs():
    with pytest.raises(ValueError, match="duration"):
        explorer.plot_video_detections(np.ones(4), None, [], np.zeros((0, 4)), 0, duration=0)
    with pytest.raises(ValueError, match="same length"):
        explorer.plot_video_detections(np.ones(4), np.ones(5), [], np.zeros((0, 4)), 0, duration=1)


def test_per_class_ap_bars_skip_classes_without_ground_truth(analysis):
    from ecmlib.method.evaluation import evaluate_detection
    res = evaluate_detection(analysis.gt, analysis.predictions(), [0.3, 0.5])
    ax = explorer.plot_per_class_ap(res, 0.5)
    assert len(ax.patches) == 2
    with pytest.raises(ValueError, match="not evaluated"):
        explorer.plot_per_class_ap(res, 0.7)
    plt.close(ax.figure)


# ------------------------------------------------------------------ analysis


def test_analysis_localises_one_video_and_scores_it(analysis):
    dets = analysis.localize(0)
    assert dets.shape[1] == 4 and set(dets[:, 0].tolist()) == {0.0}  # class 1 below 0.25
    assert analysis.video_ap(0, 0, dets) == pytest.approx(1.0)
    assert np.isnan(analysis.video_ap(0, 1, dets))  # no ground truth of class 1 in v0
    assert analysis.gt_segments(1, 1) == [(20.0, 28.0)] and analysis.gt_classes(1) == [1]
    assert analysis.span(0) == 40.0
    assert analysis.dataset_map() == pytest.approx(1.0)
    # nothing passes a class threshold above every score: AP and mAP drop to 0
    strict = explorer._params_from(analysis.params, 0.95, 0.01, 0.6, 0.15, 0.4)
    assert analysis.localize(0, strict).shape == (0, 4)
    assert analysis.video_ap(0, 0, analysis.localize(0, strict)) == 0.0
    assert analysis.dataset_map(strict) == 0.0
    assert len(analysis._map_cache) == 2


def test_threshold_ladder_slides_with_its_lowest_rung():
    base = LocalizeParams.thumos14()
    p = explorer._params_from(base, 0.3, 0.11, 0.5, 0.2, 0.1)
    assert p.act_thresh[0] == 0.11 and p.act_thresh[2] == base.act_thresh[2]
    assert p.thresholds.size == base.thresholds.size
    np.testing.assert_allclose(p.thresholds - p.thresholds[0], base.thresholds - base.thresholds[0])
    for start in np.arange(0, 0.5, 0.01):  # every slider position keeps the rung count
        assert explorer._params_from(base, 0.3, start, 0.5, 0.2, 0.1).thresholds.size == 8
    assert (p.cls_score_th, p.nms_threshold, p.conf_gamma, p.outer_lambda) == (0.3, 0.5, 0.2, 0.1)
    assert p.time_unit == base.time_unit and p.mode == base.mode


def test_marker_line_format():
    assert explorer.marker_line("v", "Jump", float("nan"), 0.25, 3) == \
        "video=v class=Jump AP@0.5=n/a mAP@0.5=0.2500 detections=3"


# ------------------------------------------------------------------ widgets


def _controls(container):
    controls = container.children[0].children
    return {c.description: c for c in controls}


def _line(out) -> str:
    """The marker line the explorer's Output shows now (after its figure)."""
    figure, line = out.outputs
    assert figure["output_type"] == "display_data" and "image/png" in figure["data"]
    assert line["output_type"] == "stream"
    return line["text"].strip()


def test_explorer_redraws_with_the_slider_values(analysis):
    with mock.patch.object(explorer, "plot_video_detections") as plot:
        container, out = explorer.make_explorer(analysis)
        widgets = _controls(container)
        assert container.children[1] is out
        first = _line(out)
        assert "video=v0 class=Jump AP@0.5=1.0000 mAP@0.5=1.0000" in first
        assert plot.call_count == 1
        assert plot.call_args.kwargs["params"] == analysis.params

        widgets["class score threshold"].value = 0.9
        kw = plot.call_args.kwargs
        assert plot.call_count == 2 and kw["params"].cls_score_th == 0.9
        assert "AP@0.5=0.0000 mAP@0.5=0.0000 detections=0" in _line(out)

        widgets["class score threshold"].value = 0.25
        widgets["NMS threshold"].value = 0.3
        widgets["γ (conf_gamma)"].value = 0.5
        widgets["outer λ"].value = 0.2
        widgets["lowest act. threshold"].value = 0.05
        p = plot.call_args.kwargs["params"]
        assert (p.nms_threshold, p.conf_gamma, p.outer_lambda, p.act_thresh[0]) == (0.3, 0.5, 0.2, 0.05)
        assert "AP@0.5=1.0000 mAP@0.5=1.0000" in _line(out)


def test_explorer_follows_the_video_ground_truth_class(analysis):
    with mock.patch.object(explorer, "plot_video_detections") as plot:
        container, out = explorer.make_explorer(analysis)
        widgets = _controls(container)
        widgets["video"].value = 1
        assert widgets["class"].value == 1
        args = plot.call_args.args
        assert np.array_equal(args[0], analysis.cas[1, 1]) and args[2] == [(20.0, 28.0)]
        assert _line(out).startswith("video=v1 class=Throw")
        widgets["class"].value = 0  # a class the video does not contain: AP undefined
        assert "class=Jump AP@0.5=n/a" in _line(out)


def test_explorer_draws_for_real(analysis, capsys):
    plt.close("all")
    container, out = explorer.make_explorer(analysis)
    assert "detections=1" in _line(out)
    png = base64.b64decode(out.outputs[0]["data"]["image/png"])
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert plt.get_fignums() == []  # figures are closed after each redraw
    # shown on the widget, not printed: a Voila server does not capture it (live_output)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------ model and data


def test_analyse_split_matches_model_inference():
    import torch

    from ecmlib.method.model import ECMNet
    from ecmlib.training.setup import make_config
    from ecmlib.training.inference import predict
    cfg = make_config("THUMOS14", synthetic="tiny")
    test = explorer.load_test_split(cfg, max_videos=6)
    assert len(test) == 6
    torch.manual_seed(0)
    model = ECMNet(cfg.model)
    res = explorer.analyse_split(model, test, cfg)
    scores, cas = predict(model, test.features)
    np.testing.assert_allclose(res.scores, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.cas, cas, rtol=1e-5, atol=1e-5)
    assert res.weights.shape == cas.shape and (res.weights > 0).all() and (res.weights < 1).all()
    assert sorted(res.gt.video_names) == sorted(test.names)
    assert 0.0 <= res.dataset_map() <= 1.0


def test_open_checkpoint_round_trip(tmp_path):
    import torch

    from ecmlib.method.model import ECMNet
    from ecmlib.training.setup import make_config
    from ecmlib.training.checkpoint import save_checkpoint
    cfg = make_config("THUMOS14", synthetic="tiny")
    model = ECMNet(cfg.model)
    path = tmp_path / "ck.pth"
    save_checkpoint(path, model, None, 3, {"ecmlib_config": cfg.to_dict()})
    loaded, cfg2 = explorer.open_checkpoint(path)
    assert cfg2.data.synthetic == "tiny" and cfg2.model == cfg.model
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    _, real = explorer.open_checkpoint(path, data_root=tmp_path)
    assert real.data.data_root == str(tmp_path) and real.data.synthetic is None
    assert "feature" in explorer.real_features_status(tmp_path, real)
    assert explorer.real_features_status("", real) == "no data_root given"
    with pytest.raises(FileNotFoundError, match="not found"):
        explorer.open_checkpoint(tmp_path / "missing.pth")


@pytest.mark.skipif(not explorer.DEMO_CHECKPOINT.is_file(), reason="no shipped demo checkpoint yet")
def test_shipped_demo_checkpoint_opens_and_fits_its_synthetic_preset():
    from ecmlib.data.synthetic import get_spec
    model, cfg = explorer.open_checkpoint()
    spec = get_spec(cfg.data.synthetic)
    assert (cfg.model.feat_dim, cfg.model.num_snippets) == (spec.feat_dim, spec.num_snippets), (
        "the shipped checkpoint no longer fits its synthetic preset: regenerate it with "
        "python scripts/make_demo_checkpoint.py")
    assert explorer.DEMO_CHECKPOINT.stat().st_size < 3_000_000


def test_examples_pick_and_plot(analysis):
    picks = explorer.pick_examples(analysis, n=3)
    assert sorted(picks) == [0, 1]  # only two candidates
    fig = explorer.plot_examples(analysis, ["v1", 0])
    assert len(fig.axes) == 2 and fig.axes[0].get_title().startswith("v1: Throw, AP@0.5 = 1.00")
    plt.close(fig)
    with pytest.raises(ValueError, match="no single-class"):
        explorer.pick_examples(analysis, max_seconds=1)


def test_examples_fall_back_to_videos_without_detections(analysis):
    strict = explorer._params_from(analysis.params, 0.95, 0.01, 0.6, 0.15, 0.4)
    assert sorted(explorer.pick_examples(analysis, n=2, params=strict)) == [0, 1]


def test_real_features_path_reads_only_the_test_split(tmp_path):
    """Features on disk (the tiny preset written in the official layout) stand in for real ones."""
    import shutil

    from ecmlib.method.model import ECMNet
    from ecmlib.data.synthetic import write_dataset
    from ecmlib.training.inference import evaluate_model
    from ecmlib.training.setup import make_config
    from ecmlib.training.checkpoint import save_checkpoint
    cfg = make_config("THUMOS14", synthetic="tiny")
    root = write_dataset("tiny", tmp_path / "features")
    shutil.rmtree(root / "val")  # the train split is not needed, and must not be read
    path = tmp_path / "ck.pth"
    save_checkpoint(path, ECMNet(cfg.model), None, 1, {"ecmlib_config": cfg.to_dict()})
    model, real = explorer.open_checkpoint(path, data_root=root)
    assert explorer.real_features_status(root, real) is None
    on_disk = explorer.load_test_split(real, max_videos=5)
    generated = explorer.load_test_split(cfg, max_videos=5)
    assert on_disk.names == generated.names
    np.testing.assert_allclose(on_disk.features, generated.features, rtol=1e-6, atol=1e-6)
    ev = evaluate_model(model, on_disk, real)
    assert "THUMOS14 test" in ev.result.gt_description


# ------------------------------------------------------------------ two models


def _second_model(analysis: explorer.VideoAnalysis) -> explorer.VideoAnalysis:
    """The crafted split seen by a model that misplaces v0's action (20-27 s instead of 5-12 s)
    and finds v1's as well as the first one."""
    cas = analysis.cas.copy()
    cas[0, 0] = _bump(20, 27)
    return dataclasses.replace(analysis, cas=cas, weights=None, _map_cache=OrderedDict())


@pytest.fixture
def pair(analysis) -> explorer.ModelPair:
    return explorer.ModelPair(analysis, _second_model(analysis), ("ECM", "pre only"))


def _independent_video_map(analysis: explorer.VideoAnalysis, video: str) -> float:
    """AP@0.5 of one video from the split-wide predictions (localize_batch_flat), scored by
    evaluate_detection against that video's ground truth alone: not the explorer's path."""
    from ecmlib.method.evaluation import evaluate_detection, predictions_from_arrays
    gt, preds = analysis.gt, analysis.predictions()
    g = gt.video_idx == gt.video_names.index(video)
    sub_gt = GroundTruth(gt.classes, [video], np.zeros(int(g.sum()), np.int64), gt.class_idx[g],
                         gt.start[g], gt.end[g], gt.subset, "<one video>", gt.dataset)
    p = np.asarray(preds.video_names, dtype=object)[preds.video_idx] == video
    sub = predictions_from_arrays([video] * int(p.sum()), preds.class_idx[p], preds.start[p],
                                  preds.end[p], preds.score[p], classes=gt.classes)
    return float(evaluate_detection(sub_gt, sub, [0.5]).mAP[0])


def _check_ranking(pair: explorer.ModelPair) -> None:
    ranking = pair.ranking()
    assert list(ranking.columns) == ["video", "index", "classes", "ap_a", "ap_b", "difference"]
    assert ranking.attrs["labels"] == pair.labels
    assert list(ranking["difference"]) == sorted(ranking["difference"], reverse=True)
    with_gt = [v for i, v in enumerate(pair.a.names) if pair.a.gt_classes(i)]
    assert sorted(ranking["video"]) == sorted(with_gt)
    for row in ranking.itertuples(index=False):
        assert pair.a.names[row.index] == row.video
        ap_a = _independent_video_map(pair.a, row.video)
        ap_b = _independent_video_map(pair.b, row.video)
        assert row.ap_a == pytest.approx(ap_a, abs=1e-12)
        assert row.ap_b == pytest.approx(ap_b, abs=1e-12)
        assert row.difference == pytest.approx(ap_a - ap_b, abs=1e-12)


def test_ranking_differences_equal_independently_computed_video_aps(pair):
    ranking = pair.ranking()
    assert list(ranking["video"]) == ["v0", "v1"]  # ECM wins v0, ties v1
    assert list(ranking["difference"]) == [1.0, 0.0]
    _check_ranking(pair)
    assert pair.labels == ("ECM", "pre_only")  # spaces would break the marker line
    assert pair.class_to_show(0) == 0 and pair.class_to_show(1) == 1


def test_pair_refuses_different_splits_or_localisation(analysis):
    other = _second_model(analysis)
    renamed = dataclasses.replace(other, names=["v0", "w1"], _map_cache=OrderedDict())
    with pytest.raises(ValueError, match=r"not analysed on the same test split: different test "
                                         r"videos \(v1 vs w1\)"):
        explorer.ModelPair(analysis, renamed)
    shifted = dataclasses.replace(other, fps=np.array([1.0, 2.0]), _map_cache=OrderedDict())
    with pytest.raises(ValueError, match="different fps per video"):
        explorer.ModelPair(analysis, shifted)
    strict = dataclasses.replace(other, params=LocalizeParams.thumos14("official"),
                                 _map_cache=OrderedDict())
    assert strict.params != analysis.params  # 'official' vs the fixture's 'clean' mode
    with pytest.raises(ValueError, match="different localisation parameters"):
        explorer.ModelPair(analysis, strict)
    with pytest.raises(ValueError, match="different labels"):
        explorer.ModelPair(analysis, other, ("x", "x"))


def test_configs_of_different_test_splits_are_refused():
    from ecmlib.training.setup import make_config
    a = make_config("THUMOS14", synthetic="tiny")
    assert explorer.comparability_problems(a, a.with_overrides(["model.streams=pre",
                                                                "train.seed=3",
                                                                "data.train_split=other"])) == []
    explorer.check_comparable(a, a.with_overrides(["loss.w_eq=0"]))
    b = a.with_overrides(["data.synthetic_seed=1", "localize.nms_threshold=0.3"])
    with pytest.raises(ValueError, match=r"ECM and pre cannot be compared: .*"
                                         r"data\.synthetic_seed: 0 vs 1; localize\.nms_threshold"):
        explorer.check_comparable(a, b, ("ECM", "pre"))
    c = a.with_overrides(["data.synthetic=thumos14-mini"])
    assert any(p.startswith("data.synthetic:") for p in explorer.comparability_problems(a, c))


def test_pair_marker_round_trip():
    line = explorer.pair_marker_line("v0", "Jump shot", ("ECM", "pre only"), (0.5, float("nan")),
                                     (0.25, 0.125), (3, 0))
    assert line == ("video=v0 class=Jump shot | ECM AP@0.5=0.5000 mAP@0.5=0.2500 detections=3 | "
                    "pre_only AP@0.5=n/a mAP@0.5=0.1250 detections=0")
    d = explorer.parse_pair_marker("noise\n" + line)
    assert (d["video"], d["klass"], d["label_a"], d["label_b"]) == ("v0", "Jump shot", "ECM", "pre_only")
    assert d["ap_a"] == 0.5 and np.isnan(d["ap_b"]) and (d["n_a"], d["n_b"]) == (3, 0)
    assert explorer.parse_pair_marker(explorer.marker_line("v", "c", 1.0, 1.0, 1)) is None


def test_comparison_plot_draws_both_models_on_one_timeline():
    dets_a = np.array([[0, 5.0, 12.0, 0.9], [0, 20.0, 24.0, 0.3], [1, 0.0, 3.0, 0.5]])
    dets_b = np.array([[0, 20.0, 27.0, 0.7]])
    ax = explorer.plot_video_comparison(_bump(5, 12), _bump(20, 27), [(5.0, 12.0)], dets_a, dets_b,
                                        0, duration=40.0, labels=("ECM", "pre"), aps=(1.0, 0.0),
                                        title="v0: Jump", params=LocalizeParams.thumos14())
    names = [line.get_label() for line in ax.get_lines()]
    assert names[:2] == ["CAS ECM", "CAS pre"]
    boxes = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_y() < 0]
    assert len(boxes) == 3  # two of ECM's class-0 rows, one of pre-only's
    ecm = [b for b in boxes if b.get_edgecolor()[:3] == matplotlib.colors.to_rgb("tab:red")]
    pre = [b for b in boxes if b.get_edgecolor()[:3] == matplotlib.colors.to_rgb("tab:blue")]
    assert len(ecm) == 2 and len(pre) == 1
    assert max(b.get_y() for b in pre) < min(b.get_y() for b in ecm)  # pre-only's band below
    hit = {round(b.get_x()): b.get_hatch() for b in ecm}
    assert hit[5] is None and hit[20] == "///" and pre[0].get_hatch() == "///"
    assert [t.get_text() for t in ax.get_yticklabels()][-2:] == ["ECM", "pre"]
    title = ax.get_title()
    assert "ECM AP@0.5 = 1.00 [2 det.]" in title and "pre AP@0.5 = 0.00 [1 det.]" in title
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="same length"):
        explorer.plot_video_comparison(np.ones(4), np.ones(5), [], dets_a, dets_b, 0, duration=1)


def test_pair_explorer_shows_the_same_video_and_class_for_both(pair):
    with mock.patch.object(explorer, "plot_video_comparison") as plot:
        container, out = explorer.make_pair_explorer(pair)
        assert container.children[1] is out
        controls, table = container.children[0].children
        widgets = {c.description: c for c in controls.children}
        ranking_list = table.children[1]
        assert len(widgets) == 7 and ranking_list.value == 0  # opens on the top row, v0
        first = explorer.parse_pair_marker(_line(out))
        assert (first["video"], first["klass"], first["ap_a"], first["ap_b"]) == ("v0", "Jump", 1.0, 0.0)
        args = plot.call_args.args
        assert np.array_equal(args[0], pair.a.cas[0, 0]) and np.array_equal(args[1], pair.b.cas[0, 0])
        assert plot.call_args.kwargs["labels"] == ("ECM", "pre_only")
        assert plot.call_args.kwargs["aps"] == (1.0, 0.0)

        ranking_list.value = 1  # pick the second row: the explorer opens v1 on its class
        assert widgets["video"].value == 1 and widgets["class"].value == 1
        args = plot.call_args.args
        assert np.array_equal(args[0], pair.a.cas[1, 1]) and np.array_equal(args[1], pair.b.cas[1, 1])
        assert args[2] == [(20.0, 28.0)]
        shown = explorer.parse_pair_marker(_line(out))
        row = pair.ranking().set_index("video").loc["v1"]
        assert (shown["video"], shown["klass"]) == ("v1", "Throw")
        assert (shown["ap_a"], shown["ap_b"]) == (row.ap_a, row.ap_b)

        widgets["video"].value = 0  # the dropdown moves the ranking's selection too
        assert ranking_list.value == 0
        widgets["class score threshold"].value = 0.9  # one knob for both models
        shown = explorer.parse_pair_marker(_line(out))
        assert (shown["n_a"], shown["n_b"], shown["map_a"], shown["map_b"]) == (0, 0, 0.0, 0.0)
        assert plot.call_args.kwargs["params"].cls_score_th == 0.9


def test_pair_explorer_draws_for_real(pair):
    plt.close("all")
    _, out = explorer.make_pair_explorer(pair, video="v1")
    assert "video=v1 class=Throw | ECM AP@0.5=1.0000" in _line(out)
    assert plt.get_fignums() == []
    fig = explorer.plot_pair_examples(pair, ["v0", 1])
    assert len(fig.axes) == 2 and fig.axes[0].get_title().startswith("v0: Jump")
    plt.close(fig)


def test_resolve_checkpoint_names_shipped_files(tmp_path, monkeypatch):
    assert explorer.resolve_checkpoint("") == explorer.DEMO_CHECKPOINT
    monkeypatch.chdir(tmp_path)
    name = explorer.DEMO_CHECKPOINT.name
    if explorer.DEMO_CHECKPOINT.is_file():
        assert explorer.resolve_checkpoint(name) == explorer.DEMO_CHECKPOINT
    (tmp_path / name).write_bytes(b"local")  # a file here wins over the shipped one
    assert explorer.resolve_checkpoint(name) == Path(name)
    assert explorer.resolve_checkpoint("sub/missing.pth") == Path("sub/missing.pth")


@pytest.mark.skipif(not all(p.is_file() for p in explorer.RECORD_CHECKPOINTS.values()),
                    reason="the record checkpoints are not shipped yet")
def test_shipped_record_checkpoints_are_a_comparable_pair():
    (la, pa), (lb, pb) = explorer.RECORD_CHECKPOINTS.items()
    model_a, cfg_a = explorer.open_checkpoint(pa.name)
    model_b, cfg_b = explorer.open_checkpoint(pb.name)
    explorer.check_comparable(cfg_a, cfg_b, (la, lb))
    assert (cfg_a.model.streams, cfg_b.model.streams) == ("both", "pre")
    for p in (pa, pb):
        assert p.stat().st_size < 3_000_000
        raw = torch.load(p, map_location="cpu", weights_only=True)
        assert set(raw) == {"epoch", "state_dict", "ecmlib_config"}
    test = explorer.load_test_split(cfg_a, max_videos=12)
    _check_ranking(explorer.ModelPair(explorer.analyse_split(model_a, test, cfg_a),
                                      explorer.analyse_split(model_b, test, cfg_b), (la, lb)))


def test_demo_checkpoint_against_an_untrained_model_ranks_like_independent_aps():
    from ecmlib.method.model import ECMNet
    if not explorer.DEMO_CHECKPOINT.is_file():
        pytest.skip("no shipped demo checkpoint")
    model, cfg = explorer.open_checkpoint()
    test = explorer.load_test_split(cfg, max_videos=12)
    torch.manual_seed(0)
    other = ECMNet(cfg.model).eval()
    pair = explorer.ModelPair(explorer.analyse_split(model, test, cfg),
                              explorer.analyse_split(other, test, cfg), ("demo", "untrained"))
    _check_ranking(pair)
    assert pair.ranking()["ap_a"].max() > 0


def test_live_output_raises_on_its_first_draw_and_shows_later_errors():
    import ipywidgets as w
    slider = w.IntSlider(value=1)
    interactive = []

    def draw(n: int):
        # In interactive mode the inline backend would queue every figure for a show that
        # a control's change never runs: draws happen with it off.
        interactive.append(plt.isinteractive())
        fig, _ = plt.subplots()
        if n < 0:
            raise ValueError(f"no video {n}")
        return fig, f"n={n}"

    plt.close("all")
    with pytest.raises(ValueError, match="no video -1"):
        explorer.live_output(draw, {"n": w.IntSlider(value=-1, min=-1)})
    assert plt.get_fignums() == []  # the failed draw's figure is closed
    plt.ion()
    try:
        out = explorer.live_output(draw, {"n": slider})
        assert _line(out) == "n=1"
        slider.value = 2
        assert _line(out) == "n=2"
        slider.min = -1
        slider.value = -1  # a later draw fails: its error takes the figure's place
        assert plt.isinteractive()  # restored after each draw
    finally:
        plt.ioff()
    (error,) = out.outputs
    assert (error["output_type"], error["ename"], error["evalue"]) == ("error", "ValueError", "no video -1")
    assert error["traceback"][-1] == "ValueError: no video -1"
    assert interactive == [False] * 4 and plt.get_fignums() == []
