"""Results files are checked before any number in them is used: each attack on the
committed files that used to move a README table or a verdict with exit code 0 is refused,
naming the file, the line and the column; ``report`` never rewrites the README from
nothing, and ``record --collect-only`` never collects a run that is not its cell."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ecmlib.studies import collect, design, record
from ecmlib.cli import main
from ecmlib.studies.results import ResultsError

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "data" / "results"
NAME = "03_ablation_equivalent_loss"


@pytest.fixture
def results(tmp_path) -> Path:
    """A copy of the committed results folder to attack."""
    out = tmp_path / "results"
    shutil.copytree(RESULTS, out)
    return out


def _edit(results: Path, change) -> Path:
    path = results / f"{NAME}.csv"
    table = pd.read_csv(path)
    table = change(table)
    table.to_csv(path, index=False)
    return path


def _report(results: Path, capsys, *extra: str) -> tuple[int, str]:
    readme = results.parent / "README.md"
    if not readme.exists():
        shutil.copy2(REPO / "README.md", readme)
    rc = main(["report", "--readme", str(readme), "--results", str(results), *extra])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_the_committed_results_pass(capsys):
    for key in ("03", "04", "07"):
        assert len(collect.read_study(design.studies()[key].name)) > 0


def _percent(t):
    t.loc[0, "mAP@0.5"] = 100 * t.loc[0, "mAP@0.5"]
    return t


def _nan(t):
    t.loc[3, "last_mAP@0.5"] = float("nan")
    return t


def _seed_word(t):
    t["seed"] = t["seed"].astype(object)
    t.loc[1, "seed"] = "zero"
    return t


def _unknown_setting(t):
    row = t.iloc[[0]].copy()
    row["setting"] = "magic"
    row["command"] = row["command"].str.replace("model.streams=both", "model.streams=magic")
    return pd.concat([t, row], ignore_index=True)


def _protocol(t):
    t.loc[2, "epochs"] = 1
    return t


@pytest.mark.parametrize("change, message", [
    (_percent, "line 2, column 'mAP@0.5': 20.689071565454736 is not a fraction in [0, 1]"),
    (lambda t: pd.concat([t, t.iloc[[4]]], ignore_index=True), "line 52: the same run as line 6"),
    (_nan, "line 5, column 'last_mAP@0.5': missing (NaN)"),
    (_unknown_setting, "line 52: the command"),
    (_seed_word, "line 3, column 'seed': 'zero' is not an integer"),
    (lambda t: t.drop(columns=["command"]), "missing column(s) command"),
    (lambda t: t.drop(columns=["last5_mAP@0.5"]), "missing column(s) last5_mAP@0.5"),
    (_protocol, "line 4, column 'epochs': 1, but the row's command is the run with epochs 150"),
])
def test_a_tampered_results_file_is_refused_by_report(results, capsys, change, message):
    path = _edit(results, change)
    readme_before = (REPO / "README.md").read_text()
    rc, text = _report(results, capsys)
    assert rc == 2 and message in text and str(path) in text, text
    assert (results.parent / "README.md").read_text() == readme_before  # untouched


def test_a_file_cut_mid_row_is_refused(results, capsys):
    path = results / f"{NAME}.csv"
    text = path.read_text()
    path.write_text(text[: text.index("\n", len(text) // 2) + 40])
    rc, out = _report(results, capsys)
    assert rc == 2 and str(path) in out and ("missing (NaN)" in out or "is no run" in out
                                             or "not an integer" in out), out


def test_empty_missing_results_and_missing_readme_are_errors(results, tmp_path, capsys):
    (results / f"{NAME}.csv").write_text("")
    rc, out = _report(results, capsys)
    assert rc == 2 and "the file is empty" in out
    rc, out = _report(tmp_path / "nonexistent", capsys)
    assert rc == 2 and "no such results folder" in out
    (results / f"{NAME}.csv").unlink()
    rc, out = _report(results, capsys)
    assert rc == 2 and f"{NAME}.csv: no results file" in out
    rc = main(["report", "--readme", str(tmp_path / "MISSING.md")])
    err = capsys.readouterr().err
    assert rc == 2 and "MISSING.md: no such README" in err


def test_a_readme_without_its_marker_is_an_error_not_a_traceback(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text((REPO / "README.md").read_text().replace("<!-- results-04 -->", ""))
    rc = main(["report", "--readme", str(readme)])
    err = capsys.readouterr().err
    assert rc == 2 and "marker <!-- results-04 -->" in err and "Traceback" not in err


def test_record_list_says_recorded_for_runs_in_the_results_files(tmp_path, capsys):
    assert main(["record", "--study", "04", "--root", str(tmp_path), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 15 and all(ln.startswith("recorded ") for ln in lines)


def test_collect_only_refuses_a_run_that_is_not_its_cell(tmp_path, capsys):
    """A 1-epoch run trained into a 150-epoch cell's folder is refused, naming the keys."""
    cell = design.studies(protocol=record.QUICK_PROTOCOL)["03"].cells[0]
    root = tmp_path / "root"
    argv = cell.argv()
    argv[argv.index("--epochs") + 1] = "1"
    assert main([*argv, "--out", str(root / cell.cell_id)]) == 0
    capsys.readouterr()
    with pytest.raises(ValueError, match=r"is not cell .*train\.epochs is 1 in the run, 2 in "
                                         r"the cell"):
        collect.collect_row(cell, root)


def test_resuming_the_collection_refuses_a_tampered_previous_file(results, tmp_path, capsys):
    _edit(results, _percent)
    rc = main(["record", "--study", "03", "--root", str(tmp_path / "none"), "--results",
               str(results), "--collect-only"])
    err = capsys.readouterr().err
    assert rc == 2 and "not a fraction" in err
    with pytest.raises(ResultsError):
        collect.read_study(NAME, results)
