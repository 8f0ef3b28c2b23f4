#!/usr/bin/env python
"""Build ECM's ground-truth files (ActivityNet result-file style) from the reference annotations.

Writes, under ``--out`` (default: the repository's ``data/``):

* ``thumos14/gt.json``           ECM's official THUMOS14 file (200 train + 210 test videos),
                                  with durations / fps taken from the W-TALC annotation arrays;
* ``thumos14/gt_wtalc212.json``  the W-TALC variant (200 train + 212 test videos);
* ``activitynet1.2/gt.json``     ActivityNet 1.2 (videos ``v_<youtube id>``, ECM class order;
                                  names by ``ecmlib.data.features.video_key``, as every reader);
* ``activitynet1.3/gt.json``     ActivityNet 1.3 (same conventions).

Each file is ``{"version", "dataset", "classes", "database": {vid: {"subset", "duration",
"fps", "frame_num", "annotations": [{"segment": [s, e], "label"}]}}}`` written without
indentation. ``frame_num`` is ``round(duration * fps)``: for ActivityNet 1.3 this equals the
frame counts of ``misc_list.txt`` (the fps there was computed as frames / duration); the script
checks that and reports any mismatch.

Usage (from the repository root)::

    python scripts/build_ground_truth.py --annotations ../shared/reference/annotations --out data
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the script runs without installing ecmlib

from ecmlib.datasets import THUMOS14_CLASSES  # noqa: E402
from ecmlib.data.features import (  # noqa: E402
    LEFT_OUT_VIDEOS,
    DataError,
    video_key,
    youtube_id,
)
from ecmlib.data.safeload import load_pickled_array, load_plain_pickle  # noqa: E402

#: fps used for ActivityNet 1.2 videos that ActivityNet 1.3's misc_fps.txt does not list
#: (videos removed from YouTube before 1.3 was collected). 30 fps is the most common rate.
ANET12_DEFAULT_FPS = 30.0

#: Size budget per written file: the repository keeps these under version control.
MAX_BYTES = 5 * 1024 * 1024


class AnnotationError(ValueError):
    """A problem in the reference annotations (the message names the file)."""


def _decode(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _load_npy(path: Path, allow_pickle: bool = False) -> np.ndarray:
    if not path.is_file():
        raise AnnotationError(f"{path}: file not found")
    try:  # object arrays through ecmlib's restricted unpickler: no code of the file runs
        return load_pickled_array(path) if allow_pickle else np.load(path, allow_pickle=False)
    except DataError as err:
        raise AnnotationError(str(err)) from None
    except Exception as err:  # numpy raises several types for corrupt files
        raise AnnotationError(f"{path}: cannot read ({type(err).__name__}: {err})") from err


def _load_wtalc(folder: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Read the W-TALC per-dataset arrays ``<key>.npy`` and check they all have one row a video."""
    pickled = {"segments", "labels", "labels_all"}
    arrays = {k: _load_npy(folder / f"{k}.npy", allow_pickle=k in pickled) for k in keys}
    n = len(arrays["videoname"])
    for k, a in arrays.items():
        if k == "classlist":
            continue
        if len(a) != n:
            raise AnnotationError(
                f"{folder / (k + '.npy')}: {len(a)} rows but videoname.npy has {n}"
            )
    return arrays


def _key(dataset: str, raw: str, path: Path, row: int) -> str:
    """The video's ground-truth name: ecmlib.data.features.video_key, the rule every reader uses."""
    try:
        return video_key(dataset, raw)
    except ValueError as err:
        raise AnnotationError(f"{path}: row {row}: {err}") from None


def _as_float(value, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise AnnotationError(f"{where}: not a number: {value!r}") from err
    if not math.isfinite(out):
        raise AnnotationError(f"{where}: not finite: {value!r}")
    return out


def _annotations(segments, labels, classes: set[str], where: str) -> list[dict]:
    """Pair W-TALC segments with labels, checking lengths, numbers and class names."""
    if len(segments) != len(labels):
        raise AnnotationError(f"{where}: {len(segments)} segments but {len(labels)} labels")
    if len(segments) == 0:
        raise AnnotationError(f"{where}: video without annotations")
    out = []
    for seg, lab in zip(segments, labels):
        lab = _decode(lab)
        if lab not in classes:
            raise AnnotationError(f"{where}: label {lab!r} is not in the class list")
        if len(seg) != 2:
            raise AnnotationError(f"{where}: segment {seg!r} does not have 2 values")
        out.append({"segment": [_as_float(seg[0], where), _as_float(seg[1], where)], "label": lab})
    return out


def _entry(subset: str, duration: float, fps: float, annotations: list[dict]) -> dict:
    return {
        "subset": subset,
        "duration": duration,
        "fps": fps,
        "frame_num": int(round(duration * fps)),
        "annotations": annotations,
    }


def _anomalies(database: dict) -> dict[str, int]:
    """Count oddities kept as they are in the official annotations (reported, not fixed)."""
    empty = sum(1 for e in database.values() for a in e["annotations"]
                if a["segment"][1] <= a["segment"][0])
    beyond = sum(1 for e in database.values() for a in e["annotations"]
                 if a["segment"][1] > e["duration"] + 1e-6)
    return {"segments with end <= start": empty, "segments ending after the duration": beyond}


def build_thumos(ann_root: Path) -> tuple[dict, dict]:
    """Return (official 210-test-video gt, W-TALC 212-test-video gt) for THUMOS14."""
    folder = ann_root / "thumos14" / "wtalc_npy"
    w = _load_wtalc(folder, ["videoname", "subset", "duration", "original_fps",
                             "segments", "labels", "classlist"])
    classes = list(THUMOS14_CLASSES)
    wtalc_classes = [_decode(c) for c in w["classlist"]]
    if set(wtalc_classes) != set(classes):
        raise AnnotationError(f"{folder / 'classlist.npy'}: classes differ from ECM's 20 classes")
    class_set = set(classes)
    names = [_key("THUMOS14", _decode(v), folder / "videoname.npy", i)
             for i, v in enumerate(w["videoname"])]
    durations = np.asarray(w["duration"], dtype=np.float64).reshape(len(names))
    fps = np.asarray(w["original_fps"], dtype=np.float64).reshape(len(names))
    subset_map = {"validation": "train", "test": "test"}

    wtalc_db: dict[str, dict] = {}
    for i, vid in enumerate(names):
        where = f"{folder}: video {vid}"
        sub = _decode(w["subset"][i])
        if sub not in subset_map:
            raise AnnotationError(f"{folder / 'subset.npy'}: video {vid} has subset {sub!r}")
        wtalc_db[vid] = _entry(subset_map[sub], _as_float(durations[i], where + " duration"),
                               _as_float(fps[i], where + " fps"),
                               _annotations(w["segments"][i], w["labels"][i], class_set, where))

    ecm_path = ann_root / "thumos14" / "gt_ecm.json"
    try:
        ecm = json.loads(ecm_path.read_text(encoding="utf-8"))["database"]
    except FileNotFoundError as err:
        raise AnnotationError(f"{ecm_path}: file not found") from err
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise AnnotationError(f"{ecm_path}: corrupt or missing 'database' ({err})") from err
    official_db: dict[str, dict] = {}
    for vid, item in ecm.items():
        where = f"{ecm_path}: video {vid}"
        if vid not in wtalc_db:
            raise AnnotationError(f"{where}: no duration/fps in the W-TALC files of {folder}")
        if item.get("subset") not in ("train", "test"):
            raise AnnotationError(f"{where}: subset {item.get('subset')!r}")
        anns = item.get("annotations") or []
        segs = [a["segment"] for a in anns]
        labs = [a["label"] for a in anns]
        w_entry = wtalc_db[vid]
        official_db[vid] = _entry(item["subset"], w_entry["duration"], w_entry["fps"],
                                  _annotations(segs, labs, class_set, where))
        if w_entry["subset"] != item["subset"]:
            raise AnnotationError(f"{where}: subset differs from the W-TALC files")
    # the feature readers leave exactly these out of the official file: keep both in step
    unexpected = sorted(set(wtalc_db) - set(official_db) - set(LEFT_OUT_VIDEOS["THUMOS14"]))
    if unexpected:
        raise AnnotationError(f"{ecm_path}: leaves out W-TALC videos {unexpected[:5]} that are "
                              "not in ecmlib.data.features.LEFT_OUT_VIDEOS['THUMOS14']")

    meta = {"dataset": "THUMOS14", "classes": classes}
    official = {"version": "THUMOS14 (official ECM file, 210 test videos)", **meta,
                "database": official_db}
    wtalc = {"version": "THUMOS14 (W-TALC annotations, 212 test videos)", **meta,
             "database": wtalc_db}
    return official, wtalc


def _ecm_class_order(path: Path, num_classes: int) -> list[str]:
    try:  # plain data only (dict of int -> str): no global admitted, no code of the file runs
        idx_name = load_plain_pickle(path)
    except DataError as err:
        raise AnnotationError(str(err)) from None
    if not isinstance(idx_name, dict) or sorted(idx_name) != list(range(1, num_classes + 1)):
        raise AnnotationError(f"{path}: expected a dict with keys 1..{num_classes}")
    return [str(idx_name[i]) for i in range(1, num_classes + 1)]


def _read_anet13_fps(path: Path) -> dict[str, float]:
    if not path.is_file():
        raise AnnotationError(f"{path}: file not found")
    fps: dict[str, float] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if len(parts) != 2:
            raise AnnotationError(f"{path}:{lineno}: expected '<youtube id> <fps>'")
        fps[parts[0]] = _as_float(parts[1], f"{path}:{lineno}")
    return fps


def _read_anet13_frames(path: Path) -> dict[str, int]:
    """Frame counts from misc_list.txt ('<folder> <id> <frames> ...'); used only as a check."""
    frames: dict[str, int] = {}
    if not path.is_file():
        return frames
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].isdigit():
            frames[parts[1]] = int(parts[2])
    return frames


def build_anet(ann_root: Path, version: str, fps13: dict[str, float],
               num_classes: int | None = None) -> tuple[dict, list[str]]:
    """Return (gt dict, ids of videos whose fps is the default) for ActivityNet ``version``.

    ``num_classes`` defaults to the benchmark's (100 for 1.2, 200 for 1.3).
    """
    if num_classes is None:
        num_classes = {"1.2": 100, "1.3": 200}[version]
    base = ann_root / f"activitynet{version}"
    folder = base / "wtalc_npy"
    keys = ["videoname", "subset", "duration", "segments", "labels", "classlist"]
    if version == "1.2":
        keys.append("url")
    w = _load_wtalc(folder, keys)
    classes = _ecm_class_order(base / "ecm_idx_name_dict.pkl", num_classes)
    if set(_decode(c) for c in w["classlist"]) != set(classes):
        raise AnnotationError(
            f"{folder / 'classlist.npy'}: class names differ from {base / 'ecm_idx_name_dict.pkl'}"
        )
    class_set = set(classes)
    durations = np.asarray(w["duration"], dtype=np.float64).reshape(-1)
    database: dict[str, dict] = {}
    defaulted: list[str] = []
    for i in range(len(w["videoname"])):
        if version == "1.2":
            try:
                yid = youtube_id(_decode(w["url"][i]))
            except ValueError as err:
                raise AnnotationError(f"{folder / 'url.npy'}: row {i}: {err}") from None
            id_file = folder / "url.npy"
        else:
            yid = _decode(w["videoname"][i])
            id_file = folder / "videoname.npy"
        vid = _key(f"ActivityNet{version}", yid, id_file, i)
        where = f"{folder}: video {vid}"
        if vid in database:
            raise AnnotationError(f"{where}: duplicate video")
        sub = _decode(w["subset"][i])
        if sub not in ("training", "validation"):
            raise AnnotationError(f"{folder / 'subset.npy'}: video {vid} has subset {sub!r}")
        if yid in fps13:
            fps = fps13[yid]
        elif version == "1.2":
            fps = ANET12_DEFAULT_FPS
            defaulted.append(vid)
        else:
            raise AnnotationError(f"{where}: no fps in misc_fps.txt")
        database[vid] = _entry(sub, _as_float(durations[i], where + " duration"), fps,
                               _annotations(w["segments"][i], w["labels"][i], class_set, where))
    gt = {
        "version": f"ActivityNet {version} (W-TALC annotations, ECM class order)",
        "dataset": f"ActivityNet{version}",
        "classes": classes,
        "database": database,
    }
    if defaulted:
        # Kept in the file so a reader can tell measured fps from the default.
        gt["fps_default"] = {"fps": ANET12_DEFAULT_FPS, "videos": defaulted}
    return gt, defaulted


def write_json(obj: dict, path: Path) -> int:
    """Write compact JSON atomically; return its size in bytes (error if over MAX_BYTES)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise AnnotationError(f"{path}: {size} bytes exceeds the {MAX_BYTES}-byte budget")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return size


def summarise(name: str, gt: dict) -> dict[str, Counter]:
    """Print and return video / instance counts per subset."""
    videos = Counter(e["subset"] for e in gt["database"].values())
    instances = Counter()
    for e in gt["database"].values():
        instances[e["subset"]] += len(e["annotations"])
    print(f"{name}: videos {dict(videos)}, instances {dict(instances)}, "
          f"anomalies kept {_anomalies(gt['database'])}")
    return {"videos": videos, "instances": instances}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", type=Path,
                        default=REPO_ROOT.parent / "shared" / "reference" / "annotations",
                        help="folder with thumos14/, activitynet1.2/, activitynet1.3/")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data",
                        help="output folder (default: the repository's data/)")
    args = parser.parse_args(argv)
    ann, out = args.annotations, args.out
    if not ann.is_dir():
        parser.error(f"{ann}: annotation folder not found")

    official, wtalc = build_thumos(ann)
    thumos = summarise("THUMOS14 official", official)
    summarise("THUMOS14 wtalc212", wtalc)
    # Known instance counts of the official ECM file: a cheap gate against a wrong input folder.
    if thumos["instances"] != Counter({"train": 3007, "test": 3311}):
        raise AnnotationError(f"THUMOS14 official instance counts {dict(thumos['instances'])} "
                              "differ from the expected 3007 train / 3311 test")

    fps13 = _read_anet13_fps(ann / "activitynet1.3" / "wtalc_npy" / "misc_fps.txt")
    anet12, defaulted = build_anet(ann, "1.2", fps13)
    summarise("ActivityNet1.2", anet12)
    print(f"ActivityNet1.2: {len(anet12['database']) - len(defaulted)} videos take fps from "
          f"ActivityNet 1.3 misc_fps.txt, {len(defaulted)} use the default {ANET12_DEFAULT_FPS}")
    anet13, _ = build_anet(ann, "1.3", fps13)
    summarise("ActivityNet1.3", anet13)
    frames = _read_anet13_frames(ann / "activitynet1.3" / "wtalc_npy" / "misc_list.txt")
    checked = [v for v in anet13["database"] if v[2:] in frames]
    mismatch = [v for v in checked if anet13["database"][v]["frame_num"] != frames[v[2:]]]
    print(f"ActivityNet1.3: frame_num = round(duration*fps) checked against misc_list.txt for "
          f"{len(checked)} videos, {len(mismatch)} mismatches")

    for gt, rel in [(official, "thumos14/gt.json"), (wtalc, "thumos14/gt_wtalc212.json"),
                    (anet12, "activitynet1.2/gt.json"), (anet13, "activitynet1.3/gt.json")]:
        size = write_json(gt, out / rel)
        print(f"wrote {out / rel} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AnnotationError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
