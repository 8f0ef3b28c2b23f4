"""The results of record as text: markdown tables, generated sentences, each study's
``.md`` summary, and the README blocks between ``<!-- results-NN -->`` markers
(``python -m ecmlib report``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .analysis import (fast_validation, ingredient_summary,
                       lead_changes, paired_summary, run_length_summary, switch_effects,
                       world_summary, world_trend)
from .collect import default_results_dir, read_curves, read_study
from .design import Cell, Study, studies

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
