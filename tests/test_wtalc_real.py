"""Real W-TALC annotation folders load (issue 9, part 4).

The annotation arrays in ``tests/data/wtalc/`` are unmodified copies of W-TALC's real files
(see its PROVENANCE.md); the features beside them are synthetic, one pickled object array of
variable-length ``[T_i, 2048]`` float32 arrays with exactly one row per annotation row, as
W-TALC / CO2-Net store them. The video-naming rule is one function (``ecmlib.data.features.video_key``)
shared by the ground-truth builder and the readers, checked here on the real ids.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from ecmlib.data import features as D

REPO = Path(__file__).resolve().parent.parent
WTALC = REPO / "tests" / "data" / "wtalc"
NAMES = {"THUMOS14": "Thumos14reduced", "ActivityNet1.2": "ActivityNet1.2",
         "ActivityNet1.3": "ActivityNet1.3"}
V171 = "video_validation_0000171"


def _strings(path: Path) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else str(x) for x in np.load(path)]


def _raw_ids(dataset: str) -> list[str]:
    ann = WTALC / f"{NAMES[dataset]}-Annotations"
    if (ann / "url.npy").is_file():
        return [D.youtube_id(u) for u in _strings(ann / "url.npy")]
    return _strings(ann / "videoname.npy")


def _features(dataset: str, tmax: int, signal: bool) -> list[np.ndarray]:
    """One [T_i, 2048] float32 array per annotation row; with ``signal``, a class prototype is
    added over each ground-truth segment so that a short training run detects something."""
    rng = np.random.default_rng(0)
    keys = [D.video_key(dataset, r) for r in _raw_ids(dataset)]
    gt = D.load_annotations(dataset, "wtalc212" if dataset == "THUMOS14" else "official")
    index = {c: i for i, c in enumerate(gt["classes"])}
    proto = rng.normal(size=(len(index), 2048)).astype(np.float32)
    feats = []
    for i, key in enumerate(keys):
        t = 1 + i % tmax if not signal else 4 + i % tmax
        x = np.abs(rng.normal(size=(t, 2048))).astype(np.float32) * 0.5
        entry = gt["database"].get(key) if signal else None
        for a in (entry or {}).get("annotations", []):
            s0 = int(a["segment"][0] / entry["duration"] * t)
            s1 = max(s0 + 1, int(np.ceil(a["segment"][1] / entry["duration"] * t)))
            x[s0:s1] += proto[index[a["label"]]]
        feats.append(x)
    return feats


def _save_features(path: Path, feats: list[np.ndarray]) -> None:
    arr = np.empty(len(feats), dtype=object)
    arr[:] = feats
    np.save(path, arr, allow_pickle=True)


def _layout(root: Path, dataset: str, feats: list[np.ndarray] | Path) -> Path:
    """``root/<Name>-Annotations/`` (a copy of the real folder) + ``<Name>-I3D-JOINTFeatures.npy``."""
    name = NAMES[dataset]
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(WTALC / f"{name}-Annotations", root / f"{name}-Annotations")
    target = root / f"{name}-I3D-JOINTFeatures.npy"
    if isinstance(feats, Path):
        os.symlink(feats, target)
    else:
        _save_features(target, feats)
    return root


@pytest.fixture(scope="module")
def thumos(tmp_path_factory) -> Path:
    return _layout(tmp_path_factory.mktemp("thumos"), "THUMOS14", _features("THUMOS14", 28, True))


def _record(fn):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in rec]


# ------------------------------------------------------------------ one naming rule


def test_video_key_on_real_ids():
    assert D.video_key("ActivityNet1.3", "v_Vg4a8igc0") == "v_v_Vg4a8igc0"
    assert D.video_key("ActivityNet1.2", "v_UmAH95xls") == "v_v_UmAH95xls"
    assert D.video_key("ActivityNet1.3", "3HHAEmr0Q34") == "v_3HHAEmr0Q34"
    assert D.video_key("THUMOS14", V171) == V171
    assert D.video_key("Tiny", b"vid_a") == "vid_a"
    for bad in ("", " v_x", "a b", "a/b"):
        with pytest.raises(ValueError, match="video id"):
            D.video_key("ActivityNet1.3", bad)
    with pytest.raises(ValueError, match="no YouTube id"):
        D.youtube_id("https://www.youtube.com/")
    # the real rows whose YouTube id begins with v_
    assert _strings(WTALC / "ActivityNet1.3-Annotations" / "videoname.npy")[269] == "v_Vg4a8igc0"
    assert _raw_ids("ActivityNet1.3")[1884] == "v_UmAH95xls"
    assert [_raw_ids("ActivityNet1.2")[i] for i in (108, 2638)] == ["v_Vg4a8igc0", "v_UmAH95xls"]


@pytest.mark.parametrize("dataset,variant,n", [("THUMOS14", "wtalc212", 412),
                                               ("ActivityNet1.2", "official", 7202),
                                               ("ActivityNet1.3", "official", 13912)])
def test_every_real_id_names_a_ground_truth_video(dataset, variant, n):
    """The committed gt (built by the script) and the readers name every real row alike."""
    keys = [D.video_key(dataset, r) for r in _raw_ids(dataset)]
    gt = D.load_annotations(dataset, variant)["database"]
    assert len(keys) == n and set(keys) == set(gt)
    if dataset != "THUMOS14":
        assert {"v_v_Vg4a8igc0", "v_v_UmAH95xls"} <= set(gt)
        assert "v_Vg4a8igc0" not in gt


from test_data import _load_script  # noqa: E402 - the ground-truth builder, loaded once


def test_builder_uses_the_same_naming_function(tmp_path):
    script = _load_script()
    assert script.video_key is D.video_key and script.youtube_id is D.youtube_id
    base = tmp_path / "activitynet1.3"
    w = base / "wtalc_npy"
    w.mkdir(parents=True)
    np.save(w / "videoname.npy", np.array(["v_Vg4a8igc0", "3HHAEmr0Q34"]))
    np.save(w / "subset.npy", np.array(["training", "validation"]))
    np.save(w / "duration.npy", np.array([10.0, 4.0]))
    segs, labs = np.empty(2, dtype=object), np.empty(2, dtype=object)
    segs[:] = [[[1.0, 2.0]], [[0.5, 3.0]]]
    labs[:] = [["Archery"], ["Zumba"]]
    np.save(w / "segments.npy", segs, allow_pickle=True)
    np.save(w / "labels.npy", labs, allow_pickle=True)
    np.save(w / "classlist.npy", np.array(["Archery", "Zumba"]))
    with open(base / "ecm_idx_name_dict.pkl", "wb") as fh:
        pickle.dump({1: "Zumba", 2: "Archery"}, fh)
    gt, _ = script.build_anet(tmp_path, "1.3", {"v_Vg4a8igc0": 30.0, "3HHAEmr0Q34": 25.0},
                              num_classes=2)
    assert sorted(gt["database"]) == ["v_3HHAEmr0Q34", "v_v_Vg4a8igc0"]


# ------------------------------------------------------------------ THUMOS14


THUMOS_WARNING = (
    "labels_all.npy: W-TALC's video labels differ from the labels of the ground-truth segments "
    "for 26 of 410 videos (e.g. video_validation_0000171: labels_all ['CricketBowling'], "
    "ground truth ['CricketBowling', 'CricketShot']; video_validation_0000183: labels_all "
    "['CricketShot'], ground truth ['CricketBowling', 'CricketShot']; video_validation_0000316: "
    "labels_all ['HammerThrow', 'ThrowDiscus'], ground truth ['HammerThrow']); training uses "
    "the ground-truth labels (data.labels=ground_truth; set data.labels=labels_all for W-TALC's)")


def _label_names(fs: D.FeatureSet, name: str) -> list[str]:
    return [c for c, v in zip(fs.classes, fs.labels[fs.names.index(name)]) if v]


def test_thumos14_real_folder_loads_and_warns_once(thumos):
    (val, test), msgs = _record(lambda: [D.load_split(thumos, "THUMOS14", s, 16)
                                         for s in ("val", "test")])
    assert (len(val), len(test)) == (200, 210)
    assert val.features.shape == (200, 2048, 16)
    label_msgs = [m for m in msgs if "labels_all.npy" in m]
    assert label_msgs == [str(thumos / "Thumos14reduced-Annotations") + "/" + THUMOS_WARNING]
    left = [m for m in msgs if "left out" in m]
    assert len(left) == 1 and "['video_test_0000270', 'video_test_0001496']" in left[0]
    # default: the ground truth's labels (ECM's), which evaluation uses
    assert _label_names(val, V171) == ["CricketBowling", "CricketShot"]
    gt = D.load_annotations("THUMOS14")["database"]
    assert test.duration.tolist() == [gt[n]["duration"] for n in test.names]
    # W-TALC's own labels on request; the report says so
    own, msgs = _record(lambda: D.load_split(thumos, "THUMOS14", "val", 16, labels="labels_all"))
    assert _label_names(own, V171) == ["CricketBowling"]
    assert _label_names(own, "video_validation_0000316") == ["HammerThrow", "ThrowDiscus"]
    assert [m for m in msgs if "labels_all.npy" in m][0].endswith(
        "training uses W-TALC's labels_all (data.labels=labels_all)")
    # the 212-video ground truth keeps the two test videos ECM's file leaves out
    test212, msgs = _record(lambda: D.load_split(
        thumos, "THUMOS14", "test", 16, gt=REPO / "data" / "thumos14" / "gt_wtalc212.json"))
    assert len(test212) == 212
    assert any("for 28 of 412 videos" in m for m in msgs)
    assert not any("left out" in m for m in msgs)


@pytest.mark.filterwarnings("ignore:.*labels_all.npy. W-TALC's video labels differ")
def test_thumos14_real_misalignment_is_still_an_error(thumos, tmp_path):
    feats = thumos / "Thumos14reduced-I3D-JOINTFeatures.npy"
    ann = "Thumos14reduced-Annotations"

    def case(name: str) -> Path:
        return _layout(tmp_path / name, "THUMOS14", feats)

    root = case("rows")
    labels_all = D._load_array(root / ann / "labels_all.npy", allow_pickle=True)
    np.save(root / ann / "labels_all.npy", labels_all[:-1], allow_pickle=True)
    with pytest.raises(D.DataError, match=r"labels_all.npy: 411 rows, videoname.npy has 412"):
        D.load_split(root, "THUMOS14", "val", 16)

    root = case("shifted")  # rows that belong to other videos: far more than a few differ
    shuffled = labels_all[np.random.default_rng(1).permutation(len(labels_all))]
    np.save(root / ann / "labels_all.npy", shuffled, allow_pickle=True)
    with pytest.raises(D.DataError, match=r"labels_all.npy: labels differ from the ground truth "
                                          r"for \d+ of 410 videos .*misaligned"):
        D.load_split(root, "THUMOS14", "val", 16)

    root = case("unknown")
    names = np.load(root / ann / "videoname.npy")
    names[3] = b"video_validation_9999999"
    np.save(root / ann / "videoname.npy", names)
    with pytest.raises(D.DataError, match=r"JOINTFeatures.npy: video 'video_validation_9999999' "
                                          r"\(row 3\): .* has no annotations in the ground truth"):
        D.load_split(root, "THUMOS14", "val", 16)

    root = case("classes")
    np.save(root / ann / "classlist.npy", np.array([b"Juggling"] * 20))
    with pytest.raises(D.DataError, match=r"classlist.npy: classes differ"):
        D.load_split(root, "THUMOS14", "val", 16)

    root = case("no_labels_all")
    (root / ann / "labels_all.npy").unlink()
    with pytest.raises(D.DataError, match=r"labels_all.npy: file not found \(data.labels="):
        D.load_split(root, "THUMOS14", "val", 16, labels="labels_all")
    assert len(D.load_split(root, "THUMOS14", "val", 16)) == 200  # the gt's labels need none
    with pytest.raises(ValueError, match="labels must be one of"):
        D.load_split(root, "THUMOS14", "val", 16, labels="segments")

    root = tmp_path / "shape"
    rows = D._load_array(feats, allow_pickle=True)
    first_val = _strings(WTALC / ann / "subset.npy").index("validation")
    rows[first_val] = np.zeros((5, 1024), np.float32)
    _layout(root, "THUMOS14", list(rows))
    with pytest.raises(D.DataError, match=rf"\(row {first_val}\): feature width 1024"):
        D.load_split(root, "THUMOS14", "val", 16, feat_dim=2048)


def test_config_data_labels_reaches_the_reader(thumos):
    from ecmlib.training.setup import load_data, make_config

    with pytest.raises(ValueError, match="data.labels must be"):
        make_config("THUMOS14", data_root=str(thumos), overrides=["data.labels=segments"])
    cfg = make_config("THUMOS14", data_root=str(thumos), overrides=["num_snippets=8"])
    assert cfg.data.labels == "ground_truth"
    cfg = cfg.with_overrides(["data.labels=labels_all"])
    (train, _test), _ = _record(lambda: load_data(cfg))
    assert _label_names(train, V171) == ["CricketBowling"]


@pytest.mark.slow
def test_train_and_eval_cli_on_real_thumos14_folder(thumos, tmp_path):
    run, out = tmp_path / "run", tmp_path / "eval"
    common = ["--dataset", "THUMOS14", "--data-root", str(thumos)]
    sets = ["--set", "num_snippets=16", "hidden_dim=16", "train.lr=2e-3", "train.num_threads=1"]
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    train = subprocess.run([sys.executable, "-m", "ecmlib", "train", *common, "--epochs", "2",
                            *sets, "--out", str(run), "--quiet"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert train.stderr.count("for 26 of 410 videos") == 1, train.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics and (run / "best.pth").is_file()
    ev = subprocess.run([sys.executable, "-m", "ecmlib", "eval", *common, "--weight-file",
                         str(run / "best.pth"), *sets, "--out", str(out)],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "ground truth: THUMOS14 test, 210 videos" in ev.stdout
    assert (out / "best_result.json").is_file()
    assert len(json.loads((out / "best_result.json").read_text())["results"]) > 0


# ------------------------------------------------------------------ ActivityNet


@pytest.mark.parametrize("dataset,n_train", [("ActivityNet1.3", 9337), ("ActivityNet1.2", 4819)])
def test_activitynet_real_folder_loads(dataset, n_train, tmp_path):
    root = _layout(tmp_path, dataset, _features(dataset, 2, False))
    fs, msgs = _record(lambda: D.load_split(root, dataset, "training", 2))
    assert len(fs) == n_train and fs.features.shape[1:] == (2048, 2)
    assert {"v_v_Vg4a8igc0", "v_v_UmAH95xls"} <= set(fs.names)
    assert not [m for m in msgs if "labels_all" in m]  # W-TALC's ActivityNet labels agree
    gt = D.load_annotations(dataset)["database"]
    i = fs.names.index("v_v_Vg4a8igc0")
    assert fs.duration[i] == gt["v_v_Vg4a8igc0"]["duration"]
