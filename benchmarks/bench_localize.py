"""Benchmark: vectorised ECM localisation vs a per-threshold / per-run Python-loop baseline.

Synthetic THUMOS-like test set (210 videos, T=750, C=20, two confident classes per video
with bumps, frame_num 3000-8000, seeded). Both implementations run in the same process on
the same inputs; the script checks that they agree (same count and order, times to 1e-6 s,
scores to 1e-5), prints both times, the speed-up and PASS/FAIL against the target
(ours <= 1.5 s for the full set).

The baseline is ``ecmlib.method.reference.localize_steps``: the spec written with per-class,
per-threshold and per-run loops (the plain version the tests hold the vectorised one to);
it reuses ecmlib's ``minmax_normalize`` and ``resize_linear`` (the authors call
``cv2.resize``, a C routine), so the speed-up measures the thresholding, run, score and
NMS stages.

Usage: python benchmarks/bench_localize.py [--quick] [--videos N] [--seed S]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from ecmlib.method.localize import LocalizeParams, localize_batch  # noqa: E402
from ecmlib.method.reference import localize_steps  # noqa: E402

TARGET_S = 1.5
N_VIDEOS = 210
T = 750
C = 20


def make_data(n_videos: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic CAS [N, C, T] (float32), video scores [N, C], frame counts [N], fps [N]."""
    rng = np.random.default_rng(seed)
    # Smoothed noise so that low thresholds cut the background into many short runs, as a
    # trained network's CAS does.
    noise = rng.normal(0.0, 1.0, (n_videos, C, T + 4))
    kernel = np.ones(5) / 5.0
    base = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), -1, noise) * 1.5 - 0.5
    cas = base.astype(np.float64)
    scores = rng.uniform(0.0, 0.1, (n_videos, C))
    t = np.arange(T)
    for v in range(n_videos):
        confident = rng.choice(C, size=2, replace=False)
        scores[v, confident] = rng.uniform(0.3, 0.95, 2)
        for c in confident:
            n_bumps = rng.integers(3, 9)
            centres = rng.uniform(0, T, n_bumps)
            widths = rng.uniform(3, 30, n_bumps)
            heights = rng.uniform(2.0, 5.0, n_bumps)
            z = (t[None] - centres[:, None]) / widths[:, None]
            cas[v, c] += (heights[:, None] * np.exp(-0.5 * z**2)).sum(0)
    frame_nums = rng.integers(3000, 8001, n_videos)
    fps = np.full(n_videos, 30.0)
    return cas.astype(np.float32), scores.astype(np.float32), frame_nums, fps


# --------------------------------------------------------------------------- main


def compare(ours: list[np.ndarray], ref: list[np.ndarray]) -> tuple[bool, int, float, float]:
    """(all equal within tolerance, n mismatching videos, max time error, max score error)."""
    bad, t_err, s_err = 0, 0.0, 0.0
    for a, b in zip(ours, ref):
        if a.shape != b.shape or not np.array_equal(a[:, 0], b[:, 0]):
            bad += 1
            continue
        if a.size:
            te = float(np.abs(a[:, 1:3] - b[:, 1:3]).max())
            se = float(np.abs(a[:, 3] - b[:, 3]).max())
            t_err, s_err = max(t_err, te), max(s_err, se)
            bad += int(te > 1e-6 or se > 1e-5)
    return bad == 0, bad, t_err, s_err


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="30 videos (smoke run; target scaled)")
    ap.add_argument("--videos", type=int, default=None, help="number of videos (default 210)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n = args.videos or (30 if args.quick else N_VIDEOS)
    target = TARGET_S * n / N_VIDEOS
    cas, scores, frame_nums, fps = make_data(n, args.seed)
    params = LocalizeParams.thumos14()

    t0 = time.perf_counter()
    ours = localize_batch(cas, scores, frame_nums, fps, params)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref = [localize_steps(cas[i], scores[i], int(frame_nums[i]), float(fps[i]), params).detections
           for i in range(n)]
    t_ref = time.perf_counter() - t0

    ok, bad, t_err, s_err = compare(ours, ref)
    n_det = sum(d.shape[0] for d in ours)
    print(f"videos: {n}  detections: {n_det}  (T={T}, C={C}, frame_num 3000-8000, seed {args.seed})")
    print(f"ours (vectorised):     {t_ours:8.3f} s")
    print(f"baseline (loops):      {t_ref:8.3f} s")
    print(f"speed-up:              {t_ref / t_ours:8.1f} x")
    verdict = "identical" if ok else f"{bad} videos differ"
    print(f"agreement: {verdict}  (max |dt| {t_err:.2e} s, max |dscore| {s_err:.2e})")
    passed = ok and t_ours <= target
    print(f"target ours <= {target:.2f} s: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
