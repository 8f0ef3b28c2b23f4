"""Benchmark of the synthetic data generator: time, size on disk and peak memory.

    .venv/bin/python benchmarks/bench_data.py            # thumos14-mini
    .venv/bin/python benchmarks/bench_data.py --full     # and thumos14-full

Each preset is written with ``write_dataset`` into a temporary folder (deleted afterwards)
in a fresh child process, so its peak resident memory (``ru_maxrss``) is its own; the
in-memory ``generate`` of the mini preset is timed too, and run once more under tracemalloc
for the peak of the Python/numpy allocations. Targets (2-core CPU): mini <= 20 s, full
<= 180 s and <= 3 GB on disk, peak memory <= 4 GB. Prints PASS/FAIL per target and exits 1
when one fails. Write times include the per-file fsync of the atomic writer.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GB = 1024 ** 3
TARGETS = {  # preset -> (max seconds, max bytes on disk, max peak RSS bytes)
    "thumos14-mini": (20.0, 3 * GB, 4 * GB),
    "thumos14-full": (180.0, 3 * GB, 4 * GB),
}


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _write_job(preset: str, out: str, queue: mp.Queue) -> None:
    """Child process: write one preset, report seconds, bytes and peak RSS."""
    from ecmlib.data.synthetic import write_dataset
    start = time.perf_counter()
    cpu = time.process_time()
    write_dataset(preset, out, seed=0)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put({"seconds": seconds, "cpu_seconds": cpu, "bytes": _folder_size(Path(out)),
               "peak_rss": peak,
               "videos": json.loads((Path(out) / "manifest.json").read_text())["counts"]})


def _generate_job(preset: str, traced: bool, queue: mp.Queue) -> None:
    """Child process: in-memory generate(); with ``traced``, tracemalloc measures numpy's
    peak (tracemalloc slows every allocation, so the timing run goes without it)."""
    import tracemalloc

    from ecmlib.data.synthetic import generate
    if traced:
        tracemalloc.start()
    start = time.perf_counter()
    data = generate(preset, seed=0)
    seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1] if traced else 0
    tracemalloc.stop()
    held = sum(fs.features.nbytes for fs in data.values())
    queue.put({"seconds": seconds, "traced_peak": traced_peak, "feature_bytes": held,
               "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})


def _run(target, *args) -> dict:
    ctx = mp.get_context("spawn")  # a fresh interpreter: peak memory is the job's own
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _check(ok: bool, text: str) -> bool:
    print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0 when every target passes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also benchmark thumos14-full")
    parser.add_argument("--tmp", help="folder for the temporary datasets (default: system temp)")
    args = parser.parse_args(argv)
    presets = ["thumos14-mini"] + (["thumos14-full"] if args.full else [])
    ok = True
    for preset in presets:
        max_s, max_bytes, max_rss = TARGETS[preset]
        tmp = Path(tempfile.mkdtemp(prefix="bench_synth_", dir=args.tmp))
        try:
            res = _run(_write_job, preset, str(tmp / preset))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{preset}: wrote {res['videos']} in {res['seconds']:.1f} s "
              f"(cpu {res['cpu_seconds']:.1f} s), {res['bytes'] / GB:.3f} GB on disk, "
              f"peak RSS {res['peak_rss'] / GB:.2f} GB")
        ok &= _check(res["seconds"] <= max_s, f"write time {res['seconds']:.1f} s <= {max_s:.0f} s")
        ok &= _check(res["bytes"] <= max_bytes,
                     f"disk {res['bytes'] / GB:.3f} GB <= {max_bytes / GB:.0f} GB")
        ok &= _check(res["peak_rss"] <= max_rss,
                     f"peak memory {res['peak_rss'] / GB:.2f} GB <= {max_rss / GB:.0f} GB")
        if preset == "thumos14-mini":
            gen = _run(_generate_job, preset, False)
            mem = _run(_generate_job, preset, True)
            print(f"{preset}: generate() in memory {gen['seconds']:.1f} s, features "
                  f"{gen['feature_bytes'] / GB:.3f} GB, tracemalloc peak "
                  f"{mem['traced_peak'] / GB:.3f} GB, peak RSS {gen['peak_rss'] / GB:.2f} GB")
            ok &= _check(gen["seconds"] <= max_s,
                         f"generate time {gen['seconds']:.1f} s <= {max_s:.0f} s")
            ok &= _check(gen["peak_rss"] <= max_rss,
                         f"peak memory {gen['peak_rss'] / GB:.2f} GB <= {max_rss / GB:.0f} GB")
    print("ALL PASS" if ok else "SOME TARGETS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
