"""Tests of ecmlib.method.evaluation: golden parity, hand-computed AP, loaders and their errors.

tests/data/thumos14_gt_ecm.json is a copy of shared/reference/annotations/thumos14/gt_ecm.json:
THUMOS'14 temporal annotations of the 20 classes as redistributed by the official ECM release
(VividLe/Equivalent-Classification-Mapping, lib/dataset/materials_THUMOS14/gt.json); public
benchmark annotations, kept with this provenance.
"""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from ecmlib.method import evaluation
from ecmlib.method.evaluation import (
    ANET_TIOU, MAP_TOLERANCE, THUMOS14_TIOU, classification_map, evaluate_detection,
    format_table, ground_truth_from_dict, load_ground_truth, load_predictions, parity_check_map,
    parse_tiou, predictions_from_arrays, run_evaluate,
)

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parents[1]
GT_PATH = DATA / "thumos14_gt_ecm.json"
GOLDEN = [DATA / "official_thumos_s1.npz", DATA / "official_anet_s2.npz"]


def _gt(annotations: dict[str, list[tuple[str, float, float]]], classes=None, subset="test",
        extra: dict | None = None) -> dict:
    """A ground-truth dict: video -> [(label, start, end)]."""
    db = {vid: {"subset": subset,
                "annotations": [{"segment": [s, e], "label": lab} for lab, s, e in anns]}
          for vid, anns in annotations.items()}
    data = {"database": db}
    if classes is not None:
        data["classes"] = classes
    data.update(extra or {})
    return data


def _results(dets: dict[str, list[tuple[str, float, float, float]]]) -> dict:
    """A result dict: video -> [(label, start, end, score)]."""
    return {"results": {vid: [{"label": lab, "segment": [s, e], "score": sc}
                              for lab, s, e, sc in rows] for vid, rows in dets.items()}}


def _write(tmp_path: Path, name: str, obj) -> Path:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def _ap(gt_dict, res_dict, tiou, classes=None):
    gt = ground_truth_from_dict(gt_dict, "test", classes)
    return evaluate_detection(gt, load_predictions(res_dict, gt), tiou)


# --------------------------------------------------------------------------- golden parity


@pytest.mark.parametrize("golden_path", GOLDEN, ids=lambda p: p.stem)
def test_parity_with_golden(golden_path):
    golden = np.load(golden_path)
    checks = parity_check_map(golden, GT_PATH)
    assert [name for name, _, _ in checks] == ["map/thumos/ap", "map/thumos/mAP",
                                               "map/anet/ap", "map/anet/mAP"]
    for name, err, tol in checks:
        assert tol == MAP_TOLERANCE
        assert err <= tol, f"{golden_path.name} {name}: max error {err}"


def test_parity_golden_thresholds_match_ours():
    golden = np.load(GOLDEN[0])
    np.testing.assert_array_equal(golden["map/thumos/tiou"], THUMOS14_TIOU)
    np.testing.assert_array_equal(golden["map/anet/tiou"], ANET_TIOU)
    np.testing.assert_array_equal(parse_tiou("0.1:0.9:0.1"), THUMOS14_TIOU)
    np.testing.assert_array_equal(parse_tiou("0.5:0.95:0.05"), ANET_TIOU)


def test_golden_thumos_has_tiou_ties_resolved_the_reference_way(monkeypatch):
    """Two CricketShot predictions of the THUMOS14 golden file overlap two instances equally;
    the golden AP is only reproduced by breaking those ties in the reference's order."""
    calls = []
    original = evaluation._reference_tie_rank

    def counting(tied_preds, *args):
        calls.append(tied_preds.size)
        return original(tied_preds, *args)

    monkeypatch.setattr(evaluation, "_reference_tie_rank", counting)
    golden = np.load(GOLDEN[0])
    classes = [str(c) for c in golden["map/classes"]]
    gt = load_ground_truth(GT_PATH, "test", classes)
    preds = load_predictions(json.loads(str(golden["map/predictions_json"])), gt)
    result = evaluate_detection(gt, preds, golden["map/thumos/tiou"])
    assert calls and calls[0] >= 2
    np.testing.assert_allclose(result.ap, golden["map/thumos/ap"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.mAP, golden["map/thumos/mAP"], rtol=0, atol=1e-9)
    assert result.averages()["average_mAP@0.1:0.5"] == pytest.approx(
        golden["map/thumos/mAP"][:5].mean(), abs=1e-12)


def test_equal_tiou_follows_numpy_argsort_like_reference():
    # A=[5,15] (0.9) overlaps g0=[0,10] and g1=[10,20] equally (tIoU 1/3). The reference
    # visits them in tiou.argsort()[::-1] order. B=[0,10] (0.8) matches g0 exactly.
    # A takes g1 -> B takes g0: tp [1,1], AP 1.  A takes g0 -> B misses: tp [1,0], AP 1/2.
    gt_dict = _gt({"v1": [("A", 0, 10), ("A", 10, 20)]})
    res = _results({"v1": [("A", 5, 15, 0.9), ("A", 0, 10, 0.8)]})
    first = np.array([1 / 3, 1 / 3]).argsort()[::-1][0]
    expected = 1.0 if first == 1 else 0.5
    assert _ap(gt_dict, res, [0.3]).ap[0, 0] == expected


def test_parity_against_shared_copy_when_present():
    shared_gt = ROOT.parent / "shared" / "reference" / "annotations" / "thumos14" / "gt_ecm.json"
    if not shared_gt.is_file():
        pytest.skip("shared reference folder absent")
    assert shared_gt.read_bytes() == GT_PATH.read_bytes()


# --------------------------------------------------------------------------- hand-computed AP


def test_perfect_detections_give_one():
    gt_dict = _gt({"v1": [("A", 0, 10), ("A", 20, 30)], "v2": [("B", 5, 6)]})
    res = _results({"v1": [("A", 0, 10, 0.9), ("A", 20, 30, 0.8)], "v2": [("B", 5, 6, 0.1)]})
    result = _ap(gt_dict, res, THUMOS14_TIOU)
    np.testing.assert_array_equal(result.ap, np.ones((9, 2)))
    np.testing.assert_array_equal(result.mAP, np.ones(9))


def test_duplicate_detection_hand_computed():
    # gt g1=[0,10], g2=[20,30]; ranked: A=g1 (0.9), B=copy of g1 (0.8), C=g2 (0.7).
    # tp = [1, 0, 1]; precision = [1, 1/2, 2/3]; recall = [1/2, 1/2, 1].
    # Precision made non-increasing from the right: [1, 2/3, 2/3]. Recall changes at A
    # (0 -> 1/2, precision 1) and at C (1/2 -> 1, precision 2/3): AP = 1/2 + 1/3 = 5/6.
    gt_dict = _gt({"v1": [("A", 0, 10), ("A", 20, 30)]})
    res = _results({"v1": [("A", 0, 10, 0.9), ("A", 0, 10, 0.8), ("A", 20, 30, 0.7)]})
    result = _ap(gt_dict, res, [0.5])
    assert result.ap[0, 0] == pytest.approx(5 / 6, abs=1e-15)


def test_greedy_takes_best_unmatched_instance():
    # g1=[0,10], g2=[8,20]. A=[2,12] (0.9): tIoU 8/12 with g1, 4/18 with g2.
    # B=[1,11] (0.8): tIoU 9/11 with g1, 3/19 with g2.
    # t=0.1: A takes g1, B falls back to g2 (3/19 >= 0.1): tp [1,1] -> AP 1.
    # t=0.2: A takes g1, B's only unmatched g2 has 3/19 < 0.2: tp [1,0] -> AP 1/2 * 1 = 0.5.
    # t=0.7: A misses (8/12 < 0.7), so g1 is free and B takes it: tp [0,1]; precision [0, 1/2]
    #        made monotone [1/2, 1/2]; recall changes only at B (0 -> 1/2): AP = 0.25.
    gt_dict = _gt({"v1": [("A", 0, 10), ("A", 8, 20)]})
    res = _results({"v1": [("A", 2, 12, 0.9), ("A", 1, 11, 0.8)]})
    result = _ap(gt_dict, res, [0.1, 0.2, 0.7])
    np.testing.assert_allclose(result.ap[:, 0], [1.0, 0.5, 0.25], rtol=0, atol=1e-15)


def test_tiou_exactly_at_threshold_counts():
    # [0,5] against [0,10]: tIoU = 5/10 = 0.5 exactly.
    gt_dict = _gt({"v1": [("A", 0, 10)]})
    res = _results({"v1": [("A", 0, 5, 0.9)]})
    tiou = parse_tiou("0.1:0.9:0.1")
    result = _ap(gt_dict, res, tiou)
    assert tiou[4] == 0.5
    np.testing.assert_array_equal(result.ap[:, 0], [1, 1, 1, 1, 1, 0, 0, 0, 0])


def test_empty_predictions_give_zero():
    gt_dict = _gt({"v1": [("A", 0, 10)], "v2": [("B", 1, 2)]})
    result = _ap(gt_dict, {"results": {}}, THUMOS14_TIOU)
    np.testing.assert_array_equal(result.ap, np.zeros((9, 2)))
    np.testing.assert_array_equal(result.mAP, np.zeros(9))
    gt = ground_truth_from_dict(gt_dict, "test")
    empty = predictions_from_arrays([], [], [], [], [])
    np.testing.assert_array_equal(evaluate_detection(gt, empty, [0.5]).mAP, [0.0])


def test_detections_in_unknown_video_are_false_positives_with_warning():
    gt_dict = _gt({"v1": [("A", 0, 10)]})
    res = _results({"v9": [("A", 0, 10, 0.9)], "v8": [("A", 0, 10, 0.8)]})
    gt = ground_truth_from_dict(gt_dict, "test")
    with pytest.warns(UserWarning, match=r"2 predicted videos .*'v9'"):
        preds = load_predictions(res, gt)
    result = evaluate_detection(gt, preds, THUMOS14_TIOU)
    np.testing.assert_array_equal(result.mAP, np.zeros(9))
    # ... and they still count as false positives next to a true positive.
    res["results"]["v1"] = [{"label": "A", "segment": [0, 10], "score": 0.5}]
    with pytest.warns(UserWarning):
        preds = load_predictions(res, gt)
    # ranked: v9 (FP), v8 (FP), v1 (TP): precision 1/3 at recall 1 -> AP 1/3.
    assert evaluate_detection(gt, preds, [0.5]).ap[0, 0] == pytest.approx(1 / 3, abs=1e-15)


def test_class_without_ground_truth_is_nan_and_left_out():
    gt_dict = _gt({"v1": [("A", 0, 10), ("B", 0, 10)]}, classes=["A", "B", "C"])
    res = _results({"v1": [("A", 0, 10, 0.9), ("B", 50, 60, 0.9), ("C", 0, 10, 0.9)]})
    result = _ap(gt_dict, res, [0.5])
    assert result.ap[0, 0] == 1.0 and result.ap[0, 1] == 0.0 and math.isnan(result.ap[0, 2])
    assert result.mAP[0] == 0.5
    assert list(result.num_gt) == [1, 1, 0]


def test_reversed_prediction_kept_with_warning():
    gt_dict = _gt({"v1": [("A", 0, 10)]})
    res = _results({"v1": [("A", 8, 2, 0.9), ("A", 0, 10, 0.5)]})
    gt = ground_truth_from_dict(gt_dict, "test")
    with pytest.warns(UserWarning, match="end before they start"):
        preds = load_predictions(res, gt)
    # ranked: reversed (FP), exact (TP): AP = 1 * 1/2.
    assert evaluate_detection(gt, preds, [0.5]).ap[0, 0] == 0.5


def test_zero_union_pair_matches_like_reference():
    # Two zero-length segments at different times: the reference's tIoU is 0/0 = NaN, which
    # passes its threshold test, so the prediction is a true positive.
    gt_dict = _gt({"v1": [("A", 3, 3)]})
    res = _results({"v1": [("A", 7, 7, 0.9)]})
    np.testing.assert_array_equal(_ap(gt_dict, res, THUMOS14_TIOU).ap[:, 0], np.ones(9))


def test_arrays_and_file_predictions_agree():
    gt = load_ground_truth(GT_PATH, "test")
    rng = np.random.default_rng(3)
    vids = rng.integers(0, gt.num_videos, 400)
    start = rng.random(400) * 100
    cls = rng.integers(0, len(gt.classes), 400)
    score = rng.random(400)
    names = np.array(gt.video_names)[vids]
    arrays = predictions_from_arrays(names, cls, start, start + 5, score, gt=gt)
    res = {"results": {}}
    for v, c, s, sc in zip(names, cls, start, score):
        res["results"].setdefault(str(v), []).append(
            {"label": gt.classes[c], "segment": [s, s + 5], "score": sc})
    from_file = load_predictions(res, gt)
    a = evaluate_detection(gt, arrays, THUMOS14_TIOU)
    b = evaluate_detection(gt, from_file, THUMOS14_TIOU)
    np.testing.assert_array_equal(a.ap, b.ap)
    assert a.mAP[0] > 0


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_eval", ROOT / "benchmarks" / "bench_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", range(6))
def test_matches_row_at_a_time_algorithm_on_adversarial_data(seed):
    """Crowded, overlapping instances on an integer grid (many equal tIoUs, tIoUs exactly on
    thresholds), tied scores, zero-length and reversed segments, unknown videos."""
    bench = _load_bench()
    rng = np.random.default_rng(seed)
    classes = ["A", "B", "C"]
    gt_ann = {}
    for v in range(4):
        s = rng.integers(0, 40, 25)
        e = s + rng.integers(0, 12, 25)
        gt_ann[f"v{v}"] = [(classes[c], float(a), float(b))
                           for c, a, b in zip(rng.integers(0, 3, 25), s, e)]
    gt = ground_truth_from_dict(_gt(gt_ann, classes=classes), "test")
    n = 400
    s = rng.integers(0, 45, n).astype(float)
    e = s + rng.integers(-1, 12, n)
    names = np.array([f"v{v}" for v in rng.integers(0, 5, n)])      # v4 is unknown
    score = np.round(rng.random(n), 1)                              # many tied scores
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        preds = predictions_from_arrays(names, rng.integers(0, 3, n), s, e, score,
                                        classes=classes, gt=gt)
    # With a 0 threshold every pair of a video is a candidate; without, only overlapping ones.
    for tiou in ([0.0, 0.1, 0.2, 0.25, 1 / 3, 0.5, 0.75, 0.9, 1.0], [0.1, 0.2, 0.5, 0.7]):
        ours = evaluate_detection(gt, preds, tiou)
        ref = bench.reference_style_ap(gt, preds, np.array(tiou))
        np.testing.assert_allclose(ours.ap, ref, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- classification


def test_classification_map_hand_cases():
    # Perfect ranking in both classes.
    assert classification_map([[0.9, 0.1], [0.2, 0.8]], [[1, 0], [0, 1]]) == 1.0
    # Ranked: negative, positive, positive -> precisions 1/2 and 2/3 at the positives:
    # AP = (1/2 + 2/3) / 2 = 7/12.
    assert classification_map([[0.9], [0.8], [0.7]], [[0], [1], [1]]) == pytest.approx(7 / 12)
    # Tied scores form one threshold: precision 1/2 at recall 1 -> AP 1/2.
    assert classification_map([[0.5], [0.5]], [[1], [0]]) == 0.5
    assert classification_map([[0.5], [0.5]], [[0], [1]]) == 0.5
    # A class without positives is left out of the mean.
    assert classification_map([[0.9, 0.3], [0.1, 0.6]], [[1, 0], [0, 0]]) == 1.0
    # Mean over classes: class 0 gives 1, class 1 gives 1/2 (positive ranked second).
    assert classification_map([[0.9, 0.9], [0.1, 0.2]], [[1, 0], [0, 1]]) == 0.75


def test_classification_map_errors():
    with pytest.raises(ValueError, match="no positive"):
        classification_map([[0.1, 0.2]], [[0, 0]])
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        classification_map([0.1, 0.2], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        classification_map([[np.nan]], [[1]])
    with pytest.raises(ValueError, match="0/1"):
        classification_map([[0.3]], [[2]])


# --------------------------------------------------------------------------- thresholds, output


def test_parse_tiou():
    np.testing.assert_array_equal(parse_tiou("0.5,0.75"), [0.5, 0.75])
    np.testing.assert_array_equal(parse_tiou("0.5"), [0.5])
    assert parse_tiou("0.1:0.9:0.1").size == 9
    assert parse_tiou("0.5:0.95:0.05").size == 10
    np.testing.assert_allclose(parse_tiou(" 0.3:0.7:0.1 "), [0.3, 0.4, 0.5, 0.6, 0.7], atol=1e-12)
    for bad in ("abc", "0.1:0.9", "0.9:0.1:0.1", "0.1:0.9:0", "0.1:0.5:0.3", "1.5", "-0.1,0.5",
                "0.5,,0.6"):
        with pytest.raises(ValueError, match="tIoU"):
            parse_tiou(bad)


def test_averages_and_as_dict():
    gt_dict = _gt({"v1": [("A", 0, 10)]})
    res = _results({"v1": [("A", 0, 6, 0.9)]})                      # tIoU 0.6
    full = _ap(gt_dict, res, np.linspace(0.1, 0.95, 18))
    thumos = _ap(gt_dict, res, THUMOS14_TIOU)
    assert set(thumos.averages()) == {"average_mAP@0.1:0.5", "average_mAP@0.1:0.7",
                                      "average_mAP@0.1:0.9"}
    assert thumos.averages()["average_mAP@0.1:0.5"] == 1.0
    assert thumos.averages()["average_mAP@0.1:0.7"] == pytest.approx(6 / 7)
    assert thumos.averages()["average_mAP@0.1:0.9"] == pytest.approx(6 / 9)
    anet = _ap(gt_dict, res, ANET_TIOU)
    assert set(anet.averages()) == {"average_mAP@0.5:0.95"}
    assert anet.averages()["average_mAP@0.5:0.95"] == pytest.approx(3 / 10)
    assert len(full.averages()) == 4
    d = thumos.as_dict()
    assert d["mAP@0.3"] == 1.0 and d["mAP@0.7"] == 0.0 and "average_mAP@0.1:0.9" in d
    assert list(_ap(gt_dict, res, [0.5, 0.75]).averages()) == []


def test_format_table_and_run_evaluate(tmp_path):
    golden = np.load(GOLDEN[0])
    pred = _write(tmp_path, "result.json", str(golden["map/predictions_json"]))
    table = run_evaluate(GT_PATH, pred, "test", "0.1:0.9:0.1", False)
    assert "ground truth: THUMOS14 test, 210 videos, 3311 instances (thumos14_gt_ecm.json)" in table
    assert "| threshold | 0.1" in table
    expected = " | ".join(f"{100 * m:.2f}" for m in golden["map/thumos/mAP"])
    assert expected in table.replace("  ", " ").replace("  ", " ")
    assert f"average mAP@0.1:0.5: {100 * golden['map/thumos/mAP'][:5].mean():.2f}" in table
    payload = json.loads(run_evaluate(GT_PATH, pred, "test", "0.5:0.95:0.05", True))
    assert payload["metrics"]["mAP@0.5"] == pytest.approx(golden["map/anet/mAP"][0], abs=1e-12)
    assert payload["metrics"]["average_mAP@0.5:0.95"] == pytest.approx(
        golden["map/anet/mAP"].mean(), abs=1e-12)
    assert len(payload["ap"]) == 20 and len(payload["ap"]["HighJump"]) == 10
    gt = load_ground_truth(GT_PATH, "test")
    anet_table = format_table(evaluate_detection(gt, load_predictions(pred, gt), ANET_TIOU))
    assert "| 0.50 " in anet_table and "0.95" in anet_table


# --------------------------------------------------------------------------- loaders


def test_load_official_ground_truth():
    gt = load_ground_truth(GT_PATH, "test")
    assert gt.num_videos == 210 and gt.num_instances == 3311
    assert gt.classes == sorted(gt.classes) and len(gt.classes) == 20
    assert gt.describe() == "THUMOS14 test: 210 videos, 3311 instances (thumos14_gt_ecm.json)"
    assert gt.start.dtype == np.float64 and np.all(gt.end >= gt.start)
    first = gt.video_names.index("video_test_0000896")
    assert gt.start[gt.video_idx == first][0] == 18.6
    train = load_ground_truth(GT_PATH, "train")
    assert train.num_videos == 200


def test_load_rich_ground_truth(tmp_path):
    classes = ["Zeta", "Alpha"]
    data = _gt({"v1": [("Alpha", 1.5, 2.5), ("Zeta", 3, 4)], "v2": []}, classes=classes)
    for v in data["database"].values():
        v.update({"duration": 12.0, "fps": 30.0, "frame_num": 360})
    path = _write(tmp_path, "gt.json", data)
    gt = load_ground_truth(path, "test")
    assert gt.classes == classes                      # the file's order, not sorted
    assert gt.num_videos == 2 and gt.num_instances == 2
    assert list(gt.class_idx) == [1, 0]
    assert gt.describe() == "2-class test: 2 videos, 2 instances (gt.json)"
    assert load_ground_truth(path, "test", ["Alpha", "Zeta"]).classes == ["Alpha", "Zeta"]


GT_ERRORS = [
    ({"db": {}}, "missing top-level 'database'"),
    ({"database": {"v1": {"annotations": []}}}, "video 'v1' has no 'subset'"),
    ({"database": {"v1": {"subset": "test"}}}, "video 'v1' has no 'annotations'"),
    ({"database": {"v1": {"subset": "test", "annotations": [{"label": "A"}]}}},
     r"video 'v1', annotation 0: missing 'segment'"),
    ({"database": {"v1": {"subset": "test", "annotations": [{"segment": [0, 1]}]}}},
     r"video 'v1', annotation 0: missing 'label'"),
    (_gt({"v1": [("A", 5, 1)]}), "ends before it starts"),
    (_gt({"v1": [("A", "nan", 1)]}), "not finite"),
    (_gt({"v1": [("A", 0, "inf")]}), "not finite"),
    (_gt({"v1": [("A", "x", 1)]}), "not numeric"),
    (_gt({"v1": [("A", 0, 1)]}, classes=["B"]), r"labels \['A'\] are not in the class list"),
    (_gt({"v1": [("A", 0, 1)]}, subset="train"), r"no video in subset 'test'.*'train' \(1\)"),
    (_gt({"v1": [("A", 0, 1)]}, classes=["A", "A"]), "repeats class names"),
]


@pytest.mark.parametrize("data,message", GT_ERRORS)
def test_ground_truth_errors_name_file_and_problem(tmp_path, data, message):
    path = _write(tmp_path, "bad_gt.json", data)
    with pytest.raises(ValueError, match=message) as info:
        load_ground_truth(path, "test")
    assert "bad_gt.json" in str(info.value)


def test_ground_truth_file_errors(tmp_path):
    with pytest.raises(ValueError, match="missing.json: file not found"):
        load_ground_truth(tmp_path / "missing.json", "test")
    path = _write(tmp_path, "broken.json", "{not json")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        load_ground_truth(path, "test")


PRED_ERRORS = [
    ({"result": {}}, "missing top-level 'results'"),
    ({"results": {"v1": [{"segment": [0, 1], "score": 1}]}}, "detection 0: missing 'label'"),
    ({"results": {"v1": [{"label": "A", "score": 1}]}}, "detection 0: missing 'segment'"),
    ({"results": {"v1": [{"label": "A", "segment": [0, 1]}]}}, "detection 0: missing 'score'"),
    (_results({"v1": [("A", 0, 1, 0.5), ("Q", 0, 1, 0.5)]}), r"detection 1: unknown label 'Q'"),
    (_results({"v1": [("A", 0, 1, "nan")]}), "'score' is nan"),
    (_results({"v1": [("A", 0, 1, float("inf"))]}), "'score' is inf"),
    (_results({"v1": [("A", 0, 1, "high")]}), "'score' 'high' is not numeric"),
    (_results({"v1": [("A", 0, float("nan"), 0.5)]}), "not finite"),
    ({"results": {"v1": [{"label": "A", "segment": [0], "score": 1}]}}, "must be \\[start, end\\]"),
    ({"results": {"v1": {"label": "A"}}}, "results of video 'v1' must be a list"),
]


@pytest.mark.parametrize("data,message", PRED_ERRORS)
def test_prediction_errors_name_file_and_problem(tmp_path, data, message):
    gt = ground_truth_from_dict(_gt({"v1": [("A", 0, 1)]}), "test")
    path = _write(tmp_path, "bad_result.json", data)
    with pytest.raises(ValueError, match=message) as info:
        load_predictions(path, gt)
    assert "bad_result.json" in str(info.value)


def test_array_prediction_errors():
    with pytest.raises(ValueError, match="same length"):
        predictions_from_arrays(["v1"], [0, 0], [0], [1], [0.5])
    with pytest.raises(ValueError, match="score is NaN or inf"):
        predictions_from_arrays(["v1"], [0], [0], [1], [np.nan], source="loc")
    with pytest.raises(ValueError, match=r"class_idx outside \[0, 2\)"):
        predictions_from_arrays(["v1"], [2], [0], [1], [0.5], classes=["A", "B"])
    gt = ground_truth_from_dict(_gt({"v1": [("A", 0, 1)]}), "test")
    with pytest.raises(ValueError, match="tIoU thresholds"):
        evaluate_detection(gt, predictions_from_arrays(["v1"], [0], [0], [1], [0.5]), [1.5])
    with pytest.raises(ValueError, match="class list differs"):
        evaluate_detection(gt, predictions_from_arrays(["v1"], [0], [0], [1], [0.5],
                                                       classes=["B"]), [0.5])


# -- odd ground-truth segments are named (the real files have them) -----------------------

def test_odd_segments_of_the_real_activitynet_file_are_named():
    from pathlib import Path
    from ecmlib.method.evaluation import load_ground_truth
    path = Path(__file__).resolve().parents[1] / "data" / "activitynet1.2" / "gt.json"
    with pytest.warns(UserWarning) as caught:
        gt = load_ground_truth(path, "training")
    text = [str(w.message) for w in caught]
    assert any("7 ground-truth segment(s) have zero length, e.g. v_ZZVrH3Hv1fM" in t for t in text)
    assert any("27 ground-truth segment(s) repeat an earlier segment exactly" in t for t in text)
    assert gt.num_instances == 7151  # kept, as the official evaluator keeps them


def test_negative_and_duplicate_segments_are_warned_and_kept():
    from ecmlib.method.evaluation import ground_truth_from_dict
    data = {"database": {"v1": {"subset": "test", "annotations": [
        {"segment": [-1.0, 2.0], "label": "A"}, {"segment": [3.0, 4.0], "label": "A"},
        {"segment": [3.0, 4.0], "label": "A"}]}}}
    with pytest.warns(UserWarning) as caught:
        gt = ground_truth_from_dict(data, "test", source="fake.json")
    text = " | ".join(str(w.message) for w in caught)
    assert "fake.json: 1 ground-truth segment(s) start before time 0, e.g. v1 A [-1, 2]" in text
    assert "fake.json: 1 ground-truth segment(s) repeat an earlier segment exactly" in text
    assert gt.num_instances == 3


def test_ground_truth_of_one_video():
    gt = ground_truth_from_dict({"classes": ["a", "b"], "database": {
        "v1": {"subset": "test", "annotations": [
            {"label": "a", "segment": [1.0, 2.0]}, {"label": "b", "segment": [3.0, 5.0]}]},
        "v2": {"subset": "test", "annotations": [{"label": "a", "segment": [0.0, 1.0]}]}}},
        "test")
    one = gt.of_video("v1")
    assert one.video_names == ["v1"] and one.num_instances == 2
    assert one.class_idx.tolist() == [0, 1] and one.start.tolist() == [1.0, 3.0]
    assert one.video_idx.tolist() == [0, 0] and one.classes == gt.classes
    with pytest.raises(KeyError, match="'v3' is not in"):
        gt.of_video("v3")
