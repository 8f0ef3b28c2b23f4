"""Property-based tests (hypothesis) of the readers and the evaluator (issue 9, part 5).

Random malformed JSON and arrays (wrong types, missing keys, NaN, huge numbers, wrong
shapes, empty) must either load or raise the project's own error (ValueError; DataError
for feature files) naming the file: never a traceback from deep inside json / numpy.
Each property runs ~50 examples; the module takes a few seconds.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ecmlib.data import features as D
from ecmlib.method.evaluation import (evaluate_detection, ground_truth_from_dict, load_ground_truth,
                               load_predictions, predictions_from_arrays)

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
CLASSES = ["jump", "run", "swim"]
VIDEOS = ["vid_a", "vid_b"]

# -- strategies ----------------------------------------------------------------------------

def mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """``good`` 7 times in 8, else ``bad``: deep structures stay mostly well-formed, so the
    examples reach the inner checks instead of all failing at the top level."""
    return st.integers(0, 7).flatmap(lambda k: bad if k == 0 else good)


def _obj(keys: dict) -> st.SearchStrategy:
    """An object with all of ``keys`` (mostly) or a random subset of them."""
    return mostly(st.fixed_dictionaries(keys), st.fixed_dictionaries({}, optional=keys))


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                    st.integers(min_value=10**300, max_value=10**400), st.booleans(),
                    st.sampled_from(["1.5", "nan", "-inf", "1e999", "x", ""]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3)
                           | st.dictionaries(st.text(max_size=5), kids, max_size=3), max_leaves=12)
anything = st.one_of(json_values, numbers)
good_numbers = st.floats(-5, 50, allow_nan=False)
segments = mostly(st.lists(mostly(good_numbers, numbers), min_size=2, max_size=2),
                  st.one_of(st.lists(numbers, max_size=3), anything))
labels = mostly(st.sampled_from(CLASSES), anything)

detections = mostly(_obj({"label": labels, "segment": segments,
                          "score": mostly(good_numbers, numbers)}), anything)
results_files = mostly(
    st.fixed_dictionaries({"results": st.dictionaries(
        st.sampled_from(VIDEOS + ["other", ""]),
        mostly(st.lists(detections, max_size=4), anything), max_size=3)}),
    st.one_of(st.fixed_dictionaries({"results": anything}), anything))
annotations = mostly(_obj({"label": labels, "segment": segments}), anything)
gt_files = mostly(
    st.fixed_dictionaries(
        {"database": st.dictionaries(
            st.sampled_from(VIDEOS + ["other"]),
            mostly(_obj({"subset": mostly(st.just("test"), anything),
                         "annotations": mostly(st.lists(annotations, max_size=3), anything),
                         "duration": numbers}), anything), max_size=3)},
        optional={"classes": mostly(st.just(CLASSES), anything), "dataset": anything}),
    st.one_of(st.fixed_dictionaries({"database": anything}), anything))
raw_bytes = st.one_of(st.binary(max_size=40), st.sampled_from(
    [b"", b"{", b'{"results": {"vid_a": [', b"\xff\xfe{}", b"[" * 50, b"NaN",
     '{"results": {}}'.encode("utf-16")]))


def _gt():
    db = {v: {"subset": "test", "duration": 20.0,
              "annotations": [{"segment": [1.0 + i, 4.0 + i], "label": c}
                              for i, c in enumerate(CLASSES[: k + 1])]}
          for k, v in enumerate(VIDEOS)}
    return ground_truth_from_dict({"classes": CLASSES, "database": db}, "test")


def _named_error(call, path: Path, errors: tuple = (ValueError,)):
    """Run ``call``: it may succeed; if it fails, with one of ``errors`` naming ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return call()
        except errors as err:
            assert str(path) in str(err) or path.name in str(err), f"{type(err).__name__}: {err}"
            return None


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, allow_nan=True))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("props")


# -- prediction loader and ground truth reader ---------------------------------------------

@SETTINGS
@given(obj=results_files)
def test_prediction_loader_names_the_file(folder, obj):
    path = folder / "result.json"
    _write_json(path, obj)
    preds = _named_error(lambda: load_predictions(path, _gt()), path)
    if preds is not None:
        n = len(preds)
        assert preds.video_idx.shape == preds.class_idx.shape == preds.start.shape == (n,)
        assert np.isfinite(preds.score).all() and np.isfinite(preds.start).all()
        assert ((preds.class_idx >= 0) & (preds.class_idx < len(CLASSES))).all()


@SETTINGS
@given(raw=raw_bytes)
def test_prediction_loader_on_raw_bytes(folder, raw):
    path = folder / "raw_result.json"
    path.write_bytes(raw)
    _named_error(lambda: load_predictions(path, _gt()), path)
    _named_error(lambda: load_ground_truth(path, "test"), path)


def test_json_readers_on_deep_nesting(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    for call in (lambda: load_predictions(path, _gt()), lambda: load_ground_truth(path, "test")):
        with pytest.raises(ValueError, match="deep.json"):
            call()


@SETTINGS
@given(obj=gt_files)
def test_ground_truth_reader_names_the_file(folder, obj):
    path = folder / "gt.json"
    _write_json(path, obj)
    gt = _named_error(lambda: load_ground_truth(path, "test"), path)
    if gt is not None:
        assert np.isfinite(gt.start).all() and (gt.end >= gt.start).all()
        assert gt.num_videos >= 1 and len(set(gt.classes)) == len(gt.classes)


@SETTINGS
@given(cls=st.lists(anything, max_size=4), start=st.lists(numbers, max_size=4),
       end=st.lists(numbers, max_size=4), score=st.lists(numbers, max_size=4))
def test_predictions_from_arrays_names_the_source(cls, start, end, score):
    n = len(cls)
    names = ["vid_a"] * n

    def call():
        # object arrays (mixed types) as a user may hand over from pandas
        arrs = [np.array(a + [0] * (n - len(a)) if len(a) < n else a[:n], dtype=object)
                for a in (start, end, score)]
        return predictions_from_arrays(names, np.array(cls, dtype=object), *arrs,
                                       classes=CLASSES, source="my_detections.csv")
    _named_error(call, Path("my_detections.csv"))


# -- evaluator ------------------------------------------------------------------------------

boundaries = st.floats(min_value=0, max_value=100, allow_nan=False, width=32)
instances = st.lists(st.tuples(st.sampled_from(VIDEOS), st.integers(0, 2), boundaries, boundaries),
                     min_size=1, max_size=8)


@SETTINGS
@given(gt_rows=instances,
       pred_rows=st.lists(st.tuples(st.sampled_from(VIDEOS + ["vid_x"]), st.integers(0, 2),
                                    boundaries, boundaries,
                                    st.floats(-1e6, 1e6, allow_nan=False)), max_size=12),
       tiou=st.lists(st.floats(0, 1), min_size=1, max_size=4))
def test_evaluator_ap_is_a_probability(gt_rows, pred_rows, tiou):
    db: dict = {v: {"subset": "test", "annotations": []} for v in VIDEOS}
    for v, c, a, b in gt_rows:
        db[v]["annotations"].append({"segment": [min(a, b), max(a, b)], "label": CLASSES[c]})
    gt = ground_truth_from_dict({"classes": CLASSES, "database": db}, "test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        preds = predictions_from_arrays([r[0] for r in pred_rows], [r[1] for r in pred_rows],
                                        [r[2] for r in pred_rows], [r[3] for r in pred_rows],
                                        [r[4] for r in pred_rows], classes=CLASSES, gt=gt)
    res = evaluate_detection(gt, preds, tiou)
    assert res.ap.shape == (len(tiou), len(CLASSES))
    finite = res.ap[np.isfinite(res.ap)]
    assert ((finite >= 0) & (finite <= 1)).all()
    has_gt = res.num_gt > 0
    assert np.isfinite(res.ap[:, has_gt]).all() and np.isnan(res.ap[:, ~has_gt]).all()
    assert np.allclose(res.mAP, res.ap[:, has_gt].mean(axis=1))


@SETTINGS
@given(gt_rows=instances, tiou=st.lists(st.floats(0.05, 0.95), min_size=1, max_size=4))
def test_evaluator_perfect_predictions_score_one(gt_rows, tiou):
    """Predicting every ground-truth instance exactly gives AP 1 (positive-length segments)."""
    db: dict = {v: {"subset": "test", "annotations": []} for v in VIDEOS}
    rows = [(v, c, min(a, b), max(a, b) + 0.5) for v, c, a, b in gt_rows]
    for v, c, a, b in rows:
        db[v]["annotations"].append({"segment": [a, b], "label": CLASSES[c]})
    gt = ground_truth_from_dict({"classes": CLASSES, "database": db}, "test")
    preds = predictions_from_arrays([r[0] for r in rows], [r[1] for r in rows],
                                    [r[2] for r in rows], [r[3] for r in rows],
                                    np.ones(len(rows)), classes=CLASSES, gt=gt)
    res = evaluate_detection(gt, preds, tiou)
    assert np.allclose(res.ap[:, res.num_gt > 0], 1.0)


@SETTINGS
@given(tiou=st.one_of(st.lists(anything, max_size=3), anything))
def test_evaluator_rejects_bad_tiou_cleanly(tiou):
    gt = _gt()
    preds = predictions_from_arrays(["vid_a"], [0], [1.0], [4.0], [0.9], classes=CLASSES, gt=gt)
    try:
        res = evaluate_detection(gt, preds, tiou)
    except ValueError as err:
        assert "tIoU" in str(err)
    else:
        assert np.all((res.tiou >= 0) & (res.tiou <= 1))


# -- feature readers ------------------------------------------------------------------------

FEAT_GT = {"dataset": "Tiny", "classes": CLASSES, "database": {
    v: {"subset": "train", "duration": 10.0, "fps": 25.0, "frame_num": 250,
        "annotations": [{"segment": [1.0, 2.0], "label": CLASSES[i]}]}
    for i, v in enumerate(VIDEOS)}}

dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_,
                          np.complex64, "U3", "S2"])
odd_arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
arrays = mostly(  # mostly [T, 8] float32 (T may be 0, the width 7, values NaN / inf)
    hnp.arrays(np.float32, st.tuples(mostly(st.integers(1, 6), st.just(0)),
                                     mostly(st.just(8), st.just(7))),
               elements=mostly(st.floats(-10, 10, width=32),
                               st.floats(width=32, allow_nan=True, allow_infinity=True))),
    odd_arrays)


def _fresh(folder: Path, name: str) -> Path:
    import shutil
    root = folder / name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    return root


def _load(root: Path, layout: str, num_snippets: int | None = 4):
    return _named_error(lambda: D.load_split(root, "Tiny", "train", num_snippets, layout=layout,
                                             gt=FEAT_GT), root, (ValueError,))


def _check_loaded(fs) -> None:
    if fs is not None:
        assert fs.features.dtype == np.float32 and np.isfinite(fs.features).all()
        assert fs.features.shape[0] == len(fs.names) == fs.labels.shape[0]


@SETTINGS
@given(a=arrays, b=st.one_of(arrays, st.binary(max_size=30)))
def test_per_video_npy_reader(folder, a, b):
    root = _fresh(folder, "acmnet")
    (root / "train").mkdir()
    np.save(root / "train" / "vid_a.npy", a)
    if isinstance(b, bytes):
        (root / "train" / "vid_b.npy").write_bytes(b)
    else:
        np.save(root / "train" / "vid_b.npy", b)
    _check_loaded(_load(root, "acmnet"))


official_values = st.one_of(odd_arrays, st.text(max_size=5), st.floats(), st.integers())
half_arrays = mostly(  # [D/2 = 4, T] float32, T shared by feat_spa and feat_tem (mostly)
    st.shared(st.integers(1, 6), key="T").flatmap(lambda t: hnp.arrays(
        np.float32, (4, t), elements=mostly(st.floats(-10, 10, width=32),
                                            st.floats(width=32, allow_nan=True)))),
    st.one_of(arrays, official_values))


@SETTINGS
@given(content=_obj({
    "feat_spa": half_arrays, "feat_tem": half_arrays,
    "cls_label": mostly(st.just(np.array([1, 0, 0])), st.one_of(official_values, st.sampled_from(
        [np.array([0, 1, 0]), np.array([0.5, 0, 0]), np.zeros(3), np.array([1, 0])]))),
    "vid_name": mostly(st.just("vid_a"), official_values),
    "frame_num": mostly(st.just(250), official_values),
    "fps": mostly(st.just(25.0), official_values)}))
def test_official_npz_reader(folder, content):
    root = _fresh(folder, "official")
    (root / "train").mkdir()
    np.savez(root / "train" / "vid_a.npz", **content)
    _check_loaded(_load(root, "official"))


wtalc_items = mostly(arrays, st.one_of(st.none(), st.text(max_size=4),
                                       st.lists(st.floats(), max_size=3), st.floats()))
label_lists = mostly(st.lists(st.sampled_from(CLASSES), min_size=1, max_size=2),
                     st.one_of(st.lists(st.sampled_from(CLASSES + ["nope"]), max_size=2),
                               wtalc_items))


@SETTINGS
@given(feats=mostly(st.lists(wtalc_items, min_size=2, max_size=2),
                    st.lists(wtalc_items, min_size=0, max_size=3)),
       labels_all=st.one_of(st.none(), mostly(st.lists(label_lists, min_size=2, max_size=2),
                                              st.lists(label_lists, max_size=3))),
       subsets=st.lists(mostly(st.just(b"validation"), st.sampled_from([b"test", "validation"])),
                        min_size=2, max_size=2))
def test_wtalc_reader(folder, feats, labels_all, subsets):
    root = _fresh(folder, "wtalc")
    ann = root / "Tiny-Annotations"
    ann.mkdir()
    obj = np.empty(len(feats), dtype=object)
    for i, f in enumerate(feats):  # one by one: equal shapes must not broadcast
        obj[i] = f
    np.save(root / "Tiny-I3D-JOINTFeatures.npy", obj, allow_pickle=True)
    np.save(ann / "videoname.npy", np.array([v.encode() for v in VIDEOS]))
    np.save(ann / "subset.npy", np.array(subsets))
    if labels_all is not None:
        lab = np.empty(len(labels_all), dtype=object)
        for i, labs in enumerate(labels_all):
            lab[i] = labs
        np.save(ann / "labels_all.npy", lab, allow_pickle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs = _named_error(lambda: D.load_split(root, "Tiny", "val", 4, layout="wtalc",
                                               gt={**FEAT_GT, "database": {
                                                   v: {**e, "subset": "validation"}
                                                   for v, e in FEAT_GT["database"].items()}}),
                          root)
    _check_loaded(fs)


def test_feature_readers_report_a_missing_folder(tmp_path):
    for layout in ("official", "acmnet", "wtalc", "basnet"):
        with pytest.raises(D.DataError, match=str(tmp_path / "nope")):
            D.load_split(tmp_path / "nope", "Tiny", "train", 4, layout=layout, gt=FEAT_GT)
