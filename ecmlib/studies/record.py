"""Results of record: the ablations and the difficulty study at the paper's protocol.

A *study* is a list of *cells*; a cell is one training run, named by its setting (an
ablation of :data:`ecmlib.studies.ablation.SETTINGS`), its training seed, its data seed and the
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
from concurrent.futures import as_completed
import dataclasses
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


def _off_knobs(factor: str) -> tuple[str, ...]:
    """The ``name=value`` knobs that switch one difficulty factor of the generator off."""
    from ..data.synthetic import FACTORS
    return tuple(f"{k}={v}" for k, v in FACTORS[factor].items())


def _minimal_knobs() -> tuple[str, ...]:
    from ..data.synthetic import FACTORS
    return tuple(k for factor in FACTORS for k in _off_knobs(factor))


#: Notebook 07b, the ingredient study, declared before any of its results. Ingredients of
#: the generator that are not difficulty factors, each switched on its own in the minimal
#: world (every named factor off): name -> knobs. Why each is in:
#: ``linear_observation``: an independent generator with a linear observation saw
#: pre-only win; ``iid_noise``: the same, with i.i.d. snippet noise (a smooth noise is
#: action-like over seconds); ``one_shot``: shot looks change the RGB stream at cuts,
#: background structure a video-level classifier can latch onto; ``shared_streams``: ECM's
#: post stream fuses RGB and flow differently from pre's CAS when the two streams disagree;
#: ``weak_actions`` / ``strong_actions``: the signal-to-noise ratio of action evidence
#: (action strength halved and doubled, as 07 moves its factors).
INGREDIENTS: dict[str, tuple[str, ...]] = {
    "linear_observation": ("observation=linear",),
    "iid_noise": ("smooth_seconds=0.0",),
    "one_shot": ("shots=one",),
    "shared_streams": ("action_streams=shared",),
    "weak_actions": ("action_strength=0.5",),
    "strong_actions": ("action_strength=2.0",),
}


def ingredient_worlds() -> list[tuple[str, str, tuple[str, ...]]]:
    """The worlds of 07b in order, as (group, name, knobs): the minimal world; each named
    factor added back alone at its default level ('add'); each ingredient switched in the
    minimal world ('ingredient')."""
    from ..data.synthetic import FACTORS
    minimal = _minimal_knobs()
    worlds = [("minimal", "all_off", minimal)]
    for factor in FACTORS:
        off = set(_off_knobs(factor))
        worlds.append(("add", factor, tuple(k for k in minimal if k not in off)))
    for name, knobs in INGREDIENTS.items():
        worlds.append(("ingredient", name, minimal + knobs))
    return worlds




@dataclass(frozen=True)
class Cell:
    """One training run of the record."""

    setting: str
    seed: int
    data_seed: int = 0
    knobs: tuple[str, ...] = ()
    factor: str = ""      # notebook 07 only: the factor moved, and to which level
    level: str = ""
    # The protocol (PROTOCOL's values by default; a quick check runs a tiny one).
    preset: str = PROTOCOL["preset"]
    epochs: int = PROTOCOL["epochs"]
    eval_every: int = PROTOCOL["eval_every"]
    threads: int = PROTOCOL["threads"]
    fast: bool = False    # train.fast=true (bf16 where native, the fastest aggregation path)

    @property
    def world(self) -> str:
        """'default' or e.g. 'context=strong'."""
        return f"{self.factor}={self.level}" if self.knobs else "default"

    @property
    def cell_id(self) -> str:
        """Folder name of the run: unique per (setting, seed, data seed, world)."""
        world = "" if not self.knobs else "__world=" + "+".join(
            k.replace("=", "-") for k in self.knobs)
        # A run longer or shorter than the protocol's is another run: its own folder.
        length = "" if self.epochs == PROTOCOL["epochs"] else f"__epochs={self.epochs}"
        fast = "__fast" if self.fast else ""
        return f"{self.setting}__seed={self.seed}__data={self.data_seed}{length}{fast}{world}"

    def overrides(self) -> list[str]:
        """The ``--set`` values of the run, in a fixed order."""
        out = [f"eval.eval_every={self.eval_every}", f"train.seed={self.seed}",
               f"data.synthetic_seed={self.data_seed}", f"train.num_threads={self.threads}"]
        out += [f"{k}={_text(v)}" for k, v in SETTINGS[self.setting].items()]
        if self.knobs:
            out.append("data.synthetic_knobs=" + ",".join(self.knobs))
        if self.fast:
            out.append("train.fast=true")
        return out

    def argv(self) -> list[str]:
        """``train`` arguments after ``python -m ecmlib`` (no ``--out``)."""
        return ["train", "--dataset", PROTOCOL["dataset"], "--synthetic", self.preset,
                "--epochs", str(self.epochs), "--quiet", "--set", *self.overrides()]

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


def _seed_major(settings: Sequence[str], seeds: Iterable[int], data_seed: int,
                protocol: dict[str, Any]) -> list[Cell]:
    return [Cell(s, seed, data_seed, **protocol) for seed in seeds for s in settings]


def studies(seeds: int = 5, data_seeds: Sequence[int] = (1, 2), world_seeds: int = 3,
            protocol: dict[str, Any] | None = None, fast: bool = False) -> dict[str, Study]:
    """The studies of record: '03', '04', '07', '07b', '07c', '08' and '09' (cells in run order).

    ``protocol`` changes ``preset``, ``epochs``, ``eval_every`` or ``threads`` of every cell
    (the notebooks' quick mode runs a tiny grid through the same code this way). ``fast``
    gives every study's cells in fast mode, as studies of their own (``<name>_fast``,
    ``record --fast``); 09 is fast already and is left out.
    """
    every = _studies(seeds, data_seeds, world_seeds, protocol)
    if not fast:
        return every
    return {k: Study(f"{v.name}_fast", tuple(dataclasses.replace(c, fast=True) for c in v.cells))
            for k, v in every.items() if k != "09"}


def _studies(seeds: int, data_seeds: Sequence[int], world_seeds: int,
             protocol: dict[str, Any] | None) -> dict[str, Study]:
    from .ablation import EQUIVALENT_LOSS_SETTINGS, TRANSITION_SETTINGS, VARIANT_SETTINGS
    proto = dict(protocol or {})
    unknown = set(proto) - {"preset", "epochs", "eval_every", "threads"}
    if unknown:
        raise ValueError(f"protocol: unknown key(s) {sorted(unknown)}")
    s03 = _seed_major(EQUIVALENT_LOSS_SETTINGS, range(seeds), 0, proto)
    for ds in data_seeds:
        s03 += _seed_major(("ecm", "pre_only"), range(seeds), ds, proto)
    s04 = _seed_major(TRANSITION_SETTINGS, range(seeds), 0, proto)
    s07 = []
    for seed in range(world_seeds):
        # The default world is one world, shared by every factor: its runs appear once.
        for setting in ("ecm", "pre_only"):
            s07.append(Cell(setting, seed, 0, (), "", "default", **proto))
        for factor, levels in WORLDS.items():
            for level in LEVELS:
                if level == "default":
                    continue
                for setting in ("ecm", "pre_only"):
                    s07.append(Cell(setting, seed, 0, levels[level], factor, level, **proto))
    s07b = [Cell(setting, seed, 0, knobs, group, name, **proto)
            for seed in range(world_seeds) for group, name, knobs in ingredient_worlds()
            for setting in ("ecm", "pre_only")]
    long_proto = {**proto, "epochs": 2 * proto.get("epochs", PROTOCOL["epochs"])}
    # 09: fast mode against the record's fp32 runs of 03 (ECM and pre-only, data seed 0).
    s09 = [Cell(setting, seed, 0, fast=True, **proto)
           for seed in range(seeds) for setting in ("ecm", "pre_only")]
    # 07c: the default world's ECM and pre-only at twice the protocol's length.
    s07c = [Cell(setting, seed, 0, (), "", "default", **long_proto)
            for seed in range(world_seeds) for setting in ("ecm", "pre_only")]
    # 08: a variant from the literature against ECM, paired by seed (data seed 0).
    s08 = _seed_major(("ecm", *VARIANT_SETTINGS), range(seeds), 0, proto)
    return {"03": Study("03_ablation_equivalent_loss", tuple(s03)),
            "04": Study("04_ablation_weight_transition", tuple(s04)),
            "07": Study("07_when_does_ecm_help", tuple(s07)),
            "07b": Study("07b_ingredients", tuple(s07b)),
            "07c": Study("07c_run_length", tuple(s07c)),
            "08": Study("08_weight_sparsity", tuple(s08)),
            "09": Study("09_fast_mode_validation", tuple(s09))}


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
    if "07b" in which:
        # The minimal world's three seeds first (they answer 07's all-off question), then
        # the other worlds seed by seed, so an interrupted grid holds complete pairs.
        cells07b = list(all_studies["07b"].cells)
        order += [c for c in cells07b if c.factor == "minimal"]
        order += [c for c in cells07b if c.factor != "minimal"]
    if "07c" in which:
        order += list(all_studies["07c"].cells)
    if "08" in which:
        order += list(all_studies["08"].cells)
    if "09" in which:
        order += list(all_studies["09"].cells)
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
    from ..training.runlock import hold
    with hold(run_dir, "run of this cell"):  # never delete a folder a live run writes
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


def run_cells(cells: Sequence[Cell], root: str | Path, jobs: int | None = 1,
              python: str | None = None, **executor: Any) -> list[str]:
    """Run every unfinished cell, ``jobs`` at a time; returns the failures' messages.

    The cells go through the executor every grid of the workbook uses
    (:func:`ecmlib.studies.executor.open_executor`: a local Dask cluster by default, a process pool,
    this process for ``jobs=1``, or a remote cluster or Slurm through ``executor`` keywords
    such as ``scheduler="tcp://HOST:PORT"``); a remote cluster must see ``root``. Each cell
    trains in a subprocess with its own command line, so a worker only waits for it.
    """
    from .executor import open_executor
    root = Path(root).resolve()
    todo = [c for c in cells if not is_done(root, c)]
    print(f"{len(cells) - len(todo)} of {len(cells)} cells finished; {len(todo)} to run",
          flush=True)
    failures: list[str] = []
    if not todo:
        return failures
    with open_executor(jobs=jobs, n_tasks=len(todo), log=print, **executor) as pool:
        futures = {pool.submit(run_cell, c, str(root), python): c for c in todo}
        for fut in as_completed(futures):
            try:
                fut.result()
            except Exception as err:  # noqa: BLE001 - reported, the grid goes on
                failures.append(f"{futures[fut].cell_id}: {err}")
                print(f"FAILED {futures[fut].cell_id}: {err}", flush=True)
    return failures


# -- collecting results ---------------------------------------------------------------------

#: Columns of a results file of record, in order (metric values are fractions).
COLUMNS = ("setting", "seed", "data_seed", "world", "factor", "level", "preset", "epochs",
           "eval_every", "lr", "hidden_dim", "threads", "best_epoch", "mAP@0.5",
           "average_mAP@0.1:0.7", "average_mAP@0.1:0.5", "classification_mAP",
           "best_boot_lo_mAP@0.5", "best_boot_hi_mAP@0.5", "last_mAP@0.5",
           "last_average_mAP@0.1:0.7", "last_boot_lo_mAP@0.5", "last_boot_hi_mAP@0.5",
           "last5_mAP@0.5", "last5_average_mAP@0.1:0.7", "first_detection_epoch",
           "consistency", "wall_time_s", "torch", "command")

#: Extra columns of a study with fast-mode runs: what each run computed in.
FAST_COLUMNS = ("precision", "aggregation_path")


def columns_of(study: Study) -> tuple[str, ...]:
    """The columns of a study's results file."""
    return COLUMNS[:-1] + FAST_COLUMNS + COLUMNS[-1:] if any(c.fast for c in study.cells) \
        else COLUMNS


#: Bootstrap resamples of the test videos per run (95 % percentile interval).
N_BOOT = 1000


def cell_config(cell: Cell) -> Any:
    """The ExperimentConfig that the cell's command line builds (``train``'s own recipe:
    the dataset's preset on the synthetic preset, the epochs, then the ``--set`` values)."""
    from ..training.setup import make_config
    return make_config(PROTOCOL["dataset"], synthetic=cell.preset, overrides=cell.overrides(),
                       epochs=cell.epochs)


def check_run_is_cell(cell: Cell, run_dir: Path, cfg: Any = None) -> None:
    """Refuse to collect a run folder whose ``config.json`` is not the cell's command's
    configuration ``cfg`` (default: :func:`cell_config`; another run trained into the
    cell's folder), naming the keys."""
    import json
    from ..training.checkpoint import config_differences
    path = run_dir / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the run's configuration ({err})") from None
    diff = config_differences(saved, cfg or cell_config(cell), str(path))
    if diff:
        shown = "; ".join(f"{k} is {a!r} in the run, {b!r} in the cell" for k, (a, b) in diff.items())
        raise ValueError(f"{run_dir}: this run is not cell {cell.cell_id} ({shown}); move the "
                         f"folder away and run `python -m ecmlib record` again")


def _test_split(cell: Cell, cache: dict) -> Any:
    """(the cell's config, its test features); the features are generated once per world
    and data seed (the config is the cell's own)."""
    from ..training.setup import load_features
    cfg = cell_config(cell)
    key = (cell.preset, cell.data_seed, cell.knobs)
    if key not in cache:
        cache.clear()  # one world at a time: the arrays are large
        cache[key] = load_features(cfg, cfg.data.test_split)
    return cfg, cache[key]


def _interval(values: Any) -> tuple[float, float]:
    import numpy as np
    lo, hi = np.percentile(np.asarray(values), [2.5, 97.5])
    return float(lo), float(hi)


def collect_row(cell: Cell, root: str | Path, cache: dict | None = None) -> dict[str, Any]:
    """One results row of a finished cell (reads its run folder; see :data:`COLUMNS`).

    The bootstrap intervals re-run inference of ``best.pth`` and ``last.pth`` on the test
    split and resample its videos (:func:`ecmlib.method.evaluation.bootstrap_map`, ``N_BOOT``
    draws, seed 0); ``consistency`` is the Spearman agreement of CAS and aggregation
    weights of the best model (NaN for pre-only).
    """
    import numpy as np
    import pandas as pd
    from .ablation import consistency_of
    from ..method.evaluation import _read_json, bootstrap_map
    from ..training.checkpoint import load_checkpoint
    from ..training.inference import detect, predict
    from ..training.setup import ground_truth_for
    run_dir = Path(root) / cell.cell_id
    cfg, test_set = _test_split(cell, cache if cache is not None else {})
    check_run_is_cell(cell, run_dir, cfg)
    metrics = _read_json(run_dir / "metrics.json")  # ValueError naming the file
    history_path = run_dir / "history.csv"
    history = pd.read_csv(history_path)
    if "mAP@0.5" not in history:
        raise ValueError(f"{history_path}: no evaluated epoch")
    evaluated = history.dropna(subset=["mAP@0.5"])
    gt = ground_truth_for(cfg, test_set)
    boot = {}
    consistency = float("nan")
    for which in ("best", "last"):
        model, _ = load_checkpoint(run_dir / f"{which}.pth", cfg.model)
        scores, cas, weights = predict(model, test_set.features, weights=True)
        preds = detect(scores, cas, test_set, cfg)
        boot[which] = _interval(bootstrap_map(gt, preds, 0.5, N_BOOT, seed=0))
        if which == "best" and cfg.model.streams != "pre":
            consistency = consistency_of(cas, weights, test_set.labels)
    last = metrics.get("last_epoch") or {}
    tail = evaluated.tail(5)
    nonzero = evaluated.loc[evaluated["mAP@0.5"] > 0, "epoch"]
    return {
        "setting": cell.setting, "seed": cell.seed, "data_seed": cell.data_seed,
        "world": cell.world, "factor": cell.factor, "level": cell.level,
        "preset": cfg.data.synthetic, "epochs": cfg.train.epochs,
        "eval_every": cfg.eval.eval_every, "lr": cfg.train.lr,
        "hidden_dim": cfg.model.hidden_dim, "threads": cfg.train.num_threads,
        "best_epoch": int(metrics["best_epoch"]),
        "mAP@0.5": metrics["mAP@0.5"],
        "average_mAP@0.1:0.7": metrics["average_mAP@0.1:0.7"],
        "average_mAP@0.1:0.5": metrics["average_mAP@0.1:0.5"],
        "classification_mAP": metrics.get("classification_mAP"),
        "best_boot_lo_mAP@0.5": boot["best"][0], "best_boot_hi_mAP@0.5": boot["best"][1],
        "last_mAP@0.5": last.get("mAP@0.5"),
        "last_average_mAP@0.1:0.7": last.get("average_mAP@0.1:0.7"),
        "last_boot_lo_mAP@0.5": boot["last"][0], "last_boot_hi_mAP@0.5": boot["last"][1],
        "last5_mAP@0.5": float(tail["mAP@0.5"].mean()),
        "last5_average_mAP@0.1:0.7": float(tail["average_mAP@0.1:0.7"].mean()),
        "first_detection_epoch": int(nonzero.iloc[0]) if len(nonzero) else np.nan,
        "consistency": consistency,
        "wall_time_s": metrics.get("wall_time_s"),
        "torch": metrics.get("torch"),
        "precision": metrics.get("precision", "fp32"),
        "aggregation_path": metrics.get("aggregation_path"),
        "command": cell.command(),
    }


def collect_curves(cells: Sequence[Cell], root: str | Path) -> Any:
    """The evaluated epochs of every finished cell: one row per (cell, evaluated epoch)."""
    import pandas as pd
    frames = []
    keep = ["epoch", "loss_total", "mAP@0.5", "average_mAP@0.1:0.7"]
    for cell in cells:
        if not is_done(root, cell):
            continue
        h = pd.read_csv(Path(root) / cell.cell_id / "history.csv")
        h = h.dropna(subset=["mAP@0.5"])[keep]
        h.insert(0, "world", cell.world)
        h.insert(0, "data_seed", cell.data_seed)
        h.insert(0, "seed", cell.seed)
        h.insert(0, "setting", cell.setting)
        frames.append(h)
    cols = ["setting", "seed", "data_seed", "world", *keep]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def write_study(study: Study, root: str | Path, out_dir: str | Path,
                previous: Any = None) -> Any:
    """Collect every finished cell of ``study`` into ``out_dir/<name>.csv`` (+ curves, .md).

    Rows already in ``previous`` (a DataFrame of the same file) are kept as they are, so a
    later session adds the cells it ran without recomputing (or losing) earlier ones.
    Returns the table.
    """
    import pandas as pd
    from ..io import atomic_write_text
    out_dir = Path(out_dir)
    known = {}
    if previous is not None and len(previous):
        for rec in previous.to_dict("records"):
            known[rec["command"]] = rec
    rows, cache = [], {}
    # Group by world so that each world's features are generated once.
    for cell in sorted(study.cells, key=lambda c: (c.data_seed, c.knobs)):
        if cell.command() in known:
            rows.append(known[cell.command()])
        elif is_done(root, cell):
            rows.append(collect_row(cell, root, cache))
    order = {c.command(): i for i, c in enumerate(study.cells)}
    rows.sort(key=lambda r: order.get(r["command"], len(order)))
    table = pd.DataFrame(rows, columns=list(columns_of(study)))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / study.csv_name, table.to_csv(index=False))
    curves_path = out_dir / f"{study.name}_curves.csv"
    curves = collect_curves(study.cells, root)
    if curves_path.is_file():
        # Curves of runs trained elsewhere (an earlier session) whose folders are not here.
        old = pd.read_csv(curves_path)
        here = {(c.setting, c.seed, c.data_seed, c.world) for c in study.cells
                if is_done(root, c)}
        keys = list(zip(old["setting"], old["seed"], old["data_seed"], old["world"]))
        old = old[[k not in here for k in keys]]
        curves = pd.concat([old, curves], ignore_index=True) if len(old) else curves
    atomic_write_text(curves_path, curves.to_csv(index=False))
    atomic_write_text(out_dir / f"{study.name}.md", summary_markdown(study, table, curves))
    return table


def read_study(name: str, results_dir: str | Path | None = None) -> Any:
    """A results file of record as a DataFrame, checked row by row against its study's plan
    (:func:`ecmlib.studies.results.read_results`: a clear error naming file, line and column)."""
    from .results import read_results
    study = next((s for s in studies().values() if s.name == name), None)
    if study is None:
        raise ValueError(f"no study of record is named {name!r}")
    folder = Path(results_dir or default_results_dir())
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such results folder")
    return read_results(folder / study.csv_name, study.cells, columns_of(study))


def read_curves(study: Study, results_dir: str | Path | None = None) -> Any:
    """The ``_curves.csv`` beside a results file (every evaluated epoch of every run)."""
    import pandas as pd
    path = Path(results_dir or default_results_dir()) / f"{study.name}_curves.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no curves beside the results file (run `python -m "
                                f"ecmlib record --collect-only`)")
    return pd.read_csv(path)


def default_results_dir() -> Path:
    """``data/results`` of the repository."""
    from ..io import repo_root
    return repo_root() / "data" / "results"


# -- statistics -----------------------------------------------------------------------------

#: Model selections reported: the column prefix of each.
SELECTIONS = {"best": "", "last": "last_", "last5": "last5_"}
METRIC_NAMES = ("mAP@0.5", "average_mAP@0.1:0.7")


def t_interval(diffs: Any, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lower, upper) of a t confidence interval of the mean of ``diffs``.

    NaN bounds for fewer than two values (no spread to estimate).
    """
    import numpy as np
    from scipy import stats
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(d.mean())
    if d.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return mean, mean - half, mean + half


def verdict(lo: float, hi: float) -> str:
    """'better' / 'worse' (than the baseline) when the interval excludes 0, else
    'no difference'; 'n/a' without an interval."""
    import math
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "no difference"


def paired_summary(table: Any, baseline: str = "ecm", pair_keys: Sequence[str] = (
        "seed", "data_seed", "world")) -> Any:
    """Per setting, metric and model selection: mean ± sd over runs, and the paired
    difference to ``baseline`` (setting − baseline, matched on ``pair_keys``) with its
    95 % t interval and verdict. Metric values stay fractions."""
    import numpy as np
    import pandas as pd
    rows = []
    base = table[table["setting"] == baseline].set_index(list(pair_keys))
    for setting, grp in table.groupby("setting", sort=False):
        for sel, prefix in SELECTIONS.items():
            for metric in METRIC_NAMES:
                col = prefix + metric
                vals = grp[col].to_numpy(dtype=np.float64)
                g = grp.set_index(list(pair_keys))[col]
                common = g.index.intersection(base.index)
                diffs = (g.loc[common] - base.loc[common, col]).to_numpy(dtype=np.float64)
                mean_d, lo, hi = (t_interval(diffs) if setting != baseline
                                  else (float("nan"),) * 3)
                rows.append({"setting": setting, "selection": sel, "metric": metric,
                             "n": int(np.isfinite(vals).sum()), "mean": float(np.nanmean(vals)),
                             "sd": float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else np.nan,
                             "n_pairs": int(len(common)) if setting != baseline else 0,
                             "diff": mean_d, "diff_lo": lo, "diff_hi": hi,
                             "verdict": verdict(lo, hi) if setting != baseline else "baseline"})
    return pd.DataFrame(rows, columns=["setting", "selection", "metric", "n", "mean", "sd",
                                       "n_pairs", "diff", "diff_lo", "diff_hi", "verdict"])


def _ecm_and_pre(grp: Any) -> tuple[Any, Any]:
    """ECM's and pre-only's runs of one world, indexed by seed, on the seeds both have."""
    ecm = grp[grp["setting"] == "ecm"].set_index("seed")
    pre = grp[grp["setting"] == "pre_only"].set_index("seed")
    common = ecm.index.intersection(pre.index)
    return ecm.loc[common], pre.loc[common]


def _factor_column(table: Any) -> Any:
    """The ``factor`` column with the default world's empty factor as '' (CSV reads NaN)."""
    import pandas as pd
    return table["factor"].map(lambda v: "" if pd.isna(v) else str(v))


def world_summary(table: Any) -> Any:
    """Notebook 07: per factor and level, ECM − pre-only (paired by seed) with 95 % t
    intervals, for each metric and model selection."""
    factor_col = _factor_column(table)
    factors = [f for f in WORLDS if f in set(factor_col)] or list(WORLDS)
    groups = []
    for factor in factors:
        for level in LEVELS:
            # The default world's runs (factor empty) are every factor's middle level.
            pick = (table["level"] == level) & ((factor_col == factor) | (level == "default"))
            groups.append((factor, level, table[pick]))
    return _paired_worlds(groups)


def _paired_worlds(groups: Sequence[tuple[str, str, Any]]) -> Any:
    """ECM − pre-only (paired by seed, 95 % t interval) in each (factor, level, runs) world,
    for each metric and model selection; worlds without runs are left out."""
    import numpy as np
    import pandas as pd
    rows = []
    for factor, level, grp in groups:
        if not len(grp):
            continue
        ecm, pre = _ecm_and_pre(grp)
        for sel, prefix in SELECTIONS.items():
            for metric in METRIC_NAMES:
                col = prefix + metric
                d = (ecm[col] - pre[col]).to_numpy(dtype=np.float64)
                mean_d, lo, hi = t_interval(d)
                rows.append({"factor": factor, "level": level, "selection": sel,
                             "metric": metric, "n_pairs": int(len(ecm)),
                             "ecm": float(ecm[col].mean()) if len(ecm) else np.nan,
                             "pre_only": float(pre[col].mean()) if len(ecm) else np.nan,
                             "diff": mean_d, "diff_lo": lo, "diff_hi": hi,
                             "verdict": verdict(lo, hi)})
    return pd.DataFrame(rows, columns=["factor", "level", "selection", "metric", "n_pairs",
                                       "ecm", "pre_only", "diff", "diff_lo", "diff_hi",
                                       "verdict"])


def ingredient_summary(table: Any) -> Any:
    """Notebook 07b: ECM − pre-only in each world of :func:`ingredient_worlds`, in the
    declared order (``factor`` holds the design group, ``level`` the world's name)."""
    groups = [(g, name, table[(table["factor"] == g) & (table["level"] == name)])
              for g, name, _ in ingredient_worlds()]
    return _paired_worlds(groups)


def _seed_gaps(table: Any, pick: Any, col: str) -> Any:
    """ECM − pre-only per seed in the runs ``table[pick]`` (seeds both methods have)."""
    import numpy as np
    ecm, pre = _ecm_and_pre(table[pick])
    return (ecm[col] - pre[col]).to_numpy(dtype=np.float64)


def _in(table: Any, factor: str, level: str) -> Any:
    return (_factor_column(table) == factor) & (table["level"] == level)


def lead_changes(table07b: Any, selection: str = "last", metric: str = "mAP@0.5") -> Any:
    """Study 07b: how ECM's lead over pre-only in each world differs from its lead in the
    minimal world (Welch's 95 % interval: the worlds' seeds are independent samples).
    Declared after the first 07b results had been seen, and reported as such."""
    import pandas as pd
    col = SELECTIONS[selection] + metric
    base = _seed_gaps(table07b, _in(table07b, "minimal", "all_off"), col)
    rows = []
    for group, name, _ in ingredient_worlds()[1:]:
        gaps = _seed_gaps(table07b, _in(table07b, group, name), col)
        change, lo, hi = welch_interval(base, gaps)
        word = {"better": "larger", "worse": "smaller"}.get(verdict(lo, hi), verdict(lo, hi))
        rows.append({"design": group, "world": name, "metric": metric, "selection": selection,
                     "n": int(gaps.size),
                     "lead": float(gaps.mean()) if gaps.size else float("nan"),
                     "lead_minimal": float(base.mean()), "change": change, "change_lo": lo,
                     "change_hi": hi, "verdict": word})
    return pd.DataFrame(rows)


def switch_effects(table07: Any, table07b: Any, selection: str = "last",
                   metric: str = "mAP@0.5") -> Any:
    """Each named factor's effect on ECM's lead, measured two ways: switched off from the
    default world (07, one at a time: lead(default) − lead(off)) and switched on in the
    minimal world (07b, add one: lead(add) − lead(minimal)). Both are 'the lead with the
    factor minus the lead without it'; with no interactions they agree. Welch's 95 %
    intervals (independent seeds); ``agree`` compares the signs where both are resolved."""
    import numpy as np
    import pandas as pd
    col = SELECTIONS[selection] + metric

    def effect(t: Any, with_: tuple[str, str], without: tuple[str, str]) -> tuple:
        a, b = _seed_gaps(t, _in(t, *without), col), _seed_gaps(t, _in(t, *with_), col)
        return welch_interval(a, b) if a.size and b.size else (np.nan,) * 3

    rows = []
    for factor in ("context", "boundary", "subactions", "distractors", "variation"):
        # 07's default world has no factor: the empty factor and level 'default'.
        one = effect(table07, ("", "default"), (factor, "off")) if factor in WORLDS \
            else (np.nan,) * 3
        add = effect(table07b, ("add", factor), ("minimal", "all_off"))
        signs = [np.sign(e[0]) for e in (one, add) if np.isfinite(e[1]) and (e[1] > 0 or e[2] < 0)]
        rows.append({"factor": factor, "one_at_a_time": one[0], "one_at_a_time_lo": one[1],
                     "one_at_a_time_hi": one[2], "add_one": add[0], "add_one_lo": add[1],
                     "add_one_hi": add[2],
                     "agree": "n/a" if len(signs) < 2 else ("yes" if signs[0] == signs[1]
                                                             else "no")})
    return pd.DataFrame(rows)


def run_length_summary(table: Any, curves: Any, at: int | None = None) -> Any:
    """Study 07c: ECM − pre-only at epoch ``at`` (default: half the runs' length, the
    protocol's 150) and at the last epoch of the long runs (paired by seed), and the change
    of that gap between them (t interval over seeds): does the gap grow, hold or shrink
    after the protocol's length?"""
    import numpy as np
    import pandas as pd
    rows = []
    at = int(table["epochs"].max()) // 2 if at is None else at
    for metric in METRIC_NAMES:
        c = curves[curves["epoch"] == at]
        mid = c.pivot_table(index="seed", columns="setting", values=metric)
        end = table.pivot_table(index="seed", columns="setting", values="last_" + metric)
        if not {"ecm", "pre_only"} <= set(mid.columns) & set(end.columns):
            continue
        both = pd.concat([mid[["ecm", "pre_only"]].add_suffix("_mid"),
                          end[["ecm", "pre_only"]].add_suffix("_end")], axis=1).dropna()
        seeds = both.index
        gap_mid = (both["ecm_mid"] - both["pre_only_mid"]).to_numpy(np.float64)
        gap_end = (both["ecm_end"] - both["pre_only_end"]).to_numpy(np.float64)
        change, lo, hi = t_interval(gap_end - gap_mid)
        word = {"better": "grows", "worse": "shrinks", "no difference": "holds"}.get(
            verdict(lo, hi), "n/a")
        last_epoch = int(table["epochs"].max())
        rows.append({"metric": metric, "n_pairs": int(len(seeds)), "epoch_mid": at,
                     "epoch_end": last_epoch,
                     "ecm_mid": float(both["ecm_mid"].mean()),
                     "pre_mid": float(both["pre_only_mid"].mean()),
                     "ecm_end": float(both["ecm_end"].mean()),
                     "pre_end": float(both["pre_only_end"].mean()),
                     "gap_mid": float(gap_mid.mean()), "gap_end": float(gap_end.mean()),
                     "change": change, "change_lo": lo, "change_hi": hi, "verdict": word})
    return pd.DataFrame(rows)


def welch_interval(a: Any, b: Any, level: float = 0.95) -> tuple[float, float, float]:
    """(mean(b) − mean(a), lower, upper): Welch's t interval for a difference of means of
    two independent samples (unequal variances, Welch–Satterthwaite degrees of freedom).

    NaN bounds when either sample has fewer than two values or both have no spread.
    """
    import numpy as np
    from scipy import stats
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan"), float("nan")
    diff = float(b.mean() - a.mean())
    if a.size < 2 or b.size < 2:
        return diff, float("nan"), float("nan")
    if a.var(ddof=1) + b.var(ddof=1) == 0:  # no spread: scipy would divide by zero
        return diff, float("nan"), float("nan")
    ci = stats.ttest_ind(b, a, equal_var=False).confidence_interval(level)
    return diff, float(ci.low), float(ci.high)


def world_trend(table: Any, selection: str = "last") -> Any:
    """Notebook 07, secondary analysis: per factor, moved level (``off``, ``strong``) and
    metric, how ECM's lead over pre-only in that world differs from its lead in the
    default world.

    ``gap`` and ``gap_default`` are the mean paired differences ECM − pre-only (by seed)
    in the moved and the default world; ``change`` = gap − gap_default with Welch's 95 %
    interval (the two worlds' seeds are independent samples, not pairs); ``verdict``
    'larger' / 'smaller' / 'no difference'. Both sides of a non-monotonic factor show.
    Declared after the first results of the grid and reported as such.
    """
    import pandas as pd
    factor_col = _factor_column(table)

    def gaps(pick: Any) -> Any:
        return {m: _seed_gaps(table, pick, SELECTIONS[selection] + m) for m in METRIC_NAMES}

    base = gaps(table["level"] == "default")
    rows = []
    for factor in WORLDS:
        for level in ("off", "strong"):
            moved = gaps((factor_col == factor) & (table["level"] == level))
            for metric in METRIC_NAMES:
                if not (moved[metric].size and base[metric].size):
                    continue
                change, lo, hi = welch_interval(base[metric], moved[metric])
                word = verdict(lo, hi)
                word = {"better": "larger", "worse": "smaller"}.get(word, word)
                rows.append({"factor": factor, "level": level, "metric": metric,
                             "selection": selection, "n": int(moved[metric].size),
                             "n_default": int(base[metric].size),
                             "gap": float(moved[metric].mean()),
                             "gap_default": float(base[metric].mean()), "change": change,
                             "change_lo": lo, "change_hi": hi, "verdict": word})
    return pd.DataFrame(rows, columns=["factor", "level", "metric", "selection", "n",
                                       "n_default", "gap", "gap_default", "change",
                                       "change_lo", "change_hi", "verdict"])


def markdown_trend_table(trend: Any) -> str:
    """The :func:`world_trend` table in points."""
    out = ["ECM's lead over pre-only in each moved world against its lead in the default "
           "world (Welch 95 % interval; a secondary analysis)", "",
           "| factor | level | metric | pairs (default) | Δ | Δ default | change [95 % CI] | verdict |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in trend.to_dict("records"):
        out.append(f"| {r['factor']} | {r['level']} | {r['metric']} | {r['n']} ({r['n_default']}) | "
                   f"{_pct(r['gap'])} | {_pct(r['gap_default'])} | {_pct(r['change'])} "
                   f"[{_pct(r['change_lo'])}, {_pct(r['change_hi'])}] | {r['verdict']} |")
    return "\n".join(out)


def _pct(x: float) -> str:
    import math
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


def summary_markdown(study: Study, table: Any, curves: Any = None) -> str:
    """The .md summary beside a results file: planned vs finished runs and the tables."""
    planned = len(study.cells)
    proto = study.cells[0] if study.cells else Cell("ecm", 0)
    lines = [f"# {study.name}: results of record (synthetic `{proto.preset}`)", "",
             f"{len(table)} of {planned} planned runs finished. Protocol: "
             f"{proto.epochs} epochs, the paper's Adam (lr 2e-4, batch 16), H = 128, "
             f"evaluation every {proto.eval_every} epochs, {proto.threads} torch thread(s) "
             "per run. Synthetic numbers, mAP in %. Written by `python -m ecmlib record`; "
             "each row's `command` reproduces it.", ""]
    if not len(table):
        return "\n".join(lines + ["No run has finished yet.", ""])
    if study.name.startswith("07b"):
        lines += [markdown_world_table(ingredient_summary(table), "last", ("design", "world")),
                  ""]
    elif study.name.startswith("07c"):
        if curves is not None:
            lines += [markdown_run_length_table(run_length_summary(table, curves)), ""]
    elif study.name.startswith("07"):
        lines += [markdown_world_table(world_summary(table)), ""]
    else:
        lines += [markdown_paired_table(paired_summary(table)), ""]
    return "\n".join(lines)


def markdown_paired_table(summary: Any, metric: str = "mAP@0.5") -> str:
    """Settings × selections for one metric: mean ± sd and Δ vs ECM [95 % CI] (verdict)."""
    out = [f"**{metric}** (mean ± sd over runs; Δ = setting − ECM, paired by seed, "
           "95 % t interval; verdict at 95 %)", "",
           "| setting | runs | best epoch (test-selected) | Δ best | last epoch | Δ last | "
           "mean of last 5 evaluations | Δ last 5 | verdict (last) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    s = summary[summary["metric"] == metric]
    for setting in dict.fromkeys(s["setting"]):
        cells = [setting]
        by = {r["selection"]: r for r in s[s["setting"] == setting].to_dict("records")}
        cells.append(str(by["best"]["n"]))
        for sel in ("best", "last", "last5"):
            r = by[sel]
            cells.append(f"{_pct(r['mean'])} ± {_pct(r['sd'])}")
            cells.append("—" if r["verdict"] == "baseline" else
                         f"{_pct(r['diff'])} [{_pct(r['diff_lo'])}, {_pct(r['diff_hi'])}]")
        cells.append(by["last"]["verdict"])
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def markdown_world_table(summary: Any, selection: str = "last",
                         heads: tuple[str, str] = ("factor", "level")) -> str:
    """Factor × level: ECM, pre-only and ECM − pre-only [95 % CI] for both metrics."""
    out = [f"ECM − pre-only, paired by seed, model of the {selection} epoch "
           "(95 % t interval; verdict at 95 %)", "",
           f"| {heads[0]} | {heads[1]} | pairs | mAP@0.5 ECM | pre-only | Δ [95 % CI] | verdict | "
           "avg 0.1:0.7 Δ [95 % CI] | verdict |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    s = summary[summary["selection"] == selection]
    for (factor, level), grp in s.groupby(["factor", "level"], sort=False):
        a = grp[grp["metric"] == "mAP@0.5"].iloc[0]
        b = grp[grp["metric"] == "average_mAP@0.1:0.7"].iloc[0]
        out.append(f"| {factor} | {level} | {a['n_pairs']} | {_pct(a['ecm'])} | "
                   f"{_pct(a['pre_only'])} | {_pct(a['diff'])} [{_pct(a['diff_lo'])}, "
                   f"{_pct(a['diff_hi'])}] | {a['verdict']} | {_pct(b['diff'])} "
                   f"[{_pct(b['diff_lo'])}, {_pct(b['diff_hi'])}] | {b['verdict']} |")
    return "\n".join(out)


def _md_table(caption: str, heads: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A caption line, a blank line and a markdown table."""
    out = [caption, "", "| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _ci(r: Any, key: str) -> str:
    """'value [lo, hi]' in points from r[key], r[key_lo] and r[key_hi]."""
    return f"{_pct(r[key])} [{_pct(r[key + '_lo'])}, {_pct(r[key + '_hi'])}]"


def fast_validation(fast: Any, fp32: Any, selection: str = "last",
                    metric: str = "mAP@0.5") -> tuple[Any, Any]:
    """Study 09: fast-mode runs against the record's fp32 runs of the same (setting, seed,
    data seed). Returns (per-run table: both values and fast − fp32; gap table: ECM −
    pre-only in each precision with its 95 % t interval and verdict, and whether the
    verdict is the same)."""
    import numpy as np
    import pandas as pd
    col = SELECTIONS[selection] + metric
    keys = ["setting", "seed", "data_seed"]
    a = fast.set_index(keys)[col].rename("fast")
    b = fp32.set_index(keys)[col].rename("fp32")
    runs = pd.concat([a, b], axis=1, join="inner")
    if "aggregation_path" in fast:
        runs["path"] = fast.set_index(keys)["aggregation_path"]
    runs = runs.reset_index()
    runs["fast_minus_fp32"] = runs["fast"] - runs["fp32"]
    rows = []
    for name in ("fast", "fp32"):
        wide = runs.pivot_table(index=["seed", "data_seed"], columns="setting", values=name)
        if not {"ecm", "pre_only"} <= set(wide.columns):
            continue
        gap = (wide["ecm"] - wide["pre_only"]).dropna().to_numpy(np.float64)
        mean, lo, hi = t_interval(gap)
        rows.append({"precision": name, "n_pairs": int(gap.size), "gap": mean,
                     "gap_lo": lo, "gap_hi": hi, "verdict": verdict(lo, hi)})
    gaps = pd.DataFrame(rows, columns=["precision", "n_pairs", "gap", "gap_lo", "gap_hi",
                                       "verdict"])
    if len(gaps) == 2:
        same = gaps["verdict"].iloc[0] == gaps["verdict"].iloc[1]
        gaps["same_verdict"] = "yes" if same else "no"
    return runs, gaps


def markdown_fast_tables(runs: Any, gaps: Any, metric: str = "mAP@0.5") -> str:
    """:func:`fast_validation` in points."""
    out = _md_table(f"Each run in fast mode against the record's fp32 run of the same setting "
                    f"and seed ({metric}, last epoch)",
                    ["setting", "seed", "fast", "its aggregation path", "fp32 (record)",
                     "fast − fp32"],
                    [[r["setting"], str(r["seed"]), _pct(r["fast"]), str(r.get("path", "—")),
                      _pct(r["fp32"]), _pct(r["fast_minus_fp32"])]
                     for r in runs.to_dict("records")])
    out += [""] + _md_table("ECM − pre-only in each mode (paired by seed, 95 % t interval)",
                            ["mode", "pairs", "ECM − pre-only [95 % CI]", "verdict",
                             "same verdict"],
                            [[r["precision"], str(r["n_pairs"]), _ci(r, "gap"), r["verdict"],
                              r.get("same_verdict", "n/a")] for r in gaps.to_dict("records")])
    return "\n".join(out)


def markdown_switch_table(effects: Any) -> str:
    """:func:`switch_effects` in points."""
    return "\n".join(_md_table(
        "Each factor's effect on ECM's lead (lead with the factor − lead without it, mAP@0.5 "
        "points, last epoch; Welch 95 % interval)",
        ["factor", "one at a time (07: default − off)", "add one (07b: add − minimal)",
         "signs agree"],
        [[r["factor"], _ci(r, "one_at_a_time"), _ci(r, "add_one"), r["agree"]]
         for r in effects.to_dict("records")]))


def markdown_lead_changes(changes: Any) -> str:
    """:func:`lead_changes` in points."""
    first = changes.iloc[0] if len(changes) else {"metric": "mAP@0.5", "selection": "last"}
    return "\n".join(_md_table(
        f"ECM's lead in each world against its lead in the minimal world ({first['metric']} "
        f"points, {first['selection']} epoch; Welch 95 % interval; a secondary analysis, "
        f"declared after the first results)",
        ["design", "world", "pairs", "lead", "lead (minimal)", "change [95 % CI]", "verdict"],
        [[r["design"], r["world"], str(r["n"]), _pct(r["lead"]), _pct(r["lead_minimal"]),
          _ci(r, "change"), r["verdict"]] for r in changes.to_dict("records")]))


def markdown_run_length_table(rl: Any) -> str:
    """:func:`run_length_summary` in points."""
    return "\n".join(_md_table(
        "ECM and pre-only on the default world at twice the protocol's length (paired by "
        "seed; change of the gap with its 95 % t interval)",
        ["metric", "pairs", "epochs", "ECM (mid)", "pre-only (mid)", "gap (mid)", "ECM (end)",
         "pre-only (end)", "gap (end)", "change of ECM − pre-only [95 % CI]", "ECM's lead"],
        [[r["metric"], str(r["n_pairs"]), f"{r['epoch_mid']} → {r['epoch_end']}",
          _pct(r["ecm_mid"]), _pct(r["pre_mid"]),
          _pct(r["gap_mid"]), _pct(r["ecm_end"]), _pct(r["pre_end"]), _pct(r["gap_end"]),
          _ci(r, "change"), r["verdict"]] for r in rl.to_dict("records")]))


# -- README tables --------------------------------------------------------------------------

README_MARKERS = {"03": "results-03", "04": "results-04", "07": "results-07",
                  "07b": "results-07b", "07c": "results-07c", "08": "results-08",
                  "09": "results-09"}


def readme_block(key: str, results_dir: str | Path | None = None) -> str:
    """The generated README text of one study (between its markers)."""
    study = studies()[key]
    table = read_study(study.name, results_dir)
    head = (f"{len(table)} of {len(study.cells)} planned runs finished "
            f"(`data/results/{study.csv_name}`). ")
    if not len(table):
        return head + "No run has finished yet."
    if key == "07b":
        w = ingredient_summary(table)
        effects = switch_effects(read_study(studies()["07"].name, results_dir), table)
        changes = lead_changes(table)
        return (head + "\n\n" + markdown_world_table(w, "last", ("design", "world")) + "\n\n"
                + markdown_switch_table(effects) + "\n\n" + markdown_lead_changes(changes)
                + "\n\n" + "What this says: " + world_sentences(w))
    if key == "09":
        fp32 = read_study(studies()["03"].name, results_dir)
        runs, gaps = fast_validation(table, fp32[fp32["data_seed"] == 0])
        return head + "\n\n" + markdown_fast_tables(runs, gaps)
    if key == "07c":
        curves = read_curves(study, results_dir)
        return head + "\n\n" + markdown_run_length_table(run_length_summary(table, curves))
    if key == "07":
        w, trend = world_summary(table), world_trend(table)
        extra = ("\n\n" + markdown_trend_table(trend)) if len(trend) else ""
        return (head + "\n\n" + markdown_world_table(w) + extra + "\n\n"
                + "What this says: " + world_sentences(w))
    s = paired_summary(table)
    return (head + "\n\n" + markdown_paired_table(s, "mAP@0.5") + "\n\n"
            + markdown_paired_table(s, "average_mAP@0.1:0.7") + "\n\n"
            + "What this says: " + paired_sentences(s))


def _delta(r: Any) -> str:
    import math
    if not (math.isfinite(r["diff_lo"]) and math.isfinite(r["diff_hi"])):
        return f"Δ {100 * r['diff']:+.2f} points, {r['n_pairs']} pair(s), no interval yet"
    return (f"Δ {100 * r['diff']:+.2f} [{100 * r['diff_lo']:+.2f}, {100 * r['diff_hi']:+.2f}] "
            f"points, {r['n_pairs']} pairs")


def paired_sentences(summary: Any, selection: str = "last", metric: str = "mAP@0.5") -> str:
    """One sentence per setting: its verdict against ECM at ``selection`` (generated, so
    the prose cannot drift from the numbers)."""
    s = summary[(summary["selection"] == selection) & (summary["metric"] == metric)]
    parts = []
    for r in s.to_dict("records"):
        if r["verdict"] == "baseline":
            continue
        word = {"better": "is better than ECM", "worse": "is worse than ECM",
                "no difference": "is not distinguishable from ECM",
                "n/a": "has too few paired runs for an interval"}[r["verdict"]]
        parts.append(f"`{r['setting']}` {word} ({_delta(r)})")
    if not parts:
        return "no setting has a paired ECM run yet."
    return (f"at the {selection} epoch, {metric} at 95 %: " + "; ".join(parts) + ".")


def world_sentences(summary: Any, selection: str = "last", metric: str = "mAP@0.5") -> str:
    """One clause per (factor, level): ECM's verdict against pre-only at ``selection``."""
    s = summary[(summary["selection"] == selection) & (summary["metric"] == metric)]
    parts = []
    default_said = False
    for r in s.to_dict("records"):
        word = {"better": "ECM beats pre-only", "worse": "pre-only beats ECM",
                "no difference": "no difference", "n/a": "too few pairs"}[r["verdict"]]
        if r["level"] == "default":
            # One shared world: said once, not once per factor.
            if default_said:
                continue
            default_said = True
            parts.append(f"the default world (every factor's middle level): {word} ({_delta(r)})")
        else:
            parts.append(f"{r['factor']} {r['level']}: {word} ({_delta(r)})")
    if not parts:
        return "no world has a finished pair yet."
    return f"ECM − pre-only at the {selection} epoch, {metric} at 95 %: " + "; ".join(parts) + "."


def render_readme(text: str, results_dir: str | Path | None = None) -> str:
    """``text`` with every ``<!-- results-NN -->`` ... ``<!-- /results-NN -->`` block
    regenerated from the results files."""
    import re
    for key, marker in README_MARKERS.items():
        pattern = re.compile(rf"(<!-- {marker} -->\n)(.*?)(<!-- /{marker} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README: marker <!-- {marker} --> ... <!-- /{marker} --> not found")
        block = readme_block(key, results_dir)
        text = pattern.sub(lambda m: m.group(1) + block + "\n" + m.group(3), text)
    return text


def report_main(argv: list[str] | None = None) -> int:
    """``python -m ecmlib report [--check]``: regenerate the README's results tables."""
    import argparse
    from ..io import atomic_write_text
    parser = argparse.ArgumentParser(prog="python -m ecmlib report",
                                     description="Rewrite the README's results tables from "
                                                 "data/results/*.csv")
    parser.add_argument("--readme", default=str(default_results_dir().parent.parent / "README.md"))
    parser.add_argument("--results", default=None, help="results folder (default: data/results)")
    parser.add_argument("--check", action="store_true",
                        help="only check: exit 1 when the README disagrees with the results")
    args = parser.parse_args(argv)
    path = Path(args.readme)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such README to render the results into")
    old = path.read_text()
    new = render_readme(old, args.results)
    if args.check:
        if new != old:
            print(f"{path}: results tables differ from data/results; run "
                  f"`python -m ecmlib report`", file=sys.stderr)
            return 1
        print(f"{path}: results tables agree with data/results")
        return 0
    if new != old:
        atomic_write_text(path, new)
        print(f"{path}: results tables rewritten")
    else:
        print(f"{path}: already up to date")
    return 0


def record_main(argv: list[str] | None = None) -> int:
    """``python -m ecmlib record``: run the cells of record and write data/results/."""
    import argparse
    parser = argparse.ArgumentParser(
        prog="python -m ecmlib record",
        description="Train the runs of record (notebooks 03, 04, 07) at the paper protocol, "
                    "resumably, then collect them into data/results/<study>.csv.")
    parser.add_argument("--study", nargs="+", default=["03", "04", "07"],
                        choices=["03", "04", "07", "07b", "07c", "08", "09"])
    parser.add_argument("--root", default="runs/record", help="run folders (default: %(default)s)")
    parser.add_argument("--results", default=None, help="results folder (default: data/results)")
    from .executor import add_executor_args, executor_options
    add_executor_args(parser, "runs at a time on this machine (each run uses one torch "
                              "thread; default: one per core)")
    parser.add_argument("--collect-only", action="store_true",
                        help="do not train: collect the finished cells only")
    parser.add_argument("--list", action="store_true", help="print each cell's command and exit")
    parser.add_argument("--fast", action="store_true",
                        help="every run in fast mode (train.fast=true), into <study>_fast.csv: "
                             "numbers that differ from the record by rounding (see study 09)")
    args = parser.parse_args(argv)
    if args.fast and "09" in args.study:
        parser.error("--fast: study 09 is fast mode already")
    all_studies = studies(fast=args.fast)
    cells = plan(args.study, fast=args.fast)
    from .results import read_results
    out = Path(args.results or default_results_dir())
    # Runs already in a results file (e.g. trained in an earlier session) are not re-run;
    # a file is checked before any of its rows is kept.
    previous: dict[str, Any] = {}
    recorded: set[str] = set()
    for key in args.study:
        study = all_studies[key]
        path = out / study.csv_name
        if path.is_file():
            previous[key] = read_results(path, study.cells, columns_of(study))
            recorded |= set(previous[key]["command"])
    if args.list:
        for c in cells:
            state = ("recorded" if c.command() in recorded
                     else "done" if is_done(args.root, c) else "todo")
            print(f"{state:<9} {c.command()}")
        return 0
    todo = [c for c in cells if c.command() not in recorded]
    if len(todo) < len(cells):
        print(f"{len(cells) - len(todo)} cell(s) already in the results files: not re-run")
    opts = executor_options(args)
    jobs = opts.pop("jobs")
    failures = [] if args.collect_only else run_cells(todo, args.root, jobs, **opts)
    for key in args.study:
        study = all_studies[key]
        table = write_study(study, args.root, out, previous.get(key))
        print(f"{out / study.csv_name}: {len(table)} of {len(study.cells)} runs")
    if failures:
        print(f"{len(failures)} cell(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


# -- what the notebooks call ----------------------------------------------------------------

#: The cells of each study's quick check (a tiny grid through the same code as the record).
QUICK_CELLS = {"03": ("ecm", "pre_only"), "04": ("fixed_transition", "independent_transition"),
               "07": ("ecm", "pre_only"), "07b": ("ecm", "pre_only"), "07c": ("ecm", "pre_only"),
               "08": ("ecm", "weight_sparsity"), "09": ("ecm", "pre_only")}
#: The one world of each world study that its quick check trains.
QUICK_WORLD = {"07": ("context", "off"), "07b": ("minimal", "all_off"), "07c": ("", "default")}
QUICK_PROTOCOL = {"preset": "tiny", "epochs": 2, "eval_every": 1}


def quick_grid(key: str, out: str | Path, jobs: int = 2) -> Any:
    """Train and collect a tiny grid of study ``key`` under ``out`` (``tiny`` preset,
    2 epochs, one seed): proves that the record's code runs, in seconds. Returns the table."""
    study = studies(seeds=1, data_seeds=(), world_seeds=1, protocol=QUICK_PROTOCOL)[key]
    cells = [c for c in study.cells if c.setting in QUICK_CELLS[key]
             and (key not in QUICK_WORLD or (c.factor, c.level) == QUICK_WORLD[key])]
    out = Path(out)
    failures = run_cells(cells, out / "runs", jobs=jobs)
    if failures:
        raise RuntimeError("quick grid failed:\n  " + "\n  ".join(failures))
    return write_study(Study(study.name, tuple(cells)), out / "runs", out / "results")


def load_results(key: str, mode: str = "record", results_dir: str | Path | None = None,
                 runs_root: str | Path = "runs/record", jobs: int = 1,
                 scheduler: str | None = None) -> tuple[Any, Any]:
    """(results table, curves) of study ``key`` for a notebook.

    ``mode='record'`` reads the committed files; ``'full'`` first trains every missing cell
    of the study under ``runs_root`` and rewrites the results files (hours on a CPU), on
    the local Dask cluster or on ``scheduler`` (``tcp://HOST:PORT``).
    """
    import pandas as pd
    if mode not in ("record", "full"):
        raise ValueError(f"mode must be 'record' or 'full', got {mode!r}")
    study = studies()[key]
    if mode == "full":
        argv = ["--study", key, "--root", str(runs_root), "--jobs", str(jobs)]
        if scheduler:
            argv += ["--scheduler", str(scheduler)]
        if results_dir:
            argv += ["--results", str(results_dir)]
        if record_main(argv) != 0:
            raise RuntimeError(f"study {key}: some cells failed (see above)")
    table = read_study(study.name, results_dir)
    curves_path = Path(results_dir or default_results_dir()) / f"{study.name}_curves.csv"
    curves = pd.read_csv(curves_path) if curves_path.is_file() else pd.DataFrame()
    return table, curves


def progress_table(key: str, table: Any) -> Any:
    """Finished vs planned runs per setting (and world) of study ``key``."""
    import pandas as pd
    study = studies()[key]
    planned = pd.DataFrame([{"setting": c.setting, "data_seed": c.data_seed, "world": c.world}
                            for c in study.cells])
    keys = ["setting", "data_seed", "world"]
    out = planned.groupby(keys, sort=False).size().rename("planned").to_frame()
    done = table.groupby(keys, sort=False).size().rename("finished")
    out = out.join(done).fillna({"finished": 0}).astype(int).reset_index()
    return out
