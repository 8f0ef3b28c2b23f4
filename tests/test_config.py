"""Experiment configs: presets carry the authors' values; overrides are typed and checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecmlib.training.config import ExperimentConfig, preset


def test_presets_hold_the_papers_values() -> None:
    th = preset("THUMOS14")
    assert (th.model.num_classes, th.model.num_snippets, th.model.topk) == (20, 750, 93)
    assert (th.loss.w_pre, th.loss.w_post, th.loss.w_eq, th.loss.w_agg) == (1, 1, 0.05, 5)
    assert (th.train.batch_size, th.train.epochs, th.train.seed) == (16, 150, 16)
    assert th.localize.cls_score_th == 0.25 and th.localize.nms_threshold == 0.6
    assert th.eval.selection_metric == "mAP@0.5"
    np.testing.assert_array_equal(th.eval.tiou, np.linspace(0.1, 0.9, 9))
    a12, a13 = preset("ActivityNet1.2"), preset("ActivityNet1.3")
    assert (a12.model.num_classes, a12.model.topk, a12.loss.w_agg) == (100, 25, 1)
    assert (a13.model.num_classes, a13.model.topk, a13.train.lr_decay_epoch) == (200, 60, 26)
    assert (a12.train.seed, a13.train.seed, a12.train.batch_size) == (7, 1, 128)
    assert a13.localize.cls_score_th == 0.05 and a12.localize.cls_score_th == 0.12
    assert a12.eval.selection_metric == "average_mAP@0.5:0.95"
    assert a12.data.test_split == "validation"
    # A fresh object each call: changing one never leaks into the next.
    th.model.hidden_dim = 7
    assert preset("THUMOS14").model.hidden_dim == 2048


def test_overrides_by_bare_and_dotted_name() -> None:
    cfg = preset("THUMOS14").with_overrides(
        ["feat_dim=128", "num_snippets=128", "hidden_dim=128", "train.lr=1e-3",
         "bf16=true", "tiou=0.3,0.5", "lr_decay_epoch=none", "transition=fixed"])
    assert (cfg.model.feat_dim, cfg.model.num_snippets, cfg.model.hidden_dim) == (128, 128, 128)
    assert cfg.train.lr == 1e-3 and cfg.train.bf16 is True
    assert cfg.eval.tiou == (0.3, 0.5) and cfg.train.lr_decay_epoch is None
    assert cfg.model.transition == "fixed"


@pytest.mark.parametrize("pair, message", [
    ("no_such_key=1", "unknown config key 'no_such_key'"),
    ("feat_dim=abc", "cannot read 'abc' as int"),
    ("feat_dim", "must look like key=value"),
    ("bf16=maybe", "cannot read 'maybe' as bool"),
    ("streams=neither", "streams must be pre, post or both"),
])
def test_bad_overrides(pair: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        preset("THUMOS14").with_overrides([pair])


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'THUMOS15'"):
        preset("THUMOS15")


def test_save_load_roundtrip(tmp_path: Path) -> None:
    cfg = preset("ActivityNet1.3").with_overrides(["hidden_dim=64", "seed=3"])
    cfg.save(tmp_path / "config.json")
    back = ExperimentConfig.load(tmp_path / "config.json")
    assert back == cfg
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        ExperimentConfig.load(tmp_path / "broken.json")
    (tmp_path / "latin1.json").write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(ValueError, match="latin1.json: not UTF-8 text"):
        ExperimentConfig.load(tmp_path / "latin1.json")
