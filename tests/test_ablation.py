"""ecmlib.studies.ablation: the settings' configs, the consistency measure, one tiny run per kind."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ecmlib.studies import ablation as A
from ecmlib.method.model import ECMNet, ModelConfig


def _cfg(setting: str, **kw):
    return A.setting_config(setting, **{"seed": 3, "preset": "thumos14-small", "epochs": 7,
                                        "eval_every": 2, **kw})


def test_the_paper_settings_are_named():
    assert list(A.SETTINGS) == ["ecm", "pre_only", "post_only", "no_leq", "leq_0.5", "no_lagg",
                                "fixed_transition", "independent_transition", "weight_sparsity"]
    assert set(A.EQUIVALENT_LOSS_SETTINGS) | set(A.TRANSITION_SETTINGS) | set(A.VARIANT_SETTINGS) == set(A.SETTINGS)


def test_full_ecm_is_the_paper_configuration():
    cfg = _cfg("ecm")
    assert (cfg.model.streams, cfg.model.transition) == ("both", "learned")
    assert (cfg.loss.w_pre, cfg.loss.w_post, cfg.loss.w_eq, cfg.loss.w_agg) == (1, 1, 0.05, 5)
    assert cfg.loss.background
    # resized to the derived preset, run length and seed as asked
    assert (cfg.model.feat_dim, cfg.model.num_snippets) == (128, 128)
    assert cfg.data.synthetic == "thumos14-small"
    assert (cfg.train.seed, cfg.train.epochs, cfg.eval.eval_every) == (3, 7, 2)


@pytest.mark.parametrize("setting, expected", [
    ("pre_only", {"model.streams": "pre"}),
    ("post_only", {"model.streams": "post"}),
    ("no_leq", {"loss.w_eq": 0.0}),
    ("leq_0.5", {"loss.w_eq": 0.5}),
    ("no_lagg", {"loss.w_agg": 0.0, "loss.background": False}),
    ("fixed_transition", {"model.transition": "fixed"}),
    ("independent_transition", {"model.transition": "independent"}),
])
def test_each_setting_changes_only_what_it_names(setting, expected):
    full, cfg = _cfg("ecm").to_dict(), _cfg(setting).to_dict()
    changed = {f"{sec}.{k}": v for sec in ("model", "loss", "train", "eval", "data", "localize")
               for k, v in cfg[sec].items() if full[sec][k] != v}
    assert changed == expected


def test_extra_overrides_win_and_bad_names_fail():
    cfg = _cfg("pre_only", extra={"hidden_dim": 16, "train.lr": 1e-3, "model.streams": "both"})
    assert (cfg.model.hidden_dim, cfg.train.lr, cfg.model.streams) == (16, 1e-3, "both")
    with pytest.raises(ValueError, match="unknown ablation setting"):
        _cfg("no_such")
    assert _cfg("ecm", preset="tiny").model.feat_dim == 32


def test_derived_preset_keeps_the_base_videos():
    from ecmlib.data.synthetic import get_spec, video_names
    spec = A.ablation_spec("thumos14-small")
    base = get_spec("thumos14-mini")
    assert (spec.feat_dim, spec.num_snippets, spec.name) == (128, 128, "thumos14-small")
    assert spec.replace(name=base.name, feat_dim=base.feat_dim,
                        num_snippets=base.num_snippets) == base
    assert video_names(spec, "test") == video_names(base, "test")


# ------------------------------------------------------------------ consistency


def _model(transition: str, streams: str = "both") -> ECMNet:
    torch.manual_seed(0)
    return ECMNet(ModelConfig(feat_dim=8, hidden_dim=16, num_classes=4, num_snippets=12,
                              topk_ratio=0.25, transition=transition, streams=streams))


def _inputs(n: int = 5):
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(n, 8, 12))).astype(np.float32)
    y = np.zeros((n, 4), dtype=np.float32)
    y[np.arange(n), np.arange(n) % 4] = 1
    y[0, 3] = 1  # a multi-label video: two pairs
    return x, y


def test_fixed_transition_is_perfectly_consistent():
    x, y = _inputs()
    model = _model("fixed")
    # a = sigmoid(CAS) is monotone in the CAS: identical ranks
    assert A.transition_consistency(model, x, y) == pytest.approx(1.0, abs=1e-12)
    # Pearson's r sees the sigmoid's bend, but barely on small CAS values
    assert 0.9 < A.transition_consistency(model, x, y, "pearson") <= 1.0 + 1e-12


def test_pearson_and_spearman_on_hand_built_rows():
    x = np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    y = np.array([[0.0, 1.0, 8.0, 27.0], [3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    s = A._spearman_rows(x, y)
    p = A._pearson_rows(x, y)
    np.testing.assert_allclose(s[:2], [1.0, -1.0])
    assert p[0] < 1.0 and p[1] == pytest.approx(-1.0)
    assert np.isnan(s[2]) and np.isnan(p[2])  # a constant row is skipped, not counted as 0


def test_consistency_of_other_models():
    x, y = _inputs()
    for transition in ("learned", "independent"):
        value = A.transition_consistency(_model(transition), x, y)
        assert -1.0 <= value <= 1.0
    assert math.isnan(A.transition_consistency(_model("learned", streams="pre"), x, y))
    with pytest.raises(ValueError, match="method"):
        A.transition_consistency(_model("fixed"), x, y, "kendall")
    with pytest.raises(ValueError, match="no video"):
        A.transition_consistency(_model("fixed"), x, np.zeros_like(y))


def test_consistency_examples_one_entry_per_label_class():
    x, y = _inputs()
    ex = A.consistency_examples(_model("fixed"), x, y, video=0)
    assert sorted(ex) == [0, 3]
    cas, w = ex[3]
    assert cas.shape == w.shape == (12,)
    np.testing.assert_allclose(w, 1 / (1 + np.exp(-cas)), rtol=1e-5)


# ------------------------------------------------------------------ runs


@pytest.mark.parametrize("setting", ["ecm", "pre_only"])
def test_run_setting_on_tiny_returns_every_metric(setting):
    threads = torch.get_num_threads()
    try:
        out = A.run_setting(setting, seed=0, preset="tiny", epochs=2, eval_every=1)
    finally:
        torch.set_num_threads(threads)
    assert tuple(out) == A.METRICS
    for key in ("mAP@0.5", "average_mAP@0.1:0.7", "average_mAP@0.1:0.5", "classification_mAP",
                "final_mAP@0.5"):
        assert 0.0 <= out[key] <= 1.0, key
    assert out["best_epoch"] in (1, 2) and out["wall_time_s"] > 0
    assert out["diverged"] == 0 and math.isnan(out["diverged_epoch"])
    if setting == "pre_only":
        assert math.isnan(out["consistency"]) and math.isnan(out["consistency_pearson"])
    else:
        assert -1.0 <= out["consistency"] <= 1.0


def test_run_setting_is_repeatable_and_caches_the_data():
    A.load_setting_data.cache_clear()
    threads = torch.get_num_threads()
    try:
        a = A.run_setting("fixed_transition", seed=1, preset="tiny", epochs=1, eval_every=1)
        b = A.run_setting("fixed_transition", seed=1, preset="tiny", epochs=1, eval_every=1)
    finally:
        torch.set_num_threads(threads)
    assert A.load_setting_data.cache_info().hits == 1
    assert a["consistency"] == pytest.approx(1.0, abs=1e-9)
    a.pop("wall_time_s"), b.pop("wall_time_s")
    assert a == pytest.approx(b, nan_ok=True)


def test_run_dirs_and_histories(tmp_path):
    threads = torch.get_num_threads()
    try:
        records = [{"setting": "no_lagg", "seed": 0,
                    **A.run_setting("no_lagg", 0, "tiny", 2, 1, runs_root=str(tmp_path))}]
    finally:
        torch.set_num_threads(threads)
    run = tmp_path / A.run_name("no_lagg", 0)
    assert run.name == "no_lagg__seed=0"
    assert {"config.json", "history.csv", "best.pth"} <= {p.name for p in run.iterdir()}
    hist = A.collect_histories(str(tmp_path), records)
    assert hist["epoch"].tolist() == [1, 2] and set(hist["setting"]) == {"no_lagg"}
    assert (hist["loss_agg"] == 0).all()  # the background stream was off
    with pytest.raises(FileNotFoundError, match="history"):
        A.collect_histories(str(tmp_path), [{"setting": "ecm", "seed": 5}])


def test_a_diverged_run_is_a_result_not_a_crash(monkeypatch, tmp_path):
    import ecmlib.training.train

    def diverge(*args, **kwargs):
        raise RuntimeError("epoch 4: the training loss is nan (diverged); lower train.lr or "
                           "check the features")

    monkeypatch.setattr(ecmlib.training.train, "train", diverge)
    threads = torch.get_num_threads()
    try:
        out = A.run_setting("no_leq", 0, "tiny", 5, 1)
        assert tuple(out) == A.METRICS
        assert out["diverged"] == 1 and out["diverged_epoch"] == 4
        assert math.isnan(out["mAP@0.5"]) and math.isnan(out["consistency"])

        def nan_weights(*args, **kwargs):
            raise ValueError("cas contains NaN or inf")

        monkeypatch.setattr(ecmlib.training.train, "train", nan_weights)
        out = A.run_setting("no_leq", 0, "tiny", 5, 1)
        assert out["diverged"] == 1 and math.isnan(out["diverged_epoch"])

        def nan_at_evaluation(*args, out_dir=None, **kwargs):
            out_dir.mkdir(parents=True)
            (out_dir / "history.csv").write_text("epoch,loss_total\n1,3.0\n2,2.5\n")
            raise RuntimeError("the model's scores or CAS are NaN/inf: training diverged; "
                               "lower train.lr or check the features")

        monkeypatch.setattr(ecmlib.training.train, "train", nan_at_evaluation)
        out = A.run_setting("no_leq", 0, "tiny", 5, 1, runs_root=str(tmp_path))
        assert out["diverged"] == 1 and out["diverged_epoch"] == 3

        def other(*args, **kwargs):
            raise RuntimeError("something else")

        monkeypatch.setattr(ecmlib.training.train, "train", other)
        with pytest.raises(RuntimeError, match="something else"):
            A.run_setting("no_leq", 0, "tiny", 5, 1)
    finally:
        torch.set_num_threads(threads)
