"""Tests of ecmlib.data.features (annotations, feature readers) and scripts/build_ground_truth.py."""

from __future__ import annotations

import importlib.util
import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ecmlib.data import features as D
from ecmlib.datasets import THUMOS14_CLASSES

REPO = Path(__file__).resolve().parent.parent
REFERENCE_ANN = REPO.parent / "shared" / "reference" / "annotations"


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "build_ground_truth", REPO / "scripts" / "build_ground_truth.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _counts(gt: dict) -> tuple[Counter, Counter]:
    videos, inst = Counter(), Counter()
    for e in gt["database"].values():
        videos[e["subset"]] += 1
        inst[e["subset"]] += len(e["annotations"])
    return videos, inst


# ------------------------------------------------------------------ committed ground truth


def test_thumos_official_gt_counts_and_schema():
    gt = D.load_annotations("THUMOS14")
    assert gt["classes"] == THUMOS14_CLASSES
    assert gt["dataset"] == "THUMOS14"
    videos, inst = _counts(gt)
    assert videos == Counter({"train": 200, "test": 210})
    assert inst == Counter({"train": 3007, "test": 3311})
    for vid, e in gt["database"].items():
        assert e["frame_num"] == round(e["duration"] * e["fps"]), vid
        assert e["fps"] in (24.0, 25.0, 30.0)
        for a in e["annotations"]:
            assert all(isinstance(x, float) for x in a["segment"])
    assert "video_test_0000270" not in gt["database"]
    assert Counter(e["fps"] for e in gt["database"].values())[25.0] == 11


def test_thumos_wtalc212_variant():
    gt = D.load_annotations("THUMOS14", "wtalc212")
    official = D.load_annotations("THUMOS14")
    videos, inst = _counts(gt)
    assert videos == Counter({"train": 200, "test": 212})
    assert inst == Counter({"train": 3007, "test": 3358})
    assert set(gt["database"]) - set(official["database"]) == {
        "video_test_0000270", "video_test_0001496"}
    # the 410 shared videos have the same metadata and the same instances (order may differ)
    def key(a):
        return (a["segment"], a["label"])

    for vid, e in official["database"].items():
        w = gt["database"][vid]
        assert {k: v for k, v in w.items() if k != "annotations"} == \
            {k: v for k, v in e.items() if k != "annotations"}, vid
        assert sorted(w["annotations"], key=key) == sorted(e["annotations"], key=key), vid


@pytest.mark.parametrize("dataset,n_cls,videos,first", [
    ("ActivityNet1.2", 100, {"training": 4819, "validation": 2383}, "Archery"),
    ("ActivityNet1.3", 200, {"training": 9337, "validation": 4575}, "Applying sunscreen"),
])
def test_anet_gt(dataset, n_cls, videos, first):
    gt = D.load_annotations(dataset)
    assert len(gt["classes"]) == n_cls and gt["classes"][0] == first
    assert D.dataset_classes(dataset) == gt["classes"]
    got, _ = _counts(gt)
    assert got == Counter(videos)
    assert all(v.startswith("v_") and len(v) == 13 for v in gt["database"])
    assert all(e["frame_num"] == round(e["duration"] * e["fps"]) for e in gt["database"].values())


def test_anet12_default_fps_is_listed():
    gt = D.load_annotations("ActivityNet1.2")
    default = set(gt["fps_default"]["videos"])
    assert len(default) == 520
    assert all(gt["database"][v]["fps"] == 30.0 for v in default)
    # the others carry measured fps: ActivityNet 1.3 values for the same YouTube video
    gt13 = D.load_annotations("ActivityNet1.3")["database"]
    shared = [v for v in gt["database"] if v in gt13]
    assert len(shared) == 7202 - 520
    assert all(gt["database"][v]["fps"] == gt13[v]["fps"] for v in shared)


def test_committed_files_are_compact_and_small():
    for rel in ["thumos14/gt.json", "thumos14/gt_wtalc212.json", "activitynet1.2/gt.json",
                "activitynet1.3/gt.json"]:
        path = REPO / "data" / rel
        assert path.stat().st_size < 5 * 1024 * 1024, rel
        assert b"\n" not in path.read_bytes()[:100000], rel


@pytest.mark.skipif(not REFERENCE_ANN.is_dir(), reason="shared reference annotations absent")
def test_script_rebuilds_committed_files(tmp_path, capsys):
    script = _load_script()
    assert script.main(["--annotations", str(REFERENCE_ANN), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "instances {'test': 3311, 'train': 3007}" in out
    assert "0 mismatches" in out
    for rel in ["thumos14/gt.json", "thumos14/gt_wtalc212.json", "activitynet1.2/gt.json",
                "activitynet1.3/gt.json"]:
        assert (tmp_path / rel).read_bytes() == (REPO / "data" / rel).read_bytes(), rel


# ------------------------------------------------------------------ annotation errors


def _write_gt(path: Path, gt: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(gt))
    return path


def test_load_annotations_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'Thumos'"):
        D.load_annotations("Thumos")
    with pytest.raises(ValueError, match="unknown annotation variant 'wtalc212'"):
        D.load_annotations("ActivityNet1.2", "wtalc212")
    with pytest.raises(FileNotFoundError, match="gt.json: ground-truth file not found"):
        D.load_annotations("THUMOS14", data_dir=tmp_path)
    bad = tmp_path / "thumos14" / "gt.json"
    bad.parent.mkdir()
    bad.write_text('{"classes": ["a"], "database": {')
    with pytest.raises(ValueError, match=r"gt.json: not valid JSON"):
        D.load_annotations("THUMOS14", data_dir=tmp_path)
    _write_gt(bad, {"database": {}})
    with pytest.raises(ValueError, match=r"gt.json: missing key 'classes'"):
        D.load_annotations("THUMOS14", data_dir=tmp_path)
    _write_gt(bad, {"classes": ["a"], "database": {"v1": {
        "subset": "test", "duration": 3.0, "annotations": [{"segment": [0, 1], "label": "b"}]}}})
    with pytest.raises(ValueError, match=r"gt.json: video 'v1' has label 'b' outside the class"):
        D.load_annotations("THUMOS14", data_dir=tmp_path)
    _write_gt(bad, {"classes": ["a"], "database": {"v1": {"subset": "test", "annotations": []}}})
    with pytest.raises(ValueError, match=r"gt.json: video 'v1' is missing key 'duration'"):
        D.load_annotations("THUMOS14", data_dir=tmp_path)


def test_subset_for_split():
    assert D.subset_for_split("THUMOS14", "val") == "train"
    assert D.subset_for_split("THUMOS14", "test") == "test"
    assert D.subset_for_split("ActivityNet1.3", "validation") == "validation"
    with pytest.raises(ValueError, match="unknown split 'training' for THUMOS14"):
        D.subset_for_split("THUMOS14", "training")


# ------------------------------------------------------------------ build script on tiny input


def _tiny_annotations(root: Path) -> Path:
    """A miniature copy of the reference annotation folder (2 THUMOS videos, 2 ANet videos)."""
    th = root / "thumos14" / "wtalc_npy"
    th.mkdir(parents=True)
    names = ["video_validation_0000001", "video_test_0000001", "video_test_0000270"]
    np.save(th / "videoname.npy", np.array([n.encode() for n in names]))
    np.save(th / "subset.npy", np.array([b"validation", b"test", b"test"]))
    np.save(th / "duration.npy", np.array([[10.0], [20.5], [8.0]]))
    np.save(th / "original_fps.npy", np.array([30.0, 25.0, 30.0]))
    segs = np.empty(3, dtype=object)
    segs[:] = [[[1.0, 2.0]], [[3.0, 4.5], [5.0, 6.0]], [[0.0, 1.0]]]
    labs = np.empty(3, dtype=object)
    labs[:] = [["Diving"], ["HighJump", "Diving"], ["Billiards"]]
    np.save(th / "segments.npy", segs)
    np.save(th / "labels.npy", labs)
    np.save(th / "classlist.npy", np.array([c.encode() for c in THUMOS14_CLASSES]))
    ecm = {"database": {
        "video_validation_0000001": {"subset": "train", "annotations": [
            {"segment": ["1.0", "2.0"], "label": "Diving"}]},
        "video_test_0000001": {"subset": "test", "annotations": [
            {"segment": ["3.0", "4.5"], "label": "HighJump"},
            {"segment": ["5.0", "6.0"], "label": "Diving"}]},
    }}
    (root / "thumos14" / "gt_ecm.json").write_text(json.dumps(ecm))
    return root


def test_build_thumos_on_tiny_input(tmp_path):
    script = _load_script()
    official, wtalc = script.build_thumos(_tiny_annotations(tmp_path))
    assert list(official["database"]) == ["video_validation_0000001", "video_test_0000001"]
    e = official["database"]["video_test_0000001"]
    assert e == {"subset": "test", "duration": 20.5, "fps": 25.0, "frame_num": 512,
                 "annotations": [{"segment": [3.0, 4.5], "label": "HighJump"},
                                 {"segment": [5.0, 6.0], "label": "Diving"}]}
    assert wtalc["database"]["video_test_0000270"]["subset"] == "test"
    assert wtalc["database"]["video_validation_0000001"]["subset"] == "train"


def test_build_thumos_rejects_bad_input(tmp_path):
    script = _load_script()
    root = _tiny_annotations(tmp_path)
    ecm_path = root / "thumos14" / "gt_ecm.json"
    ecm = json.loads(ecm_path.read_text())
    ecm["database"]["video_test_0000001"]["annotations"][0]["label"] = "Juggling"
    ecm_path.write_text(json.dumps(ecm))
    with pytest.raises(script.AnnotationError, match="gt_ecm.json: video video_test_0000001: "
                       "label 'Juggling' is not in the class list"):
        script.build_thumos(root)
    ecm["database"]["video_test_0000001"]["annotations"] = []
    ecm_path.write_text(json.dumps(ecm))
    with pytest.raises(script.AnnotationError, match="video_test_0000001: video without annotations"):
        script.build_thumos(root)
    ecm["database"]["video_test_0009999"] = ecm["database"].pop("video_test_0000001")
    ecm_path.write_text(json.dumps(ecm))
    with pytest.raises(script.AnnotationError, match="video_test_0009999: no duration/fps"):
        script.build_thumos(root)
    (root / "thumos14" / "wtalc_npy" / "duration.npy").write_bytes(b"garbage")
    with pytest.raises(script.AnnotationError, match=r"duration.npy: cannot read"):
        script.build_thumos(root)
    np.save(root / "thumos14" / "wtalc_npy" / "duration.npy", np.array([1.0, 2.0]))
    with pytest.raises(script.AnnotationError, match=r"duration.npy: 2 rows but videoname.npy has 3"):
        script.build_thumos(root)


def test_build_anet_on_tiny_input(tmp_path):
    script = _load_script()
    for version, classes in (("1.2", ["Zumba", "Archery"]), ("1.3", ["Zumba", "Archery"])):
        base = tmp_path / f"activitynet{version}"
        w = base / "wtalc_npy"
        w.mkdir(parents=True)
        np.save(w / "videoname.npy", np.array(["video_1", "video_2"] if version == "1.2"
                                              else ["abcdefghijk", "ABCDEFGHIJK"]))
        np.save(w / "subset.npy", np.array(["training", "validation"]))
        np.save(w / "duration.npy", np.array([10.0, 4.0]))
        segs = np.empty(2, dtype=object)
        segs[:] = [[[1.0, 2.0]], [[0.5, 3.0]]]
        labs = np.empty(2, dtype=object)
        labs[:] = [["Archery"], ["Zumba"]]
        np.save(w / "segments.npy", segs)
        np.save(w / "labels.npy", labs)
        np.save(w / "classlist.npy", np.array(sorted(classes)))
        if version == "1.2":
            np.save(w / "url.npy", np.array([b"https://www.youtube.com/watch?v=abcdefghijk",
                                             b"https://www.youtube.com/watch?v=zzzzzzzzzzz"]))
        with open(base / "ecm_idx_name_dict.pkl", "wb") as fh:
            pickle.dump({1: classes[0], 2: classes[1]}, fh)
    fps13 = {"abcdefghijk": 29.97, "ABCDEFGHIJK": 25.0}
    gt12, defaulted = script.build_anet(tmp_path, "1.2", fps13, num_classes=2)
    assert gt12["classes"] == ["Zumba", "Archery"]  # ECM order, not alphabetical
    assert defaulted == ["v_zzzzzzzzzzz"]
    assert gt12["database"]["v_abcdefghijk"]["fps"] == 29.97
    assert gt12["database"]["v_abcdefghijk"]["frame_num"] == 300
    assert gt12["database"]["v_zzzzzzzzzzz"]["fps"] == script.ANET12_DEFAULT_FPS
    gt13, _ = script.build_anet(tmp_path, "1.3", fps13, num_classes=2)
    assert set(gt13["database"]) == {"v_abcdefghijk", "v_ABCDEFGHIJK"}
    assert gt13["database"]["v_ABCDEFGHIJK"]["subset"] == "validation"
    with pytest.raises(script.AnnotationError, match="v_ABCDEFGHIJK: no fps in misc_fps.txt"):
        script.build_anet(tmp_path, "1.3", {"abcdefghijk": 29.97}, num_classes=2)
    with open(tmp_path / "activitynet1.3" / "ecm_idx_name_dict.pkl", "wb") as fh:
        pickle.dump({0: "Zumba", 1: "Archery"}, fh)
    with pytest.raises(script.AnnotationError, match="ecm_idx_name_dict.pkl: expected a dict with keys 1..2"):
        script.build_anet(tmp_path, "1.3", fps13, num_classes=2)


# ------------------------------------------------------------------ resampling


def test_resample_identity_and_constant():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 7)).astype(np.float32)
    out = D.resample_snippets(x, 7)
    assert out.dtype == np.float32 and np.array_equal(out, x) and out is not x
    const = np.full((3, 11), 2.5)
    assert np.allclose(D.resample_snippets(const, 4), 2.5)
    assert np.allclose(D.resample_snippets(const, 40), 2.5)


def test_resample_hand_computed():
    x = np.array([[0.0, 1.0]])
    # sample centres at input positions -0.25, 0.25, 0.75, 1.25 -> clamped 0, .25, .75, 1
    assert np.allclose(D.resample_snippets(x, 4), [[0.0, 0.25, 0.75, 1.0]])
    y = np.array([[0.0, 1.0, 2.0, 3.0]])
    # down to 2: positions 0.5 and 2.5
    assert np.allclose(D.resample_snippets(y, 2), [[0.5, 2.5]])
    assert np.allclose(D.resample_snippets(np.array([[5.0]]), 3), [[5.0, 5.0, 5.0]])


def test_resample_matches_torch_linear():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    for t_in, t_out in [(13, 5), (5, 13), (750, 100), (37, 750)]:
        x = rng.normal(size=(6, t_in)).astype(np.float32)
        ref = torch.nn.functional.interpolate(torch.from_numpy(x)[None], size=t_out,
                                              mode="linear", align_corners=False)[0].numpy()
        assert np.allclose(D.resample_snippets(x, t_out), ref, atol=1e-5), (t_in, t_out)


def test_resample_rejects_bad_input():
    with pytest.raises(ValueError, match=r"expects \[D, T\], got shape \(3,\)"):
        D.resample_snippets(np.zeros(3), 2)
    with pytest.raises(ValueError, match="num_snippets must be a positive integer"):
        D.resample_snippets(np.zeros((2, 3)), 0)
    with pytest.raises(ValueError, match="0 snippets"):
        D.resample_snippets(np.zeros((2, 0)), 4)


# ------------------------------------------------------------------ layouts: one content, four layouts

CLASSES = ["jump", "run", "swim"]
HALF = 4  # RGB width; flow has the same width, D = 8
VIDEOS = {  # name -> (T_i, labels, duration, fps)
    "vid_a": (5, ["jump"], 10.0, 30.0),
    "vid_b": (9, ["run", "swim"], 12.5, 25.0),
    "vid_c": (12, ["swim"], 4.0, 24.0),
}


def _content():
    rng = np.random.default_rng(42)
    return {n: rng.normal(size=(2 * HALF, t)).astype(np.float32) for n, (t, *_rest) in VIDEOS.items()}


def _gt(subset: str = "train") -> dict:
    db = {}
    for n, (_t, labels, duration, fps) in VIDEOS.items():
        db[n] = {"subset": subset, "duration": duration, "fps": fps,
                 "frame_num": round(duration * fps),
                 "annotations": [{"segment": [0.5, 1.5], "label": lab} for lab in labels]}
    return {"version": "tiny", "dataset": "Tiny", "classes": list(CLASSES), "database": db}


def _label(labels):
    return np.array([float(c in labels) for c in CLASSES], dtype=np.float32)


def write_official(root: Path, split: str = "val", content=None) -> Path:
    content = content or _content()
    for n, feat in content.items():
        _t, labels, duration, fps = VIDEOS[n]
        D.write_official_npz(root / split / f"{n}.npz", feat, _label(labels), n,
                             round(duration * fps), fps)
    return root


def write_wtalc(root: Path, content=None) -> Path:
    content = content or _content()
    ann = root / "Tiny-Annotations"
    ann.mkdir(parents=True)
    names = list(content) + ["vid_test"]
    feats = np.empty(len(names), dtype=object)
    feats[:] = [content[n].T for n in content] + [np.ones((3, 2 * HALF), np.float32)]
    np.save(root / "Tiny-I3D-JOINTFeatures.npy", feats, allow_pickle=True)
    np.save(ann / "videoname.npy", np.array([n.encode() for n in names]))
    np.save(ann / "subset.npy", np.array([b"validation"] * len(content) + [b"test"]))
    labs = np.empty(len(names), dtype=object)
    labs[:] = [VIDEOS[n][1] for n in content] + [["jump"]]
    np.save(ann / "labels_all.npy", labs, allow_pickle=True)
    np.save(ann / "classlist.npy", np.array(CLASSES))
    return root


def write_basnet(root: Path, split_dir: str = "train", content=None) -> Path:
    content = content or _content()
    for n, feat in content.items():
        for stream, part in (("rgb", feat[:HALF]), ("flow", feat[HALF:])):
            d = root / "features" / split_dir / stream
            d.mkdir(parents=True, exist_ok=True)
            np.save(d / f"{n}.npy", part.T)
    return root


def write_acmnet(root: Path, split: str = "val", content=None) -> Path:
    content = content or _content()
    (root / split).mkdir(parents=True)
    for n, feat in content.items():
        np.save(root / split / f"{n}.npy", feat.T)
    return root


WRITERS = {"official": write_official, "wtalc": write_wtalc, "basnet": write_basnet,
           "acmnet": write_acmnet}


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_detect_layout(tmp_path, layout):
    WRITERS[layout](tmp_path)
    assert D.detect_layout(tmp_path) == layout
    assert D.detect_layout(tmp_path, "val") == layout


def test_detect_layout_nothing_found(tmp_path):
    (tmp_path / "val").mkdir()
    with pytest.raises(D.DataError) as err:
        D.detect_layout(tmp_path, "val")
    msg = str(err.value)
    for layout in D.LAYOUTS:
        assert f"{layout}:" in msg
    assert str(tmp_path / "val" / "*.npz") in msg
    assert str(tmp_path / "features" / "train" / "rgb" / "*.npy") in msg
    with pytest.raises(D.DataError, match="feature folder not found"):
        D.detect_layout(tmp_path / "nope")


def test_all_layouts_load_identically(tmp_path):
    content = _content()
    gt = _gt()
    loaded = {}
    for layout, writer in WRITERS.items():
        root = writer(tmp_path / layout, content=content)
        loaded[layout] = D.load_split(root, "Tiny", "val", num_snippets=6, gt=gt)
    ref = loaded["official"]
    assert ref.names == sorted(VIDEOS)
    assert ref.features.shape == (3, 2 * HALF, 6) and ref.features.dtype == np.float32
    expected = np.stack([D.resample_snippets(content[n], 6) for n in ref.names])
    assert np.array_equal(ref.features, expected)
    assert np.array_equal(ref.labels, np.stack([_label(VIDEOS[n][1]) for n in ref.names]))
    assert ref.frame_num.tolist() == [300, 312, 96]
    assert ref.duration.tolist() == [10.0, 12.5, 4.0]
    for layout, fs in loaded.items():
        assert fs.names == ref.names, layout
        assert fs.classes == CLASSES
        for key in ("features", "labels", "frame_num", "fps", "duration"):
            a, b = getattr(fs, key), getattr(ref, key)
            assert a.dtype == b.dtype and np.array_equal(a, b), (layout, key)


def test_num_snippets_none_keeps_length_or_complains(tmp_path):
    content = {n: np.ones((2 * HALF, 7), np.float32) * i for i, n in enumerate(VIDEOS)}
    write_official(tmp_path, content=content)
    fs = D.load_split(tmp_path, "Tiny", "val", None, gt=_gt())
    assert fs.num_snippets == 7 and fs.feat_dim == 8 and len(fs) == 3 and fs.num_classes == 3
    write_acmnet(tmp_path / "acm")
    with pytest.raises(D.DataError, match=r"different lengths \[5, 9, 12\]; pass num_snippets"):
        D.load_split(tmp_path / "acm", "Tiny", "val", None, gt=_gt())


def test_official_without_gt_uses_file_metadata(tmp_path):
    write_official(tmp_path)
    fs = D.load_split(tmp_path, "Synth", "val", 4, gt=False)
    assert fs.classes == ["class_0", "class_1", "class_2"]
    assert np.allclose(fs.duration, fs.frame_num / fs.fps)
    fs2 = D.load_split(tmp_path, "Synth", "val", 4, gt=False, classes=CLASSES)
    assert fs2.classes == CLASSES


def test_feat_dim_checked(tmp_path):
    for layout, writer in WRITERS.items():
        root = writer(tmp_path / layout)
        assert D.load_split(root, "Tiny", "val", 4, feat_dim=8, gt=_gt()).feat_dim == 8
        with pytest.raises(D.DataError, match=r"expected (16|8)\b"):
            D.load_split(root, "Tiny", "val", 4, feat_dim=16, gt=_gt())


# ------------------------------------------------------------------ bad inputs


def _npz(path: Path, **over):
    arrays = {"feat_spa": np.zeros((HALF, 5), np.float32), "feat_tem": np.zeros((HALF, 5), np.float32),
              "cls_label": _label(["jump"]), "vid_name": np.array("vid_a"),
              "frame_num": np.array(300), "fps": np.array(30.0)}
    arrays.update(over)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("over,message", [
    ({"feat_tem": None}, r"vid_a.npz: missing key 'feat_tem'"),
    ({"cls_label": None}, r"vid_a.npz: missing key 'cls_label'"),
    ({"feat_spa": np.zeros((HALF, 6), np.float32)}, r"vid_a.npz: feat_spa \(4, 6\) and feat_tem \(4, 5\)"),
    ({"feat_spa": np.zeros(5, np.float32)}, r"vid_a.npz: key 'feat_spa' must be a numeric \[D/2, T\]"),
    ({"feat_tem": np.full((HALF, 5), np.nan, np.float32)}, r"vid_a.npz: key 'feat_tem' contains NaN or inf"),
    ({"feat_spa": np.full((HALF, 5), np.inf, np.float32)}, r"vid_a.npz: key 'feat_spa' contains NaN or inf"),
    ({"cls_label": np.zeros(3, np.float32)}, r"vid_a.npz: video without annotations"),
    ({"cls_label": np.ones(4, np.float32)}, r"vid_a.npz: key 'cls_label' has shape \(4,\), expected \(3,\)"),
    ({"cls_label": np.array([0.5, 0, 0])}, r"vid_a.npz: key 'cls_label' must be multi-hot"),
    ({"cls_label": _label(["run"])}, r"vid_a.npz: cls_label disagrees with the ground truth"),
    ({"fps": np.array(np.nan)}, r"vid_a.npz: key 'fps': must be finite and > 0"),
    ({"frame_num": np.array(12.5)}, r"vid_a.npz: key 'frame_num': must be an integer"),
    ({"frame_num": np.arange(3)}, r"vid_a.npz: key 'frame_num': expected one number"),
    ({"vid_name": np.array("vid_zzz")}, r"vid_a.npz: video 'vid_zzz' has no annotations in the ground truth"),
])
def test_official_bad_files(tmp_path, over, message):
    _npz(tmp_path / "val" / "vid_a.npz", **over)
    with pytest.raises(D.DataError, match=message):
        D.load_split(tmp_path, "Tiny", "val", 4, gt=_gt())


def test_official_odd_channels_vs_feat_dim(tmp_path):
    _npz(tmp_path / "val" / "vid_a.npz")
    with pytest.raises(D.DataError, match=r"vid_a.npz: key 'feat_spa' has 4 channels, expected 5"):
        D.load_split(tmp_path, "Tiny", "val", 4, feat_dim=10, gt=_gt())


def test_corrupt_files_named(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "vid_a.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(D.DataError, match=r"vid_a.npz: corrupt or unreadable file"):
        D.load_split(tmp_path, "Tiny", "val", 4, gt=_gt())
    acm = write_acmnet(tmp_path / "acm")
    (acm / "val" / "vid_b.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(D.DataError, match=r"vid_b.npy: corrupt or unreadable file"):
        D.load_split(acm, "Tiny", "val", 4, gt=_gt())
    wt = write_wtalc(tmp_path / "wt")
    (wt / "Tiny-I3D-JOINTFeatures.npy").write_bytes(b"nonsense")
    with pytest.raises(D.DataError, match=r"Tiny-I3D-JOINTFeatures.npy: corrupt or unreadable"):
        D.load_split(wt, "Tiny", "val", 4, gt=_gt())


def test_missing_and_empty_split_folders(tmp_path):
    write_official(tmp_path, split="val")
    with pytest.raises(D.DataError, match=r"no feature files found for split 'test'; looked for"):
        D.load_split(tmp_path, "Tiny", "test", 4, gt=_gt())
    with pytest.raises(D.DataError, match=r"split folder for 'test' not found \(tried .*test"):
        D.load_split(tmp_path, "Tiny", "test", 4, layout="official", gt=_gt())
    (tmp_path / "test").mkdir()
    with pytest.raises(D.DataError, match=r"test: empty split folder \(no \*.npz files\)"):
        D.load_split(tmp_path, "Tiny", "test", 4, layout="official", gt=_gt())
    with pytest.raises(D.DataError, match="feature folder not found"):
        D.load_split(tmp_path / "absent", "Tiny", "val", 4, layout="acmnet", gt=_gt())
    with pytest.raises(ValueError, match="unknown layout 'npz'"):
        D.load_split(tmp_path, "Tiny", "val", 4, layout="npz", gt=_gt())


def test_video_without_annotations_error_and_drop(tmp_path):
    root = write_acmnet(tmp_path)
    np.save(root / "val" / "vid_extra.npy", np.zeros((4, 2 * HALF), np.float32))
    with pytest.raises(D.DataError, match=r"vid_extra.npy: video 'vid_extra' has no annotations"):
        D.load_split(root, "Tiny", "val", 4, gt=_gt())
    with pytest.warns(UserWarning, match=r"left out 1 video\(s\).*vid_extra"):
        fs = D.load_split(root, "Tiny", "val", 4, gt=_gt(), extra_videos="drop")
    assert fs.names == sorted(VIDEOS)


def test_gt_video_with_empty_annotations(tmp_path):
    root = write_acmnet(tmp_path)
    gt = _gt()
    gt["database"]["vid_b"]["annotations"] = []
    with pytest.raises(D.DataError, match=r"vid_b.npy: video without annotations"):
        D.load_split(root, "Tiny", "val", 4, gt=gt)


def test_label_outside_class_list(tmp_path):
    root = write_basnet(tmp_path)
    gt = _gt()
    gt["database"]["vid_c"]["annotations"][0]["label"] = "dance"
    path = _write_gt(tmp_path / "gt.json", gt)
    with pytest.raises(ValueError, match=r"gt.json: video 'vid_c' has label 'dance' outside"):
        D.load_split(root, "Tiny", "val", 4, gt=path)
    # an explicit class list that lacks a gt label is caught at the video's file
    with pytest.raises(D.DataError, match=r"vid_b.npy: label 'swim' is not in the class list"):
        D.load_split(root, "Tiny", "val", 4, gt=_gt(), classes=["jump", "run"])


def test_subset_mismatch_for_known_dataset(tmp_path):
    gt = {"version": "t", "dataset": "THUMOS14", "classes": THUMOS14_CLASSES, "database": {
        "vid_a": {"subset": "test", "duration": 10.0, "fps": 30.0, "frame_num": 300,
                  "annotations": [{"segment": [1.0, 2.0], "label": "Diving"}]}}}
    (tmp_path / "val").mkdir()
    np.save(tmp_path / "val" / "vid_a.npy", np.zeros((5, 8), np.float32))
    with pytest.raises(D.DataError, match=r"vid_a.npy: video 'vid_a' belongs to subset 'test'.*not 'train'"):
        D.load_split(tmp_path, "THUMOS14", "val", 4, gt=gt)


def test_acmnet_bad_arrays(tmp_path):
    root = write_acmnet(tmp_path)
    np.save(root / "val" / "vid_a.npy", np.zeros(8, np.float32))
    with pytest.raises(D.DataError, match=r"vid_a.npy: expected a 2-D array \[T, D\], got \(8,\)"):
        D.load_split(root, "Tiny", "val", 4, gt=_gt())
    bad = np.zeros((5, 8), np.float32)
    bad[2, 3] = np.nan
    np.save(root / "val" / "vid_a.npy", bad)
    with pytest.raises(D.DataError, match=r"vid_a.npy: NaN or inf in the features"):
        D.load_split(root, "Tiny", "val", 4, gt=_gt())
    np.save(root / "val" / "vid_a.npy", np.zeros((5, 6), np.float32))
    with pytest.raises(D.DataError, match=r"vid_[ab].npy: feature width \d, expected \d"):
        D.load_split(root, "Tiny", "val", 4, gt=_gt())


def test_basnet_missing_stream(tmp_path):
    root = write_basnet(tmp_path)
    (root / "features" / "train" / "flow" / "vid_b.npy").unlink()
    with pytest.raises(D.DataError, match=r"flow/vid_b.npy: missing \(RGB features exist"):
        D.load_split(root, "Tiny", "val", 4, gt=_gt())
    np.save(root / "features" / "train" / "flow" / "vid_b.npy", np.zeros((3, HALF), np.float32))
    with pytest.raises(D.DataError, match=r"flow/vid_b.npy: 3 snippets but the RGB file has 9"):
        D.load_split(root, "Tiny", "val", 4, gt=_gt())


def test_wtalc_checks(tmp_path):
    root = write_wtalc(tmp_path)
    fs = D.load_split(root, "Tiny", "val", 4, gt=_gt())
    assert fs.names == sorted(VIDEOS)  # the 'test' video is not part of split 'val'
    with pytest.raises(D.DataError, match=r"vid_test.*has no annotations"):
        D.load_split(root, "Tiny", "test", 4, gt=_gt())
    with pytest.raises(D.DataError, match=r"subset.npy: no video of split 'training'"):
        D.load_split(root, "Tiny", "training", 4, gt=_gt())
    with pytest.raises(D.DataError, match=r"W-TALC layout needs a ground truth"):
        D.load_split(root, "Tiny", "val", 4, gt=False)
    labs = np.empty(4, dtype=object)
    labs[:] = [["run"], ["run", "swim"], ["swim"], ["jump"]]
    np.save(root / "Tiny-Annotations" / "labels_all.npy", labs, allow_pickle=True)
    # W-TALC's own labels may differ from the gt's for a few videos: a warning, not an error
    with pytest.warns(UserWarning, match=r"labels_all.npy: W-TALC's video labels differ .* for "
                                         r"1 of 3 videos \(e.g. vid_a: labels_all \['run'\]"):
        fs = D.load_split(root, "Tiny", "val", 4, gt=_gt())
    assert fs.labels[fs.names.index("vid_a")].tolist() == [1, 0, 0]  # the gt's: 'jump'
    with pytest.warns(UserWarning, match=r"training uses W-TALC's labels_all"):
        fs = D.load_split(root, "Tiny", "val", 4, gt=_gt(), labels="labels_all")
    assert fs.labels[fs.names.index("vid_a")].tolist() == [0, 1, 0]  # labels_all's: 'run'
    labs[:] = [["run"], ["jump"], ["jump"], ["jump"]]  # most rows wrong: misaligned files
    np.save(root / "Tiny-Annotations" / "labels_all.npy", labs, allow_pickle=True)
    with pytest.raises(D.DataError, match=r"labels_all.npy: labels differ from the ground truth "
                                          r"for 3 of 3 videos .*misaligned"):
        D.load_split(root, "Tiny", "val", 4, gt=_gt())
    np.save(root / "Tiny-Annotations" / "subset.npy", np.array([b"validation"] * 3))
    with pytest.raises(D.DataError, match=r"subset.npy: 3 rows, videoname.npy has 4"):
        D.load_split(root, "Tiny", "val", 4, gt=_gt())


# ------------------------------------------------------------------ FeatureSet


def _featureset(n=3, c=3, d=4, t=5) -> D.FeatureSet:
    rng = np.random.default_rng(3)
    labels = np.zeros((n, c), np.float32)
    labels[np.arange(n), np.arange(n) % c] = 1
    return D.FeatureSet("Tiny", "val", [f"c{i}" for i in range(c)], [f"v{i}" for i in range(n)],
                        rng.normal(size=(n, d, t)).astype(np.float32), labels,
                        np.arange(1, n + 1, dtype=np.int64) * 100, np.full(n, 30.0),
                        np.arange(1, n + 1, dtype=np.float64))


def test_featureset_properties_and_subset():
    fs = _featureset().validate()
    assert (len(fs), fs.feat_dim, fs.num_snippets, fs.num_classes) == (3, 4, 5, 3)
    sub = fs.subset([2, 0])
    assert sub.names == ["v2", "v0"]
    assert np.array_equal(sub.features, fs.features[[2, 0]])
    assert sub.frame_num.tolist() == [300, 100]
    sub.features[0] += 1  # a copy: the original is untouched
    assert not np.array_equal(sub.features[0], fs.features[2])
    mask = fs.subset(np.array([False, True, False]))
    assert mask.names == ["v1"] and mask.duration.tolist() == [2.0]
    assert len(fs.subset([])) == 0
    with pytest.raises(ValueError, match="boolean mask of shape"):
        fs.subset(np.array([True, False]))
    with pytest.raises(IndexError, match="out of range"):
        fs.subset([3])


@pytest.mark.parametrize("change,message", [
    (lambda fs: setattr(fs, "features", fs.features.astype(np.float64)), "features must be float32"),
    (lambda fs: setattr(fs, "features", fs.features[:, :, 0]), r"features must be a 3-D array"),
    (lambda fs: fs.features.__setitem__((1, 0, 0), np.nan), r"video 'v1' has NaN or inf features"),
    (lambda fs: setattr(fs, "labels", fs.labels[:, :2]), r"labels must be \[N=3, C=3\]"),
    (lambda fs: fs.labels.__setitem__(2, 0), r"video 'v2' has no label"),
    (lambda fs: setattr(fs, "frame_num", fs.frame_num.astype(np.int32)), "frame_num must be int64"),
    (lambda fs: fs.fps.__setitem__(0, np.inf), r"video 'v0' has fps = "),
    (lambda fs: setattr(fs, "names", ["v0", "v0", "v2"]), "duplicate video names"),
    (lambda fs: setattr(fs, "duration", fs.duration[:2]), r"duration must have shape \(3,\)"),
])
def test_featureset_validate_errors(change, message):
    fs = _featureset()
    fs.source = "synthetic:tiny"
    change(fs)
    with pytest.raises(D.DataError, match=f"synthetic:tiny: {message}"):
        fs.validate()


# ------------------------------------------------------------------ writer


def test_write_official_npz_round_trip_and_atomic(tmp_path):
    feat = np.arange(24, dtype=np.float64).reshape(6, 4)
    path = D.write_official_npz(tmp_path / "val" / "v1.npz", feat, [0, 1, 0], "v1", 120, 29.97)
    assert path == tmp_path / "val" / "v1.npz"
    assert sorted(p.name for p in (tmp_path / "val").iterdir()) == ["v1.npz"]  # no temp left
    with np.load(path) as z:
        assert sorted(z.files) == sorted(["feat_spa", "feat_tem", "cls_label", "vid_name",
                                          "frame_num", "fps"])
        assert np.array_equal(z["feat_spa"], feat[:3]) and z["feat_spa"].dtype == np.float32
        assert np.array_equal(z["feat_tem"], feat[3:])
        assert str(z["vid_name"]) == "v1" and int(z["frame_num"]) == 120
        assert float(z["fps"]) == 29.97
    with pytest.raises(ValueError, match=r"v2.npz: features must be \[D, T\] with even D"):
        D.write_official_npz(tmp_path / "v2.npz", np.zeros((5, 4)), [1], "v2", 10, 30.0)
    with pytest.raises(ValueError, match=r"v2.npz: features contain NaN"):
        D.write_official_npz(tmp_path / "v2.npz", np.full((2, 4), np.nan), [1], "v2", 10, 30.0)
    with pytest.raises(ValueError, match=r"v2.npz: label must be a non-empty"):
        D.write_official_npz(tmp_path / "v2.npz", np.zeros((2, 4)), [0, 0], "v2", 10, 30.0)
    assert not (tmp_path / "v2.npz").exists()
