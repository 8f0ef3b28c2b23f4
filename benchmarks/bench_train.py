"""Training-runner speed, measured side by side in one run.

CPU (always):
  1. one epoch of ECM on ``thumos14-mini`` (all streams, all losses) over the same epoch
     of the pure trunk+classifier forward/backward (pre stream only), both through the
     training loop (``train_epoch``) at one thread, the record's mode  -> target <= 1.6x
     (the same at all threads is printed too, and the two epochs' floating-point
     operations: the ratio the arithmetic alone sets, at equal speed per operation);
  2. the whole mini protocol (the preset's epochs, evaluation every ``eval_every``)
     -> target <= 5 min on a 2-core CPU; prints its length, wall time, the epoch where
     mAP@0.5 first rises above 0 and the best mAP;
  3. a 150-epoch ECM run at one thread in the record's setting over the same run in fast
     mode (``train.fast=true``), three rounds in ABBA order -> target >= 2x, printed with
     the CPU's bf16 support. This machine's speed drifts within minutes, which whole runs
     in turn only average, so two more measures are printed: the two settings' epochs
     alone, taking turns epoch by epoch, and the record's run once beside fast mode's
     twice in two processes started together (the same minutes of the machine for both).
GPU (only when CUDA is present; prints which card):
  ``thumos14-full``, batch 16, hidden 2048: one training epoch (target <= 0.3 s on an H100),
  evaluation of the 210 test videos (<= 1 s), the 150-epoch protocol with per-epoch
  evaluation (<= 90 s) and peak GPU memory (<= 6 GiB).

Usage: python benchmarks/bench_train.py [--skip-protocol] [--epochs N] [--fast-epochs N]
                                        [--rounds N] [--no-side-by-side] [--gpu | --gpu-only]
"""

from __future__ import annotations

import argparse
import sys
import time
from statistics import median

import torch

from ecmlib.method.model import ECMNet, aggregates_taps
from ecmlib.training import speed
from ecmlib.training.inference import evaluate_model
from ecmlib.training.setup import load_data, make_config
from ecmlib.training.step import training_inputs
from ecmlib.training.train import make_optimizer, train, train_epoch


def _epoch(model: ECMNet, opt: torch.optim.Optimizer, cfg, x: torch.Tensor, y: torch.Tensor,
           grouped: torch.Tensor | None, generator: torch.Generator) -> float:
    """Wall time of one epoch of the training loop itself (``train_epoch``)."""
    t0 = time.perf_counter()
    train_epoch(model, opt, x, y, cfg, 1, generator, grouped)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _epoch_runs(cfgs: dict, data) -> dict[str, tuple]:
    """Per named config, ``_epoch``'s arguments: model, optimiser, config, features, labels,
    groups, generator; each model built, and its features held, as ``train`` does it."""
    device = torch.device("cuda" if next(iter(cfgs.values())).train.device != "cpu"
                          and torch.cuda.is_available() else "cpu")
    x = torch.from_numpy(data[0].features).to(device)
    y = torch.from_numpy(data[0].labels).to(device)
    runs = {}
    for name, c in cfgs.items():
        torch.manual_seed(0)
        model = ECMNet(c.model).to(device).train()
        xs, grouped = training_inputs(model, x, c)
        runs[name] = (model, make_optimizer(model, c), c, xs, y, grouped,
                      torch.Generator().manual_seed(0))
    return runs


def alternating_epochs(cfgs: dict, data, repeats: int = 9) -> dict[str, list[float]]:
    """Seconds of ``repeats`` epochs of ``train_epoch`` per named config, the configs taking
    turns epoch by epoch on the same data (a machine that drifts favours none of them)."""
    runs = _epoch_runs(cfgs, data)
    for run in runs.values():
        _epoch(*run)                                                               # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(_epoch(*run))
    return times


def epoch_flops(cfgs: dict, data) -> dict[str, float]:
    """Floating-point operations of one epoch of ``train_epoch`` per named config, as
    ``torch.utils.flop_counter`` counts them (convolutions and matmuls, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode
    out = {}
    for name, run in _epoch_runs(cfgs, data).items():
        with FlopCounterMode(display=False) as counter:
            _epoch(*run)
        out[name] = float(counter.get_total_flops())
    return out


def epoch_ratio(cfg, data, repeats: int = 9) -> tuple[float, float, list[float]]:
    """(ECM epoch median, trunk epoch median, each repeat's ECM/trunk ratio): ECM with
    ``cfg``'s streams, the trunk with the pre stream alone (trunk, classifier, top-k, L_pre)."""
    times = alternating_epochs(_ecm_and_trunk(cfg), data, repeats)
    ratios = [e / t for e, t in zip(times["ecm"], times["trunk"])]
    return median(times["ecm"]), median(times["trunk"]), ratios


def _ecm_and_trunk(cfg) -> dict:
    return {"ecm": cfg, "trunk": cfg.with_overrides({"model.streams": "pre"})}


def cpu_part(skip_protocol: bool, epochs: int | None) -> bool:
    cfg = make_config("THUMOS14", synthetic="thumos14-mini", epochs=epochs,
                      overrides=["train.device=cpu"])
    t0 = time.perf_counter()
    data = load_data(cfg)
    print(f"thumos14-mini: {len(data[0])} train / {len(data[1])} test videos, "
          f"D={cfg.model.feat_dim} T={cfg.model.num_snippets} H={cfg.model.hidden_dim}, "
          f"generated in {time.perf_counter() - t0:.1f} s, {torch.get_num_threads()} CPU threads")
    # The record trains one thread per run: the target is at one thread; all threads shown too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ecm, trunk, ratios = epoch_ratio(cfg, data)
    torch.set_num_threads(threads)
    ratio = median(ratios)
    path = "taps" if aggregates_taps(cfg.model) else "feature"
    print(f"(1) epoch at 1 thread (the record's mode: fp32, {path} path): trunk+classifier "
          f"{trunk:.2f} s, ECM {ecm:.2f} s (medians); ECM/trunk per repeat: median {ratio:.2f}x, "
          f"range {min(ratios):.2f}-{max(ratios):.2f}x (target <= 1.6x): "
          f"{'PASS' if ratio <= 1.6 else 'FAIL'}")
    flops = epoch_flops(_ecm_and_trunk(cfg), data)
    print(f"    arithmetic (torch.utils.flop_counter, one epoch): ECM {flops['ecm'] / 1e9:.1f} "
          f"GFLOP, trunk+classifier {flops['trunk'] / 1e9:.1f} GFLOP: "
          f"{flops['ecm'] / flops['trunk']:.2f}x at equal speed per operation")
    if threads > 1:
        ecm_n, trunk_n, ratios_n = epoch_ratio(cfg, data)
        print(f"    at {threads} threads (not the record's mode): trunk+classifier {trunk_n:.2f} s, "
              f"ECM {ecm_n:.2f} s, ratio median {median(ratios_n):.2f}x")
    ok = ratio <= 1.6
    if skip_protocol:
        return ok
    res = train(cfg, data=data, progress=False, log=None)
    wall = res.metrics["wall_time_s"]
    evals = [r for r in res.history if "mAP@0.5" in r]
    first = next((r["epoch"] for r in evals if r["mAP@0.5"] > 0), None)
    print(f"(2) protocol: {cfg.train.epochs} epochs, evaluation every {cfg.eval.eval_every}: "
          f"{wall:.0f} s (target <= 300 s): {'PASS' if wall <= 300 else 'FAIL'}")
    print(f"    mAP@0.5 first > 0 at epoch {first}; best epoch {res.best_epoch}: "
          f"mAP@0.5 {res.metrics['mAP@0.5']:.4f}, avg 0.1:0.7 {res.metrics['average_mAP@0.1:0.7']:.4f}")
    print("    curve (epoch: mAP@0.5): " + ", ".join(f"{r['epoch']}: {r['mAP@0.5']:.3f}" for r in evals))
    return ok and wall <= 300


#: (3)'s two settings, each a 150-epoch ECM run at one thread with evaluation every 5 epochs
RUN_BASE = ["train.device=cpu", "train.num_threads=1", "eval.eval_every=5", "train.seed=0"]
SETTINGS = {"record": [], "fast": ["train.fast=true"]}


def _timed_run(name: str, epochs: int, data=None) -> tuple[float, str, object]:
    """(wall seconds, a line describing the run, the data) of one run in setting ``name``."""
    cfg = make_config("THUMOS14", synthetic="thumos14-mini", epochs=epochs,
                      overrides=RUN_BASE + SETTINGS[name])
    data = data or load_data(cfg)
    res = train(cfg, data=data, progress=False, log=None)
    m, hist = res.metrics, res.history
    epochs_s = sum(row["train_time_s"] for row in hist)
    evals_s = sum(row.get("eval_time_s", 0.0) for row in hist)
    line = (f"{name:<7} {m['wall_time_s']:6.1f} s (epochs {epochs_s:.1f} s, evaluation "
            f"{evals_s:.1f} s)  {m['precision']}, {m['aggregation_path']} path, "
            f"{m['dropout_mask']} dropout masks, last mAP@0.5 "
            f"{m['last_epoch'].get('mAP@0.5', float('nan')):.4f}")
    return m["wall_time_s"], line, data


def fast_part(epochs: int, rounds: int, side_by_side: bool) -> bool:
    """(3) The record's setting (fp32, the rule's aggregation path, torch's dropout masks)
    against fast mode (``train.fast=true``), each an ``epochs``-long ECM run on thumos14-mini
    at one thread with evaluation every 5 epochs, on the same data. ``rounds`` rounds in
    ABBA order (record, fast, fast, record, ...), so a machine that drifts faster or slower
    during the benchmark favours neither; the ratio is of the summed wall times. Then, for
    information, the epochs alone taking turns and (``side_by_side``) the two settings'
    runs side by side in two processes."""
    torch.set_num_threads(1)
    walls: dict[str, list[float]] = {"record": [], "fast": []}
    data = None
    for r in range(rounds):
        for name in (("record", "fast") if r % 2 == 0 else ("fast", "record")):
            wall, line, data = _timed_run(name, epochs, data)
            walls[name].append(wall)
            print("    " + line)
    ratio = sum(walls["record"]) / sum(walls["fast"])
    _fast_epochs_alternating(data)
    if side_by_side:
        _side_by_side(epochs)
    print(f"(3) {epochs}-epoch ECM run at one thread, {rounds} round(s): fast mode {ratio:.2f}x "
          f"faster than the record's setting (CPU bf16: {speed.cpu_bf16() or 'none'}; target >= 2x): "
          f"{'PASS' if ratio >= 2 else 'FAIL'}")
    return ratio >= 2


def _side_worker(name: str, runs: int, epochs: int, barrier, queue) -> None:
    try:
        torch.set_num_threads(1)
        data = load_data(make_config("THUMOS14", synthetic="thumos14-mini", overrides=RUN_BASE))
        barrier.wait(timeout=600)                    # both processes start training together
        queue.put((name, [_timed_run(name, epochs, data)[:2] for _ in range(runs)]))
    except BaseException as e:                       # the parent reports it instead of waiting
        queue.put((name, f"{type(e).__name__}: {e}"))
        raise


def _side_by_side(epochs: int) -> None:
    """The record's setting once and fast mode twice in a row, in two processes started
    together at one thread each (information): both see the same minutes of the machine
    (its speed drifts within minutes), at the price of sharing its memory bandwidth, as a
    grid's two cells do. Whichever process finishes first leaves the other the machine
    alone for its last seconds (a small bias towards that one)."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_side_worker, args=(name, runs, epochs, barrier, queue))
             for name, runs in (("record", 1), ("fast", 2))]
    for p in procs:
        p.start()
    got = dict(queue.get(timeout=3600) for _ in procs)
    for p in procs:
        p.join()
    failed = {name: why for name, why in got.items() if isinstance(why, str)}
    if failed:
        raise RuntimeError(f"side-by-side run failed: {failed}")
    for name in ("record", "fast"):
        for _, line in got[name]:
            print("    side by side: " + line)
    fast = [w for w, _ in got["fast"]]
    print(f"    side by side (record once beside fast twice, two processes): record "
          f"{got['record'][0][0]:.1f} s over fast {sum(fast) / len(fast):.1f} s (mean of "
          f"{len(fast)}): {got['record'][0][0] / (sum(fast) / len(fast)):.2f}x")


def _fast_epochs_alternating(data, repeats: int = 9) -> None:
    """The two settings' training epochs taking turns, epoch by epoch (information: the
    whole runs above are what the target is about, evaluation included)."""
    cfgs = {name: make_config("THUMOS14", synthetic="thumos14-mini", overrides=RUN_BASE + extra)
            for name, extra in SETTINGS.items()}
    cfgs["fast"] = speed.resolve(cfgs["fast"], torch.device("cpu"))
    times = alternating_epochs(cfgs, data, repeats)
    ratios = [r / f for r, f in zip(times["record"], times["fast"])]
    print(f"    epochs alone, taking turns ({repeats} each, {cfgs['fast'].model.aggregation} path in "
          f"fast mode): record {median(times['record']):.3f} s, fast {median(times['fast']):.3f} s "
          f"(medians); record/fast per pair: median {median(ratios):.2f}x, range "
          f"{min(ratios):.2f}-{max(ratios):.2f}x")


def gpu_part() -> bool:
    if not torch.cuda.is_available():
        print("GPU part: no CUDA device here; skipped (run this script on a GPU machine)")
        return True
    print(f"GPU: {torch.cuda.get_device_name(0)}")
    cfg = make_config("THUMOS14", synthetic="thumos14-full",
                      overrides=["hidden_dim=2048", "train.device=cuda", "eval_every=1"])
    t0 = time.perf_counter()
    data = load_data(cfg)
    print(f"    thumos14-full: {len(data[0])} train / {len(data[1])} test videos, generated in "
          f"{time.perf_counter() - t0:.0f} s")
    ecm, trunk, _ = epoch_ratio(cfg, data)
    print(f"    epoch (fp32, no TF32: the record's mode): ECM {ecm:.3f} s (target <= 0.3 s on an "
          f"H100), trunk {trunk:.3f} s")
    fast_cfg = speed.resolve(cfg.with_overrides(["train.fast=true"]), torch.device("cuda"))
    fast = median(alternating_epochs({"fast": fast_cfg}, data, repeats=3)["fast"])
    print(f"    the same ECM epoch in fast mode ({fast_cfg.train.precision}, "
          f"{fast_cfg.model.aggregation} path): {fast:.3f} s")
    model = ECMNet(cfg.model).cuda()
    t0 = time.perf_counter()
    evaluate_model(model, data[1], cfg)
    torch.cuda.synchronize()
    t_eval = time.perf_counter() - t0
    print(f"    evaluation of {len(data[1])} videos: {t_eval:.2f} s (target <= 1 s)")
    torch.cuda.reset_peak_memory_stats()
    res = train(cfg, data=data, progress=False, log=None)
    peak = torch.cuda.max_memory_allocated() / 2**30
    wall = res.metrics["wall_time_s"]
    print(f"    150-epoch protocol with per-epoch evaluation: {wall:.0f} s (target <= 90 s), "
          f"peak GPU memory {peak:.2f} GiB (target <= 6 GiB); best mAP@0.5 "
          f"{res.metrics['mAP@0.5']:.2f} at epoch {res.metrics['best_epoch']} (synthetic)")
    return ecm <= 0.3 and t_eval <= 1 and wall <= 90 and peak <= 6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-protocol", action="store_true", help="only the epoch ratio")
    ap.add_argument("--epochs", type=int, help="protocol length (default: the preset's)")
    ap.add_argument("--gpu", action="store_true", help="also run the GPU part")
    ap.add_argument("--gpu-only", action="store_true", help="only the GPU part")
    ap.add_argument("--fast-epochs", type=int, default=150,
                    help="length of the record-vs-fast comparison (0 skips it)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="record-vs-fast rounds, in ABBA order (default 3)")
    ap.add_argument("--no-side-by-side", action="store_true",
                    help="skip (3)'s record-beside-fast run in two processes")
    args = ap.parse_args(argv)
    if args.gpu_only:
        return 0 if gpu_part() else 1
    ok = cpu_part(args.skip_protocol, args.epochs)
    if args.fast_epochs:
        ok &= fast_part(args.fast_epochs, args.rounds, not args.no_side_by_side)
    if args.gpu:
        ok &= gpu_part()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
