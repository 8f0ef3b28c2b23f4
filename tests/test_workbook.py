"""The workbook runner, papermill sweeps and grid aggregation, on tiny fixture notebooks.

Fixtures (tests/fixtures/notebooks): 01_alpha writes metrics.json with
``value = x * 10 + seed`` (and ``loss.final = 2 * value``), 02_fails raises in its cell 3,
03_gamma writes ``value = 3 + seed``. Each execution starts a kernel (~2-3 s), so the
notebook runs are few: two workbook runs of two notebooks and one 2x2 sweep.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ecmlib.studies import workbook as wb

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
ALPHA = FIXTURES / "01_alpha.ipynb"


def _score(x: float, seed: int) -> dict:
    """A grid function for run_grid: module level, so worker processes can import it."""
    return {"value": x * 10 + seed, "flag": True, "label": f"x{x}"}


# ------------------------------------------------------------------ small pieces


@pytest.mark.parametrize("text, expected", [
    ("3", 3), ("-2", -2), ("0.5", 0.5), ("1e-3", 0.001), ("True", True), ("False", False),
    ("None", None), ("abc", "abc"), ("1,2", "1,2"),
])
def test_parse_value_follows_papermill(text, expected):
    value = wb.parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_expand_grid_is_cartesian_in_order_and_dirnames_put_seed_last():
    points = wb.expand_grid({"seed": [0, 1], "lr": [0.1, 1e-05], "name": ["a/b"]})
    assert points == [
        {"seed": 0, "lr": 0.1, "name": "a/b"}, {"seed": 0, "lr": 1e-05, "name": "a/b"},
        {"seed": 1, "lr": 0.1, "name": "a/b"}, {"seed": 1, "lr": 1e-05, "name": "a/b"},
    ]
    assert wb.setting_dirname(points[1]) == "lr=1e-05__name=a_b__seed=0"
    with pytest.raises(ValueError, match="empty"):
        wb.expand_grid({"seed": []})
    with pytest.raises(ValueError, match="list of values"):
        wb.expand_grid({"seed": "012"})
    with pytest.raises(ValueError, match="repeats"):
        wb.expand_grid({"seed": [1, 1]})


def test_find_notebooks_orders_and_filters():
    names = [p.name for p in wb.find_notebooks(FIXTURES)]
    assert names == ["01_alpha.ipynb", "02_fails.ipynb", "03_gamma.ipynb"]
    assert [p.name for p in wb.find_notebooks(FIXTURES, ["3", "01"])] == [
        "01_alpha.ipynb", "03_gamma.ipynb"]
    with pytest.raises(ValueError, match=r"no notebook numbered 07.*01, 02, 03"):
        wb.find_notebooks(FIXTURES, ["07"])


def test_notebook_parameters_lists_the_parameters_cell():
    params = wb.notebook_parameters(ALPHA)
    assert list(params) == ["seed", "x", "quick", "out_dir", "figures_dir"]
    assert params["x"]["inferred_type_name"] == "float"
    assert params["quick"]["default"] == "False"
    with pytest.raises(FileNotFoundError):
        wb.notebook_parameters(FIXTURES / "missing.ipynb")


def test_aggregate_mean_std_n_by_hand():
    records = [
        {"lr": 0.1, "seed": 0, "acc": 1.0, "loss": 4.0, "tag": "a", "ok": True},
        {"lr": 0.1, "seed": 1, "acc": 3.0, "loss": None, "tag": "a", "ok": True},
        {"lr": 0.2, "seed": 0, "acc": 2.0, "loss": 1.0, "tag": "b", "ok": False},
        {"lr": 0.2, "seed": 1, "acc": 2.0, "loss": 3.0, "tag": "b", "ok": False},
        {"lr": 0.2, "seed": 2, "acc": 5.0, "loss": 2.0, "tag": "b", "ok": False},
    ]
    df = wb.aggregate(records, ["lr"])
    # strings and bools are not metrics; the seed is what we average over
    assert list(df.columns) == ["lr", "n", "seeds", "acc_mean", "acc_std", "acc_n",
                                "loss_mean", "loss_std", "loss_n"]
    first, second = df.iloc[0], df.iloc[1]
    assert first["lr"] == 0.1 and first["n"] == 2 and first["seeds"] == "0,1"
    assert first["acc_mean"] == pytest.approx(2.0)
    assert first["acc_std"] == pytest.approx(math.sqrt(2.0))  # ((1-2)^2+(3-2)^2)/(2-1)
    assert first["loss_mean"] == 4.0 and math.isnan(first["loss_std"]) and first["loss_n"] == 1
    assert second["acc_mean"] == pytest.approx(3.0)
    assert second["acc_std"] == pytest.approx(math.sqrt(3.0))  # (1+1+4)/2
    assert second["loss_std"] == pytest.approx(1.0)

    only = wb.aggregate(records, ["lr"], metrics=["acc"])
    assert [c for c in only.columns if c.startswith("loss")] == []
    with pytest.raises(ValueError, match="not found among the numeric metrics: acc, loss"):
        wb.aggregate(records, ["lr"], metrics=["tag"])
    with pytest.raises(ValueError, match="group key"):
        wb.aggregate(records, ["momentum"])
    # nothing but the seed varies: one row over all records
    assert wb.aggregate(records, [])["n"].tolist() == [5]
    # numpy scalars (what metric code often returns) are numbers too
    import numpy as np
    mixed = wb.aggregate([{"k": 1, "seed": 0, "m": np.int64(2)},
                          {"k": 1, "seed": 1, "m": np.float32(4.0)}], ["k"])
    assert mixed["m_mean"].tolist() == [3.0] and mixed["m_n"].tolist() == [2]


def test_to_markdown_combines_mean_and_std():
    df = wb.aggregate([{"lr": 0.1, "seed": 0, "acc": 1.0, "mAP": 0.5},
                       {"lr": 0.1, "seed": 1, "acc": 3.0, "mAP": None},
                       {"lr": 0.2, "seed": 0, "acc": 2.0, "mAP": 0.25}], ["lr"])
    assert wb.to_markdown(df) == (
        "| lr  | n   | seeds | acc       | mAP       |\n"
        "| --- | --- | ----- | --------- | --------- |\n"
        "| 0.1 | 2   | 0,1   | 2 ± 1.414 | 0.5 (n=1) |\n"
        "| 0.2 | 1   | 0     | 2         | 0.25      |\n")
    assert "a\\|b" in wb.to_markdown(pd.DataFrame({"name": ["a|b"]}))
    with pytest.raises(TypeError):
        wb.to_markdown([1, 2])


def test_run_grid_in_processes_and_in_process():
    grid = {"x": [1.0, 2.0], "seed": [0, 3]}
    records = wb.run_grid(_score, grid, jobs=2, progress=False)
    assert [(r["x"], r["seed"], r["value"]) for r in records] == [
        (1.0, 0, 10.0), (1.0, 3, 13.0), (2.0, 0, 20.0), (2.0, 3, 23.0)]
    df = wb.aggregate(records, ["x"])
    assert df["value_mean"].tolist() == [11.5, 21.5]
    assert df["value_std"].tolist() == pytest.approx([3 / math.sqrt(2)] * 2)
    # jobs=1 runs here, so even a local function works
    local = wb.run_grid(lambda x, seed: {"v": x - seed}, grid, jobs=1, progress=False)
    assert [r["v"] for r in local] == [1.0, -2.0, 2.0, -1.0]


def test_run_grid_errors_are_clear():
    def in_main(x, seed):
        return {"v": x}
    in_main.__module__ = "__main__"  # as if defined in a notebook
    with pytest.raises(ValueError, match="cannot import"):  # (Dask ships it by value)
        wb.run_grid(in_main, {"x": [1], "seed": [0, 1]}, jobs=2, progress=False,
                    executor="processes")

    def boom(x, seed):
        if seed == 1:
            raise ArithmeticError("bad seed")
        return {"v": x}
    with pytest.raises(RuntimeError, match=r"(?s)1 of 2 grid point\(s\) failed.*bad seed"):
        wb.run_grid(boom, {"x": [1], "seed": [0, 1]}, jobs=1, progress=False)
    with pytest.raises(RuntimeError, match="TypeError: .* must return a dict of metrics"):
        wb.run_grid(lambda x: [x], {"x": [1]}, jobs=1, progress=False)
    with pytest.raises(RuntimeError, match="clash"):
        wb.run_grid(lambda x: {"x": 2}, {"x": [1]}, jobs=1, progress=False)


def test_has_outputs(tmp_path):
    import nbformat  # slow to import: kept out of the module the grid workers load
    path = tmp_path / "nb.ipynb"
    nb = nbformat.read(ALPHA, as_version=4)
    assert not wb.has_outputs(ALPHA)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="hi\n")]
    nb.cells[2].execution_count = 3
    nb.metadata["papermill"] = {"parameters": {}}
    nbformat.write(nb, path)
    assert wb.has_outputs(path)


# ------------------------------------------------------------------ notebook executions


def test_workbook_runs_notebooks_in_order_into_a_fresh_folder(tmp_path, capsys):
    out, figures = tmp_path / "run", tmp_path / "figures"
    rc = wb.workbook_main(["--notebooks-dir", str(FIXTURES), "--only", "01,03", "--quick",
                           "--out", str(out), "--figures-dir", str(figures), "--timeout", "60"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "01_alpha", "01_alpha.ipynb", "03_gamma", "03_gamma.ipynb", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert [e["notebook"] for e in summary["notebooks"]] == ["01_alpha", "03_gamma"]
    assert all(e["status"] == "ok" for e in summary["notebooks"]) and summary["failed"] == []
    walls = [e["wall_s"] for e in summary["notebooks"]]
    # each figure is rounded to 0.01 s, so the sum may pass the total by half a cent per term
    assert summary["total_wall_s"] >= sum(walls) - 0.005 * (len(walls) + 1) and min(walls) > 0
    # each notebook wrote into its own out_dir, got quick=True, and ran in its own folder
    info = [json.loads((out / n / "info.json").read_text()) for n in ("01_alpha", "03_gamma")]
    assert all(i["quick"] is True and Path(i["cwd"]) == FIXTURES.resolve() for i in info)
    assert info[0]["started"] < info[1]["started"]  # in order
    assert json.loads((out / "01_alpha" / "metrics.json").read_text())["value"] == 10
    assert (figures / "01_alpha.txt").read_text() == "a figure"
    import nbformat
    executed = nbformat.read(out / "01_alpha.ipynb", as_version=4)
    assert executed.metadata["papermill"]["parameters"]["quick"] is True
    printed = capsys.readouterr().out
    assert "| 01_alpha | ok" in printed and "total wall time" in printed


def test_workbook_refuses_a_non_empty_out_folder(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    rc = wb.workbook_main(["--notebooks-dir", str(FIXTURES), "--out", str(out)])
    assert rc == 2
    assert "already holds results" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert (out / "mine.txt").read_text() == "keep me"


def test_workbook_reports_the_failing_cell_and_carries_on(tmp_path, capsys):
    out = tmp_path / "run"
    rc = wb.workbook_main(["--notebooks-dir", str(FIXTURES), "--only", "02,03",
                           "--out", str(out), "--timeout", "60"])
    assert rc == 1
    summary = json.loads((out / "summary.json").read_text())
    failed, after = summary["notebooks"]
    assert failed["status"] == "failed" and summary["failed"] == ["02_fails"]
    assert failed["error"]["cell_index"] == 3  # the raise, counted in the source notebook
    assert failed["error"]["ename"] == "ValueError"
    assert failed["error"]["evalue"] == "fixture failure on purpose"
    assert failed["error"]["source_first_line"].startswith("raise ValueError")
    assert after["notebook"] == "03_gamma" and after["status"] == "ok"  # continued
    assert (out / "02_fails.ipynb").is_file()  # the executed copy shows the traceback
    captured = capsys.readouterr()
    assert "FAILED at notebook cell 3" in captured.out + captured.err
    assert "1 of 2 notebook(s) failed: 02_fails" in captured.err


def test_sweep_2x2_aggregates_mean_and_std_over_seeds(tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = wb.sweep_main([str(ALPHA), "-p", "x", "1.5", "2", "-p", "seed", "0", "3",
                        "--jobs", "2", "--out", str(out), "--timeout", "60"])
    assert rc == 0
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert runs == ["x=1.5__seed=0", "x=1.5__seed=3", "x=2__seed=0", "x=2__seed=3"]
    for name in runs:
        assert {"01_alpha.ipynb", "metrics.json"} <= {p.name for p in (out / name).iterdir()}
    table = pd.read_csv(out / "sweep.csv")
    assert table["x"].tolist() == [1.5, 2]
    assert table["n"].tolist() == [2, 2]
    # values 15, 18 and 20, 23: means 16.5 and 21.5, std |3| / sqrt(2) for both
    assert table["value_mean"].tolist() == [16.5, 21.5]
    assert table["value_std"].tolist() == pytest.approx([2.1213203] * 2)
    assert table["loss.final_mean"].tolist() == [33.0, 43.0]
    assert "note_mean" not in table.columns  # strings are not metrics
    md = (out / "sweep.md").read_text()
    assert "| 1.5 | 2   | 0,3   | 16.5 ± 2.121 | 33 ± 4.243 |" in md
    assert "16.5 ± 2.121" in capsys.readouterr().out
    per_run = pd.read_csv(out / "runs.csv")
    assert sorted(per_run["value"]) == [15, 18, 20, 23] and set(per_run["status"]) == {"ok"}


def test_sweep_unknown_parameter_is_a_clear_error(tmp_path, capsys):
    rc = wb.sweep_main([str(ALPHA), "-p", "lr", "0.1", "-p", "seed", "0",
                        "--out", str(tmp_path / "s")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown parameter(s) lr" in err and "seed, x, quick, out_dir, figures_dir" in err
    assert not (tmp_path / "s").exists()  # nothing was created for a bad command
    with pytest.raises(ValueError, match="unknown parameter"):
        wb.run_sweep(ALPHA, {"momentum": [0.9]}, out_dir=tmp_path / "t")
    with pytest.raises(ValueError, match="set by the sweep"):
        wb.run_sweep(ALPHA, {"out_dir": ["a"]}, out_dir=tmp_path / "t")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        wb.run_sweep(ALPHA, {"seed": [0]}, out_dir=taken)


def test_workbook_reports_a_cell_timeout(tmp_path):
    import nbformat
    folder = tmp_path / "nbs"
    folder.mkdir()
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1"),
               nbformat.v4.new_code_cell("import time\ntime.sleep(30)"),
               nbformat.v4.new_code_cell("y = 2")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}})
    nbformat.write(nb, folder / "01_slow.ipynb")
    out = tmp_path / "run"
    rc = wb.workbook_main(["--notebooks-dir", str(folder), "--out", str(out), "--timeout", "2"])
    assert rc == 1
    entry = json.loads((out / "summary.json").read_text())["notebooks"][0]
    assert entry["status"] == "error" and entry["error"]["ename"] == "CellTimeoutError"
    assert entry["error"]["cell_index"] == 1  # the sleeping cell
    assert entry["wall_s"] < 25


def test_sweep_with_a_failing_run_exits_non_zero_and_keeps_the_record(tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = wb.sweep_main([str(FIXTURES / "02_fails.ipynb"), "-p", "seed", "0", "--jobs", "1",
                        "--out", str(out), "--timeout", "60"])
    assert rc == 1
    assert "seed=0: FAILED at notebook cell 3" in capsys.readouterr().err
    runs = pd.read_csv(out / "runs.csv")
    assert runs["status"].tolist() == ["failed"]
    assert json.loads((out / "sweep.json").read_text())["failed"] == ["seed=0"]
    assert not (out / "sweep.csv").exists()  # nothing to aggregate


def test_a_workbook_run_keeps_its_figures_and_only_update_figures_touches_the_checkout(
        tmp_path, monkeypatch):
    committed = tmp_path / "checkout_figures"
    monkeypatch.setattr(wb, "default_figures_dir", lambda: committed)
    out = tmp_path / "run"
    rc = wb.workbook_main(["--notebooks-dir", str(FIXTURES), "--only", "01",
                           "--out", str(out), "--timeout", "60"])
    assert rc == 0
    assert (out / "figures" / "01_alpha.txt").read_text() == "a figure"
    assert not committed.exists()  # `make workbook` leaves the checkout as it was
    rc = wb.workbook_main(["--notebooks-dir", str(FIXTURES), "--only", "01",
                           "--out", str(tmp_path / "run2"), "--timeout", "60",
                           "--update-figures"])
    assert rc == 0 and (committed / "01_alpha.txt").read_text() == "a figure"


def test_update_figures_refuses_quick_runs(tmp_path, capsys):
    rc = wb.workbook_main(["--notebooks-dir", str(FIXTURES), "--quick", "--update-figures",
                           "--out", str(tmp_path / "run")])
    assert rc == 2 and "--update-figures" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
