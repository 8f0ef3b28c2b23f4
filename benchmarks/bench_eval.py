"""Benchmark: detection mAP on ~50,000 predictions over the THUMOS14 test videos.

Times ``ecmlib.method.evaluation.evaluate_detection`` at tIoU 0.1:0.9 (best of a few runs) against
``reference_style_ap``, a deliberately plain re-implementation of the ActivityNet algorithm
(one pandas row at a time, as the authors' evaluation does), checks that both give the same
AP, and reports PASS/FAIL against the 0.5 s target.

    python benchmarks/bench_eval.py [--quick] [--gt PATH] [--num-predictions N] [--repeats R]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ecmlib.method.evaluation import (  # noqa: E402  (the path above makes ecmlib importable)
    THUMOS14_TIOU, GroundTruth, Predictions, evaluate_detection, load_ground_truth,
    predictions_from_arrays,
)

TARGET_S = 0.5
DEFAULT_GT = ROOT / "tests" / "data" / "thumos14_gt_ecm.json"


def make_predictions(gt: GroundTruth, num_predictions: int, seed: int = 0) -> Predictions:
    """Seeded detections: jittered copies of ground-truth segments (some with the wrong class)
    plus random segments, in random videos of the subset and a few unknown videos."""
    rng = np.random.default_rng(seed)
    num_copies = num_predictions * 3 // 5
    src = rng.integers(0, gt.num_instances, num_copies)
    length = gt.end[src] - gt.start[src]
    centre = (gt.start[src] + gt.end[src]) / 2 + rng.normal(0, 0.3, num_copies) * length
    half = length / 2 * rng.lognormal(0, 0.3, num_copies)
    wrong_class = rng.random(num_copies) < 0.1
    cls_copy = np.where(wrong_class, rng.integers(0, len(gt.classes), num_copies),
                        gt.class_idx[src])
    num_random = num_predictions - num_copies
    video_end = np.zeros(gt.num_videos)
    np.maximum.at(video_end, gt.video_idx, gt.end)
    vid_random = rng.integers(0, gt.num_videos, num_random)
    start_random = rng.random(num_random) * (video_end[vid_random] + 10)
    len_random = rng.exponential(8, num_random) + 0.5
    names = np.array(gt.video_names + ["video_unknown_0001", "video_unknown_0002"])
    unknown = rng.random(num_random) < 0.01         # 1 % in videos the ground truth lacks
    vid_random = np.where(unknown, gt.num_videos + rng.integers(0, 2, num_random), vid_random)
    video = np.concatenate([gt.video_idx[src], vid_random])
    start = np.concatenate([np.maximum(centre - half, 0), start_random])
    end = np.concatenate([np.maximum(centre + half, start[:num_copies] + 0.1),
                          start_random + len_random])
    cls = np.concatenate([cls_copy, rng.integers(0, len(gt.classes), num_random)])
    score = rng.random(num_predictions)
    return predictions_from_arrays(names[video], cls, start, end, score, classes=gt.classes)


def _class_ap_reference_style(gt_c: pd.DataFrame, pred_c: pd.DataFrame,
                              tiou: np.ndarray) -> np.ndarray:
    """AP of one class, one prediction at a time (the slow, obviously-faithful way)."""
    ap = np.zeros(tiou.size)
    if pred_c.empty:
        return ap
    # Highest score first; ties exactly as the reference leaves them (default argsort).
    ranked = pred_c.loc[pred_c["score"].to_numpy().argsort()[::-1]]
    ranked = ranked.reset_index(drop=True)
    taken = np.full((tiou.size, len(gt_c)), False)
    tp = np.zeros((tiou.size, len(ranked)))
    by_video = {vid: grp for vid, grp in gt_c.groupby("video")}
    for i, row in ranked.iterrows():
        grp = by_video.get(row["video"])
        if grp is None:
            continue                                   # no ground truth there: false positive
        g_start, g_end = grp["start"].to_numpy(), grp["end"].to_numpy()
        inter = np.clip(np.minimum(row["end"], g_end) - np.maximum(row["start"], g_start), 0, None)
        union = (g_end - g_start) + (row["end"] - row["start"]) - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = inter / union
        candidates = overlap.argsort()[::-1]
        for k, t in enumerate(tiou):
            for j in candidates:
                if overlap[j] < t:
                    break
                if taken[k, grp.index[j]]:
                    continue
                taken[k, grp.index[j]] = True
                tp[k, i] = 1
                break
    tp_cum = np.cumsum(tp, axis=1)
    fp_cum = np.cumsum(1 - tp, axis=1)
    recall = tp_cum / len(gt_c)
    precision = tp_cum / (tp_cum + fp_cum)
    for k in range(tiou.size):
        prec = np.concatenate([[0.0], precision[k], [0.0]])
        rec = np.concatenate([[0.0], recall[k], [1.0]])
        for j in range(prec.size - 2, -1, -1):
            prec[j] = max(prec[j], prec[j + 1])
        changed = np.flatnonzero(rec[1:] != rec[:-1]) + 1
        ap[k] = np.sum((rec[changed] - rec[changed - 1]) * prec[changed])
    return ap


def reference_style_ap(gt: GroundTruth, preds: Predictions, tiou: np.ndarray) -> np.ndarray:
    """AP [K, C] by the row-at-a-time algorithm; NaN for classes without ground truth."""
    gt_df = pd.DataFrame({"video": np.array(gt.video_names)[gt.video_idx],
                          "label": gt.class_idx, "start": gt.start, "end": gt.end})
    pred_df = pd.DataFrame({"video": np.array(preds.video_names)[preds.video_idx],
                            "label": preds.class_idx, "start": preds.start, "end": preds.end,
                            "score": preds.score})
    ap = np.full((tiou.size, len(gt.classes)), np.nan)
    for c in range(len(gt.classes)):
        gt_c = gt_df[gt_df["label"] == c].reset_index(drop=True)
        if gt_c.empty:
            continue
        ap[:, c] = _class_ap_reference_style(gt_c, pred_df[pred_df["label"] == c]
                                             .reset_index(drop=True), tiou)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if the results differ or the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 predictions, 2 repeats")
    parser.add_argument("--gt", default=str(DEFAULT_GT), help="THUMOS14 ground truth JSON")
    parser.add_argument("--num-predictions", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    num = args.num_predictions or (5_000 if args.quick else 50_000)
    repeats = args.repeats or (2 if args.quick else 5)

    gt = load_ground_truth(args.gt, "test")
    preds = make_predictions(gt, num, args.seed)
    tiou = THUMOS14_TIOU
    print(f"ground truth: {gt.describe()}")
    print(f"predictions: {len(preds)} in {len(preds.video_names)} videos, tIoU {tiou.min():g}:"
          f"{tiou.max():g} ({tiou.size} thresholds)")

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = evaluate_detection(gt, preds, tiou)
        times.append(time.perf_counter() - t0)
    fast = min(times)

    t0 = time.perf_counter()
    slow_ap = reference_style_ap(gt, preds, tiou)
    slow = time.perf_counter() - t0

    err_ap = float(np.nanmax(np.abs(result.ap - slow_ap)))
    err_map = float(np.max(np.abs(result.mAP - np.nanmean(slow_ap, axis=1))))
    same = err_ap <= 1e-12 and err_map <= 1e-12
    print("mAP@0.1:0.9 (%): " + " ".join(f"{100 * m:.2f}" for m in result.mAP))
    print(f"evaluate_detection : {fast:8.4f} s (best of {repeats})")
    print(f"reference-style    : {slow:8.4f} s (one run)")
    print(f"speed-up           : {slow / fast:8.1f}x")
    print(f"max |AP diff| {err_ap:.3g}, max |mAP diff| {err_map:.3g}: "
          f"{'identical' if same else 'DIFFERENT'}")
    ok = fast <= TARGET_S
    print(f"{'PASS' if ok else 'FAIL'}: {fast:.3f} s vs target {TARGET_S} s"
          + ("" if num >= 50_000 else f" (target is for 50,000 predictions; this run has {num})"))
    return 0 if (same and ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
