"""ecmlib.studies.ablation: the settings' configs (as the record builds them) and the
consistency measure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ecmlib.studies import ablation as A
from ecmlib.method.model import ECMNet, ModelConfig


def _cfg(setting: str):
    from ecmlib.studies.collect import cell_config
    from ecmlib.studies.design import Cell
    return cell_config(Cell(setting, 3, epochs=7, eval_every=2))


def test_the_paper_settings_are_named():
    assert list(A.SETTINGS) == ["ecm", "pre_only", "post_only", "no_leq", "leq_0.5", "no_lagg",
                                "fixed_transition", "independent_transition", "weight_sparsity"]
    assert set(A.EQUIVALENT_LOSS_SETTINGS) | set(A.TRANSITION_SETTINGS) | set(A.VARIANT_SETTINGS) == set(A.SETTINGS)


def test_full_ecm_is_the_paper_configuration():
    cfg = _cfg("ecm")
    assert (cfg.model.streams, cfg.model.transition) == ("both", "learned")
    assert (cfg.loss.w_pre, cfg.loss.w_post, cfg.loss.w_eq, cfg.loss.w_agg) == (1, 1, 0.05, 5)
    assert cfg.loss.background
    # the record's preset, run length and seed as asked
    assert (cfg.model.feat_dim, cfg.model.num_snippets, cfg.model.hidden_dim) == (256, 256, 128)
    assert cfg.data.synthetic == "thumos14-mini"
    assert (cfg.train.seed, cfg.train.epochs, cfg.eval.eval_every) == (3, 7, 2)


@pytest.mark.parametrize("setting, expected", [
    ("pre_only", {"model.streams": "pre"}),
    ("post_only", {"model.streams": "post"}),
    ("no_leq", {"loss.w_eq": 0.0}),
    ("leq_0.5", {"loss.w_eq": 0.5}),
    ("no_lagg", {"loss.w_agg": 0.0, "loss.background": False}),
    ("fixed_transition", {"model.transition": "fixed"}),
    ("independent_transition", {"model.transition": "independent"}),
    ("weight_sparsity", {"loss.terms": "weight_sparsity=0.0001"}),
])
def test_each_setting_changes_only_what_it_names(setting, expected):
    full, cfg = _cfg("ecm").to_dict(), _cfg(setting).to_dict()
    changed = {f"{sec}.{k}": v for sec in ("model", "loss", "train", "eval", "data", "localize")
               for k, v in cfg[sec].items() if full[sec][k] != v}
    assert changed == expected


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

