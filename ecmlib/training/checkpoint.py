"""Checkpoints and resuming.

A checkpoint is the authors' format ``{'epoch', 'state_dict', 'optimizer'}`` plus ecmlib's
extras (config, history, best epoch, RNG states), written atomically and read with
``torch.load(weights_only=True)``: nothing in a file runs.

A resume runs on the run's own configuration. Two kinds of keys may differ: the epoch
budget (a run may be extended, never cut below the epochs it has done), and where the run
executes (device, CPU threads: the continuation runs, with a warning that it cannot repeat
the uninterrupted run bit for bit). Any other difference is refused, naming the keys.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.safeload import load_checkpoint_file
from ..io import atomic_write, atomic_write_json, atomic_write_text, read_json, write_failure
from ..method.model import ECMNet, ModelConfig
from .config import SECTIONS, ExperimentConfig


# -- reading and writing ------------------------------------------------------------------


def infer_config(state: dict[str, torch.Tensor], **defaults: Any) -> ModelConfig:
    """Read feat_dim, hidden_dim and num_classes off an official state dict."""
    try:
        hidden, feat, _ = state["base_module.conv_1.weight"].shape
        num_classes = state["classifier_module.conv.weight"].shape[0]
    except KeyError as err:
        raise ValueError(f"state dict lacks {err}: not an ECM checkpoint") from None
    return ModelConfig(**{**defaults, "feat_dim": int(feat), "hidden_dim": int(hidden),
                          "num_classes": int(num_classes)})


def check_compatible(state: dict[str, torch.Tensor], cfg: ModelConfig, source: str) -> None:
    """Raise a clear error when a checkpoint was trained for another width or class count."""
    found = infer_config(state, num_snippets=cfg.num_snippets, topk_ratio=cfg.topk_ratio)
    problems = [f"{name} is {getattr(found, name)} in the checkpoint but {getattr(cfg, name)} "
                f"in the config" for name in ("feat_dim", "hidden_dim", "num_classes")
                if getattr(found, name) != getattr(cfg, name)]
    if problems:
        raise ValueError(f"{source}: checkpoint does not fit the model: " + "; ".join(problems))


def load_checkpoint(path: str | Path, cfg: ModelConfig | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[ECMNet, dict[str, Any]]:
    """Load an official-format checkpoint ``{'epoch', 'state_dict', 'optimizer'}``.

    With ``cfg`` the checkpoint must fit it (else a ValueError says which value differs);
    without, the widths are read off the weights. Returns (model in eval mode, raw dict).
    """
    path = Path(path)
    # weights_only: tensors and plain data only; a file that needs more is refused unrun.
    ckpt = load_checkpoint_file(path, map_location=map_location)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not an official ECM checkpoint (expected a dict with "
                         f"'epoch', 'state_dict', 'optimizer'; found {keys})")
    state = ckpt["state_dict"]
    # Checkpoints saved from nn.DataParallel prefix every key with 'module.'.
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if cfg is None:
        cfg = infer_config(state)
    else:
        check_compatible(state, cfg, str(path))
    model = ECMNet(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: state dict does not match ECMNet({cfg.transition}): {err}") from None
    model.eval()
    return model, ckpt


def save_checkpoint(path: str | Path, model: ECMNet, optimizer: torch.optim.Optimizer | None,
                    epoch: int, extra: dict[str, Any] | None = None) -> None:
    """Official checkpoint format ``{'epoch', 'state_dict', 'optimizer'}`` (+ our extras).

    Extra keys (config, history) are ignored by the authors' loader. The file is written
    atomically: a failed save (disk full) keeps the previous checkpoint and says so.
    """
    state = {"epoch": epoch, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict() if optimizer is not None else {}}
    state.update(extra or {})

    def write(fh) -> None:
        torch.save(state, fh)

    try:
        atomic_write(path, write)
    except OSError as err:
        raise RuntimeError(f"saving the checkpoint failed: {err.strerror}") from err
    except RuntimeError as err:  # torch's own writer (e.g. a full disk mid-file)
        raise RuntimeError(f"saving the checkpoint failed: {write_failure(path, err)}") from err


# A resume runs on the run's own configuration. Two kinds of keys may differ: the epoch
# budget (a run may be extended, never cut below the epochs it has done), and where the run
# executes (device, CPU threads: the continuation runs, with a warning that it cannot repeat
# the uninterrupted run bit for bit). Any other difference is refused, naming the keys.
RESUME_MAY_EXTEND = ("train.epochs",)


RESUME_MAY_MOVE = ("train.device", "train.num_threads")


RUN_FILES = ("config.json", "history.csv", "history.json", "metrics.json", "best.pth",
             "last.pth", "result.json", "result.txt")


def resume_checkpoint(resume: str | Path) -> Path:
    """The checkpoint a ``--resume`` value names: a run directory stands for its ``last.pth``.

    A run directory killed before its first epoch ended has a ``config.json`` but no
    ``last.pth`` yet: the missing path is returned, and the run starts over in place.
    """
    path = Path(resume)
    if path.is_dir():
        path = path / "last.pth"
        if not path.exists() and (path.parent / "config.json").is_file():
            _check_nothing_lost(path.parent)
            return path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint to resume from not found")
    return path


def _check_nothing_lost(run_dir: Path) -> None:
    """A run folder without last.pth starts over only if it never finished an epoch."""
    if (run_dir / "metrics.json").is_file():
        raise ValueError(f"{run_dir}: the run is finished (metrics.json) and has no last.pth; "
                         f"there is nothing to resume")
    epochs = 0
    if (run_dir / "history.csv").is_file():
        lines = (run_dir / "history.csv").read_text().splitlines()
        epochs = max(len(lines) - 1, 0)
    # history.csv is written just before last.pth: one epoch ahead of it is a kill between
    # the two (the run starts over); more means last.pth was lost.
    if epochs > 1:
        raise ValueError(f"{run_dir}: history.csv records {epochs} epoch(s) but last.pth is "
                         f"missing, so the run cannot continue; restore last.pth, or train "
                         f"again into a new --out")


def _flat_config(d: dict[str, Any]) -> dict[str, Any]:
    flat = {"name": d.get("name")}
    for sec in SECTIONS:
        flat.update({f"{sec}.{k}": v for k, v in d.get(sec, {}).items()})
    return flat


def config_differences(saved: dict[str, Any], cfg: ExperimentConfig,
                       source: str = "config") -> dict[str, tuple[Any, Any]]:
    """``{key: (run's value, cfg's value)}`` for every key where a saved config and ``cfg`` differ.

    ``saved`` is read as ``config.json`` is (keys it lacks take their defaults).
    """
    try:
        old = _flat_config(ExperimentConfig.from_dict(saved).to_dict())
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{source}: cannot read the run's configuration ({err})") from None
    new = _flat_config(cfg.to_dict())
    if old.get("model.dropout_mask") == "auto":   # saved before the option existed: torch's
        old["model.dropout_mask"] = "torch"
    keys = [*new, *(k for k in old if k not in new)]
    diff = {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}
    # What fast mode resolves at run time is saved concrete: a request for it matches.
    for key in RESOLVED_AT_RUN_TIME:
        if key in diff and _asks_resolution(cfg, key):
            del diff[key]
    return diff


#: Config keys whose request ('auto', 'fastest', fast mode) becomes a value when a run starts.
RESOLVED_AT_RUN_TIME = ("train.precision", "model.aggregation", "model.dropout_mask")


def _asks_resolution(cfg: ExperimentConfig, key: str) -> bool:
    if key == "train.precision":
        return cfg.train.fast or cfg.train.precision == "auto"
    if key == "model.dropout_mask":          # fast mode resolves only an 'auto' mask
        return cfg.model.dropout_mask == "auto"
    return cfg.train.fast or cfg.model.aggregation == "fastest"


def _check_resume(cfg: ExperimentConfig, ckpt: dict[str, Any], resume: Path,
                  warn: Callable[[str], None]) -> None:
    """Refuse a resume on another configuration than the run's (see ``RESUME_MAY_*``)."""
    source: Path = resume.parent / "config.json"
    saved: dict[str, Any] | None = None
    if source.is_file():
        saved = read_json(source)             # a ValueError naming the file
        if isinstance(ckpt.get("ecmlib_config"), dict):
            _check_same_run(ckpt["ecmlib_config"], saved, resume, source)
    elif isinstance(ckpt.get("ecmlib_config"), dict):
        saved, source = ckpt["ecmlib_config"], resume
    if saved is not None:   # else an official checkpoint: only the model must fit
        diff = config_differences(saved, cfg, str(source))

        def show(items: list) -> str:
            return "; ".join(f"{k} is {a!r} in the run, {b!r} now" for k, (a, b) in items)

        refused = [(k, v) for k, v in diff.items() if k not in RESUME_MAY_EXTEND + RESUME_MAY_MOVE]
        if refused:
            raise ValueError(
                f"cannot resume {resume}: the configuration differs from {source} in "
                f"{', '.join(k for k, _ in refused)} ({show(refused)}); resume with the run's "
                f"values, or start a new run (a resume may change only train.epochs, and "
                f"train.device / train.num_threads with a warning)")
        moved = [(k, v) for k, v in diff.items() if k in RESUME_MAY_MOVE]
        if moved:
            warn(f"warning: resuming {resume} with {show(moved)}: the run continues, but "
                 f"not bit for bit as it would have uninterrupted")
    done = int(ckpt.get("epoch", 0))
    if cfg.train.epochs < done:
        raise ValueError(f"cannot resume {resume}: it is at epoch {done} but train.epochs is "
                         f"{cfg.train.epochs}; pass --epochs {done} or more")


def _check_same_run(ckpt_config: dict[str, Any], saved: dict[str, Any], resume: Path,
                    source: Path) -> None:
    """A checkpoint resumes only the run that wrote it: its own config must be the run
    folder's (a ``last.pth`` copied in from another run is refused, naming the keys)."""
    diff = config_differences(ckpt_config, ExperimentConfig.from_dict(saved), str(resume))
    other = {k: v for k, v in diff.items() if k not in RESUME_MAY_EXTEND + RESUME_MAY_MOVE}
    if other:
        shown = "; ".join(f"{k} is {a!r} in the checkpoint, {b!r} in {source.name}"
                          for k, (a, b) in other.items())
        raise ValueError(f"cannot resume {resume}: it was written by another run than "
                         f"{source} ({shown}); resume from the run's own last.pth")


def _best_on_resume(resume: Path, best_epoch: int, last_epoch: int, cfg: ExperimentConfig
                    ) -> tuple[str, dict[str, torch.Tensor] | None]:
    """Where a resumed run's best weights are: ('none' | 'last' | 'file' | 'lost', weights).

    ``train`` writes best.pth after last.pth, so last.pth's record of the best epoch is the
    truth: best.pth is trusted only when it holds that epoch; a best epoch equal to
    last.pth's epoch has last.pth's weights (best.pth may not have been written yet).
    """
    if best_epoch <= 0:
        return "none", None
    if best_epoch == last_epoch:
        return "last", None
    path = resume.with_name("best.pth")
    if path.is_file():
        _, raw = load_checkpoint(path, cfg.model)
        if int(raw.get("epoch", -1)) == best_epoch:
            return "file", {k.removeprefix("module."): v for k, v in raw["state_dict"].items()}
    return "lost", None


def _copy_atomic(src: Path, dst: Path) -> None:
    atomic_write(dst, lambda fh: fh.write(Path(src).read_bytes()))


def remove_stale_temp_files(run_dir: Path) -> None:
    """Temp files of writes a kill interrupted (``.<name>.<random>.tmp``) are garbage."""
    for name in RUN_FILES:
        for tmp in run_dir.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


# -- a run's state across epochs and interruptions ------------------------------------------

@dataclass
class RunState:
    """What a run carries from epoch to epoch, and what ``last.pth`` records of it."""

    history: list[dict[str, Any]]
    best: dict[str, Any]                      # {'epoch', 'value'} of the selection metric
    best_state: dict[str, torch.Tensor]       # the best epoch's weights
    best_eval: Any = None                     # its Evaluation, when this process made it
    start_epoch: int = 1
    elapsed_before: float = 0.0               # wall time of the epochs resumed
    lost_best: int = 0                        # a best epoch whose weights are gone

    @classmethod
    def fresh(cls, model: ECMNet) -> RunState:
        return cls([], {"epoch": 0, "value": float("nan")}, copy.deepcopy(model.state_dict()))


@dataclass
class OpenedResume:
    """A resume request, checked: the checkpoint read (None for a new run or one killed in
    its first epoch), the file it came from, and whether the run continues in place."""

    ckpt: dict[str, Any] | None = None
    source: Path | None = None
    in_place: bool = False


def open_resume(cfg: ExperimentConfig, resume: str | Path | None, out_dir: str | Path | None,
                overwrite: bool, say: Callable[[str], None],
                warn: Callable[[str], None]) -> OpenedResume:
    """Read and check what ``resume`` names against ``cfg`` and ``out_dir``."""
    if resume is None:
        return OpenedResume()
    source = resume_checkpoint(resume)
    ckpt = None
    if source.is_file():
        _, ckpt = load_checkpoint(source, None)      # on the CPU; moved to the device later
        _check_resume(cfg, ckpt, source, warn)
        check_compatible({k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()},
                         cfg.model, str(source))
    else:    # killed in its first epoch: nothing to continue, the run starts over
        _check_resume(cfg, {}, source, warn)
        say(f"{source.parent}: no epoch finished before the interruption; starting over")
    in_place = out_dir is not None and Path(out_dir).resolve() == source.parent.resolve()
    if in_place and source.name != "last.pth":
        raise ValueError(f"{source}: a run continues in place only from its last.pth; "
                         f"to continue from {source.name}, choose another --out")
    if in_place and overwrite:
        raise ValueError(f"{out_dir}: --overwrite would replace the run that --resume "
                         f"continues; drop --overwrite (or choose another --out)")
    return OpenedResume(ckpt, source, in_place)


def restore_run(opened: OpenedResume, cfg: ExperimentConfig, run_dir: Path | None,
                model: ECMNet, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                device: torch.device, say: Callable[[str], None],
                warn: Callable[[str], None]) -> RunState:
    """Weights, optimiser, history, best epoch and RNG states back from ``last.pth``; the run
    folder repaired (best.pth rewritten after a kill between the two writes) or seeded."""
    ckpt, source = opened.ckpt, opened.source
    assert ckpt is not None and source is not None
    model.load_state_dict({k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()})
    if ckpt.get("optimizer"):
        optimizer.load_state_dict(ckpt["optimizer"])
    start = int(ckpt["epoch"]) + 1
    # last.pth is the truth: history.csv may be an epoch ahead (killed before last.pth).
    state = RunState([r for r in ckpt.get("ecmlib_history", []) if r.get("epoch", 0) < start],
                     dict(ckpt.get("ecmlib_best", {"epoch": 0, "value": float("nan")})),
                     copy.deepcopy(model.state_dict()), None, start,
                     float(ckpt.get("ecmlib_elapsed_s", 0.0)))
    say(f"resumed from {source} at epoch {start - 1}")
    where, weights = _best_on_resume(source, int(state.best["epoch"]), start - 1, cfg)
    if where == "file" and weights is not None:
        state.best_state = weights                   # the best epoch came before the last
    elif where == "lost":
        state.lost_best = int(state.best["epoch"])
        warn(f"warning: {source.with_name('best.pth')} does not hold the run's best epoch "
             f"{state.lost_best}; training continues, but fails at the end unless a later "
             f"epoch is better")
    if run_dir is not None:
        _repair_folder(run_dir, source, where, opened.in_place, state, model, optimizer, cfg)
    rng = ckpt.get("ecmlib_rng")
    if rng:
        # Shuffling and dropout continue exactly where the interrupted run stopped.
        generator.set_state(rng["shuffle"])
        torch.set_rng_state(rng["torch"])
        if device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], device)
    return state


def _repair_folder(run_dir: Path, source: Path, where: str, in_place: bool, state: RunState,
                   model: ECMNet, optimizer: torch.optim.Optimizer,
                   cfg: ExperimentConfig) -> None:
    write_history(run_dir, state.history)
    if where == "last":      # killed between last.pth and best.pth: write it now
        save_checkpoint(run_dir / "best.pth", model, optimizer, state.start_epoch - 1,
                        {"ecmlib_config": cfg.to_dict()})
    elif where == "file" and not in_place:
        _copy_atomic(source.with_name("best.pth"), run_dir / "best.pth")
    if not in_place and source.name == "last.pth":
        _copy_atomic(source, run_dir / "last.pth")


def save_epoch(run_dir: Path, model: ECMNet, optimizer: torch.optim.Optimizer,
               cfg: ExperimentConfig, state: RunState, epoch: int, generator: torch.Generator,
               device: torch.device, new_best: bool, elapsed: float) -> None:
    """The history, then last.pth, then best.pth (on a new best).

    last.pth before best.pth: a kill between them leaves a last.pth whose record names its
    own epoch as the best, and a resume rewrites best.pth from it.
    """
    write_history(run_dir, state.history)
    rng = {"shuffle": generator.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    save_checkpoint(run_dir / "last.pth", model, optimizer, epoch,
                    {"ecmlib_config": cfg.to_dict(), "ecmlib_history": state.history,
                     "ecmlib_best": state.best, "ecmlib_rng": rng, "ecmlib_elapsed_s": elapsed})
    if new_best:
        save_checkpoint(run_dir / "best.pth", model, optimizer, epoch,
                        {"ecmlib_config": cfg.to_dict()})


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """history.csv and history.json, each written atomically."""
    import pandas as pd
    atomic_write_text(run_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
    atomic_write_json(run_dir / "history.json", history)
