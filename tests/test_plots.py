"""ecmlib.views.plots, headless: what each function draws, and how figures are saved."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ecmlib.views import plots as P  # noqa: E402
from ecmlib.data import stats as S  # noqa: E402
from ecmlib.data.features import FeatureSet  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _gt(name: str, scale: float = 1.0) -> dict:
    return {"dataset": name, "classes": ["a", "b", "c"], "database": {
        "v1": {"subset": "test", "duration": 10.0 * scale, "annotations": [
            {"segment": [1.0, 3.0], "label": "a"}, {"segment": [5.0, 6.5], "label": "b"}]},
        "v2": {"subset": "test", "duration": 20.0 * scale, "annotations": [
            {"segment": [2.0, 9.0], "label": "a"}, {"segment": [4.0, 4.0], "label": "c"}]},
    }}


def _two_sources(fn, **kw) -> pd.DataFrame:
    return pd.concat([fn(_gt("real"), **kw), fn(_gt("synthetic", 2.0), **kw)], ignore_index=True)


def _feature_set(source: str, seed: int) -> FeatureSet:
    rng = np.random.default_rng(seed)
    feats = np.maximum(rng.normal(size=(2, 8, 20)), 0).astype(np.float32)
    return FeatureSet(dataset="Hand", split="test", classes=["a", "b", "c"], names=["v1", "v2"],
                      features=feats, labels=np.eye(3, dtype=np.float32)[:2],
                      frame_num=np.array([250, 500]), fps=np.array([25.0, 25.0]),
                      duration=np.array([10.0, 20.0]), source=source)


def _history(epochs: int = 6, with_eq: bool = True) -> pd.DataFrame:
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "loss_pre": 3.0 / e, "loss_post": 2.0 / e,
               "loss_eq": 0.5 / e if with_eq else 0.0, "loss_agg": 0.1 / e}
        row["loss_total"] = sum(row[k] for k in ("loss_pre", "loss_post", "loss_eq", "loss_agg"))
        if e % 2 == 0:
            row.update({"mAP@0.5": 0.01 * e, "average_mAP@0.1:0.9": 0.02 * e})
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ saving


def test_save_figure_writes_png_and_svg(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = P.save_figure(fig, "01_test", tmp_path / "figs")
    assert [p.name for p in paths] == ["01_test.png", "01_test.svg"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths[1].read_bytes()
    assert not list((tmp_path / "figs").glob(".*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize("empty", ["", None])
def test_save_figure_does_nothing_without_a_folder(tmp_path, monkeypatch, empty):
    monkeypatch.chdir(tmp_path)
    fig, _ = plt.subplots()
    assert P.save_figure(fig, "01_test", empty) == []
    assert list(tmp_path.iterdir()) == []


def test_save_figure_is_byte_stable(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 0, 2], label="x")
    ax.legend()
    first = P.save_figure(fig, "02_stable", tmp_path / "a")
    second = P.save_figure(fig, "02_stable", tmp_path / "b")
    for p, q in zip(first, second):
        assert p.read_bytes() == q.read_bytes(), p.name
    assert b"<dc:date>" not in first[1].read_bytes()


def test_save_figure_rejects_a_path_as_name(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="bare stem"):
        P.save_figure(fig, "sub/01_x", tmp_path)
    with pytest.raises(ValueError, match="bare stem"):
        P.save_figure(fig, "01_x.png", tmp_path)


def test_use_theme_is_not_applied_at_import():
    import importlib
    import seaborn as sns
    matplotlib.rcdefaults()
    importlib.reload(P)
    assert matplotlib.rcParams["axes.edgecolor"] == matplotlib.rcParamsDefault["axes.edgecolor"]
    P.use_theme()
    sns.reset_orig()


# ------------------------------------------------------------------ annotations and features


def test_annotation_panels_draw_one_artist_per_source():
    per_class = _two_sources(S.instances_per_class)
    durations = _two_sources(S.instance_durations)
    coverage = _two_sources(S.action_coverage)
    ax = P.plot_instances_per_class(per_class)
    assert len(ax.lines) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "real (3 classes)", "synthetic (3 classes)"]
    ax = P.plot_instance_durations(durations)
    assert len(ax.patches) == 2 and ax.get_xscale() == "log"
    # the zero-length 'c' instance is not drawn on the log axis, and the legend says so
    assert all("1 <= 0 not shown" in t.get_text() for t in ax.get_legend().get_texts())
    ax = P.plot_coverage(coverage)
    assert len(ax.patches) == 2
    fig = P.plot_annotation_overview(per_class, durations, coverage)
    assert len(fig.axes) == 3


def test_annotation_panels_need_a_source_column():
    with pytest.raises(ValueError, match="source"):
        P.plot_instances_per_class(pd.DataFrame({"instances": [1, 2]}))


def test_feature_panels():
    sets = [_feature_set("real", 0), _feature_set("synthetic", 1)]
    norms = pd.concat([S.snippet_norms(fs) for fs in sets], ignore_index=True)
    fgbg = pd.concat([S.foreground_background_norms(fs, _gt(fs.source)) for fs in sets],
                     ignore_index=True)
    sparsity = pd.concat([S.feature_sparsity(fs) for fs in sets], ignore_index=True)
    ax = P.plot_snippet_norms(norms)
    assert len(ax.patches) == 4  # 2 sources x (rgb, flow)
    fig = P.plot_feature_overview(norms, fgbg, sparsity)
    assert len(fig.axes) == 3
    assert fig.axes[1].get_ylabel() == "mean snippet norm per video"


def test_context_confusion_figure():
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(16, 40)))
    fig = P.plot_context_confusion(x, 20.0, [(2.0, 5.0), (10.0, 12.0)], [(6.0, 9.0)], title="v")
    top, bottom = fig.axes[:2]
    assert len(top.images) == 1
    assert [ln.get_label() for ln in bottom.lines] == [
        "RGB similarity to mean action snippet", "flow similarity to mean action snippet"]
    spans = [p for p in bottom.patches if isinstance(p, Rectangle) or p.get_label()]
    assert len(spans) == 3  # two actions, one context shot
    with pytest.raises(ValueError, match="no snippet"):
        P.plot_context_confusion(x, 20.0, [(30.0, 31.0)])


# ------------------------------------------------------------------ training


def test_loss_curves_one_line_per_trained_term():
    ax = P.plot_loss_curves(_history())
    assert [ln.get_label() for ln in ax.lines] == ["L_pre", "L_post", "L_eq", "L_agg", "total"]
    ax = P.plot_loss_curves(_history(with_eq=False), weights={"loss_agg": 5.0})
    assert [ln.get_label() for ln in ax.lines] == [
        "1 x L_pre", "1 x L_post", "5 x L_agg", "total"]
    np.testing.assert_allclose(ax.lines[2].get_ydata(), 5 * _history()["loss_agg"])
    # a variant's term is drawn after ECM's, weighted as it enters the total
    h = _history().assign(loss_weight_sparsity=lambda d: 100.0 / d["epoch"])
    ax = P.plot_loss_curves(h, weights={"loss_weight_sparsity": 1e-4})
    assert ax.lines[4].get_label() == "0.0001 x weight_sparsity"
    np.testing.assert_allclose(ax.lines[4].get_ydata(), 1e-4 * h["loss_weight_sparsity"])


def test_map_curves_skip_unevaluated_epochs():
    ax = P.plot_map_curves(_history(), best_epoch=4)
    assert len(ax.lines) == 3  # two metrics and the best-epoch marker
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [2, 4, 6])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [2.0, 4.0, 6.0])  # percent
    with pytest.raises(ValueError, match="evaluated"):
        P.plot_map_curves(_history()[["epoch", "loss_total"]])


def test_official_curves_are_labelled_as_the_authors():
    curves = P.official_curves("THUMOS14")
    assert set(curves.columns) == {"epoch", "metric", "value"}
    assert curves["epoch"].max() == 150
    # the file's average_mAP is the mean of mAP@0.1..0.9, and is named so
    last = curves[curves["epoch"] == 150].set_index("metric")["value"]
    assert last["average_mAP@0.1:0.9"] == pytest.approx(
        np.mean([last[f"mAP@0.{i}"] for i in range(1, 10)]), abs=1e-6)
    assert "average_mAP@0.5:0.95" in set(P.official_curves("ActivityNet1.3")["metric"])
    fig = P.plot_training_vs_official(_history(), curves)
    ours, theirs = fig.axes
    assert theirs.get_title() == P.OFFICIAL_LABEL
    assert "real THUMOS14 I3D features" in theirs.get_title()
    assert len(theirs.lines) == 2 and len(ours.lines) == 2
    with pytest.raises(ValueError, match="no curves"):
        P.official_curves("Nope")
    with pytest.raises(FileNotFoundError):
        P.official_curves("THUMOS14", path="does/not/exist.csv")


# ------------------------------------------------------------------ ablations


def _ablation():
    records = pd.DataFrame({"setting": ["ecm"] * 3 + ["pre_only"] * 3,
                            "seed": [0, 1, 2] * 2,
                            "mAP@0.5": [0.10, 0.12, 0.14, 0.05, 0.05, 0.08]})
    from ecmlib.studies.workbook import aggregate
    return aggregate(records.to_dict("records"), ["setting"]), records


def test_setting_curves_one_line_per_setting():
    rows = [{"setting": st, "seed": sd, "epoch": e,
             "mAP@0.5": (0.01 * e + 0.001 * sd if e % 2 == 0 else np.nan)}
            for st in ("ecm", "pre_only") for sd in (0, 1, 2) for e in range(1, 7)]
    ax = P.plot_setting_curves(pd.DataFrame(rows))
    assert [ln.get_label() for ln in ax.lines] == ["ecm (n=3)", "pre_only (n=3)"]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [2, 4, 6])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [2.1, 4.1, 6.1])
    assert len(ax.collections) == 2  # a std band per setting


def test_cas_vs_weights():
    cas = np.linspace(-2, 2, 30)
    w = 1 / (1 + np.exp(-cas))
    ax = P.plot_cas_vs_weights(cas, w, duration=15.0, gt_segments=[(3.0, 6.0)], title="fixed",
                               consistency=1.0)
    assert [ln.get_label() for ln in ax.lines] == ["CAS (min-max, as localised)",
                                                   "aggregation weight a"]
    # hi = relu(2) = 2, lo = relu(-2) = 0: (A - 0) / 2 in [-1, 1], drawn from 0 as localised
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.maximum(cas / 2, 0))
    assert ax.get_title() == "fixed  (Spearman rho = 1.00)"
    with pytest.raises(ValueError, match="same length"):
        P.plot_cas_vs_weights(cas, w[:5])
