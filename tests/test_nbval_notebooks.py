"""Every workbook notebook runs top to bottom in quick mode under ``pytest --nbval-lax``.

Each notebook runs in its own ``pytest --nbval-lax`` subprocess (one kernel, one clear
failure per notebook, and its wall time printed) with ``WORKBOOK_QUICK=1 MPLBACKEND=Agg
TQDM_DISABLE=1``. The run happens in a sandbox: a temporary folder holding a copy of
``notebooks/``, empty ``figures/`` and ``runs/``, and links to everything else in the
checkout (``data/``, ``ecmlib/``…). nbval starts the kernel in the notebook's folder, so
``../figures`` and ``../data`` resolve as in JupyterLab, while quick-mode figures and runs
land in the sandbox instead of replacing the committed ones. nbval never writes executed
notebooks; the test also checks that the committed files are untouched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIXTURE_DIR = Path(__file__).parent / "fixtures" / "notebooks" / "nbval"
CELL_TIMEOUT_S = 600
NOTEBOOK_TIMEOUT_S = 1500


def make_sandbox(root: Path, notebooks_dir: Path) -> Path:
    """A stand-in checkout under ``root`` whose notebooks/ is a copy of ``notebooks_dir``."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in REPO.iterdir():
        if entry.name in {"notebooks", "figures", "runs"} or entry.name.startswith("."):
            continue
        (root / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    shutil.copytree(notebooks_dir, root / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (root / "figures").mkdir()
    (root / "runs").mkdir()
    return root


def run_nbval(sandbox: Path, name: str) -> tuple[subprocess.CompletedProcess, float]:
    """``pytest --nbval-lax notebooks/<name>`` in the sandbox, in quick mode; (result, seconds)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    env.update(WORKBOOK_QUICK="1", MPLBACKEND="Agg", TQDM_DISABLE="1")
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
           f"--nbval-cell-timeout={CELL_TIMEOUT_S}", "-p", "no:cacheprovider", "-q",
           "--rootdir", str(sandbox), str(sandbox / "notebooks" / name)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=sandbox, env=env, capture_output=True, text=True,
                          timeout=NOTEBOOK_TIMEOUT_S)
    return proc, time.perf_counter() - start


def _digest(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def _committed_files(name: str) -> dict[str, str]:
    """The notebook and its figures in the checkout: nbval must leave them as they were."""
    number = name[:2]
    return _digest([REPO / "notebooks" / name, *sorted((REPO / "figures").glob(f"{number}_*"))])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    return make_sandbox(tmp_path_factory.mktemp("nbval") / "checkout", REPO / "notebooks")


def test_nbval_wiring_on_a_fixture(tmp_path):
    """The fixture asserts, inside its kernel, the cwd and the environment the sandbox gives."""
    box = make_sandbox(tmp_path / "checkout", FIXTURE_DIR)
    proc, _ = run_nbval(box, "01_env_check.ipynb")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "3 passed" in proc.stdout  # its three code cells ran
    assert (box / "figures" / "01_env_check.txt").read_text() == "quick=True"
    assert not (REPO / "figures" / "01_env_check.txt").exists()
    # nbval does not write executed notebooks back
    assert (box / "notebooks" / "01_env_check.ipynb").read_bytes() == \
        (FIXTURE_DIR / "01_env_check.ipynb").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(name, sandbox, capsys):
    before = _committed_files(name)
    proc, wall = run_nbval(sandbox, name)
    with capsys.disabled():
        status = "passed" if proc.returncode == 0 else "FAILED"
        print(f"\n[nbval --nbval-lax, quick] {name}: {status} in {wall:.1f} s")
    assert proc.returncode == 0, (f"{name} failed under nbval in quick mode:\n"
                                  f"{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}")
    assert _committed_files(name) == before, "the run changed committed notebooks or figures"
    assert (sandbox / "notebooks" / name).read_bytes() == (REPO / "notebooks" / name).read_bytes()
