"""Tests of ecmlib.data.stats on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecmlib.data import stats as S
from ecmlib.data.features import FeatureSet


def _gt() -> dict:
    return {"dataset": "Hand", "classes": ["a", "b"], "database": {
        # overlapping a's (union 1..4), a b running past the duration (clipped to 8..10)
        "v1": {"subset": "train", "duration": 10.0, "annotations": [
            {"segment": [1.0, 3.0], "label": "a"}, {"segment": [2.0, 4.0], "label": "a"},
            {"segment": [8.0, 12.0], "label": "b"}]},
        "v2": {"subset": "test", "duration": 20.0, "annotations": [
            {"segment": ["0", "5"], "label": "b"}]},  # strings, as in ECM's THUMOS file
        "v3": {"subset": "train", "duration": 4.0, "annotations": [
            {"segment": [2.0, 2.0], "label": "a"}]},  # zero length
    }}


def test_instance_table_and_durations():
    t = S.instance_table(_gt())
    assert len(t) == 5 and set(t["source"]) == {"Hand"}
    assert t["length"].tolist() == [2.0, 2.0, 4.0, 5.0, 0.0]
    d = S.instance_durations(_gt(), subset="train", source="real")
    assert d["relative_length"].tolist() == [0.2, 0.2, 0.4, 0.0]
    assert set(d["source"]) == {"real"}


def test_instances_per_class():
    df = S.instances_per_class(_gt())
    assert df["label"].tolist() == ["a", "b"]
    assert df["instances"].tolist() == [3, 2]
    assert df["videos"].tolist() == [2, 2]
    assert df["mean_length"].tolist() == pytest.approx([4 / 3, 4.5])
    test = S.instances_per_class(_gt(), subset="test")
    assert test["instances"].tolist() == [0, 1]  # class a kept with a zero count
    assert np.isnan(test["mean_length"].iloc[0])


def test_video_tables():
    v = S.video_durations(_gt())
    assert v.set_index("video")["duration"].to_dict() == {"v1": 10.0, "v2": 20.0, "v3": 4.0}


def test_action_coverage():
    cov = S.action_coverage(_gt()).set_index("video")
    assert cov["covered"].to_dict() == {"v1": 5.0, "v2": 5.0, "v3": 0.0}
    assert cov["coverage"].to_dict() == {"v1": 0.5, "v2": 0.25, "v3": 0.0}


def test_gt_summary_and_side_by_side():
    real = S.gt_summary(_gt(), source="real")
    row = real.iloc[0]
    assert (row["videos"], row["instances"], row["classes"]) == (3, 5, 2)
    assert row["instances_per_video"] == pytest.approx(5 / 3)
    assert row["median_video_duration"] == 10.0
    assert row["median_instance_length"] == 2.0
    assert row["mean_coverage"] == pytest.approx(0.25)
    both = pd.concat([real, S.gt_summary(_gt(), subset="train", source="synthetic")])
    assert both["source"].tolist() == ["real", "synthetic"]
    assert both["videos"].tolist() == [3, 2]


def test_gt_errors():
    with pytest.raises(ValueError, match=r"no video in subset \['validation'\]; subsets present: \['test', 'train'\]"):
        S.video_durations(_gt(), subset="validation")
    bad = _gt()
    del bad["database"]["v2"]["duration"]
    with pytest.raises(ValueError, match="gt video 'v2': missing key 'duration'"):
        S.action_coverage(bad)
    bad = _gt()
    bad["database"]["v1"]["annotations"][0]["segment"] = [1.0]
    with pytest.raises(ValueError, match=r"gt video 'v1': malformed segment \[1.0\]"):
        S.instance_table(bad)
    bad = _gt()
    bad["database"]["v3"]["duration"] = 0.0
    with pytest.raises(ValueError, match="gt video 'v3': duration 0.0 must be finite and > 0"):
        S.action_coverage(bad)
    with pytest.raises(ValueError, match="'database' object"):
        S.video_durations({"classes": []})


def test_real_thumos_coverage_is_plausible():
    from ecmlib.data.features import load_annotations
    cov = S.action_coverage(load_annotations("THUMOS14"), subset="test")
    assert len(cov) == 210
    assert cov["coverage"].between(0, 1).all()
    # THUMOS14 test videos are mostly background: the mean coverage is well below one half
    assert 0.1 < cov["coverage"].mean() < 0.5


# ------------------------------------------------------------------ features


def _fs(means: list[float], labels: list[list[int]], t: int = 2) -> FeatureSet:
    """Videos whose features are constant over time: channel 0 = mean, channel 1 = 0."""
    n = len(means)
    feats = np.zeros((n, 2, t), np.float32)
    feats[:, 0, :] = np.asarray(means, np.float32)[:, None]
    return FeatureSet("Hand", "val", ["a", "b"], [f"v{i}" for i in range(n)], feats,
                      np.asarray(labels, np.float32), np.full(n, 100, np.int64),
                      np.full(n, 25.0), np.full(n, 4.0), source="hand")


def test_snippet_norms_and_sparsity():
    feats = np.array([[[3.0, 0.0], [4.0, 0.0]]], np.float32)  # one video, D=2, T=2
    fs = FeatureSet("Hand", "val", ["a"], ["v0"], feats, np.ones((1, 1), np.float32),
                    np.array([10]), np.array([25.0]), np.array([0.4]))
    norms = S.snippet_norms(fs)
    assert norms["norm"].tolist() == [5.0, 0.0]
    assert norms["norm_rgb"].tolist() == [3.0, 0.0]
    assert norms["norm_flow"].tolist() == [4.0, 0.0]
    assert norms["source"].iloc[0] == "Hand/val"
    sp = S.feature_sparsity(fs, source="x").set_index("stream")["sparsity"]
    assert sp.to_dict() == {"rgb": 0.5, "flow": 0.5, "all": 0.5}
    fs.features[0, 0, 1] = 1e-3
    sp = S.feature_sparsity(fs, eps=1e-2).set_index("stream")["sparsity"]
    assert sp.to_dict() == {"rgb": 0.5, "flow": 0.5, "all": 0.5}
    sp = S.feature_sparsity(fs, eps=1e-4).set_index("stream")["sparsity"]
    assert sp.to_dict() == {"rgb": 0.0, "flow": 0.5, "all": 0.25}


def test_class_separability_hand_computed():
    # a: 0, 4 (centroid 2); b: 5, 9 (centroid 7); grand mean over pairs 4.5
    res = S.class_separability(_fs([0, 4, 5, 9], [[1, 0], [1, 0], [0, 1], [0, 1]])).iloc[0]
    assert res["within"] == pytest.approx(4.0)
    assert res["between"] == pytest.approx(6.25)
    assert res["fisher_ratio"] == pytest.approx(1.5625)
    # leave-one-out: 4 sees a-centroid 0 (dist 16) vs b 7 (dist 9) -> wrong; 5 likewise;
    # a centroid fitted with the video itself would have called all four right
    assert res["nc_accuracy"] == pytest.approx(0.5)
    assert res["chance"] == pytest.approx(0.5)
    assert res["source"] == "hand"


def test_class_separability_singleton_and_multilabel():
    # b has one video: it cannot be predicted for itself, so that video counts as wrong
    res = S.class_separability(_fs([0, 2, 10], [[1, 0], [1, 0], [0, 1]])).iloc[0]
    assert res["nc_accuracy"] == pytest.approx(2 / 3)
    # a video labelled a+b is right whichever of the two centroids is nearest
    res = S.class_separability(_fs([0, 2, 10, 12, 6], [[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]]))
    row = res.iloc[0]
    # pairs: a = {0, 2, 6} (centroid 8/3), b = {10, 12, 6} (centroid 28/3)
    assert row["within"] == pytest.approx(((8 / 3) ** 2 + (2 / 3) ** 2 + (10 / 3) ** 2) * 2 / 6)
    assert row["chance"] == pytest.approx((0.5 * 4 + 1.0) / 5)
    assert row["nc_accuracy"] == pytest.approx(1.0)


def test_foreground_background_norms():
    feats = np.zeros((1, 2, 4), np.float32)
    feats[0, 0] = [1, 2, 3, 4]
    fs = FeatureSet("Hand", "val", ["a"], ["v0"], feats, np.ones((1, 1), np.float32),
                    np.array([200]), np.array([25.0]), np.array([8.0]))
    gt = {"database": {"v0": {"subset": "train", "duration": 8.0, "annotations": [
        {"segment": [2.0, 4.0], "label": "a"}, {"segment": [6.9, 7.5], "label": "a"}]}}}
    # snippet centres 1, 3, 5, 7: snippets 1 and 3 are foreground
    df = S.foreground_background_norms(fs, gt, source="s").set_index("region")
    assert df.loc["foreground", "snippets"] == 2 and df.loc["foreground", "mean_norm"] == 3.0
    assert df.loc["background", "snippets"] == 2 and df.loc["background", "mean_norm"] == 2.0
    gt["database"]["v0"]["annotations"] = [{"segment": [0.0, 8.0], "label": "a"}]
    df = S.foreground_background_norms(fs, gt).set_index("region")
    assert df.loc["background", "snippets"] == 0 and np.isnan(df.loc["background", "mean_norm"])
    with pytest.raises(ValueError, match="Hand/val: video 'v0' is not in the ground truth"):
        S.foreground_background_norms(fs, {"database": {}})
