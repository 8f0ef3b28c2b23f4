"""Fast mode and the run's thread count: choices that change speed, and what they cost.

``train.fast=true`` asks for everything here at once: ``train.precision=auto`` (bf16
autocast where the hardware computes bf16 natively: a GPU with bf16, a CPU with AVX-512
BF16 or AMX; fp32 elsewhere), ``model.aggregation=fastest`` (the post/background
streams' two aggregation paths, equal up to rounding, timed on a few training steps at the
run's thread count and precision) and ``model.dropout_mask=bits`` (dropout's mask from
random bits on the CPU: another random stream). :func:`resolve` turns those requests into
concrete values before the model is built; the run's ``config.json`` and ``metrics.json``
then say what ran. The record's default stays fp32 on the rule's path with torch's
dropout masks, which reproduces the committed results.
Fast mode with fp32 is not a combination: ask for ``model.aggregation=fastest`` alone.

:func:`default_threads` is the thread count of a run that does not set
``train.num_threads``: torch's default (every core) is slower than one thread when another
process keeps a core busy, so the default is one thread while another ecmlib run is
active, else the physical cores not already busy.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..env import THREADS_ENV

CPUINFO = Path("/proc/cpuinfo")


def cpu_bf16(cpuinfo: Path = CPUINFO) -> str | None:
    """The CPU's native bf16 instructions ('amx_bf16' or 'avx512_bf16'), or None."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    for flag in ("amx_bf16", "avx512_bf16"):
        if flag in flags:
            return flag
    return None


def resolve_precision(asked: str, legacy_bf16: bool, device: torch.device) -> tuple[str, str]:
    """('bf16' | 'fp32', why) for ``train.precision`` (and the legacy ``train.bf16``)."""
    if legacy_bf16 or asked == "bf16":
        return "bf16", "asked for"
    if asked == "fp32":
        return "fp32", "asked for"
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ("bf16", "GPU with bf16") if ok else ("fp32", "GPU without bf16")
    native = cpu_bf16()
    return ("bf16", f"CPU with {native}") if native else ("fp32", "CPU without native bf16")


def _cuda_settings() -> list[tuple[str, Any, str, Any]]:
    """(name, object, attribute, value in the record's fp32) of each process-wide setting
    that decides how a GPU computes fp32: torch's ``fp32_precision`` where it has it
    (reading the legacy ``allow_tf32`` flags raises once anything has set that), else the
    legacy flags; then cuDNN's algorithm choice."""
    b = torch.backends
    conv = getattr(b.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        precision = [("cudnn.conv.fp32_precision", conv, "fp32_precision", "ieee"),
                     ("cuda.matmul.fp32_precision", b.cuda.matmul, "fp32_precision", "ieee")]
    else:
        precision = [("cudnn.allow_tf32", b.cudnn, "allow_tf32", False),
                     ("cuda.matmul.allow_tf32", b.cuda.matmul, "allow_tf32", False)]
    return precision + [("cudnn.deterministic", b.cudnn, "deterministic", True),
                        ("cudnn.benchmark", b.cudnn, "benchmark", False)]


def cuda_flags(record: bool = False) -> dict[str, Any]:
    """The settings :func:`cuda_math` sets, by name: their current values, or with
    ``record`` the values it sets them to."""
    return {name: value if record else getattr(obj, attr)
            for name, obj, attr, value in _cuda_settings()}


@contextlib.contextmanager
def cuda_math(device: torch.device, precision: str) -> Iterator[None]:
    """On a CUDA device in fp32: convolutions and matrix products in true fp32 (cuDNN's
    default TF32 keeps 10 mantissa bits, not the fp32 a run reports) with cuDNN's
    deterministic algorithms. The settings are process-wide: they are restored on exit
    (nesting in one thread is fine; threads training at once would see each other's).
    Elsewhere (CPU, bf16) nothing changes.

    Deterministic cuDNN makes the convolutions repeat exactly; the background stream's
    ``index_add`` still adds with atomics on a GPU, so a video with three or more labels
    can differ in the last bits between two runs there.
    """
    if device.type != "cuda" or precision != "fp32":
        yield
        return
    settings = _cuda_settings()
    saved = [getattr(obj, attr) for _, obj, attr, _ in settings]
    for _, obj, attr, value in settings:
        setattr(obj, attr, value)
    try:
        yield
    finally:
        for (_, obj, attr, _), value in zip(settings, saved):
            setattr(obj, attr, value)


def time_aggregation_paths(cfg: Any, device: torch.device, steps: int = 5) -> dict[str, float]:
    """Median seconds of one training step (``step.step_losses``, backward) per aggregation
    path ('features', 'taps'), on random inputs of the run's shape held as the run holds
    its features (precision, layout, kept grouped snippets). The two paths take turns step
    by step, so a burst of load on a shared machine slows both rather than one."""
    from ..method.model import ECMNet
    from .step import step_losses, training_inputs
    m = cfg.model
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(cfg.train.batch_size, m.feat_dim, m.num_snippets, generator=gen).to(device)
    y = (torch.rand(cfg.train.batch_size, m.num_classes, generator=gen) < 0.1).float().to(device)
    y[:, 0] = 1.0  # every video has a label, as in training
    runs = {}
    for path in ("features", "taps"):
        path_cfg = cfg.with_overrides({"model.aggregation": path})
        model = ECMNet(path_cfg.model).to(device).train()
        runs[path] = (model, *training_inputs(model, x, path_cfg), path_cfg)
    times: dict[str, list[float]] = {path: [] for path in runs}
    for _ in range(steps + 1):  # the first step of each warms up
        for path, (model, xs, grouped, path_cfg) in runs.items():
            t0 = time.perf_counter()
            step_losses(model, xs, y, path_cfg, grouped)["loss_total"].backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[path].append(time.perf_counter() - t0)
    return {path: statistics.median(t[1:]) for path, t in times.items()}


def resolve(cfg: Any, device: torch.device, log: Callable[[str], None] | None = None) -> Any:
    """``cfg`` with fast mode's requests made concrete (precision, aggregation path,
    dropout mask)."""
    say = log or (lambda _msg: None)
    # (a legacy train.bf16=true has already made precision "bf16": TrainConfig)
    precision_asked = "auto" if cfg.train.fast and cfg.train.precision == "fp32" \
        else cfg.train.precision
    aggregation = "fastest" if cfg.train.fast and cfg.model.aggregation == "auto" \
        else cfg.model.aggregation
    precision, why = resolve_precision(precision_asked, cfg.train.bf16, device)
    changes = {"train.precision": precision,
               "model.dropout_mask": resolve_dropout_mask(cfg.model.dropout_mask,
                                                          cfg.train.fast, device)}
    if precision_asked == "auto":
        say(f"precision: {precision} ({why})")
    if cfg.train.fast:
        say(f"dropout mask: {changes['model.dropout_mask']}")
    if aggregation == "fastest" and cfg.model.streams != "pre":
        times = time_aggregation_paths(cfg.with_overrides(changes), device)
        aggregation = min(times, key=times.get)
        say(f"aggregation path: {aggregation} (one step: features {1e3 * times['features']:.0f} "
            f"ms, taps {1e3 * times['taps']:.0f} ms at {torch.get_num_threads()} thread(s))")
    elif aggregation == "fastest":
        aggregation = "auto"  # pre-only never aggregates
    changes["model.aggregation"] = aggregation
    return cfg.with_overrides(changes)


def resolve_dropout_mask(asked: str, fast: bool, device: torch.device | None = None) -> str:
    """The mask a run draws, 'torch' or 'bits', for ``model.dropout_mask``: 'auto' is bits
    in fast mode, else torch (what every run drew before the option existed); off the CPU
    torch's own dropout runs (fast there), so it is torch whatever was asked."""
    if device is not None and device.type != "cpu":
        return "torch"
    return "bits" if asked == "bits" or (asked == "auto" and fast) else "torch"


def other_ecmlib_runs() -> int:
    """How many other processes on this machine are ecmlib training runs."""
    import psutil
    me = os.getpid()
    count = 0
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if proc.info["pid"] != me and "ecmlib" in cmd and "train" in cmd:
            count += 1
    return count


def default_threads() -> tuple[int, str]:
    """(threads, why) for a run that does not set ``train.num_threads``: a grid's share
    when the run is one cell of a grid (``ECMLIB_RUN_THREADS``), else one thread beside
    another ecmlib run, else the physical cores not already busy."""
    import psutil

    share = os.environ.get(THREADS_ENV, "")
    if share.isdigit() and int(share) > 0:
        return int(share), f"this grid cell's share, {THREADS_ENV}"
    others = other_ecmlib_runs()
    if others:
        return 1, f"{others} other ecmlib run(s) active on this machine"
    physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    busy = int(os.getloadavg()[0] + 0.5) if hasattr(os, "getloadavg") else 0
    n = max(1, physical - busy)
    return n, f"{physical} physical core(s), {busy} busy"
