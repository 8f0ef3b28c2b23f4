"""Paired statistics of the results of record: setting − ECM and ECM − pre-only by seed
with 95 % t intervals and verdicts, Welch intervals between worlds, run-length and
fast-mode comparisons. Metric values stay fractions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .design import LEVELS, WORLDS, ingredient_worlds

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
