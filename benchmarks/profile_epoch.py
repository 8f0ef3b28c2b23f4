"""Where a training epoch's time goes: torch.profiler over ``train_epoch`` at one thread.

Profiles ``--epochs`` epochs of ECM on ``thumos14-mini`` (after one warm-up epoch) in the
record's setting, the trunk alone (pre stream; ``bench_train`` (1)'s denominator) and in
fast mode's settings (bf16, the feature and the taps path, bits dropout masks), and
prints each one's self CPU time by kind of work and its top operators. The features are
held as ``train`` holds them (bf16 and time-major in bf16 runs; the feature path's
grouped snippets kept for the run). For the share of evaluation in a whole run, see
``history.csv`` (``train_time_s``, ``eval_time_s``) of the runs ``bench_train.py`` (3)
trains.

Usage: python benchmarks/profile_epoch.py [--epochs N] [--top K] [--shapes]
                                          [--only record trunk fast fast-taps]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from ecmlib.method.model import ECMNet
from ecmlib.training.setup import load_data, make_config
from ecmlib.training.step import training_inputs
from ecmlib.training.train import make_optimizer, train_epoch

SETTINGS = {
    "record": [],
    "trunk": ["model.streams=pre"],          # bench_train's denominator: the pre stream alone
    "fast": ["train.precision=bf16", "model.aggregation=features", "model.dropout_mask=bits"],
    "fast-taps": ["train.precision=bf16", "model.aggregation=taps", "model.dropout_mask=bits"],
}

#: Kind of work of an operator (first match of its name), for the summary lines.
KINDS = (
    ("convolutions (trunk, classifier, transition)", ("convolution",)),
    ("matmuls (streams' rows and aggregation)", ("aten::mm", "aten::bmm", "aten::addmm")),
    # (bits masks are unpacked by numpy.unpackbits, which torch.profiler does not see)
    ("dropout masks (random draws)", ("uniform_", "random_", "aten::lt")),
    ("copies and casts", ("copy_", "_to_copy", "contiguous", "clone")),
    ("gathers and scatters", ("index", "gather", "scatter", "fill_", "zero_")),
    ("optimiser", ("Optimizer", "lerp", "addcdiv", "addcmul", "sqrt")),
    ("top-k", ("topk",)),
)


def kind_of(name: str) -> str:
    for kind, keys in KINDS:
        if any(k in name for k in keys):
            return kind
    return "other element-wise and bookkeeping"


def profile_setting(name: str, data, epochs: int, top: int, shapes: bool = False) -> None:
    cfg = make_config("THUMOS14", synthetic="thumos14-mini",
                      overrides=["train.device=cpu", *SETTINGS[name]])
    y = torch.from_numpy(data[0].labels)
    torch.manual_seed(0)
    model = ECMNet(cfg.model).train()
    opt = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(0)
    x, grouped = training_inputs(model, torch.from_numpy(data[0].features), cfg)
    train_epoch(model, opt, x, y, cfg, 1, gen, grouped)                     # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=shapes) as prof:
        for _ in range(epochs):
            train_epoch(model, opt, x, y, cfg, 1, gen, grouped)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6 / epochs
    by_kind: dict[str, float] = defaultdict(float)
    for e in events:
        by_kind[kind_of(e.key)] += e.self_cpu_time_total / 1e6 / epochs
    print(f"\n{name}: {cfg.train.precision}, {'taps' if model.aggregate_taps else 'feature'} "
          f"path, {model.base_module.dropout.mask} dropout masks; {total:.3f} s of self CPU time per "
          f"epoch (profiled, {epochs} epoch(s))")
    for kind, sec in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"    {100 * sec / total:5.1f} %  {sec:.3f} s  {kind}")
    print(f"  top {top} operators{' by input shapes' if shapes else ''}:")
    listed = prof.key_averages(group_by_input_shape=True) if shapes else events
    for e in sorted(listed, key=lambda e: -e.self_cpu_time_total)[:top]:
        sec = e.self_cpu_time_total / 1e6 / epochs
        shape = f" {e.input_shapes}"[:90] if shapes else ""
        print(f"    {100 * sec / total:5.1f} %  {sec:.3f} s  {e.key} ({e.count // epochs} calls){shape}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="profiled epochs per setting")
    ap.add_argument("--top", type=int, default=8, help="operators listed per setting")
    ap.add_argument("--only", choices=list(SETTINGS), nargs="+", help="these settings only")
    ap.add_argument("--shapes", action="store_true", help="list operators by input shapes")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = make_config("THUMOS14", synthetic="thumos14-mini", overrides=["train.device=cpu"])
    data = load_data(cfg)
    print(f"thumos14-mini, {len(data[0])} training videos, one thread, torch {torch.__version__}")
    for name in args.only or SETTINGS:
        profile_setting(name, data, args.epochs, args.top, args.shapes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
