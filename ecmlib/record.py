"""Results of record: the ablations and the difficulty study at the paper's protocol.

A *study* is a list of *cells*; a cell is one training run, named by its setting (an
ablation of :data:`ecmlib.ablation.SETTINGS`), its training seed, its data seed and the
synthetic *world* it trains on (the ``thumos14-mini`` preset, or the preset with one
difficulty factor moved, see :data:`WORLDS`). Every cell is exactly one command line::

    python -m ecmlib train --dataset THUMOS14 --synthetic thumos14-mini --epochs 150 \\
        --quiet --set eval.eval_every=5 train.seed=0 data.synthetic_seed=0 \\
        train.num_threads=1 model.streams=pre

which is what :func:`run_cell` executes (in a subprocess, into ``ROOT/<cell id>``) and what
the results files record in their ``command`` column, so any row can be re-run by hand.
A cell shared by two studies (full ECM appears in 03, 04 and 07) is trained once.

The protocol (:data:`PROTOCOL`) is the paper's optimiser (Adam, lr 2e-4, betas
(0.9, 0.999), weight decay 5e-4, batch 16) for the authors' THUMOS14 length of 150 epochs,
evaluated every 5 epochs, on ``thumos14-mini`` (D = 256, T = 256) with H = 128: the width
at which a 150-epoch run fits a CPU core in minutes; the paper's H = 2048 is for 2048-d
I3D features on a GPU. One torch thread per run, so a run repeats exactly on the same
machine kind and torch version.

Cells run in the order of :func:`plan`: seed by seed across the settings of a study, so
that an interrupted grid still holds complete pairs. :func:`run_cells` skips cells that
have finished (``ROOT/<cell id>/metrics.json``) and restarts unfinished ones from scratch.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ablation import SETTINGS

#: The training protocol of every record run (see the module docstring).
PROTOCOL: dict[str, Any] = {
    "dataset": "THUMOS14",
    "preset": "thumos14-mini",
    "epochs": 150,
    "eval_every": 5,
    "threads": 1,
}

#: Difficulty worlds of notebook 07, declared before any result: factor -> level -> knobs.
#: ``off`` switches the factor off (as ``SyntheticSpec.ablate``); ``default`` is the preset
#: itself (one world shared by every factor); ``strong`` moves each knob of the factor as
#: far beyond the default as ``off`` lies below it (doubling it), clipped to its range.
WORLDS: dict[str, dict[str, tuple[str, ...]]] = {
    "context": {"off": ("context_strength=0.0",),
                "default": (),
                "strong": ("context_strength=2.0",)},
    "boundary": {"off": ("ramp_seconds=0.0", "boundary_jitter_seconds=0.0"),
                 "default": (),
                 "strong": ("ramp_seconds=4.0", "boundary_jitter_seconds=1.0")},
    "subactions": {"off": ("num_subactions=1", "subaction_sharing=0.0"),
                   "default": (),
                   "strong": ("num_subactions=5", "subaction_sharing=1.0")},
    "distractors": {"off": ("distractor_rate=0.0",),
                    "default": (),
                    "strong": ("distractor_rate=4.0",)},
}
LEVELS = ("off", "default", "strong")


@dataclass(frozen=True)
class Cell:
    """One training run of the record."""

    setting: str
    seed: int
    data_seed: int = 0
    knobs: tuple[str, ...] = ()
    factor: str = ""      # notebook 07 only: the factor moved, and to which level
    level: str = ""

    @property
    def world(self) -> str:
        """'default' or e.g. 'context=strong'."""
        return f"{self.factor}={self.level}" if self.knobs else "default"

    @property
    def cell_id(self) -> str:
        """Folder name of the run: unique per (setting, seed, data seed, world)."""
        world = "" if not self.knobs else "__world=" + "+".join(
            k.replace("=", "-") for k in self.knobs)
        return f"{self.setting}__seed={self.seed}__data={self.data_seed}{world}"

    def overrides(self) -> list[str]:
        """The ``--set`` values of the run, in a fixed order."""
        out = [f"eval.eval_every={PROTOCOL['eval_every']}", f"train.seed={self.seed}",
               f"data.synthetic_seed={self.data_seed}",
               f"train.num_threads={PROTOCOL['threads']}"]
        out += [f"{k}={_text(v)}" for k, v in SETTINGS[self.setting].items()]
        if self.knobs:
            out.append("data.synthetic_knobs=" + ",".join(self.knobs))
        return out

    def argv(self) -> list[str]:
        """``train`` arguments after ``python -m ecmlib`` (no ``--out``)."""
        return ["train", "--dataset", PROTOCOL["dataset"], "--synthetic", PROTOCOL["preset"],
                "--epochs", str(PROTOCOL["epochs"]), "--quiet", "--set", *self.overrides()]

    def command(self) -> str:
        """The exact command line that reproduces this run (without ``--out``)."""
        return shlex.join(["python", "-m", "ecmlib", *self.argv()])


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Study:
    """A results file of record: its name and its cells in run order."""

    name: str
    cells: tuple[Cell, ...] = field(repr=False)

    @property
    def csv_name(self) -> str:
        return f"{self.name}.csv"


def _seed_major(settings: Sequence[str], seeds: Iterable[int], data_seed: int = 0) -> list[Cell]:
    return [Cell(s, seed, data_seed) for seed in seeds for s in settings]


def studies(seeds: int = 5, data_seeds: Sequence[int] = (1, 2),
            world_seeds: int = 3) -> dict[str, Study]:
    """The three studies of record: '03', '04' and '07' (cells in run order)."""
    from .ablation import EQUIVALENT_LOSS_SETTINGS, TRANSITION_SETTINGS
    s03 = _seed_major(EQUIVALENT_LOSS_SETTINGS, range(seeds))
    for ds in data_seeds:
        s03 += _seed_major(("ecm", "pre_only"), range(seeds), ds)
    s04 = _seed_major(TRANSITION_SETTINGS, range(seeds))
    s07 = []
    for seed in range(world_seeds):
        for factor, levels in WORLDS.items():
            for level in LEVELS:
                for setting in ("ecm", "pre_only"):
                    s07.append(Cell(setting, seed, 0, levels[level], factor, level))
    return {"03": Study("03_ablation_equivalent_loss", tuple(s03)),
            "04": Study("04_ablation_weight_transition", tuple(s04)),
            "07": Study("07_when_does_ecm_help", tuple(s07))}


def plan(which: Sequence[str] = ("03", "04", "07"), **kw: Any) -> list[Cell]:
    """The distinct cells to train, in run order: the seeds of 03 and 04 interleaved first
    (so that early stops hold complete pairs), then 03's extra data seeds, then 07."""
    all_studies = studies(**kw)
    first = [c for c in all_studies["03"].cells if c.data_seed == 0] if "03" in which else []
    rest03 = [c for c in all_studies["03"].cells if c.data_seed != 0] if "03" in which else []
    if "04" in which:
        # Interleave 04's extra settings into 03's seed-major order.
        by_seed: dict[int, list[Cell]] = {}
        for c in first + list(all_studies["04"].cells):
            by_seed.setdefault(c.seed, []).append(c)
        first = [c for seed in sorted(by_seed) for c in by_seed[seed]]
    order = first + rest03 + (list(all_studies["07"].cells) if "07" in which else [])
    seen: set[str] = set()
    out = []
    for c in order:
        if c.cell_id not in seen:
            seen.add(c.cell_id)
            out.append(c)
    return out


# -- running --------------------------------------------------------------------------------

def is_done(root: str | Path, cell: Cell) -> bool:
    """A cell is finished when its run folder holds metrics.json (written last by train)."""
    return (Path(root) / cell.cell_id / "metrics.json").is_file()


def run_cell(cell: Cell, root: str | Path, python: str | None = None,
             log: bool = True) -> Path:
    """Train one cell with its command line, in a subprocess, into ``root/<cell id>``.

    An unfinished folder (a killed run) is started again from scratch; a finished one is
    left as it is. Returns the run folder. The subprocess's output goes to ``train.log``
    beside the run (the folder itself is created by train).
    """
    root = Path(root)
    run_dir = root / cell.cell_id
    if is_done(root, cell):
        return run_dir
    if run_dir.exists():
        shutil.rmtree(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    logfile = root / f"{cell.cell_id}.log"
    cmd = [python or sys.executable, "-m", "ecmlib", *cell.argv(), "--out", str(run_dir)]
    t0 = time.perf_counter()
    with open(logfile, "w") as fh:
        fh.write(shlex.join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{cell.cell_id}: train exited with {proc.returncode} "
                           f"after {time.perf_counter() - t0:.0f} s; see {logfile}")
    if log:
        print(f"{time.strftime('%H:%M:%S')} done {cell.cell_id} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return run_dir


def run_cells(cells: Sequence[Cell], root: str | Path, jobs: int = 1,
              python: str | None = None) -> list[str]:
    """Run every unfinished cell, ``jobs`` at a time; returns the failures' messages."""
    todo = [c for c in cells if not is_done(root, c)]
    print(f"{len(cells) - len(todo)} of {len(cells)} cells finished; {len(todo)} to run "
          f"with {jobs} job(s)", flush=True)
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(run_cell, c, root, python) for c in todo]
        for fut in as_completed(futures):
            try:
                fut.result()
            except Exception as err:  # noqa: BLE001 - reported, the grid goes on
                failures.append(str(err))
                print(f"FAILED {err}", flush=True)
    return failures
