"""`python -m ecmlib parity`: every golden check passes, and a wrong number makes it fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecmlib.cli import main
from ecmlib.parity import DEFAULT_GOLDEN, load_golden, run_parity

SHARED_GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"


@pytest.mark.parametrize("path", DEFAULT_GOLDEN, ids=lambda p: p.stem)
def test_every_golden_check_passes(path: Path) -> None:
    checks = run_parity(path)
    names = {c.name.split("/")[0] for c in checks}
    assert {"train", "grad", "infer", "localize", "nms", "map"} <= names
    assert all(c.ok for c in checks), [(c.name, c.error) for c in checks if not c.ok]


def test_copies_equal_the_shared_golden_files() -> None:
    if not SHARED_GOLDEN.is_dir():
        pytest.skip("shared golden folder not present")
    for path in DEFAULT_GOLDEN:
        ours, theirs = load_golden(path), load_golden(SHARED_GOLDEN / path.name)
        assert ours.keys() == theirs.keys()
        assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_cli_fails_on_a_perturbed_golden_file(tmp_path: Path, capsys) -> None:
    golden = load_golden(DEFAULT_GOLDEN[0])
    golden["train/losses"] = golden["train/losses"] * (1 + 1e-3)     # beyond 1e-4 relative
    golden["post/detections"] = golden["post/detections"][::-1].copy()
    bad = tmp_path / "perturbed.npz"
    np.savez(bad, **golden)
    assert main(["parity", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "train/losses[total]" in out and "FAIL" in out
    assert "localize/count_order" in out
    assert main(["parity", str(DEFAULT_GOLDEN[1])]) == 0


def test_cli_reports_missing_keys_and_files(tmp_path: Path, capsys) -> None:
    golden = load_golden(DEFAULT_GOLDEN[0])
    del golden["input/x"]
    bad = tmp_path / "incomplete.npz"
    np.savez(bad, **golden)
    assert main(["parity", str(bad)]) == 2
    assert "lacks key(s) input/x" in capsys.readouterr().err
    assert main(["parity", str(tmp_path / "nope.npz")]) == 2
    assert "golden file not found" in capsys.readouterr().err
