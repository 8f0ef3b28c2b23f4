"""Facts about the three benchmarks, in one place: the THUMOS14 class order and challenge
indices, and per dataset its folder under ``data/``, its splits and subsets, its class
count and ECM's fixed snippet count T."""

from __future__ import annotations

from typing import Any

#: The 20 THUMOS14 detection classes in ECM's order.
THUMOS14_CLASSES: list[str] = [
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving",
    "CricketBowling", "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow",
    "HighJump", "JavelinThrow", "LongJump", "PoleVault", "Shotput", "SoccerPenalty",
    "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
]

#: Their THUMOS-101 indices (the challenge's detection format writes classes by index).
THUMOS101_INDEX: dict[str, int] = dict(zip(
    THUMOS14_CLASSES,
    [7, 9, 12, 21, 22, 23, 24, 26, 31, 33, 36, 40, 45, 51, 68, 79, 85, 92, 93, 97]))

#: Per dataset: folder under data/, on-disk feature splits (train, test), gt subsets
#: (train, test), number of classes and ECM's fixed snippet count T.
DATASETS: dict[str, dict[str, Any]] = {
    "THUMOS14": {
        "folder": "thumos14",
        "splits": ("val", "test"),
        "subsets": ("train", "test"),
        "num_classes": 20,
        "num_snippets": 750,
    },
    "ActivityNet1.2": {
        "folder": "activitynet1.2",
        "splits": ("training", "validation"),
        "subsets": ("training", "validation"),
        "num_classes": 100,
        "num_snippets": 100,
    },
    "ActivityNet1.3": {
        "folder": "activitynet1.3",
        "splits": ("training", "validation"),
        "subsets": ("training", "validation"),
        "num_classes": 200,
        "num_snippets": 100,
    },
}


def dataset_info(dataset: str) -> dict[str, Any]:
    """``DATASETS[dataset]``, or a ValueError naming the datasets there are."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[dataset]
