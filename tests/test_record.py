"""Results of record (ecmlib.studies.record): cells and their commands, the bootstrap over test
videos, the paired statistics, the README tables, and a tiny grid run end to end."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecmlib.studies import analysis, collect, design, record, report, runs
from ecmlib.cli import build_parser
from ecmlib.data.features import load_annotations
from ecmlib.method.evaluation import (_map_for_counts, _match, bootstrap_map, evaluate_detection,
                               ground_truth_from_dict, predictions_from_arrays)
from ecmlib.training.train import _config_from_args

REPO = Path(__file__).resolve().parents[1]


# -- cells and commands -----------------------------------------------------------------------

def test_plan_counts_order_and_uniqueness():
    s = design.studies()
    assert len(s["03"].cells) == 6 * 5 + 2 * 2 * 5
    assert len(s["04"].cells) == 3 * 5
    # 9 worlds (4 factors x off/strong, and the shared default) x 2 methods x 3 seeds.
    assert len(s["07"].cells) == 9 * 2 * 3
    cells = design.plan()
    ids = [c.cell_id for c in cells]
    assert len(ids) == len(set(ids))
    # ECM seed 0 is shared by 03, 04 and 07's default worlds: trained once.
    assert ids.count("ecm__seed=0__data=0") == 1
    # 108 = 30 + 20 (03) + 10 (04's own settings) + 48 (07 without its default worlds).
    assert len(cells) == 108
    # Seed-major: the first eight cells are seed 0 of all eight ablation settings.
    assert {c.seed for c in cells[:8]} == {0}
    assert len({c.setting for c in cells[:8]}) == 8


def test_command_reproduces_the_protocol():
    cell = design.Cell("pre_only", seed=3, data_seed=1)
    argv = shlex.split(cell.command())
    assert argv[:3] == ["python", "-m", "ecmlib"] and "--out" not in argv
    cfg = _config_from_args(build_parser().parse_args(argv[3:]))
    assert cfg.data.synthetic == "thumos14-mini" and cfg.data.synthetic_seed == 1
    assert cfg.train.epochs == 150 and cfg.train.seed == 3 and cfg.train.lr == 2e-4
    assert cfg.train.batch_size == 16 and cfg.train.num_threads == 1
    assert cfg.eval.eval_every == 5 and cfg.model.hidden_dim == 128
    assert cfg.model.streams == "pre"


def test_world_cells_carry_their_knobs():
    cell = next(c for c in design.studies()["07"].cells
                if c.factor == "boundary" and c.level == "strong")
    cfg = _config_from_args(build_parser().parse_args(cell.argv()))
    assert cfg.data.synthetic_knobs == ("ramp_seconds=4.0", "boundary_jitter_seconds=1.0")
    assert cell.world == "boundary=strong" and "world=" in cell.cell_id
    defaults = [c for c in design.studies()["07"].cells if c.level == "default"]
    assert len(defaults) == 2 * 3 and all(c.knobs == () and c.factor == "" for c in defaults)
    assert defaults[0].cell_id == f"{defaults[0].setting}__seed=0__data=0"


def test_synthetic_knobs_change_the_world_and_bad_knobs_fail():
    from ecmlib.training.setup import load_data, make_config
    base = make_config("THUMOS14", synthetic="tiny")
    off = base.with_overrides(["data.synthetic_knobs=context_strength=0.0"])
    a, b = load_data(base)[1], load_data(off)[1]
    assert a.names == b.names and not np.allclose(a.features, b.features)
    with pytest.raises(ValueError, match="unknown knob 'context_strenght'"):
        load_data(base.with_overrides(["data.synthetic_knobs=context_strenght=0.0"]))


def test_test_split_alone_equals_the_joint_load_and_keeps_the_knobs():
    # record, eval and the explorer read only the test split; it must be the same arrays
    # as training's (train, test) pair, in a moved world too (the explorer once lost knobs).
    from ecmlib.views.explorer import load_test_split
    from ecmlib.training.setup import load_data, load_features, make_config
    cfg = make_config("THUMOS14", synthetic="tiny").with_overrides(
        ["data.synthetic_knobs=distractor_rate=4.0", "data.synthetic_seed=2"])
    joint = load_data(cfg)[1]
    alone = load_features(cfg, cfg.data.test_split)
    assert alone.names == joint.names and np.array_equal(alone.features, joint.features)
    first = load_test_split(cfg, max_videos=3)
    assert first.names == joint.names[:3] and np.array_equal(first.features, joint.features[:3])
    default = load_test_split(make_config("THUMOS14", synthetic="tiny").with_overrides(
        ["data.synthetic_seed=2"]), max_videos=3)
    assert not np.allclose(default.features, first.features)


def test_unknown_protocol_key_is_refused():
    with pytest.raises(ValueError, match="unknown key"):
        design.studies(protocol={"epoch": 3})


# -- bootstrap over test videos -----------------------------------------------------------------

@pytest.fixture(scope="module")
def gt_and_preds():
    gt = ground_truth_from_dict(load_annotations("THUMOS14", "official"), "test")
    rng = np.random.default_rng(1)
    n = 3000
    inst = rng.integers(0, gt.num_instances, n)
    start = gt.start[inst] + rng.normal(0, 2, n)
    end = np.maximum(gt.end[inst] + rng.normal(0, 2, n), start + 0.1)
    cls = np.where(rng.random(n) < 0.8, gt.class_idx[inst], rng.integers(0, 20, n))
    names = np.asarray(gt.video_names, dtype=object)[gt.video_idx[inst]]
    preds = predictions_from_arrays(names, cls, start, end, rng.random(n), classes=gt.classes)
    return gt, preds


def test_bootstrap_with_every_video_once_is_the_map(gt_and_preds):
    gt, preds = gt_and_preds
    m = _match(gt, preds, [0.5])
    got = _map_for_counts(gt, m, np.ones((1, gt.num_videos), dtype=int))
    assert got[0] == pytest.approx(evaluate_detection(gt, preds, [0.5]).mAP[0], abs=1e-12)


def test_bootstrap_weights_equal_explicit_duplication(gt_and_preds):
    gt, preds = gt_and_preds
    counts = np.ones(gt.num_videos, dtype=int)
    counts[:10], counts[10:20] = 2, 0
    got = _map_for_counts(gt, _match(gt, preds, [0.5]), counts[None])[0]
    # The same draw written out: videos 0-9 twice (renamed copies), 10-19 dropped.
    raw = load_annotations("THUMOS14", "official")
    db = {}
    for i, v in enumerate(gt.video_names):
        if counts[i] >= 1:
            db[v] = raw["database"][v]
        if counts[i] == 2:
            db[v + "_copy"] = raw["database"][v]
    gt2 = ground_truth_from_dict({**raw, "database": db}, "test")
    names = np.asarray(preds.video_names, dtype=object)[preds.video_idx]
    idx = np.array([gt.video_names.index(v) for v in names])
    keep = counts[idx] >= 1
    dup = counts[idx] == 2
    cat = lambda a: np.concatenate([a[keep], a[dup]])  # noqa: E731
    names2 = np.concatenate([names[keep], np.array([v + "_copy" for v in names[dup]], object)])
    preds2 = predictions_from_arrays(names2, cat(preds.class_idx), cat(preds.start),
                                     cat(preds.end), cat(preds.score), classes=gt.classes)
    assert got == pytest.approx(evaluate_detection(gt2, preds2, [0.5]).mAP[0], abs=1e-12)


def test_bootstrap_is_seeded_and_brackets_the_map(gt_and_preds):
    gt, preds = gt_and_preds
    a = bootstrap_map(gt, preds, 0.5, 200, seed=3)
    b = bootstrap_map(gt, preds, 0.5, 200, seed=3)
    assert np.array_equal(a, b) and a.shape == (200,)
    full = evaluate_detection(gt, preds, [0.5]).mAP[0]
    lo, hi = np.percentile(a, [2.5, 97.5])
    assert lo < full < hi and hi - lo > 0.005
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_map(gt, preds, 0.5, 0)


# -- statistics --------------------------------------------------------------------------------

def test_t_interval_by_hand():
    mean, lo, hi = analysis.t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (mean, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert np.isnan(analysis.t_interval([1.0])[1])
    assert np.isnan(analysis.t_interval([])[0])


@pytest.mark.parametrize("lo,hi,word", [(0.1, 0.2, "better"), (-0.2, -0.1, "worse"),
                                        (-0.1, 0.1, "no difference"),
                                        (float("nan"), 0.1, "n/a")])
def test_verdict(lo, hi, word):
    assert analysis.verdict(lo, hi) == word


def _table(rows):
    base = {c: 0.0 for c in collect.COLUMNS}
    base.update(data_seed=0, world="default", factor="", level="", command="x")
    return pd.DataFrame([{**base, **r} for r in rows])


def test_paired_summary_pairs_by_seed():
    rows = []
    for seed, (e, p) in enumerate([(0.20, 0.15), (0.22, 0.16), (0.18, 0.15), (0.21, 0.14)]):
        for setting, v in (("ecm", e), ("pre_only", p)):
            rows.append({"setting": setting, "seed": seed, "mAP@0.5": v,
                         "last_mAP@0.5": v, "last5_mAP@0.5": v})
    # An unpaired run (no ECM of seed 9) counts in the mean but not in the difference.
    rows.append({"setting": "pre_only", "seed": 9, "mAP@0.5": 0.5, "last_mAP@0.5": 0.5,
                 "last5_mAP@0.5": 0.5})
    s = analysis.paired_summary(_table(rows))
    r = s[(s.setting == "pre_only") & (s.selection == "last") & (s.metric == "mAP@0.5")].iloc[0]
    diffs = np.array([0.15 - 0.20, 0.16 - 0.22, 0.15 - 0.18, 0.14 - 0.21])
    assert r["n"] == 5 and r["n_pairs"] == 4
    assert r["diff"] == pytest.approx(diffs.mean())
    assert r["verdict"] == "worse" and r["diff_hi"] < 0
    b = s[(s.setting == "ecm") & (s.selection == "best") & (s.metric == "mAP@0.5")].iloc[0]
    assert b["verdict"] == "baseline" and b["mean"] == pytest.approx(0.2025)


def test_world_summary_differences():
    rows = []
    for seed in range(3):
        for setting, v in (("ecm", 0.3 + 0.01 * seed), ("pre_only", 0.3)):
            rows.append({"setting": setting, "seed": seed, "factor": "context", "level": "off",
                         "last_mAP@0.5": v, "mAP@0.5": v, "last5_mAP@0.5": v})
        # The shared default world: one run per method, the middle level of every factor.
        for setting, v in (("ecm", 0.25), ("pre_only", 0.2)):
            rows.append({"setting": setting, "seed": seed, "factor": "", "level": "default",
                         "last_mAP@0.5": v, "mAP@0.5": v, "last5_mAP@0.5": v})
    s = analysis.world_summary(_table(rows))
    s = s[(s.selection == "last") & (s.metric == "mAP@0.5")]
    off = s[(s.factor == "context") & (s.level == "off")].iloc[0]
    assert off["diff"] == pytest.approx(0.01) and off["n_pairs"] == 3
    default = s[s.level == "default"]
    assert set(default["factor"]) == {"context"}  # only factors with runs get a line
    assert default.iloc[0]["diff"] == pytest.approx(0.05)
    said = report.world_sentences(analysis.world_summary(_table(rows)))
    assert said.count("default world") == 1 and "context off: no difference (Δ +1.00" in said


def test_welch_interval_by_hand():
    a, b = [0.01, 0.03, 0.02], [0.07, 0.04, 0.10, 0.07]
    diff, lo, hi = analysis.welch_interval(a, b)
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    dof = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    from scipy import stats
    half = stats.t.ppf(0.975, dof) * np.sqrt(va + vb)
    assert diff == pytest.approx(0.07 - 0.02)
    assert (lo, hi) == (pytest.approx(0.05 - half), pytest.approx(0.05 + half))
    # scipy's Welch test agrees that the interval excludes 0 exactly when p < 0.05
    p = stats.ttest_ind(b, a, equal_var=False).pvalue
    assert (lo > 0) == (p < 0.05)
    assert np.isnan(analysis.welch_interval([0.1], b)[1])
    assert np.isnan(analysis.welch_interval([0.1, 0.1], [0.2, 0.2])[1])


def test_world_trend_compares_each_moved_world_with_the_default():
    rows = []
    gaps = {("context", "off"): [0.01, 0.02, 0.03], ("", "default"): [0.08, 0.09, 0.10],
            ("context", "strong"): [0.075, 0.09, 0.105]}
    for (factor, level), g in gaps.items():
        for seed, gap in enumerate(g):
            for setting, v in (("ecm", 0.2 + gap), ("pre_only", 0.2)):
                rows.append({"setting": setting, "seed": seed, "factor": factor,
                             "level": level, "last_mAP@0.5": v, "mAP@0.5": v,
                             "last5_mAP@0.5": v})
    t = analysis.world_trend(_table(rows))
    t = t[t.metric == "mAP@0.5"].set_index("level")
    assert list(t.factor.unique()) == ["context"]  # factors without moved runs: no line
    off, strong = t.loc["off"], t.loc["strong"]
    assert off["gap"] == pytest.approx(0.02) and off["gap_default"] == pytest.approx(0.09)
    assert off["change"] == pytest.approx(-0.07) and off["verdict"] == "smaller"
    assert strong["change"] == pytest.approx(0.0, abs=1e-12)
    assert strong["verdict"] == "no difference"
    md = report.markdown_trend_table(t.reset_index())
    assert "| context | off | mAP@0.5 | 3 (3) | 2.00 | 9.00 | -7.00" in md


# -- results files and the README ---------------------------------------------------------------

def test_read_study_rejects_bad_files(tmp_path):
    from ecmlib.studies.results import ResultsError
    with pytest.raises(ResultsError, match="no results file"):
        collect.read_study("03_ablation_equivalent_loss", tmp_path)
    with pytest.raises(ValueError, match="no study of record is named 'x'"):
        collect.read_study("x", tmp_path)
    with pytest.raises(FileNotFoundError, match="no such results folder"):
        collect.read_study("03_ablation_equivalent_loss", tmp_path / "missing")
    # Row-level checks: tests/test_results_validation.py.


def test_committed_results_parse():
    for study in design.studies().values():
        path = collect.default_results_dir() / study.csv_name
        if path.is_file():
            table = collect.read_study(study.name)
            commands = {c.command() for c in study.cells}
            assert set(table["command"]) <= commands, f"{path}: a row is not a cell of record"
            assert table["epochs"].eq(study.cells[0].epochs).all()
            assert table["preset"].eq("thumos14-mini").all()


def test_readme_agrees_with_the_results():
    text = (REPO / "README.md").read_text()
    assert report.render_readme(text) == text, \
        "README results tables are stale: run `python -m ecmlib report`"


def test_report_check_cli_and_missing_marker(tmp_path):
    readme = tmp_path / "README.md"
    text = (REPO / "README.md").read_text()
    readme.write_text(text.replace("<!-- /results-03 -->", "stale line\n<!-- /results-03 -->"))
    run = lambda *a: subprocess.run([sys.executable, "-m", "ecmlib", "report",  # noqa: E731
                                     "--readme", str(readme), *a], capture_output=True,
                                    text=True, cwd=REPO)
    bad = run("--check")
    assert bad.returncode == 1 and "differ" in bad.stderr
    assert run().returncode == 0 and run("--check").returncode == 0
    with pytest.raises(ValueError, match="results-04"):
        report.render_readme("no markers <!-- results-03 -->\n<!-- /results-03 -->\n")


# -- a tiny grid end to end --------------------------------------------------------------------

@pytest.mark.slow
def test_tiny_grid_runs_collects_and_resumes(tmp_path):
    proto = {"preset": "tiny", "epochs": 2, "eval_every": 1}
    study = design.studies(seeds=1, data_seeds=(), world_seeds=1, protocol=proto)["03"]
    cells = [c for c in study.cells if c.setting in ("ecm", "pre_only")]
    root = tmp_path / "runs"
    assert runs.run_cells(cells, root, jobs=2) == []
    table = record.write_study(design.Study("03_ablation_equivalent_loss", tuple(cells)),
                               root, tmp_path / "results")
    assert list(table.columns) == list(collect.COLUMNS) and len(table) == 2
    assert table["epochs"].eq(2).all() and table["hidden_dim"].eq(32).all()
    assert (table["best_boot_lo_mAP@0.5"] <= table["best_boot_hi_mAP@0.5"]).all()
    assert np.isnan(table.loc[table.setting == "pre_only", "consistency"]).all()
    assert (tmp_path / "results" / "03_ablation_equivalent_loss.md").is_file()
    curves = pd.read_csv(tmp_path / "results" / "03_ablation_equivalent_loss_curves.csv")
    assert len(curves) == 4 and set(curves["epoch"]) == {1, 2}
    # Finished cells are not run again; an unfinished folder (a killed run) is started over.
    (root / cells[1].cell_id / "metrics.json").unlink()
    before = (root / cells[0].cell_id / "metrics.json").stat().st_mtime_ns
    assert runs.run_cells(cells, root, jobs=1) == []
    assert (root / cells[0].cell_id / "metrics.json").stat().st_mtime_ns == before
    assert runs.is_done(root, cells[1])


def test_collected_rows_use_each_cells_own_config(tmp_path):
    """Two cells of one world share the generated features, never the config."""
    cache: dict = {}
    cells = [design.Cell(s, 0, **record.QUICK_PROTOCOL) for s in ("ecm", "pre_only")]
    got = [collect._test_split(c, cache) for c in cells]
    assert got[0][1] is got[1][1]
    assert got[0][0].model.streams == "both" and got[1][0].model.streams == "pre"


# -- 07b / 07c: declared before any of their results ---------------------------------------

def test_ingredient_study_is_the_declared_design():
    from ecmlib.data.synthetic import FACTORS, get_spec
    from ecmlib.data.synthetic import parse_knobs
    worlds = design.ingredient_worlds()
    assert [g for g, _, _ in worlds] == ["minimal"] + ["add"] * 5 + ["ingredient"] * 6
    base = get_spec("thumos14-mini")
    minimal = base.replace(**parse_knobs(worlds[0][2]))
    assert minimal == base.ablate(*FACTORS).replace(name=base.name)
    for group, name, knobs in worlds[1:6]:  # one factor back at its default level
        others = [f for f in FACTORS if f != name]
        assert base.replace(**parse_knobs(knobs)) == base.ablate(*others).replace(name=base.name)
    study = design.studies()["07b"]
    assert len(study.cells) == 12 * 2 * 3
    assert len({c.cell_id for c in study.cells}) == len(study.cells)


def test_run_length_cells_have_their_own_folders_and_twice_the_epochs():
    s = design.studies()
    long = s["07c"].cells
    assert {c.epochs for c in long} == {300} and len(long) == 6
    short_ids = {c.cell_id for c in s["07"].cells}
    assert not short_ids & {c.cell_id for c in long}
    assert "--epochs 300" in long[0].command()


def test_the_minimal_world_is_planned_first():
    cells = design.plan(["07b", "07c"])
    assert [c.factor for c in cells[:6]] == ["minimal"] * 6
    assert cells[-1].epochs == 300


# -- 07b / 07c / 09 analyses, on hand-made tables -----------------------------------------

def _runs(rows):
    cols = {c: np.nan for c in collect.COLUMNS}
    return pd.DataFrame([{**cols, **r} for r in rows])


def test_run_length_summary_by_hand():
    table = _runs([{"setting": s, "seed": seed, "epochs": 300,
                    "last_mAP@0.5": v, "last_average_mAP@0.1:0.7": v}
                   for s, seed, v in [("ecm", 0, 0.30), ("pre_only", 0, 0.20),
                                      ("ecm", 1, 0.32), ("pre_only", 1, 0.20)]])
    curves = pd.DataFrame([{"setting": s, "seed": seed, "epoch": 150, "mAP@0.5": v,
                            "average_mAP@0.1:0.7": v}
                           for s, seed, v in [("ecm", 0, 0.25), ("pre_only", 0, 0.20),
                                              ("ecm", 1, 0.26), ("pre_only", 1, 0.20)]])
    r = analysis.run_length_summary(table, curves).iloc[0]
    assert r["epoch_mid"] == 150 and r["epoch_end"] == 300 and r["n_pairs"] == 2
    assert abs(r["gap_mid"] - 0.055) < 1e-12 and abs(r["gap_end"] - 0.11) < 1e-12
    # changes 0.05 and 0.06: mean 0.055, sd 0.00707, t(0.975, 1) = 12.706
    half = 12.706204736 * 0.00707106781 / np.sqrt(2)
    assert abs(r["change"] - 0.055) < 1e-12 and abs(r["change_lo"] - (0.055 - half)) < 1e-6
    assert r["verdict"] == "holds"  # two pairs: [-0.009, +0.119] still holds zero


def test_switch_effects_and_lead_changes_by_hand():
    def runs(world_gaps):
        rows = []
        for (factor, level), gaps in world_gaps.items():
            for seed, g in enumerate(gaps):
                for setting, v in (("ecm", 0.3 + g), ("pre_only", 0.3)):
                    rows.append({"setting": setting, "seed": seed, "factor": factor,
                                 "level": level, "last_mAP@0.5": v})
        return _runs(rows)
    t07 = runs({("", "default"): [0.07, 0.08, 0.06], ("context", "off"): [0.01, 0.02, 0.0]})
    t07b = runs({("minimal", "all_off"): [0.06, 0.06, 0.07],
                 ("add", "context"): [0.13, 0.12, 0.14]})
    e = analysis.switch_effects(t07, t07b).set_index("factor")
    # default − off: 0.07 − 0.01 = 0.06; Welch on two samples with sd 0.01 each, df = 4
    half = 2.7764451 * np.sqrt(0.01 ** 2 / 3 * 2)
    assert abs(e.loc["context", "one_at_a_time"] - 0.06) < 1e-12
    assert abs(e.loc["context", "one_at_a_time_lo"] - (0.06 - half)) < 1e-6
    assert abs(e.loc["context", "add_one"] - (0.13 - 0.19 / 3)) < 1e-12
    assert e.loc["context", "agree"] == "yes"
    assert e.loc["boundary", "agree"] == "n/a"  # not measured
    ch = analysis.lead_changes(t07b).set_index("world")
    assert ch.loc["context", "verdict"] == "larger" and ch.loc["context", "n"] == 3
    assert np.isnan(ch.loc["iid_noise", "change"])  # a world without runs


def test_fast_validation_by_hand():
    def rows(values):
        return _runs([{"setting": s, "seed": seed, "data_seed": 0, "last_mAP@0.5": v}
                      for (s, seed), v in values.items()])
    fp32 = rows({("ecm", 0): 0.20, ("pre_only", 0): 0.14, ("ecm", 1): 0.22,
                 ("pre_only", 1): 0.13})
    fast = rows({("ecm", 0): 0.21, ("pre_only", 0): 0.14, ("ecm", 1): 0.21,
                 ("pre_only", 1): 0.12})
    runs, gaps = analysis.fast_validation(fast, fp32)
    assert sorted(np.round(runs["fast_minus_fp32"], 6)) == [-0.01, -0.01, 0.0, 0.01]
    g = gaps.set_index("precision")
    assert abs(g.loc["fast", "gap"] - 0.08) < 1e-12 and abs(g.loc["fp32", "gap"] - 0.075) < 1e-12
    assert set(gaps["same_verdict"]) == {"yes" if g.loc["fast", "verdict"] == g.loc["fp32", "verdict"] else "no"}


def test_readme_fast_mode_claims_hold():
    """The prose under the 09 table: same verdict, per-run moves up to 1.28 points, both
    aggregation paths chosen, bits dropout masks."""
    fast = collect.read_study("09_fast_mode_validation")
    fp32 = collect.read_study("03_ablation_equivalent_loss")
    runs, gaps = analysis.fast_validation(fast, fp32[fp32["data_seed"] == 0])
    assert len(runs) == 10 and set(gaps["same_verdict"]) == {"yes"}
    assert set(gaps["verdict"]) == {"better"}
    assert round(100 * runs["fast_minus_fp32"].abs().max(), 2) == 1.28
    assert set(fast["dropout_mask"]) == {"bits"} and set(fast["precision"]) == {"bf16"}
    assert set(runs["path"]) == {"features", "taps"}
    text = (REPO / "README.md").read_text()
    assert "up to 1.28 points" in text and "does not move in fast mode" in text


def test_readme_ingredient_claims_hold():
    """The prose under the 07b table, against the results file."""
    t = collect.read_study("07b_ingredients")
    s = analysis.ingredient_summary(t)
    s = s[(s["selection"] == "last") & (s["metric"] == "mAP@0.5")].set_index("level")
    assert len(t) == 72
    assert s.loc["all_off", "verdict"] == "better" and round(100 * s.loc["all_off", "diff"], 1) == 6.1
    assert s.loc["linear_observation", "verdict"] == "worse"
    assert round(100 * s.loc["linear_observation", "diff"], 1) == -4.3
    assert round(100 * s.loc["context", "diff"], 1) == 12.9
    assert (s.loc[["variation", "weak_actions", "one_shot"], "verdict"] == "no difference").all()
    ch = analysis.lead_changes(t).set_index("world")
    assert (ch.loc[["variation", "weak_actions", "one_shot", "strong_actions"], "verdict"]
            == "smaller").all()
    e = analysis.switch_effects(collect.read_study("07_when_does_ecm_help"), t)
    assert "no" not in set(e["agree"])
    text = (REPO / "README.md").read_text()
    assert "pre-only beats ECM (−4.3)" in text and "(+6.1\npoints of mAP@0.5)" in text


def test_readme_run_length_claims_hold():
    t = collect.read_study("07c_run_length")
    rl = analysis.run_length_summary(t, collect.read_curves(design.studies()["07c"]))
    r = rl.set_index("metric").loc["mAP@0.5"]
    assert len(t) == 6 and r["verdict"] == "holds"
    assert (round(100 * r["gap_mid"], 1), round(100 * r["gap_end"], 1)) == (7.6, 8.3)
    assert (round(100 * r["ecm_mid"], 1), round(100 * r["ecm_end"], 1)) == (21.5, 22.3)
    text = (REPO / "README.md").read_text()
    assert "is 7.6 points of\nmAP@0.5 at epoch 150 and 8.3 at epoch 300" in text


def test_cell_config_is_what_the_command_line_builds():
    for study in list(design.studies().values()) + list(design.studies(fast=True).values()):
        for cell in study.cells:
            built = _config_from_args(build_parser().parse_args(cell.argv()))
            assert collect.cell_config(cell).to_dict() == built.to_dict(), cell.cell_id


def test_a_shared_cell_is_recorded_only_where_every_study_holds_its_row(tmp_path, capsys):
    # ECM's cells are in 03 and 08 with the same commands; 08's file is missing: its ECM
    # runs must be trained for 08, not borrowed from 03's rows.
    import shutil
    results = tmp_path / "results"
    shutil.copytree(REPO / "data" / "results", results)
    for f in results.glob("08_weight_sparsity*"):
        f.unlink()
    assert record.record_main(["--study", "03", "08", "--results", str(results),
                               "--root", str(tmp_path / "runs"), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    todo = [ln for ln in lines if ln.startswith("todo")]
    assert len(todo) == 10, todo                      # 5 ECM + 5 variant
    assert sum("loss.terms" not in ln for ln in todo) == 5
    assert len(lines) == 55 and sum(ln.startswith("recorded") for ln in lines) == 45
