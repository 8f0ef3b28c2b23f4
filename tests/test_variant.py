"""Building on ECM (notebook 08): a variant is a loss term plus the config key ``loss.terms``.

The term of record (``weight_sparsity``, STPN's sparsity loss on the aggregation weights)
on hand-made weights, its refusal without a post stream, ``parse_terms``' refusals, a term
registered in-process reaching the total through ``compute_losses``, a term at weight 0
leaving training as it was, and the README's prose about study 08 against the results file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ecmlib.method import losses
from ecmlib.method.model import ECMNet, ModelConfig
from ecmlib.studies import analysis, collect, design

REPO = Path(__file__).resolve().parents[1]


def _small_model(streams: str = "both") -> ECMNet:
    torch.manual_seed(0)
    return ECMNet(ModelConfig(feat_dim=8, hidden_dim=16, num_classes=4, num_snippets=12,
                              streams=streams))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 8, 12, generator=g)
    y = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    return x, y


@pytest.fixture
def extra_terms():
    """EXTRA_TERMS as it was before the test (register_term changes a module-level dict)."""
    saved = dict(losses.EXTRA_TERMS)
    yield losses.EXTRA_TERMS
    losses.EXTRA_TERMS.clear()
    losses.EXTRA_TERMS.update(saved)


# -- the term of record ----------------------------------------------------------------------

def test_weight_sparsity_on_hand_made_weights():
    # 3 videos, 3 classes, 4 snippets; the label classes' L1 norms over time are 1, 4 and 1.
    a = torch.full((3, 3, 4), 9.0)                   # non-label classes: must not count
    a[0, 0] = torch.tensor([0.5, 0.5, 0.0, 0.0])     # video 0, class 0: 1.0
    a[0, 2] = torch.tensor([1.0, 1.0, 1.0, 1.0])     # video 0, class 2: 4.0
    a[1, 1] = torch.tensor([0.25, -0.25, 0.25, 0.25])  # video 1, class 1: |.| sums to 1.0
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 0]])  # video 2: no label class
    value = losses.weight_sparsity({"aggregation_weights": a}, labels)
    assert value.item() == pytest.approx(2.0, abs=1e-7)   # (1 + 4 + 1) / 3 pairs
    # No label class at all: nothing to penalise, 0 (not a division by zero).
    assert losses.weight_sparsity({"aggregation_weights": a}, torch.zeros(3, 3)).item() == 0.0


def test_weight_sparsity_matches_a_loop_on_a_live_batch():
    x, y = _batch()
    out = _small_model()(x, y)
    a = out["aggregation_weights"].detach().numpy()
    pairs = [np.abs(a[b, c]).sum() for b in range(3) for c in range(4) if y[b, c] > 0]
    assert losses.weight_sparsity(out, y).item() == pytest.approx(float(np.mean(pairs)), rel=1e-6)


def test_weight_sparsity_needs_the_post_streams_weights():
    x, y = _batch()
    out = _small_model("pre")(x, y)
    assert "aggregation_weights" not in out
    with pytest.raises(ValueError, match="weight_sparsity needs the post stream's aggregation "
                                         "weights.*model.streams=pre"):
        losses.weight_sparsity(out, y)
    cfg = losses.LossConfig(terms="weight_sparsity=0.0001")
    with pytest.raises(ValueError, match="model.streams=pre"):
        losses.compute_losses(out, y, cfg, streams="pre")


# -- parse_terms -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("weight_sparsity=1e-4,weight_sparsity=2e-4", "weight_sparsity is given twice"),
    ("pre=1", "loss term name 'pre' is taken: loss_pre is ECM's own column"),
    ("total=1", "loss term name 'total' is taken"),
    ("two words=1", "loss term name 'two words' must be an identifier"),
    ("weight_sparsity", "'weight_sparsity' must look like name=weight"),
    ("weight_sparsity=1e-4,weight_sparsity", "must look like name=weight"),
    ("weight_sparsity=lots", "weight 'lots' of weight_sparsity is not a number"),
    ("weight_sparsity=", "weight '' of weight_sparsity is not a number"),
    ("weight_sparsity=-1e-4", "weight of weight_sparsity must be finite and >= 0, got -0.0001"),
    ("weight_sparsity=inf", "weight of weight_sparsity must be finite and >= 0, got inf"),
    ("weight_sparsity=nan", "weight of weight_sparsity must be finite and >= 0, got nan"),
])
def test_parse_terms_refuses_bad_text_naming_the_problem(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        losses.parse_terms(text)
    # ... and so does the config, when it is built (before any run starts)
    with pytest.raises(ValueError, match="loss.terms"):
        losses.LossConfig(terms=text)


def test_one_spelling_per_value_and_unknown_names_refused_before_a_run(tmp_path):
    assert losses.LossConfig(terms=" weight_sparsity = 1e-4 ").terms == "weight_sparsity=0.0001"
    assert (losses.LossConfig(terms="weight_sparsity=0.0001")
            == losses.LossConfig(terms="weight_sparsity=1e-4"))
    from ecmlib.training.setup import make_config
    from ecmlib.training.train import train
    cfg = make_config("THUMOS14", synthetic="tiny", epochs=1,
                      overrides=["loss.terms=not_registered=1"])
    with pytest.raises(ValueError, match="unknown term.*'not_registered'"):
        train(cfg, out_dir=tmp_path / "run", log=None)
    assert not (tmp_path / "run").exists()               # nothing was written


def test_parse_terms_reads_good_text():
    assert losses.parse_terms("") == {}
    assert losses.parse_terms(" weight_sparsity = 1e-4 , ") == {"weight_sparsity": 1e-4}
    assert losses.parse_terms("weight_sparsity=0") == {"weight_sparsity": 0.0}
    assert losses.LossConfig(terms="weight_sparsity=0.0001").extra_terms() == {
        "weight_sparsity": 1e-4}


# -- register_term ------------------------------------------------------------------------------

def test_a_registered_term_reaches_the_history_and_the_total(extra_terms):
    def cas_smoothness(out, labels):
        return (out["cas"][..., 1:] - out["cas"][..., :-1]).pow(2).mean()

    # A config may name a term this process does not know (it reads a saved run); computing
    # the losses refuses it, naming the terms that are known.
    unknown = losses.LossConfig(terms="cas_smoothness=0.5")
    with pytest.raises(ValueError, match="unknown term.*'cas_smoothness'; registered: weight_sp"):
        losses.compute_losses(_small_model()(*_batch()), _batch()[1], unknown)
    with pytest.raises(ValueError, match="is taken"):
        losses.register_term("agg", cas_smoothness)
    losses.register_term("cas_smoothness", cas_smoothness)
    assert extra_terms["cas_smoothness"] is cas_smoothness
    x, y = _batch()
    out = _small_model()(x, y)
    base = losses.compute_losses(out, y, losses.LossConfig())
    got = losses.compute_losses(out, y, losses.LossConfig(terms="cas_smoothness=0.5"))
    assert "loss_cas_smoothness" not in base
    assert got["loss_cas_smoothness"].item() == pytest.approx(cas_smoothness(out, y).item())
    assert got["loss_cas_smoothness"].item() > 0
    for name in losses.LOSS_NAMES:
        assert torch.equal(got[name], base[name]), name
    assert (got["loss_total"] - base["loss_total"]).item() == pytest.approx(
        0.5 * got["loss_cas_smoothness"].item(), rel=1e-5)
    # two terms at once: each reported, each weighted
    both = losses.compute_losses(out, y, losses.LossConfig(
        terms="cas_smoothness=0.5,weight_sparsity=0.001"))
    assert both["loss_total"].item() == pytest.approx(
        base["loss_total"].item() + 0.5 * both["loss_cas_smoothness"].item()
        + 0.001 * both["loss_weight_sparsity"].item(), rel=1e-5)


def test_register_term_refuses_a_name_that_cannot_be_a_column(extra_terms):
    with pytest.raises(ValueError, match="must be an identifier"):
        losses.register_term("cas-smoothness", lambda out, labels: out["cas"].mean())
    assert "cas-smoothness" not in extra_terms


def test_a_term_at_weight_zero_is_logged_and_changes_nothing():
    """What notebook 08's live run relies on to draw the term for plain ECM."""
    from ecmlib.training.setup import load_data, make_config
    from ecmlib.training.train import train
    base = make_config("THUMOS14", synthetic="tiny", overrides={
        "train.seed": 3, "train.num_threads": 1, "eval.eval_every": 2}, epochs=2)
    data = load_data(base)
    plain = train(base, data=data, out_dir=None, progress=False, log=None)
    watched = train(base.with_overrides({"loss.terms": "weight_sparsity=0"}), data=data,
                    out_dir=None, progress=False, log=None)
    h0, h1 = plain.history_frame(), watched.history_frame()
    assert "loss_weight_sparsity" not in h0 and (h1["loss_weight_sparsity"] > 0).all()
    assert h0["loss_total"].tolist() == h1["loss_total"].tolist()
    a, b = plain.model.state_dict(), watched.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- the README's prose about study 08 ------------------------------------------------------

def _pts(x: float) -> float:
    return round(100 * float(x), 2)


def test_readme_variant_claims_hold():
    """The prose under the 08 table, against data/results/08_weight_sparsity.csv (and 03's
    ECM rows for the paragraph on re-training)."""
    t = collect.read_study("08_weight_sparsity")
    assert len(t) == 10
    s = analysis.paired_summary(t)
    v = s[s["setting"] == "weight_sparsity"].set_index(["selection", "metric"])
    m50, avg = v.loc[("last", "mAP@0.5")], v.loc[("last", "average_mAP@0.1:0.7")]
    assert m50["n_pairs"] == avg["n_pairs"] == 5
    assert m50["verdict"] == "no difference" and _pts(m50["diff"]) == -0.34
    assert avg["verdict"] == "worse" and _pts(avg["diff"]) == -0.32
    assert (_pts(avg["diff_lo"]), _pts(avg["diff_hi"])) == (-0.49, -0.15)
    for sel in ("best", "last5"):  # "neither metric's interval does" (exclude zero)
        for metric in ("mAP@0.5", "average_mAP@0.1:0.7"):
            assert v.loc[(sel, metric), "verdict"] == "no difference", (sel, metric)
    ecm = t[t["setting"] == "ecm"].set_index("seed")
    var = t[t["setting"] == "weight_sparsity"].set_index("seed")
    for col in ("last_mAP@0.5", "last_average_mAP@0.1:0.7"):  # at or below ECM in all five
        assert ((var[col] - ecm[col]) < 0).all(), col
    sd = t.groupby("setting")["last_mAP@0.5"].std()
    assert ((1.9 < 100 * sd) & (100 * sd < 2.3)).all()       # "spread of about 2 points"
    assert 5 < 100 * sd.min() / abs(_pts(m50["diff"])) < 7   # "a sixth of the seeds' spread"
    assert (var["first_detection_epoch"] == ecm["first_detection_epoch"]).all()
    curves = collect.read_curves(design.studies()["08"])
    per_run = curves.pivot_table(index="epoch", columns=["setting", "seed"], values="mAP@0.5")
    gain = 100 * (per_run.loc[150] - per_run.loc[90])
    assert len(gain) == 10 and (round(gain.min(), 1), round(gain.max(), 1)) == (1.1, 3.9)
    # re-trained ECM rows: same commands as 03's on data seed 0, drifted upwards
    t03 = collect.read_study("03_ablation_equivalent_loss")
    e03 = t03[(t03["setting"] == "ecm") & (t03["data_seed"] == 0)].set_index("seed").loc[ecm.index]
    assert (ecm["command"] == e03["command"]).all()
    drift = 100 * (ecm["last_mAP@0.5"] - e03["last_mAP@0.5"])
    assert (drift > 0).all()
    assert (round(drift.min(), 2), round(drift.max(), 2), round(drift.mean(), 2)) == (0.02, 0.93, 0.42)
    assert round(100 * (var["last_mAP@0.5"] - e03["last_mAP@0.5"]).mean(), 2) == 0.09
    text = " ".join((REPO / "README.md").read_text().split())
    for claim in ("the sparsity term does not improve ECM",
                  "at or below ECM in all five pairs on both metrics",
                  "−0.34 points of mAP@0.5, not distinguishable from ECM at 95 %",
                  "−0.32 points of the average mAP 0.1:0.7, whose interval [−0.49, −0.15] "
                  "excludes zero",
                  "neither metric's interval does",
                  "the same first detecting epoch in every pair",
                  "gain 1.1 to 3.9 points of mAP@0.5 between epochs 90 and 150",
                  "0.02 to 0.93 points of mAP@0.5 above 03's (0.42 on average, last epoch)",
                  "would have looked 0.09 points better than ECM instead of 0.34 worse"):
        assert claim in text, f"README: {claim!r} not found (the prose about study 08 changed?)"
