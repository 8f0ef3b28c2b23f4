"""Committed notebooks are clean and follow the workbook's conventions.

No outputs or execution counts (strip with ``make strip``), one ``parameters`` cell that
defines ``quick: bool``, ``seed: int`` and ``out_dir: str`` (the contract of ``python -m
ecmlib workbook`` / ``sweep``), kernelspec ``python3``, names ``NN_name.ipynb`` numbered
01, 02, ... without gaps.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ecmlib.studies.workbook import has_outputs, notebook_parameters

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
FOUND = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = [
    "01_data_exploration", "02_train_ecm", "03_ablation_equivalent_loss",
    "04_ablation_weight_transition", "05_detection_explorer", "06_evaluate_checkpoint",
    "07_when_does_ecm_help", "08_building_on_ecm",
]
NAME = re.compile(r"^(\d\d)_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb$")
by_name = pytest.mark.parametrize("path", FOUND, ids=[p.name for p in FOUND])


def _read(path: Path):
    import nbformat
    return nbformat.read(path, as_version=4)


def test_the_workbook_notebooks_exist():
    missing = [n for n in EXPECTED if not (NOTEBOOKS_DIR / f"{n}.ipynb").is_file()]
    assert not missing, (f"workbook notebooks not (yet) in notebooks/: {', '.join(missing)}; "
                         f"this passes once they are committed")


def test_numbering_is_contiguous_from_01():
    numbers = sorted(int(NAME.match(p.name).group(1)) for p in FOUND if NAME.match(p.name))
    assert numbers == list(range(1, len(numbers) + 1)), (
        f"notebook numbers must run 01, 02, ... without gaps or repeats, got {numbers}")


@by_name
def test_name_is_nn_name(path):
    assert NAME.match(path.name), f"{path.name}: name notebooks NN_lowercase_words.ipynb"


@by_name
def test_no_outputs_or_execution_counts(path):
    nb = _read(path)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs or execution counts; run make strip"
    assert not has_outputs(path), f"{path.name}: holds papermill/execution metadata; run make strip"
    injected = [i for i, c in enumerate(nb.cells)
                if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert not injected, f"{path.name}: cells {injected} were injected by papermill (an executed copy?)"


@by_name
def test_kernelspec_is_python3(path):
    spec = _read(path).metadata.get("kernelspec", {})
    assert spec.get("name") == "python3", f"{path.name}: kernelspec is {spec.get('name')!r}"


@by_name
def test_one_parameters_cell_with_typed_quick_seed_out_dir(path):
    nb = _read(path)
    tagged = [i for i, c in enumerate(nb.cells)
              if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters' (need one)"
    assert nb.cells[tagged[0]].cell_type == "code"
    params = notebook_parameters(path)
    for name, type_name in (("quick", "bool"), ("seed", "int"), ("out_dir", "str")):
        assert name in params, f"{path.name}: the parameters cell does not define {name!r}"
        got = params[name]["inferred_type_name"]
        assert got == type_name, (f"{path.name}: give {name!r} a type, e.g. "
                                  f"'{name}: {type_name} = ...' (papermill reads {got!r})")
