"""Annotations and I3D feature readers for ECM.

Two things live here:

* the ground truth of THUMOS14 / ActivityNet 1.2 / ActivityNet 1.3 in ActivityNet result-file
  style (built by ``scripts/build_ground_truth.py`` into the repository's ``data/`` folder),
  read with :func:`load_annotations` / :func:`dataset_classes`;
* feature readers for the on-disk layouts used by the weakly supervised TAL code bases, all
  returning one in-memory :class:`FeatureSet` (see :func:`load_split`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import DATASETS, THUMOS14_CLASSES, dataset_info
from ..errors import DataError
from ..io import read_json

__all__ = [
    "default_data_dir",
    "subset_for_split",
    "video_key",
    "youtube_id",
    "LEFT_OUT_VIDEOS",
    "LABEL_SOURCES",
    "read_gt_json",
    "load_annotations",
    "dataset_classes",
    "DataError",
    "FeatureSet",
    "LAYOUTS",
    "resample_snippets",
    "detect_layout",
    "load_split",
    "write_official_npz",
]


# Annotation variants per dataset -> file name under data/<folder>/.
_VARIANTS: dict[str, dict[str, str]] = {
    "THUMOS14": {"official": "gt.json", "wtalc212": "gt_wtalc212.json"},
    "ActivityNet1.2": {"official": "gt.json"},
    "ActivityNet1.3": {"official": "gt.json"},
}


def default_data_dir() -> Path:
    """Return the repository's ``data/`` folder (the parent of the ``ecmlib`` package's folder)."""
    from ..io import repo_root
    return repo_root() / "data"


def subset_for_split(dataset: str, split: str) -> str:
    """Map an on-disk feature split ('val', 'test', 'training', ...) to its gt ``subset`` name."""
    info = dataset_info(dataset)
    mapping = dict(zip(info["splits"], info["subsets"]))
    # Accept the gt subset names too, so callers may pass either.
    mapping.update({s: s for s in info["subsets"]})
    if split not in mapping:
        raise ValueError(
            f"unknown split {split!r} for {dataset}; expected one of {sorted(mapping)}"
        )
    return mapping[split]


def video_key(dataset: str, raw_id: str) -> str:
    """The ground-truth name of a video, from its id in the annotation files.

    The one naming rule of the project, used by ``scripts/build_ground_truth.py`` and by every
    reader that meets raw ids (the W-TALC layout's ``videoname.npy`` / ``url.npy``):

    * THUMOS14: the id is the name (``video_validation_0000051``);
    * ActivityNet 1.2 / 1.3: ``'v_' + <YouTube id>``, always: a YouTube id may itself begin
      with ``v_`` (``v_Vg4a8igc0`` is the video ``v_v_Vg4a8igc0``), so an id is data, never a
      prefix to guess;
    * datasets this module does not know: the id unchanged.

    Files that are named per video (the official layout's ``vid_name``, per-video ``.npy``
    stems) already carry the ground-truth name and are not passed through here.
    """
    raw = raw_id.decode("utf-8") if isinstance(raw_id, bytes) else str(raw_id)
    if not raw or raw != raw.strip() or any(c.isspace() or c in "/\\" for c in raw):
        raise ValueError(f"{dataset}: video id {raw!r} is empty or has spaces or slashes")
    if dataset.startswith("ActivityNet"):
        return "v_" + raw
    return raw


def youtube_id(url: str) -> str:
    """The YouTube id in a ``https://www.youtube.com/watch?v=<id>`` url (ActivityNet's url.npy)."""
    from urllib.parse import parse_qs, urlparse

    text = url.decode("utf-8") if isinstance(url, bytes) else str(url)
    ids = parse_qs(urlparse(text).query).get("v")
    if not ids or not ids[0]:
        raise ValueError(f"no YouTube id in url {text!r}")
    return ids[0]


#: Videos a dataset's official ground truth leaves out on purpose although feature releases
#: hold them: ECM's THUMOS14 file drops two test videos with wrong annotations (W-TALC's
#: 212-video files and ``gt_variant='wtalc212'`` keep them). Readers leave them out (with
#: the usual warning) instead of stopping; any other video missing from the gt is an error.
LEFT_OUT_VIDEOS: dict[str, tuple[str, ...]] = {
    "THUMOS14": ("video_test_0000270", "video_test_0001496"),
}

#: Where training labels come from (config key ``data.labels``): 'ground_truth', the labels
#: of the ground-truth segments used for evaluation (as ECM derives them), or 'labels_all',
#: the W-TALC layout's own per-video ``labels_all.npy``.
LABEL_SOURCES = ("ground_truth", "labels_all")


def _check_gt(gt: Any, path: str) -> dict:
    """Validate the structure of a gt dict read from ``path``; raise naming the problem."""
    if not isinstance(gt, dict):
        raise ValueError(f"{path}: top level is {type(gt).__name__}, expected a JSON object")
    for key in ("classes", "database"):
        if key not in gt:
            raise ValueError(f"{path}: missing key {key!r}")
    classes = gt["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{path}: 'classes' must be a list of strings")
    if len(set(classes)) != len(classes):
        raise ValueError(f"{path}: 'classes' has duplicate names")
    class_set = set(classes)
    if not isinstance(gt["database"], dict):
        raise ValueError(f"{path}: 'database' must be an object {{video: entry}}")
    for vid, entry in gt["database"].items():
        for key in ("subset", "duration", "annotations"):
            if key not in entry:
                raise ValueError(f"{path}: video {vid!r} is missing key {key!r}")
        for ann in entry["annotations"]:
            if ann.get("label") not in class_set:
                raise ValueError(
                    f"{path}: video {vid!r} has label {ann.get('label')!r} outside the class list"
                )
            seg = ann.get("segment")
            if not isinstance(seg, (list, tuple)) or len(seg) != 2:
                raise ValueError(f"{path}: video {vid!r} has a malformed segment {seg!r}")
    return gt


def read_gt_json(path: str | os.PathLike) -> dict:
    """Read and validate one gt json file (ActivityNet style, with a ``classes`` list)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: ground-truth file not found (rebuild it with scripts/build_ground_truth.py)"
        )
    return _check_gt(read_json(path), str(path))


def load_annotations(
    dataset: str, variant: str = "official", data_dir: str | os.PathLike | None = None
) -> dict:
    """Load the ground truth of ``dataset`` ('THUMOS14', 'ActivityNet1.2', 'ActivityNet1.3').

    ``variant`` is 'official' (ECM's files: 210 THUMOS14 test videos) or, for THUMOS14 only,
    'wtalc212' (the W-TALC annotations with all 212 test videos). ``data_dir`` overrides the
    repository's ``data/`` folder. Returns the dict {version, dataset, classes, database}.
    """
    dataset_info(dataset)
    variants = _VARIANTS[dataset]
    if variant not in variants:
        raise ValueError(
            f"unknown annotation variant {variant!r} for {dataset}; expected one of {sorted(variants)}"
        )
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return read_gt_json(root / DATASETS[dataset]["folder"] / variants[variant])


def dataset_classes(dataset: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """Class names of ``dataset`` in ECM's order (the index order of ``cls_label`` and the CAS)."""
    if dataset == "THUMOS14":
        return list(THUMOS14_CLASSES)
    return list(load_annotations(dataset, data_dir=data_dir)["classes"])


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------


@dataclass
class FeatureSet:
    """All videos of one split in memory, in one layout-independent form.

    ``features`` is [N, D, T] float32 with the RGB channels first (D/2) then the flow
    channels; ``labels`` is the [N, C] multi-hot video label in the order of ``classes``.
    """

    dataset: str            # 'THUMOS14' | 'ActivityNet1.2' | 'ActivityNet1.3' | synthetic names
    split: str              # on-disk split name ('val', 'test', 'training', 'validation')
    classes: list[str]
    names: list[str]        # video names, length N
    features: np.ndarray    # [N, D, T] float32, RGB (first D/2) then flow channels
    labels: np.ndarray      # [N, C] float32 multi-hot
    frame_num: np.ndarray   # [N] int64
    fps: np.ndarray         # [N] float64
    duration: np.ndarray    # [N] float64 seconds
    source: str = ""        # path or 'synthetic:<preset>' for messages

    def __len__(self) -> int:
        return len(self.names)

    @property
    def feat_dim(self) -> int:
        """Channel width D (RGB + flow)."""
        return int(self.features.shape[1])

    @property
    def num_snippets(self) -> int:
        """Snippets per video T."""
        return int(self.features.shape[2])

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        return len(self.classes)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "FeatureSet":
        """Return a new FeatureSet with the videos at ``indices`` (ints or a boolean mask)."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(
                    f"{self.source or self.dataset}: boolean mask of shape {idx.shape} "
                    f"for {len(self)} videos"
                )
            idx = np.flatnonzero(idx)
        elif idx.size == 0:
            idx = idx.astype(np.int64)
        elif not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"subset indices must be integers or a boolean mask, got {idx.dtype}")
        if idx.ndim != 1:
            raise ValueError(f"subset indices must be 1-D, got shape {idx.shape}")
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"subset index out of range for {len(self)} videos")
        return FeatureSet(
            dataset=self.dataset,
            split=self.split,
            classes=list(self.classes),
            names=[self.names[i] for i in idx],
            features=self.features[idx],
            labels=self.labels[idx],
            frame_num=self.frame_num[idx],
            fps=self.fps[idx],
            duration=self.duration[idx],
            source=self.source,
        )

    def validate(self) -> "FeatureSet":
        """Check shapes, dtypes and values; raise :class:`DataError` naming the problem."""
        where = self.source or f"{self.dataset}/{self.split}"
        n = len(self.names)
        f = self.features
        if not isinstance(f, np.ndarray) or f.ndim != 3:
            raise DataError(f"{where}: features must be a 3-D array [N, D, T], "
                            f"got {getattr(f, 'shape', type(f))}")
        if f.dtype != np.float32:
            raise DataError(f"{where}: features must be float32, got {f.dtype}")
        if f.shape[0] != n:
            raise DataError(f"{where}: {f.shape[0]} feature rows for {n} names")
        if f.shape[1] < 1 or f.shape[2] < 1:
            raise DataError(f"{where}: empty feature shape {f.shape}")
        if len(set(self.names)) != n:
            dup = sorted({x for x in self.names if self.names.count(x) > 1})
            raise DataError(f"{where}: duplicate video names {dup[:5]}")
        if len(set(self.classes)) != len(self.classes) or not self.classes:
            raise DataError(f"{where}: the class list is empty or has duplicates")
        bad = _first_nonfinite(f)
        if bad is not None:
            raise DataError(f"{where}: video {self.names[bad]!r} has NaN or inf features")
        lab = self.labels
        if not isinstance(lab, np.ndarray) or lab.shape != (n, len(self.classes)):
            raise DataError(f"{where}: labels must be [N={n}, C={len(self.classes)}], "
                            f"got {getattr(lab, 'shape', type(lab))}")
        if lab.dtype != np.float32:
            raise DataError(f"{where}: labels must be float32, got {lab.dtype}")
        if not np.all((lab == 0) | (lab == 1)):
            raise DataError(f"{where}: labels must be multi-hot (0/1 values)")
        empty = np.flatnonzero(lab.sum(axis=1) == 0)
        if empty.size:
            raise DataError(f"{where}: video {self.names[empty[0]]!r} has no label "
                            f"({empty.size} such videos)")
        for key, dtype in (("frame_num", np.int64), ("fps", np.float64), ("duration", np.float64)):
            arr = getattr(self, key)
            if not isinstance(arr, np.ndarray) or arr.shape != (n,):
                raise DataError(f"{where}: {key} must have shape ({n},), "
                                f"got {getattr(arr, 'shape', type(arr))}")
            if arr.dtype != dtype:
                raise DataError(f"{where}: {key} must be {np.dtype(dtype).name}, got {arr.dtype}")
            if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
                i = int(np.flatnonzero(~np.isfinite(arr) | (arr <= 0))[0])
                raise DataError(f"{where}: video {self.names[i]!r} has {key} = {arr[i]!r} "
                                f"(must be finite and > 0)")
        return self


def _first_nonfinite(features: np.ndarray) -> int | None:
    """Index of the first video with a NaN/inf value, checked video by video to bound memory."""
    for i in range(features.shape[0]):
        if not np.isfinite(features[i]).all():
            return i
    return None


def resample_snippets(feat: np.ndarray, num_snippets: int) -> np.ndarray:
    """Resample a [D, T_in] feature sequence to [D, num_snippets] float32 along time.

    Linear interpolation with half-snippet centres (sample j sits at input position
    (j + 0.5) * T_in / T - 0.5, clamped to the first/last snippet), i.e. what
    ``torch.nn.functional.interpolate(mode='linear', align_corners=False)`` does. It keeps a
    constant sequence constant and is the identity when T_in == T. W-TALC-style code samples
    integer snippet indices uniformly instead; ECM's released features are already resampled
    to T = 750 (THUMOS14) / 100 (ActivityNet), so for those files this function is a no-op.
    """
    feat = np.asarray(feat)
    if feat.ndim != 2:
        raise ValueError(f"resample_snippets expects [D, T], got shape {feat.shape}")
    if int(num_snippets) != num_snippets or num_snippets < 1:
        raise ValueError(f"num_snippets must be a positive integer, got {num_snippets!r}")
    num_snippets = int(num_snippets)
    t_in = feat.shape[1]
    if t_in == 0:
        raise ValueError("resample_snippets got a sequence with 0 snippets")
    if t_in == num_snippets:
        return feat.astype(np.float32, copy=True)
    pos = (np.arange(num_snippets, dtype=np.float64) + 0.5) * (t_in / num_snippets) - 0.5
    pos = np.clip(pos, 0.0, t_in - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t_in - 1)
    w = pos - lo
    src = feat.astype(np.float64, copy=False)
    out = src[:, lo] * (1.0 - w) + src[:, hi] * w
    return out.astype(np.float32)


# --- layouts ---------------------------------------------------------------------------------

#: Layout name -> what it looks like on disk (used in messages).
LAYOUTS: dict[str, str] = {
    "official": "<root>/<split>/<video>.npz with feat_spa, feat_tem, cls_label, vid_name, "
                "frame_num, fps (ECM release)",
    "wtalc": "<root>/<Name>-I3D-JOINTFeatures.npy + <root>/<Name>-Annotations/ (W-TALC, CO2-Net)",
    "basnet": "<root>/features/{train,test}/{rgb,flow}/<video>.npy (BaS-Net, UM, CoLA)",
    "acmnet": "<root>/<split>/<video>.npy of [T, D] (ACM-Net style)",
}

_OFFICIAL_KEYS = ("feat_spa", "feat_tem", "cls_label", "vid_name", "frame_num", "fps")


def _split_candidates(split: str) -> list[str]:
    """Folder names that may hold ``split``: itself, then the train/test alias other code uses."""
    alias = {"val": "train", "training": "train", "validation": "test"}.get(split)
    return [split] + ([alias] if alias else [])


def _wtalc_pairs(root: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for feat in sorted(root.glob("*-I3D-JOINTFeatures.npy")):
        ann = root / (feat.name[: -len("-I3D-JOINTFeatures.npy")] + "-Annotations")
        if ann.is_dir():
            pairs.append((feat, ann))
    return pairs


def _looked_for(root: Path, split: str | None) -> str:
    splits = _split_candidates(split) if split else ["<split>"]
    paths = [
        "official: " + ", ".join(str(root / s / "*.npz") for s in splits),
        "wtalc: " + str(root / "*-I3D-JOINTFeatures.npy") + " with "
        + str(root / "*-Annotations"),
        "basnet: " + ", ".join(str(root / "features" / s / "rgb" / "*.npy")
                               for s in (splits if split else ["{train,test}"])),
        "acmnet: " + ", ".join(str(root / s / "*.npy") for s in splits),
    ]
    return "; ".join(paths)


def detect_layout(root: str | os.PathLike, split: str | None = None) -> str:
    """Return the feature layout under ``root``: 'official', 'wtalc', 'basnet' or 'acmnet'.

    With ``split`` the split's own folder decides; without, any sub-folder does. Raises
    :class:`DataError` listing the layouts and paths looked for when nothing matches.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: feature folder not found")
    if _wtalc_pairs(root):
        return "wtalc"
    if split:
        dirs = [root / s for s in _split_candidates(split)]
        bas_dirs = [root / "features" / s for s in _split_candidates(split)]
    else:
        dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name != "features")
        feats = root / "features"
        bas_dirs = sorted(p for p in feats.iterdir() if p.is_dir()) if feats.is_dir() else []
    if any(d.is_dir() and (d / "rgb").is_dir() for d in bas_dirs):
        return "basnet"
    for d in dirs:
        if d.is_dir() and next(d.glob("*.npz"), None) is not None:
            return "official"
    for d in dirs:
        if d.is_dir() and next(d.glob("*.npy"), None) is not None:
            return "acmnet"
    raise DataError(f"{root}: no feature files found for split {split!r}; looked for "
                    f"{_looked_for(root, split)}")


def _load_array(path: Path, allow_pickle: bool = False) -> Any:
    """np.load with errors that name the file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if allow_pickle:  # object arrays (W-TALC): a restricted unpickler, no code of the file runs
            from .safeload import load_pickled_array
            return load_pickled_array(path)
        return np.load(path, allow_pickle=False, encoding="latin1")
    except DataError:
        raise
    except Exception as err:  # numpy/zipfile raise many types for a corrupt file
        raise DataError(f"{path}: corrupt or unreadable file ({type(err).__name__}: {err})") from err


def _as_str(value: Any, where: str) -> str:
    arr = np.asarray(value)
    if arr.size != 1:
        raise DataError(f"{where}: expected one string, got shape {arr.shape}")
    item = arr.reshape(-1)[0]
    return item.decode("utf-8") if isinstance(item, bytes) else str(item)


def _as_scalar(value: Any, where: str, integer: bool = False) -> float:
    arr = np.asarray(value)
    if arr.size != 1:
        raise DataError(f"{where}: expected one number, got shape {arr.shape}")
    try:
        x = float(arr.reshape(-1)[0])
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: not a number ({arr.reshape(-1)[0]!r})") from err
    if not np.isfinite(x) or x <= 0:
        raise DataError(f"{where}: must be finite and > 0, got {x!r}")
    if integer and x != int(x):
        raise DataError(f"{where}: must be an integer, got {x!r}")
    return x


def _check_time_major(arr: Any, where: str, width: int | None) -> np.ndarray:
    """Check a [T, width] feature array read from disk; return it as [width, T] float32."""
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        raise DataError(f"{where}: expected a 2-D array [T, D], got "
                        f"{getattr(arr, 'shape', type(arr).__name__)}")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{where}: non-numeric features (dtype {arr.dtype})")
    if arr.shape[0] == 0:
        raise DataError(f"{where}: 0 snippets")
    if width is not None and arr.shape[1] != width:
        raise DataError(f"{where}: feature width {arr.shape[1]}, expected {width}")
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: NaN or inf in the features")
    return np.ascontiguousarray(arr.T, dtype=np.float32)


class _Collector:
    """Accumulates per-video records and turns them into a FeatureSet (one copy of the data)."""

    def __init__(self, num_snippets: int | None, feat_dim: int | None, source: str):
        self.num_snippets = num_snippets  # None: keep the on-disk length
        self.feat_dim = feat_dim
        self.source = source
        self.records: list[dict] = []

    def add(self, where: str, name: str, feat: np.ndarray, **meta: Any) -> None:
        """``feat`` is [D, T_i]; D is checked against feat_dim (or the first video's width)."""
        if self.feat_dim is None:
            self.feat_dim = feat.shape[0]
        elif feat.shape[0] != self.feat_dim:
            raise DataError(f"{where}: feature width {feat.shape[0]}, expected {self.feat_dim}")
        if self.num_snippets is not None and feat.shape[1] != self.num_snippets:
            # resample now: long videos would otherwise hold far more memory than the result
            feat = resample_snippets(feat, self.num_snippets)
        self.records.append({"where": where, "name": name, "feat": feat, **meta})


def _resolve_gt(gt: Any, dataset: str) -> dict | None:
    """gt: a dict, a path, None (the dataset's official gt if known) or False (no gt)."""
    if gt is False:
        return None
    if gt is None:
        return load_annotations(dataset) if dataset in DATASETS else None
    if isinstance(gt, (str, os.PathLike)):
        return read_gt_json(gt)
    if isinstance(gt, dict):
        return _check_gt(gt, "<gt dict>")
    raise TypeError(f"gt must be a dict, a path, None or False, got {type(gt).__name__}")


def _resolve_classes(classes: Sequence[str] | None, gt: dict | None, dataset: str) -> list[str] | None:
    if classes is not None:
        return list(classes)
    if gt is not None:
        return list(gt["classes"])
    if dataset in DATASETS:
        return dataset_classes(dataset)
    return None


def _multi_hot(labels: Sequence[str], classes: list[str], where: str,
               index: dict[str, int] | None = None) -> np.ndarray:
    """Multi-hot [C] float32 of ``labels``; ``index`` ({class: i}) saves rebuilding it per video."""
    if index is None:
        index = {c: i for i, c in enumerate(classes)}
    out = np.zeros(len(classes), dtype=np.float32)
    for lab in labels:
        if lab not in index:
            raise DataError(f"{where}: label {lab!r} is not in the class list")
        out[index[lab]] = 1.0
    if not out.any():
        raise DataError(f"{where}: video without annotations")
    return out


def _expected_subset(dataset: str, split: str) -> str | None:
    try:
        return subset_for_split(dataset, split)
    except ValueError:
        return None


def _gt_entry(gt: dict | None, name: str, where: str, dataset: str, split: str,
              extra_videos: str, dropped: list[str]) -> dict | None:
    """Look ``name`` up in gt; None when it must be dropped (extra_videos='drop')."""
    if gt is None:
        return None
    entry = gt["database"].get(name)
    if entry is None:
        if extra_videos == "drop" or name in LEFT_OUT_VIDEOS.get(dataset, ()):
            dropped.append(name)
            return None
        raise DataError(f"{where}: video {name!r} has no annotations in the ground truth "
                        f"(pass extra_videos='drop' to leave such videos out, or another gt)")
    want = _expected_subset(dataset, split)
    if want is not None and entry["subset"] != want:
        raise DataError(f"{where}: video {name!r} belongs to subset {entry['subset']!r} in the "
                        f"ground truth, not {want!r} (split {split!r})")
    return entry


def _gt_meta(entry: dict, where: str) -> dict:
    try:
        duration = _as_scalar(entry["duration"], where + " (gt duration)")
        fps = _as_scalar(entry["fps"], where + " (gt fps)")
        frame_num = entry.get("frame_num")
        frame_num = (round(duration * fps) if frame_num is None
                     else _as_scalar(frame_num, where + " (gt frame_num)", integer=True))
    except KeyError as err:
        raise DataError(f"{where}: the ground truth lacks {err.args[0]!r} for this video") from err
    return {"duration": duration, "fps": fps, "frame_num": int(frame_num)}


def _split_dir(root: Path, split: str, sub: str = "") -> Path:
    for cand in _split_candidates(split):
        d = root / sub / cand if sub else root / cand
        if d.is_dir():
            return d
    tried = ", ".join(str(root / sub / c if sub else root / c) for c in _split_candidates(split))
    raise DataError(f"{root}: split folder for {split!r} not found (tried {tried})")


def _files(folder: Path, pattern: str) -> list[Path]:
    files = sorted(folder.glob(pattern))
    if not files:
        raise DataError(f"{folder}: empty split folder (no {pattern} files)")
    return files


def _read_official(root: Path, split: str, coll: _Collector, classes: list[str] | None,
                   gt: dict | None, dataset: str, extra_videos: str, dropped: list[str]) -> list[str]:
    folder = _split_dir(root, split)
    n_classes = len(classes) if classes is not None else None
    half = None if coll.feat_dim is None else coll.feat_dim // 2
    if coll.feat_dim is not None and coll.feat_dim % 2:
        raise DataError(f"{folder}: feat_dim {coll.feat_dim} is odd; the official layout stores "
                        "RGB and flow halves")
    for path in _files(folder, "*.npz"):
        data = _load_array(path)
        try:
            keys = set(data.files)
            for key in _OFFICIAL_KEYS:
                if key not in keys:
                    raise DataError(f"{path}: missing key {key!r} (has {sorted(keys)})")
            try:
                arrs = {k: data[k] for k in _OFFICIAL_KEYS}
            except Exception as err:
                raise DataError(f"{path}: corrupt array ({type(err).__name__}: {err})") from err
        finally:
            data.close()
        spa, tem = arrs["feat_spa"], arrs["feat_tem"]
        for key, arr in (("feat_spa", spa), ("feat_tem", tem)):
            if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
                raise DataError(f"{path}: key {key!r} must be a numeric [D/2, T] array, "
                                f"got shape {arr.shape} dtype {arr.dtype}")
            if half is not None and arr.shape[0] != half:
                raise DataError(f"{path}: key {key!r} has {arr.shape[0]} channels, expected "
                                f"{half} (feat_dim {coll.feat_dim})")
            if not np.isfinite(arr).all():
                raise DataError(f"{path}: key {key!r} contains NaN or inf")
        if spa.shape != tem.shape:
            raise DataError(f"{path}: feat_spa {spa.shape} and feat_tem {tem.shape} differ in shape")
        if spa.shape[1] == 0:
            raise DataError(f"{path}: 0 snippets")
        label = np.asarray(arrs["cls_label"])
        if n_classes is None:
            n_classes = label.shape[0] if label.ndim == 1 else -1
            classes = [f"class_{i}" for i in range(max(n_classes, 0))]
        if label.ndim != 1 or label.shape[0] != n_classes:
            raise DataError(f"{path}: key 'cls_label' has shape {label.shape}, expected ({n_classes},)")
        if not np.issubdtype(label.dtype, np.number) or not np.all((label == 0) | (label == 1)):
            raise DataError(f"{path}: key 'cls_label' must be multi-hot 0/1")
        if not label.any():
            raise DataError(f"{path}: video without annotations (cls_label is all zeros)")
        name = _as_str(arrs["vid_name"], f"{path}: key 'vid_name'")
        frame_num = _as_scalar(arrs["frame_num"], f"{path}: key 'frame_num'", integer=True)
        fps = _as_scalar(arrs["fps"], f"{path}: key 'fps'")
        entry = _gt_entry(gt, name, str(path), dataset, split, extra_videos, dropped)
        if gt is not None and entry is None:
            continue
        if entry is not None:
            gt_label = _multi_hot([a["label"] for a in entry["annotations"]], classes, str(path))
            if not np.array_equal(gt_label, label.astype(np.float32)):
                raise DataError(f"{path}: cls_label disagrees with the ground truth labels of "
                                f"{name!r}")
            # Durations live in the gt; the file's frame_num / fps are what ECM localises with.
            duration = _as_scalar(entry["duration"], f"{path} (gt duration)")
        else:
            duration = frame_num / fps
        feat = np.concatenate([spa, tem], axis=0).astype(np.float32, copy=False)
        coll.add(str(path), name, feat, label=label.astype(np.float32), frame_num=int(frame_num),
                 fps=fps, duration=duration)
    return classes


def _wtalc_keys(dataset: str, raw: list[str], path: Path) -> list[str]:
    """Ground-truth names of the W-TALC rows (:func:`video_key`); errors name file and row."""
    keys = []
    for i, r in enumerate(raw):
        try:
            keys.append(video_key(dataset, r))
        except ValueError as err:
            raise DataError(f"{path}: row {i}: {err}") from None
    return keys


def _label_row(row: Any, where: str) -> list[str]:
    """One row of labels_all.npy (a list of class names, or a single name) as strings."""
    if isinstance(row, (str, bytes, np.str_, np.bytes_)):
        row = [row]
    try:
        return [_as_str(x, where) for x in row]
    except TypeError:
        raise DataError(f"{where}: expected a list of class names, got {type(row).__name__}") \
            from None


#: Label disagreement reports already issued in this process (one warning per folder).
_REPORTED: set[str] = set()


def _check_labels_all(path: Path, names: list[str], labels_all: Any, gt: dict,
                      classes: list[str], labels: str) -> dict[int, np.ndarray]:
    """Compare W-TALC's labels_all.npy with the ground truth's labels, video by video.

    Returns labels_all as multi-hot rows (for the rows the gt knows; all zeros where the row is
    empty, as for THUMOS14's video_test_0000270 and 0001496). W-TALC's own files
    disagree for some videos (THUMOS14: 26 of the 410 of ECM's gt, e.g. a second class whose
    segments labels_all omits); that is reported once per process as a warning, with the
    count and examples. A disagreement for most videos means the rows do not belong to
    videoname.npy (misaligned files): that is an error.
    """
    own: dict[int, np.ndarray] = {}
    differ = []
    index = {c: j for j, c in enumerate(classes)}
    for i, name in enumerate(names):
        entry = gt["database"].get(name)
        if entry is None:
            continue
        where = f"{path}: video {name!r} (row {i})"
        row = _label_row(labels_all[i], where)  # W-TALC leaves some rows empty (THUMOS14: 2)
        own[i] = (_multi_hot(row, classes, where, index) if row
                  else np.zeros(len(classes), dtype=np.float32))
        ref = _multi_hot([a["label"] for a in entry["annotations"]], classes, where, index)
        if not np.array_equal(own[i], ref):
            differ.append((name, own[i], ref))
    if not differ:
        return own

    def show(v: np.ndarray) -> list[str]:
        return [classes[j] for j in np.flatnonzero(v)]

    if 2 * len(differ) > len(own):
        raise DataError(f"{path}: labels differ from the ground truth for {len(differ)} of "
                        f"{len(own)} videos (e.g. {differ[0][0]!r}: {show(differ[0][1])} vs "
                        f"{show(differ[0][2])}): the rows do not match videoname.npy "
                        f"(misaligned files?)")
    kinds: dict[tuple, tuple] = {}  # one example per kind of difference, then the next ones
    for n, a, b in differ:
        kinds.setdefault((tuple(show(a)), tuple(show(b))), (n, a, b))
    picked = list(kinds.values())[:3]
    seen = {d[0] for d in picked}
    picked += [d for d in differ if d[0] not in seen][:3 - len(picked)]
    examples = "; ".join(f"{n}: labels_all {show(a)}, ground truth {show(b)}"
                         for n, a, b in picked)
    use = ("the ground-truth labels (data.labels=ground_truth; set data.labels=labels_all "
           "for W-TALC's)" if labels == "ground_truth" else
           "W-TALC's labels_all (data.labels=labels_all)")
    msg = (f"{path}: W-TALC's video labels differ from the labels of the ground-truth "
           f"segments for {len(differ)} of {len(own)} videos (e.g. {examples}); training uses "
           f"{use}")
    if msg not in _REPORTED:
        _REPORTED.add(msg)
        warnings.warn(msg, stacklevel=4)
    return own


def _read_wtalc(root: Path, split: str, coll: _Collector, classes: list[str] | None,
                gt: dict | None, dataset: str, extra_videos: str, dropped: list[str],
                labels: str = "ground_truth") -> None:
    pairs = _wtalc_pairs(root)
    if len(pairs) != 1:
        raise DataError(f"{root}: expected one *-I3D-JOINTFeatures.npy with its *-Annotations "
                        f"folder, found {len(pairs)}")
    feat_file, ann = pairs[0]
    if gt is None or classes is None:
        raise DataError(f"{root}: the W-TALC layout needs a ground truth for labels and "
                        f"durations (unknown dataset {dataset!r}: pass gt=...)")
    names = [_as_str(v, f"{ann / 'videoname.npy'}") for v in _load_array(ann / "videoname.npy")]
    subsets = [_as_str(v, f"{ann / 'subset.npy'}") for v in _load_array(ann / "subset.npy")]
    if len(subsets) != len(names):
        raise DataError(f"{ann / 'subset.npy'}: {len(subsets)} rows, videoname.npy has {len(names)}")
    if (ann / "url.npy").is_file():
        # ActivityNet 1.2 names its videos video_<n>; the YouTube id sits in the url.
        urls = [_as_str(v, str(ann / "url.npy")) for v in _load_array(ann / "url.npy")]
        if len(urls) != len(names):
            raise DataError(f"{ann / 'url.npy'}: {len(urls)} rows, videoname.npy has {len(names)}")
        raw_ids = []
        for i, u in enumerate(urls):
            try:
                raw_ids.append(youtube_id(u))
            except ValueError as err:
                raise DataError(f"{ann / 'url.npy'}: row {i}: {err}") from None
        names = _wtalc_keys(dataset, raw_ids, ann / "url.npy")
    else:
        names = _wtalc_keys(dataset, names, ann / "videoname.npy")
    if (ann / "classlist.npy").is_file():
        listed = [_as_str(c, str(ann / "classlist.npy")) for c in _load_array(ann / "classlist.npy")]
        if set(listed) != set(classes):
            extra = sorted(set(listed) - set(classes))[:3]
            missing = sorted(set(classes) - set(listed))[:3]
            raise DataError(f"{ann / 'classlist.npy'}: classes differ from the ground truth's "
                            f"{len(classes)} (not in the gt: {extra}; missing: {missing})")
    labels_all = None
    if (ann / "labels_all.npy").is_file():
        labels_all = _load_array(ann / "labels_all.npy", allow_pickle=True)
        if len(labels_all) != len(names):
            raise DataError(f"{ann / 'labels_all.npy'}: {len(labels_all)} rows, videoname.npy "
                            f"has {len(names)}")
    wanted = {split, _expected_subset(dataset, split) or split}
    if split == "val":
        wanted.add("validation")  # W-TALC calls THUMOS14's validation videos 'validation'
    rows = [i for i, s in enumerate(subsets) if s in wanted]
    if not rows:
        raise DataError(f"{ann / 'subset.npy'}: no video of split {split!r} (subsets present: "
                        f"{sorted(set(subsets))})")
    index = {c: j for j, c in enumerate(classes)}
    own: dict[int, np.ndarray] = {}
    unlabelled: list[str] = []
    if labels_all is not None:
        own = _check_labels_all(ann / "labels_all.npy", names, labels_all, gt, classes, labels)
    elif labels == "labels_all":
        raise DataError(f"{ann / 'labels_all.npy'}: file not found (data.labels=labels_all takes "
                        f"W-TALC's own labels from it; use data.labels=ground_truth)")
    feats = _load_array(feat_file, allow_pickle=True)
    if feats.ndim != 1 or len(feats) != len(names):
        raise DataError(f"{feat_file}: {getattr(feats, 'shape', None)} entries, videoname.npy "
                        f"has {len(names)}")
    for i in rows:
        where = f"{feat_file}: video {names[i]!r} (row {i})"
        entry = _gt_entry(gt, names[i], where, dataset, split, extra_videos, dropped)
        if entry is None:
            continue
        if labels == "labels_all":
            label = own[i]
            if not label.any():  # no label to train on: left out, reported with the others
                unlabelled.append(names[i])
                continue
        else:
            label = _multi_hot([a["label"] for a in entry["annotations"]], classes, where, index)
        feat = _check_time_major(feats[i], where, None)
        coll.add(where, names[i], feat, label=label, **_gt_meta(entry, where))
    if unlabelled:
        warnings.warn(f"{ann / 'labels_all.npy'}: left out {len(unlabelled)} video(s) of split "
                      f"{split!r} without labels there (data.labels=labels_all): "
                      f"{unlabelled[:10]}", stacklevel=3)


def _read_per_video(root: Path, split: str, coll: _Collector, classes: list[str] | None,
                    gt: dict | None, dataset: str, extra_videos: str, dropped: list[str],
                    layout: str) -> None:
    if gt is None or classes is None:
        raise DataError(f"{root}: the {layout} layout needs a ground truth for labels and "
                        f"durations (unknown dataset {dataset!r}: pass gt=...)")
    if layout == "basnet":
        folder = _split_dir(root, split, "features")
        rgb_dir, flow_dir = folder / "rgb", folder / "flow"
        for d in (rgb_dir, flow_dir):
            if not d.is_dir():
                raise DataError(f"{d}: folder not found (basnet layout needs rgb/ and flow/)")
        rgb_files = _files(rgb_dir, "*.npy")
        extra_flow = sorted({p.name for p in flow_dir.glob("*.npy")} - {p.name for p in rgb_files})
        if extra_flow:
            raise DataError(f"{flow_dir / extra_flow[0]}: flow features without RGB features")
        half = None if coll.feat_dim is None else coll.feat_dim // 2
        for rgb_path in rgb_files:
            name = rgb_path.stem
            flow_path = flow_dir / rgb_path.name
            if not flow_path.is_file():
                raise DataError(f"{flow_path}: missing (RGB features exist for {name!r})")
            entry = _gt_entry(gt, name, str(rgb_path), dataset, split, extra_videos, dropped)
            if entry is None:
                continue
            rgb = _check_time_major(_load_array(rgb_path), str(rgb_path), half)
            flow = _check_time_major(_load_array(flow_path), str(flow_path), rgb.shape[0])
            if rgb.shape[1] != flow.shape[1]:
                raise DataError(f"{flow_path}: {flow.shape[1]} snippets but the RGB file has "
                                f"{rgb.shape[1]}")
            label = _multi_hot([a["label"] for a in entry["annotations"]], classes, str(rgb_path))
            coll.add(str(rgb_path), name, np.concatenate([rgb, flow], axis=0), label=label,
                     **_gt_meta(entry, str(rgb_path)))
    else:
        folder = _split_dir(root, split)
        for path in _files(folder, "*.npy"):
            name = path.stem
            entry = _gt_entry(gt, name, str(path), dataset, split, extra_videos, dropped)
            if entry is None:
                continue
            feat = _check_time_major(_load_array(path), str(path), coll.feat_dim)
            label = _multi_hot([a["label"] for a in entry["annotations"]], classes, str(path))
            coll.add(str(path), name, feat, label=label, **_gt_meta(entry, str(path)))


def load_split(
    root: str | os.PathLike,
    dataset: str,
    split: str,
    num_snippets: int | None,
    feat_dim: int | None = None,
    layout: str = "auto",
    *,
    gt: dict | str | os.PathLike | None | bool = None,
    classes: Sequence[str] | None = None,
    extra_videos: str = "error",
    labels: str = "ground_truth",
) -> FeatureSet:
    """Read one split of I3D features under ``root`` into a :class:`FeatureSet`.

    ``layout`` is 'auto' (see :func:`detect_layout`) or one of :data:`LAYOUTS`. Each video is
    resampled to ``num_snippets`` with :func:`resample_snippets` (None keeps the on-disk length,
    which must then be the same for every video); ``feat_dim`` is the expected channel width
    D = RGB + flow (None: taken from the first file, then enforced). Videos are sorted by name.

    Labels, durations, fps and frame counts come from the files where the layout stores them
    (official: cls_label, frame_num, fps) and from the ground truth otherwise. ``gt`` is a gt
    dict or json path, None for the dataset's official file (known datasets), or False for
    none (official layout only). A video absent from the gt is an error unless
    ``extra_videos='drop'`` (then it is left out with a warning that names it) or it is one
    of the dataset's :data:`LEFT_OUT_VIDEOS` (always left out, with the same warning).
    ``classes`` overrides the class order; an unknown dataset read without gt or classes
    gets 'class_<i>' names. Video names from raw ids go through :func:`video_key`.

    ``labels`` (config ``data.labels``, see :data:`LABEL_SOURCES`) picks the source of the
    video labels where a layout has its own besides the ground truth: 'ground_truth' (default:
    the labels of the gt segments, which evaluation uses, as ECM derives its labels) or
    'labels_all' (the W-TALC layout's ``labels_all.npy``). Where the two disagree the reader
    warns once, with the count and examples; the official layout's ``cls_label`` must equal
    the gt's labels (both are ECM's).
    """
    root = Path(root)
    if extra_videos not in ("error", "drop"):
        raise ValueError(f"extra_videos must be 'error' or 'drop', got {extra_videos!r}")
    if labels not in LABEL_SOURCES:
        raise ValueError(f"labels must be one of {LABEL_SOURCES} (config data.labels), "
                         f"got {labels!r}")
    if feat_dim is not None and (int(feat_dim) != feat_dim or feat_dim < 1):
        raise ValueError(f"feat_dim must be a positive integer or None, got {feat_dim!r}")
    if num_snippets is not None and (int(num_snippets) != num_snippets or num_snippets < 1):
        raise ValueError(f"num_snippets must be a positive integer or None, got {num_snippets!r}")
    if layout == "auto":
        layout = detect_layout(root, split)
    elif layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected 'auto' or one of {sorted(LAYOUTS)}")
    elif not root.is_dir():
        raise DataError(f"{root}: feature folder not found")
    gt_dict = _resolve_gt(gt, dataset)
    class_list = _resolve_classes(classes, gt_dict, dataset)
    coll = _Collector(num_snippets, feat_dim, str(root))
    dropped: list[str] = []
    args = (root, split, coll, class_list, gt_dict, dataset, extra_videos, dropped)
    if layout == "official":
        class_list = _read_official(*args)
    elif layout == "wtalc":
        _read_wtalc(*args, labels=labels)
    else:
        _read_per_video(*args, layout=layout)
    if dropped:
        known = [n for n in dropped if n in LEFT_OUT_VIDEOS.get(dataset, ())]
        why = (f" ({len(known)} of them left out of the ground truth on purpose, see "
               f"ecmlib.data.features.LEFT_OUT_VIDEOS)" if known else "")
        warnings.warn(f"{root}: left out {len(dropped)} video(s) of split {split!r} without "
                      f"annotations in the ground truth: {dropped[:10]}{why}", stacklevel=2)
    if not coll.records:
        raise DataError(f"{root}: no video of split {split!r} left to load")
    return _assemble(coll, dataset, split, class_list or [])


def _assemble(coll: _Collector, dataset: str, split: str, classes: list[str]) -> FeatureSet:
    recs = sorted(coll.records, key=lambda r: r["name"])
    names = [r["name"] for r in recs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        where = [r["where"] for r in recs if r["name"] == dup]
        raise DataError(f"{where[-1]}: duplicate video {dup!r} (also in {where[0]})")
    t = coll.num_snippets
    if t is None:
        lengths = sorted({r["feat"].shape[1] for r in recs})
        if len(lengths) > 1:
            raise DataError(f"{coll.source}: videos have different lengths {lengths[:5]}; "
                            "pass num_snippets to resample them")
        t = lengths[0]
    features = np.empty((len(recs), coll.feat_dim, t), dtype=np.float32)
    for i, r in enumerate(recs):
        features[i] = r["feat"]
        r["feat"] = None  # free the per-video copy as soon as it is in the batch array
    fs = FeatureSet(
        dataset=dataset,
        split=split,
        classes=list(classes),
        names=names,
        features=features,
        labels=np.stack([r["label"] for r in recs]).astype(np.float32),
        frame_num=np.array([r["frame_num"] for r in recs], dtype=np.int64),
        fps=np.array([r["fps"] for r in recs], dtype=np.float64),
        duration=np.array([r["duration"] for r in recs], dtype=np.float64),
        source=coll.source,
    )
    return fs.validate()


def write_official_npz(
    path: str | os.PathLike,
    features: np.ndarray,
    label: np.ndarray,
    name: str,
    frame_num: int,
    fps: float,
) -> Path:
    """Write one video in ECM's official .npz schema, atomically (temp file + rename).

    ``features`` is [D, T] with RGB channels first; it is split into ``feat_spa`` (first D/2)
    and ``feat_tem`` (last D/2). ``label`` is the [C] multi-hot ``cls_label``.
    """
    from ..io import atomic_write

    path = Path(path)
    feat = np.asarray(features)
    if feat.ndim != 2 or feat.shape[0] % 2 or feat.shape[1] < 1:
        raise ValueError(f"{path}: features must be [D, T] with even D, got shape {feat.shape}")
    if not np.isfinite(feat).all():
        raise ValueError(f"{path}: features contain NaN or inf")
    lab = np.asarray(label, dtype=np.float32)
    if lab.ndim != 1 or not np.all((lab == 0) | (lab == 1)) or not lab.any():
        raise ValueError(f"{path}: label must be a non-empty 1-D multi-hot vector, got {lab!r}")
    if int(frame_num) != frame_num or frame_num < 1:
        raise ValueError(f"{path}: frame_num must be a positive integer, got {frame_num!r}")
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"{path}: fps must be finite and > 0, got {fps!r}")
    half = feat.shape[0] // 2
    arrays = {
        "feat_spa": np.ascontiguousarray(feat[:half], dtype=np.float32),
        "feat_tem": np.ascontiguousarray(feat[half:], dtype=np.float32),
        "cls_label": lab,
        "vid_name": np.array(str(name)),
        "frame_num": np.array(int(frame_num), dtype=np.int64),
        "fps": np.array(float(fps), dtype=np.float64),
    }
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))
