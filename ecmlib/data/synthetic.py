"""SynTHUMOS14 and SynActivityNet: synthetic I3D-like features on the real annotations.

Real I3D features of THUMOS14 / ActivityNet are gigabytes that cannot be fetched on a
fresh machine, so this module builds a stand-in benchmark that keeps everything about the
annotations real (the same videos, splits, durations, fps, frame counts, segments and
labels) and replaces only the feature vectors by draws from a documented generative model.
The model keeps the properties that make weakly supervised temporal action localisation
(WTAL) hard, each behind a knob of :class:`SyntheticSpec`, so a notebook can switch one
off and see what it costs.

Generative model
----------------
Every video is a continuous timeline of ``duration`` seconds. Signals are built in two
small latent spaces (``latent_dim`` each; one for the RGB stream, one for flow), then
observed through a fixed random projection to ``feat_dim / 2`` channels per stream,
ReLU-ed, and concatenated RGB-then-flow, like ECM's ``feat_spa`` / ``feat_tem``.
Snippet ``t`` of ``T`` averages the timeline over ``[t, t+1) * duration / T`` (four
sub-samples), the mapping ECM's resampled features use.

A *world* (drawn from the seed alone, shared by all videos) holds unit-RMS latent
prototypes: per class a venue (scene context) vector, ``num_subactions`` appearance (RGB)
and motion (flow) vectors, a pool of generic motion primitives and a pool of generic
broadcast shots. Each video then draws its own events from a generator keyed by
(seed, video name, component), so any subset regenerates identically and switching one
factor off leaves every other draw of that video unchanged.

Per snippet the latent signals are::

    rgb  = shot look + context * venue(t) * S_c + sum_i env_i(t) * amp_i * A_i(phase)
           + distractor_rgb + video_style + noise
    flow = background_motion * camera(shot) + context * flow_context_ratio * venue(t) * S'_c
           + motion_strength * sum_i env_i(t) * amp_i * M_i(phase) + distractor_flow + noise
    x    = channel_scale * relu(P z - sparsity + obs_noise) * gain(t)

Each knob and the property of real data it stands for:

* **Context confusion** (``context_strength``, ``context_shot_prob``,
  ``context_family_share``, ``flow_context_ratio``). Broadcast sports footage is cut into
  shots (``shot_seconds`` mean length); between actions a shot shows the class's venue
  with probability ``context_shot_prob`` (the diving pool between dives, the cricket pitch
  between deliveries), and the venue is always visible during the action itself. The venue
  is a strong video-level cue that does not localise, so a MIL classifier learns to fire on
  it: false positives and over-long detections. Venues of related sports share a family
  component (athletics stadium, water, cricket ground, courts, ...) so context also
  confuses classes, mainly in RGB (scenes are static; ``flow_context_ratio`` keeps a weak
  flow trace such as water ripples).
* **Blurred boundaries** (``ramp_seconds``, ``boundary_jitter_seconds``). An action fades
  in and out over a linear ramp centred on each boundary (I3D's 16-frame windows and the
  temporal convolution of the real pipeline smear onsets, and annotators disagree on them
  by about a second), and the latent boundary is the annotated one plus Gaussian jitter.
* **Intra-class variation** (``instance_variation``, ``video_style``,
  ``amplitude_log_std``). Each instance perturbs its class prototypes, each video adds a
  constant style offset (camera, lighting, resolution) and each instance has a log-normal
  strength.
* **Sub-actions** (``num_subactions``, ``subaction_sharing``). An instance traverses
  ``num_subactions`` phases (run-up, take-off, landing) with per-instance Dirichlet
  durations. One phase per class is distinctive; the others are mixed with generic motion
  primitives shared across classes (``subaction_sharing``), so a classifier latches onto
  the distinctive part and detections come out partial.
* **Action-like distractors** (``distractor_rate`` per minute, ``distractor_seconds``,
  ``distractor_strength``). Bursts of generic motion in the background (people walking,
  camera pans, warm-ups) built from the same primitive pool as the shared sub-actions: they
  look like action to a class-agnostic attention but belong to no class.
* **Two streams with different cues.** RGB carries the shot look, the venue and the actor's
  appearance; flow carries motion, which is strong during actions and distractors, weak
  otherwise (``motion_strength`` vs ``background_motion``).
* **I3D-like statistics** (``sparsity``, ``channel_log_std``, ``gain_log_std``,
  ``obs_noise_std``). I3D features are average-pooled ReLU outputs: non-negative, sparse,
  with channels of very different magnitude and heavy-tailed snippet norms (log-normal
  ``gain``). The features are low-rank (``latent_dim``), so the difficulty does not change
  with ``feat_dim``.
* **Temporal smoothness** (``smooth_seconds``, ``noise_std``). Latent noise and the gain
  are Gaussian-smoothed in time with a width given in seconds (then converted to snippets
  for each video), as overlapping I3D windows make neighbouring snippets correlated.

* **Ingredients that are not difficulty factors** (``observation``, ``shots``,
  ``action_streams``), so that a study can ask which of them an effect depends on:
  ``observation='linear'`` drops the bias and ReLU (the features are then a signed, dense
  linear image of the latent signal); ``shots='one'`` shows each video as one shot (one look,
  one camera motion, no cuts); ``action_streams='shared'`` gives flow the RGB stream's action
  signature (prototypes and per-instance perturbations). Their defaults draw exactly what
  the generator drew before they existed.

Switch a factor off with :meth:`SyntheticSpec.ablate` (names in :data:`FACTORS`).

Presets (:data:`PRESETS`)
-------------------------
``thumos14-full`` (D=2048, T=750, all 410 videos), ``thumos14-mini`` (all 410 videos,
D=256, T=256: a full training run fits a 2-core CPU), ``anet12-mini`` and ``anet13-mini``
(1000 training + 500 validation videos chosen deterministically, stratified by class,
T=100, D=256) and ``tiny`` (64 + 32 THUMOS14 videos of at most 2 minutes, so that T=64
still resolves the actions; D=32; for tests and quick runs).

API
---
``generate(preset, seed=0, splits=None, videos=None)`` returns ``{split: FeatureSet}`` in
memory; ``write_dataset(preset, out_dir, seed=0)`` streams the official ECM layout
``<out>/<split>/<video>.npz`` plus ``manifest.json``; ``python -m ecmlib synth --preset P
--out DIR [--seed S] [--overwrite] [--ablate F] [--set KNOB=VALUE]`` wraps it
(:func:`synth_main`). ``ground_truth(preset)`` gives the real annotations of the preset's
videos (to score subset presets), ``video_events(preset, name)`` the latent events of one
video (true action extents, distractors, shots) and ``snippet_coverage`` the
annotation-to-snippet mapping.

Statistics of ``thumos14-mini`` (seed 0): 62% (RGB) / 65% (flow) exact zeros, channel
means 0.48 / 0.36, snippet L2 norm median 15 and 99th percentile 38, lag-1 correlation
between neighbouring snippets 0.84; flow norm in actions / distractors / quiet background
15.5 / 13.1 / 7.7, RGB norm 15.3 / 11.2 / 11.3.

Calibration
-----------
The difficulty knobs keep the :class:`SyntheticSpec` defaults; only ``noise_std`` was
tuned (1.0 -> 0.8, against the overall target alone: THUMOS14-like mAP@0.5 of 20-45, where
the authors' ECM reaches 29.3 with a 2048-wide trunk on real features). ECM trained on
``thumos14-mini`` with ``scripts/calibrate_synthetic.py`` (hidden width 256, batch 16,
Adam lr 5e-4 -- the paper's 2e-4 hardly moves a 256-wide trunk in 60 epochs -- 60 epochs,
evaluation every 5, model selected by mAP@0.5 on test as ECM does, data seed 0, torch seed
16, one CPU thread, 4-6 minutes per run on a shared 2-core machine)::

    .venv/bin/python scripts/calibrate_synthetic.py --preset thumos14-mini \
        --ablate none context boundary variation subactions distractors

    factor off      mAP@0.1  0.3   0.5   0.7 | avg 0.1:0.7 | best epoch
    (none)           51.4   35.6  20.7   6.9 |   28.5      |  40
    context          58.7   44.5  28.7  11.4 |   36.0      |  60
    boundary         56.5   42.9  28.1  12.8 |   35.3      |  55
    variation        53.9   38.0  22.7   7.4 |   30.8      |  45
    subactions       57.9   42.1  25.5  11.0 |   34.1      |  60
    distractors      54.9   39.9  22.8   8.1 |   31.6      |  55

One run per row; a second data seed (``--seed 1``) at the default difficulty gives
mAP@0.5 22.2 (avg 30.4). Context, blurred boundaries and sub-actions each cost 5-8 points
of mAP@0.5; intra-class variation and distractors about 2, which is close to the
run-to-run spread (1.5 points between the two seeds; the last five evaluations of one run
vary by about 1 point). An untrained model scores 0 (no class passes the 0.25 score
threshold). The script computes L_agg with torch's BCE (as the authors' ``nn.BCELoss``):
an earlier log-then-clamp version of ``ecmlib.method.losses.loss_agg`` gave NaN gradients on a
saturated softmax (since fixed).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SyntheticSpec",
    "PRESETS",
    "FACTORS",
    "get_spec",
    "video_names",
    "video_events",
    "VideoEvents",
    "ground_truth",
    "snippet_coverage",
    "generate",
    "iter_videos",
    "write_dataset",
    "parse_knobs",
    "synth_main",
]

# Sub-samples per snippet: enough to average a ramp or a shot cut inside one snippet.
_SUBSAMPLES = 4
# Pool sizes of the world: generic motion primitives and generic broadcast shots.
_NUM_PRIMITIVES = 12
_NUM_SHOT_LOOKS = 24
# How much of a class's sub-action appearance is common to all its phases (same athlete).
_SUBACTION_COHERENCE = 0.5

# Venue families of THUMOS14 (classes filmed at the same kind of venue share scene context).
_THUMOS14_FAMILIES: dict[str, int] = {
    # athletics stadium
    "HammerThrow": 0, "HighJump": 0, "JavelinThrow": 0, "LongJump": 0, "PoleVault": 0,
    "Shotput": 0, "ThrowDiscus": 0,
    # water
    "CliffDiving": 1, "Diving": 1,
    # cricket ground
    "CricketBowling": 2, "CricketShot": 2,
    # courts and halls
    "BasketballDunk": 3, "VolleyballSpiking": 3, "TennisSwing": 3,
    # open fields
    "BaseballPitch": 4, "SoccerPenalty": 4, "FrisbeeCatch": 4, "GolfSwing": 4,
    # indoor, close view
    "Billiards": 5, "CleanAndJerk": 5,
}

# On-disk split names -> ground-truth subset names.
_SPLITS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "THUMOS14": (("val", "train"), ("test", "test")),
    "ActivityNet1.2": (("training", "training"), ("validation", "validation")),
    "ActivityNet1.3": (("training", "training"), ("validation", "validation")),
}


#: The values of the string knobs; the first is the default.
_CHOICES: dict[str, tuple[str, ...]] = {
    "observation": ("relu", "linear"),
    "shots": ("cuts", "one"),
    "action_streams": ("split", "shared"),
}


@dataclass(frozen=True)
class SyntheticSpec:
    """Every knob of the synthetic benchmark (see the module docstring for their meaning).

    Times are in seconds of video, strengths are relative to unit-RMS latent prototypes.
    ``max_train`` / ``max_test`` limit the number of videos per split (None = all of them,
    else a deterministic class-stratified subset chosen from the video names);
    ``max_duration`` keeps only videos at most that long (seconds).
    """

    name: str = "custom"
    dataset: str = "THUMOS14"
    feat_dim: int = 2048
    num_snippets: int = 750
    max_train: int | None = None
    max_test: int | None = None
    max_duration: float | None = None
    latent_dim: int = 64
    # context confusion
    context_strength: float = 1.0
    context_shot_prob: float = 0.5
    context_family_share: float = 0.5
    flow_context_ratio: float = 0.25
    shot_seconds: float = 8.0
    # blurred boundaries
    ramp_seconds: float = 2.0
    boundary_jitter_seconds: float = 0.5
    # intra-class variation
    instance_variation: float = 0.6
    video_style: float = 0.5
    amplitude_log_std: float = 0.3
    # sub-actions
    num_subactions: int = 3
    subaction_sharing: float = 0.6
    # action-like distractors
    distractor_rate: float = 2.0
    distractor_seconds: float = 3.0
    distractor_strength: float = 0.8
    # stream cues
    action_strength: float = 1.0
    motion_strength: float = 1.5
    background_motion: float = 0.6
    # noise and temporal smoothness
    noise_std: float = 0.8
    smooth_seconds: float = 1.0
    # I3D-like statistics
    sparsity: float = 0.5
    channel_log_std: float = 0.5
    gain_log_std: float = 0.25
    obs_noise_std: float = 0.3
    # Ingredients that are not difficulty factors (notebook 07b switches each on its own).
    observation: str = "relu"       # "relu": bias + ReLU after the projection; "linear": none
    shots: str = "cuts"             # "cuts": shots with their own looks; "one": one per video
    action_streams: str = "split"   # "split": RGB and flow signatures differ; "shared": same

    def __post_init__(self) -> None:
        if self.dataset not in _SPLITS:
            raise ValueError(f"SyntheticSpec.dataset must be one of {sorted(_SPLITS)}, "
                             f"got {self.dataset!r}")
        if not isinstance(self.feat_dim, (int, np.integer)) or self.feat_dim < 2 \
                or self.feat_dim % 2:
            raise ValueError(f"SyntheticSpec.feat_dim must be even and >= 2 (RGB + flow "
                             f"halves), got {self.feat_dim}")
        for name in ("feat_dim", "num_snippets", "latent_dim", "num_subactions"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"SyntheticSpec.{name} must be an integer >= 1, got {value!r}")
        for name in ("max_train", "max_test"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"SyntheticSpec.{name} must be None or an integer >= 1, "
                                 f"got {value!r}")
        if self.max_duration is not None and not self.max_duration > 0:
            raise ValueError(f"SyntheticSpec.max_duration must be None or > 0, "
                             f"got {self.max_duration!r}")
        for name in ("context_shot_prob", "context_family_share", "subaction_sharing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SyntheticSpec.{name} must be in [0, 1], "
                                 f"got {getattr(self, name)}")
        for name in ("shot_seconds", "distractor_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SyntheticSpec.{name} must be > 0, got {getattr(self, name)}")
        nonneg = ("context_strength", "flow_context_ratio", "ramp_seconds",
                  "boundary_jitter_seconds", "instance_variation", "video_style",
                  "amplitude_log_std", "distractor_rate", "distractor_strength",
                  "action_strength", "motion_strength", "background_motion", "noise_std",
                  "smooth_seconds", "channel_log_std", "gain_log_std", "obs_noise_std")
        for name in nonneg:
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"SyntheticSpec.{name} must be finite and >= 0, got {value}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"SyntheticSpec.{name} must be one of {allowed}, "
                                 f"got {getattr(self, name)!r}")
        if not np.isfinite(self.sparsity):
            raise ValueError(f"SyntheticSpec.sparsity must be finite, got {self.sparsity}")

    def replace(self, **changes: Any) -> SyntheticSpec:
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown SyntheticSpec field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def ablate(self, *factors: str) -> SyntheticSpec:
        """A copy with the named difficulty factors switched off (see :data:`FACTORS`)."""
        changes: dict[str, Any] = {}
        for factor in factors:
            if factor not in FACTORS:
                raise ValueError(f"unknown difficulty factor {factor!r}; "
                                 f"expected one of {sorted(FACTORS)}")
            changes.update(FACTORS[factor])
        suffix = "-no-" + "-no-".join(factors) if factors else ""
        return self.replace(name=self.name + suffix, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (for manifests)."""
        return dataclasses.asdict(self)


#: Difficulty factors and the knob values that switch each off.
FACTORS: dict[str, dict[str, Any]] = {
    "context": {"context_strength": 0.0},
    "boundary": {"ramp_seconds": 0.0, "boundary_jitter_seconds": 0.0},
    "variation": {"instance_variation": 0.0, "video_style": 0.0, "amplitude_log_std": 0.0},
    "subactions": {"num_subactions": 1, "subaction_sharing": 0.0},
    "distractors": {"distractor_rate": 0.0},
}

#: Named presets. Difficulty knobs keep the SyntheticSpec defaults (the calibrated values).
PRESETS: dict[str, SyntheticSpec] = {
    "thumos14-full": SyntheticSpec(name="thumos14-full", dataset="THUMOS14",
                                   feat_dim=2048, num_snippets=750),
    "thumos14-mini": SyntheticSpec(name="thumos14-mini", dataset="THUMOS14",
                                   feat_dim=256, num_snippets=256),
    "anet12-mini": SyntheticSpec(name="anet12-mini", dataset="ActivityNet1.2",
                                 feat_dim=256, num_snippets=100, max_train=1000, max_test=500),
    "anet13-mini": SyntheticSpec(name="anet13-mini", dataset="ActivityNet1.3",
                                 feat_dim=256, num_snippets=100, max_train=1000, max_test=500),
    # Short videos only, so that 64 snippets still resolve the actions (<= 1.9 s each).
    "tiny": SyntheticSpec(name="tiny", dataset="THUMOS14", feat_dim=32, num_snippets=64,
                          max_train=64, max_test=32, max_duration=120.0, latent_dim=16),
}


def get_spec(preset: str | SyntheticSpec) -> SyntheticSpec:
    """Resolve a preset name (or pass a spec through)."""
    if isinstance(preset, SyntheticSpec):
        return preset
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; expected one of "
                         f"{sorted(PRESETS)} or a SyntheticSpec")
    return PRESETS[preset]


# ---------------------------------------------------------------------------------------
# Deterministic randomness
# ---------------------------------------------------------------------------------------

def _key(text: str) -> int:
    """A stable 64-bit integer from a string (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def _rng(seed: int, *parts: str | int) -> np.random.Generator:
    """Generator keyed by the seed and named parts: independent streams per component."""
    entropy = [int(seed)] + [p if isinstance(p, int) else _key(p) for p in parts]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _unit(v: np.ndarray) -> np.ndarray:
    """Scale vectors (last axis) to unit RMS, so strengths are comparable across knobs."""
    rms = np.sqrt(np.mean(v * v, axis=-1, keepdims=True))
    return v / np.maximum(rms, 1e-12)


# ---------------------------------------------------------------------------------------
# Annotations
# ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _load_gt(dataset: str) -> dict:
    """The official annotations, read once per process (treated as read-only here)."""
    from .features import load_annotations
    return load_annotations(dataset, variant="official")


def _parse_entry(entry: dict, class_index: dict[str, int]) -> list[tuple[float, float, int]]:
    segs = []
    for ann in entry["annotations"]:
        s, e = (float(v) for v in ann["segment"])
        segs.append((s, e, class_index[ann["label"]]))
    return sorted(segs)


def _select_subset(names: list[str], database: dict, classes: list[str], limit: int | None,
                   salt: str) -> list[str]:
    """Deterministic class-stratified subset of ``names`` (independent of the seed).

    Videos are grouped by their first label and taken round-robin over the classes, each
    class in the order of a hash of the video name, so every class is represented.
    """
    if limit is None or limit >= len(names):
        return sorted(names)
    groups: dict[str, list[str]] = {}
    for name in names:
        anns = database[name]["annotations"]
        primary = min((a["label"] for a in anns), key=classes.index) if anns else ""
        groups.setdefault(primary, []).append(name)
    queues = [sorted(groups[c], key=lambda n: _key(salt + n))
              for c in [*classes, ""] if c in groups]
    chosen: list[str] = []
    depth = 0
    while len(chosen) < limit:
        for queue in queues:
            if depth < len(queue) and len(chosen) < limit:
                chosen.append(queue[depth])
        depth += 1
    return sorted(chosen)


def video_names(preset: str | SyntheticSpec, split: str) -> list[str]:
    """The (sorted) video names of one on-disk split of a preset."""
    spec = get_spec(preset)
    gt = _load_gt(spec.dataset)
    return _split_names(spec, gt, split)


def _split_names(spec: SyntheticSpec, gt: dict, split: str) -> list[str]:
    (train_split, train_subset), (test_split, test_subset) = _SPLITS[spec.dataset]
    if split == train_split:
        subset, limit = train_subset, spec.max_train
    elif split == test_split:
        subset, limit = test_subset, spec.max_test
    else:
        raise ValueError(f"unknown split {split!r} for {spec.dataset}; expected "
                         f"{train_split!r} or {test_split!r}")
    names = [v for v, e in gt["database"].items() if e["subset"] == subset
             and (spec.max_duration is None or float(e["duration"]) <= spec.max_duration)]
    if not names:
        raise ValueError(f"{spec.dataset}: no video of subset {subset!r} in the annotations"
                         + (f" lasts at most {spec.max_duration} s" if spec.max_duration else ""))
    return _select_subset(names, gt["database"], gt["classes"], limit, salt=split)


def snippet_coverage(segments: Sequence[Sequence[float]], duration: float,
                     num_snippets: int) -> np.ndarray:
    """Fraction of each snippet covered by the union of ``segments`` -> [T] in [0, 1].

    Snippet t of T covers [t, t+1) * duration / T, the annotation-to-snippet mapping used
    throughout the synthetic benchmark.
    """
    if duration <= 0 or num_snippets < 1:
        raise ValueError(f"need duration > 0 and num_snippets >= 1, got {duration}, "
                         f"{num_snippets}")
    edges = np.arange(num_snippets + 1) * (duration / num_snippets)
    lo, hi = edges[:-1], edges[1:]
    covered = np.zeros(num_snippets)
    # Merge overlapping segments first so overlaps are not counted twice.
    merged: list[list[float]] = []
    for s, e in sorted((float(a), float(b)) for a, b in segments):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    for s, e in merged:
        covered += np.clip(np.minimum(hi, e) - np.maximum(lo, s), 0.0, None)
    return covered / (duration / num_snippets)


# ---------------------------------------------------------------------------------------
# The world: prototypes shared by all videos of a (dataset, seed)
# ---------------------------------------------------------------------------------------

@dataclass
class _World:
    venue_rgb: np.ndarray      # [C, d]
    venue_flow: np.ndarray     # [C, d]
    sub_rgb: np.ndarray        # [C, K, d]
    sub_flow: np.ndarray       # [C, K, d]
    prim_rgb: np.ndarray       # [P, d]
    prim_flow: np.ndarray      # [P, d]
    shot_rgb: np.ndarray       # [Q, d]
    shot_flow: np.ndarray      # [Q, d]
    proj_rgb: np.ndarray       # [d, D/2]
    proj_flow: np.ndarray      # [d, D/2]
    scale_rgb: np.ndarray      # [D/2]
    scale_flow: np.ndarray     # [D/2]
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The projections as the renderer uses them: [D/2, d], float32, contiguous.
        self.obs_rgb = np.ascontiguousarray(self.proj_rgb.T, dtype=np.float32)
        self.obs_flow = np.ascontiguousarray(self.proj_flow.T, dtype=np.float32)


def _families(dataset: str, classes: list[str], rng: np.random.Generator) -> np.ndarray:
    if dataset == "THUMOS14" and all(c in _THUMOS14_FAMILIES for c in classes):
        return np.array([_THUMOS14_FAMILIES[c] for c in classes])
    # ActivityNet: no venue taxonomy at hand, so random families of about four classes.
    order = rng.permutation(len(classes))
    fam = np.empty(len(classes), dtype=int)
    fam[order] = np.arange(len(classes)) // 4
    return fam


def _build_world(spec: SyntheticSpec, classes: list[str], seed: int) -> _World:
    d, k, c = spec.latent_dim, spec.num_subactions, len(classes)
    half = spec.feat_dim // 2
    rng = _rng(seed, "world", spec.dataset, d)
    fam = _families(spec.dataset, classes, rng)
    fam_vec = rng.standard_normal((int(fam.max()) + 1, d))
    own_venue = rng.standard_normal((c, d))
    rho = spec.context_family_share
    venue_rgb = _unit(np.sqrt(rho) * fam_vec[fam] + np.sqrt(1 - rho) * own_venue)
    venue_flow = _unit(rng.standard_normal((c, d)))
    prim_rgb = _unit(rng.standard_normal((_NUM_PRIMITIVES, d)))
    prim_flow = _unit(rng.standard_normal((_NUM_PRIMITIVES, d)))
    shot_rgb = _unit(rng.standard_normal((_NUM_SHOT_LOOKS, d)))
    shot_flow = _unit(rng.standard_normal((_NUM_SHOT_LOOKS, d)))

    sub_rng = _rng(seed, "subactions", spec.dataset, d, k)
    subs = []
    for common_shape in ((c, 1, d), (c, 1, d)):
        common = sub_rng.standard_normal(common_shape)
        own = sub_rng.standard_normal((c, k, d))
        subs.append(_unit(np.sqrt(_SUBACTION_COHERENCE) * common
                          + np.sqrt(1 - _SUBACTION_COHERENCE) * own))
    key_phase = sub_rng.integers(0, k, size=c)
    prim_of = sub_rng.integers(0, _NUM_PRIMITIVES, size=(c, k))
    beta = np.full((c, k), spec.subaction_sharing)
    beta[np.arange(c), key_phase] = 0.0  # the distinctive phase shares nothing
    beta = beta[..., None]
    sub_rgb = _unit(np.sqrt(1 - beta) * subs[0] + np.sqrt(beta) * prim_rgb[prim_of])
    sub_flow = _unit(np.sqrt(1 - beta) * subs[1] + np.sqrt(beta) * prim_flow[prim_of])
    if spec.action_streams == "shared":  # one action signature, seen by both streams
        sub_flow = sub_rgb

    proj_rng = _rng(seed, "projection", spec.dataset, d, half)
    proj_rgb = proj_rng.standard_normal((d, half)) / np.sqrt(d)
    proj_flow = proj_rng.standard_normal((d, half)) / np.sqrt(d)
    scale_rgb = np.exp(spec.channel_log_std * proj_rng.standard_normal(half))
    scale_flow = np.exp(spec.channel_log_std * proj_rng.standard_normal(half))
    return _World(venue_rgb, venue_flow, sub_rgb, sub_flow, prim_rgb, prim_flow, shot_rgb,
                  shot_flow, proj_rgb, proj_flow, scale_rgb, scale_flow,
                  extra={"family": fam, "key_phase": key_phase})


# ---------------------------------------------------------------------------------------
# One video
# ---------------------------------------------------------------------------------------

def _ramp_envelope(tau: np.ndarray, start: np.ndarray, end: np.ndarray,
                   ramp: np.ndarray) -> np.ndarray:
    """Trapezoid envelope at times ``tau`` (all arguments broadcast together): 0 outside,
    1 inside, linear ramps of width ``ramp`` centred on each boundary (a box when 0)."""
    safe = np.maximum(ramp, 1e-9)
    rise = np.where(ramp > 0, np.clip((tau - start) / safe + 0.5, 0, 1), tau >= start)
    fall = np.where(ramp > 0, np.clip((end - tau) / safe + 0.5, 0, 1), tau < end)
    return np.minimum(rise, fall)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], width: float) -> np.ndarray:
    """Unit-variance Gaussian noise [T, n], Gaussian-smoothed along T (width in snippets)."""
    t, n = shape
    white = rng.standard_normal((t, n))
    if width < 0.3:  # narrower than a snippet: nothing to smooth
        return white
    radius = int(np.ceil(3 * width))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / width) ** 2)
    taps /= np.sqrt(np.sum(taps ** 2))  # keeps unit variance
    # Reflect-pad so the ends are as smooth as the middle (numpy reflects repeatedly when
    # the video is shorter than the kernel).
    padded = np.pad(white, ((radius, radius), (0, 0)), mode="reflect")
    if radius <= 12:  # short kernel: a sum of shifted copies is cheapest
        out = taps[0] * padded[:t]
        for j in range(1, len(taps)):
            out += taps[j] * padded[j:j + t]
        return out
    length = padded.shape[0] + len(taps) - 1
    spec = np.fft.rfft(padded, length, axis=0) * np.fft.rfft(taps, length)[:, None]
    return np.fft.irfft(spec, length, axis=0)[2 * radius: 2 * radius + t]


@dataclass
class VideoEvents:
    """The continuous-time draws of one video (seconds), before rendering to snippets.

    Useful to look inside the generator (notebooks, tests): where the latent actions really
    start and end, where the distractors and the venue shots are.
    """

    name: str
    duration: float
    classes: list[int]            # label classes of the video (indices), ascending
    inst_start: np.ndarray        # [I] latent (jittered) start of each annotated instance
    inst_end: np.ndarray          # [I] latent end
    inst_class: np.ndarray        # [I] class index
    inst_ramp: np.ndarray         # [I] ramp width (s)
    inst_amp: np.ndarray          # [I] strength
    inst_phases: np.ndarray       # [I, K] sub-action proportions (sum 1)
    inst_pert_rgb: np.ndarray     # [I, K, d] prototype perturbations
    inst_pert_flow: np.ndarray    # [I, K, d]
    shot_cuts: np.ndarray         # [S+1] shot boundaries, 0 .. >= duration
    shot_look: np.ndarray         # [S] generic look of each shot
    shot_venue: np.ndarray        # [S] venue class index shown in the shot, -1 for none
    dis_start: np.ndarray         # [J] distractor bursts (background only)
    dis_end: np.ndarray           # [J]
    dis_prim: np.ndarray          # [J] generic motion primitive
    dis_amp: np.ndarray           # [J]
    style_rgb: np.ndarray         # [d] constant per-video offsets
    style_flow: np.ndarray        # [d]


def _video_events(spec: SyntheticSpec, entry: dict, name: str, class_index: dict[str, int],
                  seed: int) -> VideoEvents:
    """Draw the events of one video. Each component has its own generator, keyed by
    (seed, video, component), so switching one factor off leaves the others unchanged."""
    d, k = spec.latent_dim, spec.num_subactions
    dur = float(entry["duration"])
    if not (np.isfinite(dur) and dur > 0):
        raise ValueError(f"video {name!r}: duration must be > 0, got {dur}")
    segs = _parse_entry(entry, class_index)
    video_classes = sorted({c for _, _, c in segs})

    # Shots: exponential lengths; a shot between actions shows a venue with some probability.
    r = _rng(seed, "video", name, "shots")
    cuts = [0.0]
    if spec.shots == "one":  # one look for the whole video: no cut ever changes it
        cuts.append(dur)
    while cuts[-1] < dur:
        cuts.append(cuts[-1] + r.exponential(spec.shot_seconds))
    n_shots = len(cuts) - 1
    look = r.integers(0, _NUM_SHOT_LOOKS, size=n_shots)
    is_venue = r.random(n_shots) < spec.context_shot_prob
    pick = r.integers(0, max(len(video_classes), 1), size=n_shots)
    venue = np.where(is_venue & bool(video_classes),
                     np.asarray(video_classes or [0])[pick], -1)

    # Instances: the annotated segments, with jittered latent boundaries.
    r = _rng(seed, "video", name, "instances")
    n_inst = len(segs)
    starts = np.array([s for s, _, _ in segs], dtype=float)
    ends = np.array([e for _, e, _ in segs], dtype=float)
    jit = r.standard_normal((n_inst, 2)) * spec.boundary_jitter_seconds
    ramp = spec.ramp_seconds * r.uniform(0.5, 1.5, size=n_inst)
    amp = np.exp(spec.amplitude_log_std * r.standard_normal(n_inst)
                 - 0.5 * spec.amplitude_log_std ** 2) * spec.action_strength
    phases = r.dirichlet(np.full(k, 3.0), size=n_inst) if n_inst else np.zeros((0, k))
    pert_rgb = r.standard_normal((n_inst, k, d)) * spec.instance_variation
    pert_flow = r.standard_normal((n_inst, k, d)) * spec.instance_variation
    if spec.action_streams == "shared":
        pert_flow = pert_rgb
    t0 = starts + jit[:, 0]
    t1 = np.maximum(ends + jit[:, 1], t0 + 0.1)  # an instance never collapses

    # Distractors: Poisson bursts of generic motion, kept only where nothing is annotated.
    r = _rng(seed, "video", name, "distractors")
    n_dis = int(r.poisson(spec.distractor_rate * dur / 60.0)) if spec.distractor_rate > 0 else 0
    centre = r.uniform(0, dur, size=n_dis)
    length = spec.distractor_seconds * np.exp(0.5 * r.standard_normal(n_dis))
    prim = r.integers(0, _NUM_PRIMITIVES, size=n_dis)
    damp = spec.distractor_strength * np.exp(0.3 * r.standard_normal(n_dis))
    a, b = centre - length / 2, centre + length / 2
    keep = ~np.any((starts[None, :] < b[:, None]) & (ends[None, :] > a[:, None]), axis=1)

    r = _rng(seed, "video", name, "style")
    style_rgb = spec.video_style * r.standard_normal(d)
    style_flow = 0.5 * spec.video_style * r.standard_normal(d)  # motion varies less with look
    cls = np.array([c for _, _, c in segs], dtype=int)
    return VideoEvents(name, dur, video_classes, t0, t1, cls, ramp, amp, phases, pert_rgb,
                       pert_flow, np.asarray(cuts), look, venue, a[keep], b[keep], prim[keep],
                       damp[keep], style_rgb, style_flow)


def _phase_weights(phase: np.ndarray, proportions: np.ndarray) -> np.ndarray:
    """Soft sub-action membership [I, K, ...] of phases [I, ...] in [0, 1]."""
    n, k = proportions.shape
    bounds = np.concatenate([np.zeros((n, 1)), np.cumsum(proportions, axis=1)], axis=1)
    bounds = bounds.reshape(n, k + 1, *(1,) * (phase.ndim - 1))
    ph = phase[:, None]
    soft = 0.04  # neighbouring phases blend over ~4% of the instance
    past = 1 / (1 + np.exp(-(ph - bounds) / soft))   # [I, K+1, ...] "after boundary j"
    w = past[:, :-1] - past[:, 1:]
    # Before the start (ramp-in) an instance looks like its first phase, after the end
    # (ramp-out) like its last.
    w[:, 0] = np.where(ph[:, 0] <= 0.0, 1.0, w[:, 0])
    w[:, -1] = np.where(ph[:, 0] >= 1.0, 1.0, w[:, -1])
    return w / np.maximum(w.sum(axis=1, keepdims=True), 1e-9)


def _render(spec: SyntheticSpec, world: _World, ev: VideoEvents, seed: int) -> np.ndarray:
    """Features [D, T] float32 of one video from its events (see the module docstring).

    Products use ``np.einsum`` rather than BLAS on purpose: the matrices are small, a
    threaded BLAS spends most of its time synchronising on a busy machine, and einsum's
    fixed summation order keeps the output bit-identical whatever the thread settings.

    The layers, in order: shots, venue visibility, action instances, context, distractors,
    style and smooth noise, then the observation. Each random draw comes from its own
    named stream (``_rng``), so no layer's draws depend on another's.
    """
    T, d = spec.num_snippets, spec.latent_dim
    dt = ev.duration / T
    # Snippet t averages the timeline over [t, t+1) * dt: four sub-samples per snippet.
    tau = (np.arange(T)[:, None] + (np.arange(_SUBSAMPLES) + 0.5) / _SUBSAMPLES) * dt  # [T, S]

    # Shots: the generic look (and camera motion) of the current shot, everywhere.
    n_shots = len(ev.shot_look)
    shot_of = np.clip(np.searchsorted(ev.shot_cuts, tau, side="right") - 1, 0, n_shots - 1)
    look = ev.shot_look[shot_of]                                                      # [T, S]
    rgb = world.shot_rgb[look].mean(axis=1)                                           # [T, d]
    flow = spec.background_motion * world.shot_flow[look].mean(axis=1)

    # Venue visibility per label class: venue shots, and always during its actions.
    col = {c: i for i, c in enumerate(ev.classes)}
    venue = np.zeros((len(ev.classes), T))
    shot_venue = ev.shot_venue[shot_of]                                               # [T, S]
    for c, i in col.items():
        venue[i] = (shot_venue == c).mean(axis=1)

    _add_instances(spec, world, ev, tau, dt, rgb, flow, venue, col)
    if ev.classes:
        rgb += spec.context_strength * np.einsum("ct,cd->td", venue,
                                                 world.venue_rgb[ev.classes])
        flow += (spec.context_strength * spec.flow_context_ratio
                 * np.einsum("ct,cd->td", venue, world.venue_flow[ev.classes]))

    _add_distractors(spec, world, ev, tau, rgb, flow)

    # Per-video style, smooth latent noise and a smooth log-normal gain.
    rgb += ev.style_rgb
    flow += ev.style_flow
    r = _rng(seed, "video", ev.name, "noise", T)
    noise = _smooth_noise(r, (T, 2 * d + 2), spec.smooth_seconds / dt)
    rgb += spec.noise_std * noise[:, :d]
    flow += spec.noise_std * noise[:, d:2 * d]
    gain = np.exp(spec.gain_log_std * noise[:, 2 * d:] - 0.5 * spec.gain_log_std ** 2)  # [T, 2]

    return _observe(spec, world, ev, seed, rgb, flow, gain)


def _add_instances(spec: SyntheticSpec, world: _World, ev: VideoEvents, tau: np.ndarray,
                   dt: float, rgb: np.ndarray, flow: np.ndarray, venue: np.ndarray,
                   col: dict) -> None:
    """Add the action instances to ``rgb`` / ``flow`` [T, d] and raise their classes'
    venue visibility while they run (all in place)."""
    T = rgb.shape[0]
    # Action instances: trapezoid envelope x sub-action phases x perturbed prototypes.
    # Instances are short, so everything is computed on the snippets each envelope reaches:
    # a ragged list of (instance, snippet) pairs, instance-major.
    n_inst = len(ev.inst_class)
    if not n_inst:
        return
    reach = ev.inst_ramp / 2
    t_lo = np.clip(np.floor((ev.inst_start - reach) / dt).astype(int), 0, T)
    t_hi = np.clip(np.ceil((ev.inst_end + reach) / dt).astype(int) + 1, 0, T)
    width = np.maximum(t_hi - t_lo, 0)
    first = np.cumsum(width) - width                                          # pair offsets
    inst = np.repeat(np.arange(n_inst), width)                                # [P]
    snip = t_lo[inst] + np.arange(width.sum()) - first[inst]
    win = tau[snip]                                                           # [P, S]
    env = _ramp_envelope(win, ev.inst_start[inst, None], ev.inst_end[inst, None],
                         ev.inst_ramp[inst, None])                            # [P, S]
    length = (ev.inst_end - ev.inst_start)[inst, None]
    phase = np.clip((win - ev.inst_start[inst, None]) / length, 0.0, 1.0)    # [P, S]
    w = _phase_weights(phase, ev.inst_phases[inst])                           # [P, K, S]
    coef = (w * env[:, None]).mean(axis=-1) * ev.inst_amp[inst, None]         # [P, K]
    protos_rgb = world.sub_rgb[ev.inst_class] + ev.inst_pert_rgb                # [I, K, d]
    protos_flow = world.sub_flow[ev.inst_class] + ev.inst_pert_flow
    add_rgb = np.einsum("pk,pkd->pd", coef, protos_rgb[inst])                 # [P, d]
    add_flow = spec.motion_strength * np.einsum("pk,pkd->pd", coef, protos_flow[inst])
    env_t = env.mean(axis=-1)                                                 # [P]
    for i in range(n_inst):
        lo, hi, p = t_lo[i], t_lo[i] + width[i], slice(first[i], first[i] + width[i])
        rgb[lo:hi] += add_rgb[p]
        flow[lo:hi] += add_flow[p]
        # The venue of a class is visible while any of its instances is.
        row = col[int(ev.inst_class[i])]
        np.maximum(venue[row, lo:hi], env_t[p], out=venue[row, lo:hi])


def _add_distractors(spec: SyntheticSpec, world: _World, ev: VideoEvents, tau: np.ndarray,
                     rgb: np.ndarray, flow: np.ndarray) -> None:
    """Add the distractors (generic motion bursts) to ``rgb`` / ``flow`` in place."""
    # Distractors: generic motion bursts (strong flow, weaker appearance change).
    if len(ev.dis_prim):
        ramp = np.minimum((ev.dis_end - ev.dis_start) / 2, 1.0)
        denv = _ramp_envelope(tau[None], ev.dis_start[:, None, None], ev.dis_end[:, None, None],
                              ramp[:, None, None]).mean(axis=-1)
        denv *= ev.dis_amp[:, None]                                                   # [J, T]
        rgb += 0.5 * spec.action_strength * np.einsum("jt,jd->td", denv,
                                                      world.prim_rgb[ev.dis_prim])
        flow += spec.motion_strength * np.einsum("jt,jd->td", denv, world.prim_flow[ev.dis_prim])


def _observe(spec: SyntheticSpec, world: _World, ev: VideoEvents, seed: int,
             rgb: np.ndarray, flow: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """The observed features [D, T] float32 of the latent streams ``rgb`` / ``flow``."""
    T = rgb.shape[0]
    # Observation: random projection to D/2 channels per stream, bias, ReLU, channel scale.
    # It runs in float32, written straight into the [D, T] output: this part dominates the
    # cost of the D=2048 preset.
    half = spec.feat_dim // 2
    r = _rng(seed, "video", ev.name, "observation", T, half)
    out = np.empty((spec.feat_dim, T), dtype=np.float32)
    for lo_ch, z, proj, scale, g in ((0, rgb, world.obs_rgb, world.scale_rgb, gain[:, 0]),
                                     (half, flow, world.obs_flow, world.scale_flow, gain[:, 1])):
        view = out[lo_ch:lo_ch + half]                                               # [D/2, T]
        # Contiguous [D/2, d] x [d, T] operands: the layout einsum's inner loop is fast on.
        np.einsum("dk,kt->dt", proj, np.ascontiguousarray(z.T, dtype=np.float32), out=view)
        relu = spec.observation == "relu"
        if relu:
            view -= np.float32(spec.sparsity)
        if spec.obs_noise_std > 0:
            obs = r.standard_normal(view.shape, dtype=np.float32)
            obs *= np.float32(spec.obs_noise_std)
            view += obs
        if relu:
            np.maximum(view, 0.0, out=view)
        view *= scale.astype(np.float32)[:, None]
        view *= g.astype(np.float32)[None, :]
    return out


# ---------------------------------------------------------------------------------------
# Public generation API
# ---------------------------------------------------------------------------------------

def _resolve_splits(spec: SyntheticSpec, splits: Sequence[str] | str | None) -> list[str]:
    names = [s for s, _ in _SPLITS[spec.dataset]]
    if splits is None:
        return names
    if isinstance(splits, str):
        splits = [splits]
    bad = [s for s in splits if s not in names]
    if bad:
        raise ValueError(f"unknown split(s) {bad} for {spec.dataset}; expected {names}")
    return list(dict.fromkeys(splits))


def iter_videos(preset: str | SyntheticSpec, seed: int = 0, split: str | None = None,
                videos: Sequence[str] | None = None
                ) -> Iterator[tuple[str, str, np.ndarray, np.ndarray, dict]]:
    """Yield ``(split, name, features [D, T] float32, label [C] float32, entry)`` one video
    at a time (the streaming primitive behind :func:`generate` and :func:`write_dataset`).

    ``videos`` restricts the output to these names (each must belong to the preset).
    """
    spec = get_spec(preset)
    seed = _check_seed(seed)
    gt = _load_gt(spec.dataset)
    classes = list(gt["classes"])
    class_index = {c: i for i, c in enumerate(classes)}
    world = _build_world(spec, classes, seed)
    wanted = set(videos) if videos is not None else None
    seen: set[str] = set()
    for sp in _resolve_splits(spec, split):
        for name in _split_names(spec, gt, sp):
            if wanted is not None and name not in wanted:
                continue
            seen.add(name)
            entry = gt["database"][name]
            label = np.zeros(len(classes), dtype=np.float32)
            for ann in entry["annotations"]:
                label[class_index[ann["label"]]] = 1.0
            events = _video_events(spec, entry, name, class_index, seed)
            feats = _render(spec, world, events, seed)
            yield sp, name, feats, label, entry
    if wanted is not None and wanted - seen:
        missing = sorted(wanted - seen)
        raise ValueError(f"video(s) not in preset {spec.name!r} (splits "
                         f"{_resolve_splits(spec, split)}): {missing[:5]}"
                         + (" ..." if len(missing) > 5 else ""))


def video_events(preset: str | SyntheticSpec, name: str, seed: int = 0) -> VideoEvents:
    """The latent events (true action extents, distractors, shots) of one video."""
    spec = get_spec(preset)
    gt = _load_gt(spec.dataset)
    if name not in gt["database"]:
        raise ValueError(f"video {name!r} is not in the {spec.dataset} annotations")
    class_index = {c: i for i, c in enumerate(gt["classes"])}
    return _video_events(spec, gt["database"][name], name, class_index, _check_seed(seed))


def ground_truth(preset: str | SyntheticSpec) -> dict:
    """The real annotations restricted to the videos of a preset (same format as
    :func:`ecmlib.data.features.load_annotations`), e.g. to score an ActivityNet mini preset."""
    spec = get_spec(preset)
    gt = _load_gt(spec.dataset)
    keep = {n for sp, _ in _SPLITS[spec.dataset] for n in _split_names(spec, gt, sp)}
    out = {k: copy.deepcopy(v) for k, v in gt.items() if k != "database"}
    # A deep copy: callers may edit it without touching the cached annotations.
    out["database"] = {k: copy.deepcopy(v) for k, v in gt["database"].items() if k in keep}
    return out


def generate(preset: str | SyntheticSpec, seed: int = 0,
             splits: Sequence[str] | str | None = None,
             videos: Sequence[str] | None = None) -> dict[str, Any]:
    """Generate a synthetic benchmark in memory -> ``{split: FeatureSet}``.

    ``preset`` is a name of :data:`PRESETS` or a :class:`SyntheticSpec`; ``splits`` picks
    on-disk split names (THUMOS14 'val'/'test', ActivityNet 'training'/'validation');
    ``videos`` restricts to a subset of video names (handy for a few videos of a large
    preset). The same (preset, seed, video) always gives the same arrays.
    """
    from .features import FeatureSet
    spec = get_spec(preset)
    seed = _check_seed(seed)
    gt = _load_gt(spec.dataset)
    classes = list(gt["classes"])
    wanted = set(videos) if videos is not None else None
    out: dict[str, Any] = {}
    for sp in _resolve_splits(spec, splits):
        names = [n for n in _split_names(spec, gt, sp) if wanted is None or n in wanted]
        n = len(names)
        # Preallocate once and fill in place: the videos are never held twice.
        feats = np.empty((n, spec.feat_dim, spec.num_snippets), dtype=np.float32)
        labels = np.zeros((n, len(classes)), dtype=np.float32)
        frame_num = np.zeros(n, dtype=np.int64)
        fps = np.zeros(n, dtype=np.float64)
        duration = np.zeros(n, dtype=np.float64)
        if n:
            # iter_videos yields in the order of `names` (the split's sorted order).
            for i, (_, _, x, y, entry) in enumerate(iter_videos(spec, seed, sp, videos=names)):
                feats[i], labels[i] = x, y
                frame_num[i] = int(entry["frame_num"])
                fps[i] = float(entry["fps"])
                duration[i] = float(entry["duration"])
        out[sp] = FeatureSet(dataset=spec.dataset, split=sp, classes=classes, names=names,
                             features=feats, labels=labels, frame_num=frame_num, fps=fps,
                             duration=duration, source=f"synthetic:{spec.name}:seed={seed}")
    if wanted is not None:
        found = {n for fs in out.values() for n in fs.names}
        if wanted - found:
            missing = sorted(wanted - found)
            raise ValueError(f"video(s) not in preset {spec.name!r}: {missing[:5]}"
                             + (" ..." if len(missing) > 5 else ""))
    return out


def _version() -> str:
    from .. import __version__
    return __version__


def write_dataset(preset: str | SyntheticSpec, out_dir: str | Path, seed: int = 0,
                  overwrite: bool = False, progress: bool = False) -> Path:
    """Write a preset in the official ECM layout ``<out_dir>/<split>/<video>.npz``.

    Videos are generated and written one at a time (each file atomically); a
    ``manifest.json`` (preset, spec, seed, counts, ecmlib version) is written last, so a
    folder without one is an interrupted write. An existing non-empty ``out_dir`` is refused
    unless ``overwrite``, which first removes the split folders and manifest written here
    before. Returns ``out_dir``.
    """
    from .features import write_official_npz
    from ..io import atomic_write_json
    spec = get_spec(preset)
    seed = _check_seed(seed)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out}: folder is not empty; choose another output folder "
                                  f"or pass overwrite=True (--overwrite)")
        for sp, _ in _SPLITS[spec.dataset]:
            if (out / sp).is_dir():
                shutil.rmtree(out / sp)
        (out / "manifest.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    start = time.perf_counter()
    for sp, name, x, y, entry in iter_videos(spec, seed):
        write_official_npz(out / sp / f"{name}.npz", x, y, name, int(entry["frame_num"]),
                           float(entry["fps"]))
        counts[sp] = counts.get(sp, 0) + 1
        if progress and sum(counts.values()) % 100 == 0:
            print(f"  {sum(counts.values())} videos written", file=sys.stderr)
    manifest = {
        "preset": spec.name,
        "dataset": spec.dataset,
        "seed": int(seed),
        "layout": "official",
        "counts": counts,
        "feat_dim": spec.feat_dim,
        "num_snippets": spec.num_snippets,
        "spec": spec.to_dict(),
        "ecmlib_version": _version(),
        "seconds": round(time.perf_counter() - start, 2),
    }
    atomic_write_json(out / "manifest.json", manifest)
    return out


def parse_knobs(pairs: Sequence[str]) -> dict[str, Any]:
    """'name=value' strings -> typed SyntheticSpec changes (for command lines)."""
    types = {f.name: f.type for f in dataclasses.fields(SyntheticSpec)}
    changes: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set {pair!r} must look like name=value")
        key, value = (p.strip() for p in pair.split("=", 1))
        if key not in types:
            raise ValueError(f"--set: unknown knob {key!r}; known: {', '.join(types)}")
        typ = str(types[key])  # annotations are strings here, e.g. 'float | None'
        try:
            if value.lower() == "none" and "None" in typ:
                changes[key] = None
            elif typ.startswith("int"):
                changes[key] = int(value)
            elif typ.startswith("float"):
                changes[key] = float(value)
            else:
                changes[key] = value
        except ValueError:
            raise ValueError(f"--set {pair!r}: cannot read {value!r} as {typ}") from None
    return changes


def synth_main(argv: list[str] | None = None) -> int:
    """``python -m ecmlib synth``: write a synthetic preset in the official ECM layout."""
    parser = argparse.ArgumentParser(
        prog="python -m ecmlib synth",
        description="Generate a synthetic THUMOS14 / ActivityNet feature benchmark "
                    "(official ECM layout: <out>/<split>/<video>.npz + manifest.json).")
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the content of a non-empty output folder")
    parser.add_argument("--ablate", action="append", default=[], choices=sorted(FACTORS),
                        help="switch a difficulty factor off (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                        help="override a SyntheticSpec knob (repeatable)")
    args = parser.parse_args(argv)
    try:
        spec = get_spec(args.preset).replace(**parse_knobs(args.set)).ablate(*args.ablate)
        start = time.perf_counter()
        out = write_dataset(spec, args.out, seed=args.seed, overwrite=args.overwrite,
                            progress=True)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    manifest = json.loads((out / "manifest.json").read_text())
    counts = ", ".join(f"{k}: {v}" for k, v in manifest["counts"].items())
    print(f"wrote {spec.name} (seed {args.seed}) to {out} [{counts}] "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
