"""From finished run folders to a results file of record: one checked row per cell (every
metric at the best and the last epoch, bootstrap intervals over test videos, the command
that reproduces it), the per-epoch curves beside it, and reading them back checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .design import PROTOCOL, Cell, Study, studies
from .runs import is_done

#: Columns of a results file of record, in order (metric values are fractions).
COLUMNS = ("setting", "seed", "data_seed", "world", "factor", "level", "preset", "epochs",
           "eval_every", "lr", "hidden_dim", "threads", "best_epoch", "mAP@0.5",
           "average_mAP@0.1:0.7", "average_mAP@0.1:0.5", "classification_mAP",
           "best_boot_lo_mAP@0.5", "best_boot_hi_mAP@0.5", "last_mAP@0.5",
           "last_average_mAP@0.1:0.7", "last_boot_lo_mAP@0.5", "last_boot_hi_mAP@0.5",
           "last5_mAP@0.5", "last5_average_mAP@0.1:0.7", "first_detection_epoch",
           "consistency", "wall_time_s", "torch", "command")


#: Extra columns of a study with fast-mode runs: what each run computed in.
FAST_COLUMNS = ("precision", "aggregation_path", "dropout_mask")


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
    from ..io import read_json
    from ..training.checkpoint import config_differences
    path = run_dir / "config.json"
    saved = read_json(path)                       # a ValueError naming the file
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
    from ..io import read_json
    from ..method.evaluation import bootstrap_map
    from ..training.checkpoint import load_checkpoint
    from ..training.inference import detect, predict
    from ..training.setup import ground_truth_for
    run_dir = Path(root) / cell.cell_id
    cfg, test_set = _test_split(cell, cache if cache is not None else {})
    check_run_is_cell(cell, run_dir, cfg)
    metrics = read_json(run_dir / "metrics.json")  # ValueError naming the file
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
        # runs from before the option existed drew torch's masks
        "dropout_mask": metrics.get("dropout_mask", "torch"),
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
