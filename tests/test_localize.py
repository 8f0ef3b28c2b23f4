"""Tests for ecmlib.method.localize: golden parity, hand-computed cases, properties and input checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ecmlib.method.localize as loc
from ecmlib.method.localize import (
    LocalizeParams,
    localize_batch,
    localize_batch_flat,
    localize_video,
    minmax_normalize,
    nms,
    parity_check_localize,
    resize_linear,
)

DATA = Path(__file__).parent / "data"
GOLDEN = ["official_thumos_s1.npz", "official_anet_s2.npz"]


def _params(mode: str = "official", lam: float = 0.4, thresh: tuple = (0.5, 0.55, 0.1), **kw) -> LocalizeParams:
    """THUMOS-like parameters with a single threshold (0.5) unless told otherwise."""
    args = dict(cls_score_th=0.25, act_thresh=thresh, nms_threshold=0.6, outer_lambda=lam, conf_gamma=0.15,
                time_unit="fps", mode=mode)
    args.update(kw)
    return LocalizeParams(**args)


# --------------------------------------------------------------------------- golden parity


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_parity(name: str) -> None:
    golden = np.load(DATA / name)
    checks = parity_check_localize(golden)
    names = [c[0] for c in checks]
    assert names == ["localize/count_order", "localize/times_s", "localize/scores",
                     "nms/count_order", "nms/times_s", "nms/scores"]
    for check, err, tol in checks:
        assert err <= tol, f"{name}: {check} error {err} > {tol}"


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_detections_directly(name: str) -> None:
    z = np.load(DATA / name)
    params = LocalizeParams.from_dict(json.loads(str(z["post/params"])))
    args = (z["post/cas"][0], z["post/score"][0], z["post/frame_num"], z["post/fps_or_duration"])
    det = localize_video(*args, params)
    ref = z["post/detections"]
    assert det.shape == ref.shape and det.shape[0] > 10
    np.testing.assert_array_equal(det[:, 0], ref[:, 0])
    np.testing.assert_allclose(det[:, 1:3], ref[:, 1:3], rtol=0, atol=1e-6)
    np.testing.assert_allclose(det[:, 3], ref[:, 3], rtol=0, atol=1e-5)


def test_parity_check_detects_a_wrong_result() -> None:
    z = dict(np.load(DATA / GOLDEN[0]))
    z["post/detections"] = z["post/detections"][::-1].copy()  # same rows, wrong order
    z["nms/keep"] = z["nms/keep"][:-1]  # one kept row missing
    errs = {name: (err, tol) for name, err, tol in parity_check_localize(z)}
    assert errs["localize/count_order"][0] == 1.0
    assert errs["localize/times_s"][0] > 1.0
    assert errs["nms/count_order"][0] == 1.0
    assert errs["nms/times_s"][0] == np.inf


def test_golden_clean_mode_differs() -> None:
    # the "+1" overlap suppresses more, so clean mode keeps more proposals on real data
    z = np.load(DATA / GOLDEN[0])
    d = json.loads(str(z["post/params"]))
    args = (z["post/cas"][0], z["post/score"][0], z["post/frame_num"], z["post/fps_or_duration"])
    official = localize_video(*args, LocalizeParams.from_dict(d, mode="official"))
    clean = localize_video(*args, LocalizeParams.from_dict(d, mode="clean"))
    assert clean.shape[0] > official.shape[0]


# --------------------------------------------------------------------------- hand cases


def test_single_bump_with_zeroed_outer_region() -> None:
    # frame_num == T, so resize is the identity and min-max leaves [0, 1] data unchanged.
    cas = np.array([[0, 0.8, 0.3, 1, 1, 1, 0.3, 0, 0, 0]], dtype=np.float32)
    det = localize_video(cas, np.array([0.5], np.float32), 10, 2.0, _params())
    # run A = [1] (0.8): n=1, left [int(0.6)=0, 1) = {0}, right range(2, int(1.4)=1) empty
    # run B = [3..5]: n=3, left [int(1.8)=1, 3) = {0.8, 0.3 zeroed -> 0},
    #   right range(6, int(6.2)=6) empty (exclusive right end), outer = 0.8 / 2
    gamma_s = 0.15 * 0.5
    expected = np.array([
        [0, 0.5, 1.0, np.float32(0.8) + gamma_s],
        [0, 1.5, 3.0, 1 - np.float32(0.8) / 2 + gamma_s],
    ])
    np.testing.assert_allclose(det, expected, rtol=0, atol=1e-6)


def test_outer_region_clamped_at_video_edges() -> None:
    cas = np.array([[1, 1, 0, 0.6, 0, 0, 0.6, 0, 1, 1]], dtype=np.float32)
    det = localize_video(cas, np.array([0.5], np.float32), 10, 1.0, _params(lam=1.5))
    g = 0.075
    six = float(np.float32(0.6))
    expected = np.array([
        [0, 8, 10, 1 - six / 3 + g],  # [8,9]: left [int(5), 8) = {0,.6,0}; right min(10, 12) -> empty
        [0, 0, 2, 1 - six / 2 + g],  # [0,1]: left max(0, int(-3)) -> empty; right [2, 4) = {0,.6}
        [0, 6, 7, six + g],  # [6]: left [int(4.5), 6) = {0,0}; right range(7, int(7.5)) empty
        [0, 3, 4, six - 0.5 + g],  # [3]: left [int(1.5), 3) = {1,0}; right range(4, int(4.5)) empty
    ])
    np.testing.assert_allclose(det, expected, rtol=0, atol=1e-6)


def test_position_zero_skip_official_vs_clean() -> None:
    score = np.array([0.5], np.float32)
    lone = np.array([[1, 0, 0, 0, 0]], dtype=np.float32)
    assert localize_video(lone, score, 5, 1.0, _params("official")).shape == (0, 4)
    np.testing.assert_allclose(localize_video(lone, score, 5, 1.0, _params("clean")),
                               [[0, 0, 1, 1 + 0.075]], atol=1e-6)
    # position 0 together with another position: no skip, the run at 0 is reported
    two = np.array([[1, 0, 0.9, 0, 0]], dtype=np.float32)
    det = localize_video(two, score, 5, 1.0, _params("official"))
    assert sorted(det[:, 1].tolist()) == [0.0, 2.0]
    # per threshold: at 0.2 the run is [0, 1]; at 0.45 only position 0 survives
    edge = np.array([[1, 0.3, 0, 0, 0]], dtype=np.float32)
    off = localize_video(edge, score, 5, 1.0, _params("official", thresh=(0.2, 0.5, 0.25)))
    cln = localize_video(edge, score, 5, 1.0, _params("clean", thresh=(0.2, 0.5, 0.25)))
    assert off[:, 1:3].tolist() == [[0.0, 2.0]]
    assert sorted(cln[:, 1:3].tolist()) == [[0.0, 1.0], [0.0, 2.0]]


def test_class_filter_and_order() -> None:
    cas = np.zeros((4, 6), np.float32)
    cas[:, 2:4] = 1
    score = np.array([0.9, 0.1, 0.25, 0.3], np.float32)  # 0.25 is kept (>=)
    det = localize_video(cas, score, 6, 1.0, _params())
    assert det[:, 0].tolist() == [0, 2, 3]


def test_duration_time_unit() -> None:
    cas = np.array([[0, 0, 1, 1, 0]], np.float32)
    p = _params(time_unit="duration")
    det = localize_video(cas, np.array([1.0], np.float32), 5, 20.0, p)
    np.testing.assert_allclose(det[:, 1:3], [[2 / 5 * 20, 4 / 5 * 20]])


def test_upsampling_puts_runs_at_frame_resolution() -> None:
    # T=2 -> 8 frames: curve [0, 0, .25, .75, ...] style; threshold 0.5 keeps frames 4..7
    cas = np.array([[0.0, 1.0]], np.float32)
    det = localize_video(cas, np.array([1.0], np.float32), 8, 4.0, _params())
    np.testing.assert_allclose(det[:, 1:3], [[4 / 4, 8 / 4]])


# --------------------------------------------------------------------------- NMS


def test_nms_plus_one_overlap_vs_clean_iou() -> None:
    rows = np.array([[0.9, 0.0, 1.0], [0.8, 1.2, 2.0]])
    # official: inter = 1 - 1.2 + 1 = 0.8, lengths 2.0 and 1.8 -> IoU 0.8 / 3.0
    assert nms(rows, 0.25, "official").tolist() == [[0.9, 0.0, 1.0]]
    assert nms(rows, 0.27, "official").shape == (2, 3)
    # clean: disjoint segments never suppress each other
    assert nms(rows, 0.01, "clean").shape == (2, 3)
    nested = np.array([[0.8, 1.0, 4.0], [0.9, 0.0, 4.0]])  # IoU 3/4 (clean), 4/5 (official)
    assert nms(nested, 0.75, "clean").tolist() == [[0.9, 0.0, 4.0]]
    assert nms(nested, 0.76, "clean").tolist() == [[0.9, 0.0, 4.0], [0.8, 1.0, 4.0]]
    assert nms(nested, 0.80, "official").shape == (1, 3)
    assert nms(nested, 0.81, "official").shape == (2, 3)


def test_nms_greedy_chain_and_clean_ties() -> None:
    # b overlaps a and c; a suppresses b, so c survives even though b would have removed it
    rows = np.array([[0.9, 0.0, 10.0], [0.8, 5.0, 15.0], [0.7, 10.0, 20.0]])
    kept = nms(rows, 0.3, "clean")
    assert kept[:, 0].tolist() == [0.9, 0.7]
    ties = np.array([[0.5, 0.0, 1.0], [0.5, 5.0, 6.0], [0.6, 9.0, 9.5]])
    assert nms(ties, 0.5, "clean")[:, 1].tolist() == [9.0, 0.0, 5.0]


def test_nms_matrix_and_loop_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    start = rng.uniform(0, 50, 300)
    rows = np.stack([rng.random(300), start, start + rng.uniform(0.1, 5, 300)], 1)
    for mode in ("official", "clean"):
        a = nms(rows, 0.5, mode)
        monkeypatch.setattr(loc, "_NMS_MATRIX_MAX", 0)
        b = nms(rows, 0.5, mode)
        monkeypatch.undo()
        assert 10 < a.shape[0] < 300
        np.testing.assert_array_equal(a, b)


def test_nms_golden_rows() -> None:
    z = np.load(DATA / GOLDEN[1])
    np.testing.assert_array_equal(nms(z["nms/in"], float(z["nms/thresh"])), z["nms/keep"])


# --------------------------------------------------------------------------- resize


def test_resize_linear_hand_values() -> None:
    np.testing.assert_allclose(resize_linear(np.array([0.0, 1.0]), 4), [0, 0.25, 0.75, 1])
    np.testing.assert_allclose(resize_linear(np.array([0.0, 1.0, 2.0, 3.0]), 2), [0.5, 2.5])
    np.testing.assert_array_equal(resize_linear(np.array([3.0]), 5), np.full(5, 3.0, np.float32))
    assert resize_linear(np.array([0.0, 1.0]), 4).dtype == np.float32


def test_resize_linear_identity_and_batching() -> None:
    x = np.random.default_rng(0).random((2, 3, 17)).astype(np.float32)
    same = resize_linear(x, 17)
    np.testing.assert_array_equal(same, x)
    assert same is not x
    y = resize_linear(x, 40)
    assert y.shape == (2, 3, 40)
    np.testing.assert_array_equal(y[1, 2], resize_linear(x[1, 2], 40))


@pytest.mark.parametrize("t,n", [(7, 23), (750, 2954), (100, 1470), (20, 9)])
def test_resize_linear_matches_half_pixel_interpolation(t: int, n: int) -> None:
    x = np.random.default_rng(t).random(t)
    src = np.clip((np.arange(n) + 0.5) * t / n - 0.5, 0, t - 1)
    # float32 source coordinates (OpenCV) shift the weights by up to ~1 ulp of t
    np.testing.assert_allclose(resize_linear(x, n), np.interp(src, np.arange(t), x), atol=4 * t * 2.0**-23 + 1e-6)


def test_resize_linear_rounds_source_coordinate_to_float32() -> None:
    # A unit step between samples 700 and 701: there the output is the interpolation weight
    # itself. OpenCV rounds the source coordinate (~700) to float32 before taking its
    # fractional part, which moves the weight by up to ~3e-5; the golden THUMOS scores
    # depend on it.
    t, n = 750, 2954
    x = np.zeros(t, np.float32)
    x[701:] = 1
    out = resize_linear(x, n).astype(np.float64)
    src64 = (np.arange(n) + 0.5) * (1.0 / (n / t)) - 0.5
    sel = (src64 > 700.001) & (src64 < 700.999)
    assert sel.sum() > 2
    frac32 = src64[sel].astype(np.float32).astype(np.float64) - 700
    np.testing.assert_allclose(out[sel], frac32, rtol=0, atol=1e-7)
    assert np.abs(out[sel] - (src64[sel] - 700)).max() > 1e-6


# --------------------------------------------------------------------------- minmax


def test_minmax_properties() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0.1, 5.0, (3, 4, 30)).astype(np.float32)
    n = minmax_normalize(a)
    assert n.dtype == np.float32 and n.shape == a.shape
    assert n.min() >= 0 and n.max() <= 1
    np.testing.assert_allclose(n.min(-1), 0, atol=1e-7)
    np.testing.assert_allclose(n.max(-1), 1, atol=1e-6)
    np.testing.assert_array_equal(minmax_normalize(a[1]), n[1])


def test_minmax_relu_and_degenerate_rows() -> None:
    a = np.array([
        [-3.0, -1.0, -2.0],  # hi = lo = 0 -> delta 1: unchanged
        [2.0, 2.0, 2.0],  # constant: delta 0 -> 1, result 0
        [-1.0, 0.0, 4.0],  # lo = relu(-1) = 0: divided by 4, negatives stay
    ])
    np.testing.assert_allclose(minmax_normalize(a), [[-3, -1, -2], [0, 0, 0], [-0.25, 0, 1]])


# --------------------------------------------------------------------------- batch, params


def test_batch_equals_per_video_and_flat() -> None:
    rng = np.random.default_rng(2)
    cas = rng.normal(size=(4, 5, 40)).astype(np.float32)
    scores = rng.uniform(0, 0.6, (4, 5)).astype(np.float32)
    frames = np.array([100, 250, 40, 333])
    fps = np.array([25.0, 30.0, 10.0, 29.97])
    p = LocalizeParams.thumos14()
    dets = localize_batch(cas, scores, frames, fps, p)
    assert len(dets) == 4 and sum(d.shape[0] for d in dets) > 0
    for i in range(4):
        np.testing.assert_array_equal(dets[i], localize_video(cas[i], scores[i], frames[i], fps[i], p))
    flat = localize_batch_flat(cas, scores, frames, fps, p)
    allr = np.concatenate(dets)
    assert flat.video.tolist() == sum(([i] * d.shape[0] for i, d in enumerate(dets)), [])
    np.testing.assert_array_equal(flat.label, allr[:, 0].astype(int))
    np.testing.assert_array_equal(np.stack([flat.start, flat.end, flat.score], 1), allr[:, 1:])


def test_class_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    cas = rng.normal(size=(6, 50)).astype(np.float32)
    score = np.full(6, 0.5, np.float32)
    p = LocalizeParams.thumos14()
    a = localize_video(cas, score, 500, 30.0, p)
    monkeypatch.setattr(loc, "_CHUNK_ELEMENTS", 1000)  # one class per chunk
    b = localize_video(cas, score, 500, 30.0, p)
    assert a.shape[0] > 0
    np.testing.assert_array_equal(a, b)


def test_presets_and_from_dict_roundtrip() -> None:
    t = LocalizeParams.thumos14()
    got = (t.cls_score_th, t.nms_threshold, t.outer_lambda, t.conf_gamma, t.time_unit)
    assert got == (0.25, 0.6, 0.4, 0.15, "fps")
    np.testing.assert_allclose(t.thresholds, np.arange(0.01, 0.2, 0.025))
    assert t.thresholds.size == 8
    a12, a13 = LocalizeParams.anet12(), LocalizeParams.anet13()
    assert (a12.cls_score_th, a13.cls_score_th) == (0.12, 0.05)
    assert a12.act_thresh == a13.act_thresh == (0.0, 0.175, 0.025)
    assert (a12.nms_threshold, a12.outer_lambda, a12.conf_gamma, a12.time_unit) == (0.7, 0.5, 0.45, "duration")
    assert LocalizeParams.from_dict(a12.to_dict()) == a12
    assert LocalizeParams.from_dict(json.dumps(t.to_dict()), mode="clean").mode == "clean"


# --------------------------------------------------------------------------- randomised oracle


def _oracle(cas: np.ndarray, sc: np.ndarray, frames: int, fd: float, p: LocalizeParams) -> np.ndarray:
    """Plain loops over classes, thresholds and runs, written straight from the spec."""
    official = p.mode == "official"
    plus = 1.0 if official else 0.0
    norm = minmax_normalize(cas)
    out = []
    for c in range(cas.shape[0]):
        if not sc[c] >= p.cls_score_th:
            continue
        x = resize_linear(norm[c], frames).astype(np.float64)
        props = []
        for th in p.thresholds:
            z = np.where(x < th, 0.0, x)
            pos = [t for t in range(frames) if z[t] > 0]
            if not pos or (official and pos == [0]):
                continue
            runs, cur = [], [pos[0]]
            for t in pos[1:]:
                if t == cur[-1] + 1:
                    cur.append(t)
                else:
                    runs.append(cur)
                    cur = [t]
            runs.append(cur)
            for run in runs:
                n, p0, p1 = len(run), run[0], run[-1]
                region = list(range(max(0, int(p0 - p.outer_lambda * n)), p0))
                region += list(range(p1 + 1, min(frames, int(p1 + p.outer_lambda * n))))
                outer = sum(z[t] for t in region) / len(region) if region else 0.0
                s = sum(z[t] for t in run) / n - outer + p.conf_gamma * float(sc[c])
                props.append((s, p0 / fd, (p1 + 1) / fd))
        order = sorted(range(len(props)), key=lambda i: -props[i][0])
        keep = []
        for i in order:
            ok = True
            for k in keep:
                (_, a0, a1), (_, b0, b1) = props[i], props[k]
                inter = max(0.0, min(a1, b1) - max(a0, b0) + plus)
                if inter / ((a1 - a0 + plus) + (b1 - b0 + plus) - inter) >= p.nms_threshold:
                    ok = False
                    break
            if ok:
                keep.append(i)
        out += [[c, props[i][1], props[i][2], props[i][0]] for i in keep]
    return np.array(out).reshape(-1, 4)


@pytest.mark.parametrize("mode", ["official", "clean"])
def test_matches_loop_oracle_on_random_cas(mode: str) -> None:
    rng = np.random.default_rng(11 if mode == "official" else 12)
    total = 0
    for _ in range(12):
        c, t = int(rng.integers(1, 4)), int(rng.choice([5, 20, 60]))
        frames = int(rng.choice([t, 3 * t + 1, max(1, t // 2), 97]))
        cas = (rng.normal(size=(c, t)) + rng.uniform(-1, 1, (c, 1))).astype(np.float32)
        sc = rng.uniform(0, 1, c).astype(np.float32)
        p = _params(mode, thresh=(0.01, 0.2, 0.025), lam=0.4)
        ours = localize_video(cas, sc, frames, 30.0, p)
        ref = _oracle(cas, sc, frames, 30.0, p)
        total += ours.shape[0]
        assert ours.shape == ref.shape
        np.testing.assert_array_equal(ours[:, 0], ref[:, 0])
        np.testing.assert_allclose(ours[:, 1:3], ref[:, 1:3], rtol=0, atol=1e-9)
        np.testing.assert_allclose(ours[:, 3], ref[:, 3], rtol=0, atol=1e-6)
    assert total > 30


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors() -> None:
    p = LocalizeParams.thumos14()
    good = np.zeros((3, 10), np.float32)
    sc = np.ones(3, np.float32)
    bad = good.copy()
    bad[1, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        localize_video(bad, sc, 100, 30.0, p)
    with pytest.raises(ValueError, match="NaN"):
        minmax_normalize(bad)
    with pytest.raises(ValueError, match="shape"):
        localize_video(good[0], sc, 100, 30.0, p)
    with pytest.raises(ValueError, match="video_score"):
        localize_video(good, sc[:2], 100, 30.0, p)
    for frames in (0, -5, 2.5):
        with pytest.raises(ValueError, match="frame_num"):
            localize_video(good, sc, frames, 30.0, p)
    with pytest.raises(ValueError, match="fps_or_duration"):
        localize_video(good, sc, 100, 0.0, p)
    with pytest.raises(ValueError, match="shape"):
        minmax_normalize(np.zeros(5))
    with pytest.raises(ValueError, match="n must"):
        resize_linear(np.zeros(5), 0)
    with pytest.raises(ValueError, match="frame_nums"):
        localize_batch(good[None], sc[None], [100, 200], [30.0], p)
    with pytest.raises(ValueError, match="frame_nums\\[0\\]"):
        localize_batch(good[None], sc[None], [0], [30.0], p)
    with pytest.raises(ValueError, match="rows"):
        nms(np.zeros((4, 2)), 0.5)
    with pytest.raises(ValueError, match="end < start"):
        nms(np.array([[0.5, 2.0, 1.0]]), 0.5)
    with pytest.raises(ValueError, match="mode"):
        nms(np.zeros((1, 3)), 0.5, mode="fast")


def test_bad_params_raise_clear_errors() -> None:
    base = LocalizeParams.thumos14().to_dict()
    for key, value, match in [
        ("mode", "fast", "mode"),
        ("time_unit", "frames", "time_unit"),
        ("act_thresh", [0.1, 0.05, 0.01], "no thresholds"),
        ("act_thresh", [0.0, 0.2, 0.0], "step"),
        ("act_thresh", [0.1, 0.2], "3 values"),
        ("act_thresh", [-0.1, 0.2, 0.05], ">= 0"),
        ("nms_threshold", 1.5, "nms_threshold"),
        ("outer_lambda", -1.0, "outer_lambda"),
        ("conf_gamma", float("nan"), "finite"),
    ]:
        with pytest.raises(ValueError, match=match):
            LocalizeParams.from_dict({**base, key: value})
    with pytest.raises(ValueError, match="unknown keys"):
        LocalizeParams.from_dict({**base, "nms_thresh": 0.5})
    with pytest.raises(ValueError, match="missing keys"):
        LocalizeParams.from_dict({k: v for k, v in base.items() if k != "conf_gamma"})
    with pytest.raises(ValueError, match="params"):
        localize_video(np.zeros((1, 4)), np.ones(1), 4, 1.0, base)  # a dict is not params


def test_localized_curve_is_the_spec_normalisation_from_zero():
    from ecmlib.method.localize import localized_curve
    np.testing.assert_allclose(localized_curve(np.array([-1.0, 0.0, 1.0, 3.0])),
                               [0.0, 0.0, 1 / 3, 1.0])
    # all negative: hi = lo = 0, delta := 1, the curve stays negative, drawn at 0
    np.testing.assert_array_equal(localized_curve(np.array([-2.0, -1.0])), [0.0, 0.0])
    two = localized_curve(np.array([[0.0, 2.0], [1.0, 3.0]]))
    np.testing.assert_allclose(two, [[0.0, 1.0], [0.0, 1.0]])
