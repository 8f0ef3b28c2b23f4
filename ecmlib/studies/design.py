"""The studies of record, declared: the protocol, the synthetic worlds, and every study's
cells (one cell = one training run = one command line) in run order.

A *study* is a results file of record (``data/results/<name>.csv``) and the list of
cells it holds. A cell is named by its setting (an entry of
:data:`ecmlib.studies.ablation.SETTINGS`), its training seed, its data seed and the
synthetic *world* it trains on (the ``thumos14-mini`` preset, or the preset with knobs
moved, see :data:`WORLDS` and :data:`INGREDIENTS`). Every cell is exactly one command::

    python -m ecmlib train --dataset THUMOS14 --synthetic thumos14-mini --epochs 150 \\
        --quiet --set eval.eval_every=5 train.seed=0 data.synthetic_seed=0 \\
        train.num_threads=1 model.streams=pre

The protocol (:data:`PROTOCOL`) is the paper's optimiser (Adam, lr 2e-4, betas
(0.9, 0.999), weight decay 5e-4, batch 16) for the authors' THUMOS14 length of 150 epochs,
evaluated every 5 epochs, on ``thumos14-mini`` (D = 256, T = 256) with H = 128: the width
at which a 150-epoch run fits a CPU core in minutes; the paper's H = 2048 is for 2048-d
I3D features on a GPU. One torch thread per run, so a run repeats exactly on the same
machine kind and torch version.

Cells run in the order of :func:`plan`: seed by seed across the settings of a study, so
that an interrupted grid still holds complete pairs. A cell shared by two studies (full
ECM appears in 03, 04, 07 and 08) is trained once per ``record`` call; a study trained in
another session on another CPU re-trains it (study 08 did: its ECM rows are its own, so
the pairs it compares were trained side by side).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
    fast: bool = False    # train.fast=true (bf16 where native, the fastest path, bits dropout masks)

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
