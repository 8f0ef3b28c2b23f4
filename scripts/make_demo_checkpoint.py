#!/usr/bin/env python
"""Train the small demo checkpoint shipped in ``data/checkpoints/`` (explorer, notebook 06).

The checkpoint is an ordinary ``python -m ecmlib train`` run on the synthetic
``thumos14-mini`` benchmark with a narrow trunk (``hidden_dim=128``), so the file stays
small (~0.6 MB) and notebooks 05/06 open instantly without training. This script

1. runs the training command below in a subprocess (so what is documented is exactly
   what ran) into a run directory (default ``runs/demo-checkpoint-<time>/``);
2. copies the run's ``best.pth`` to ``data/checkpoints/thumos14-mini_ecm.pth``,
   atomically, without the optimizer state (the official format keeps an ``optimizer``
   key; ours is empty because nobody resumes the demo) and with a ``ecmlib_provenance``
   entry (command, seed, epochs, metrics, wall time);
3. writes ``data/checkpoints/README.md`` with the command, seed, epochs, the mAP reached
   and the wall time.

Usage (from the repository root)::

    python scripts/make_demo_checkpoint.py                 # the shipped checkpoint
    python scripts/make_demo_checkpoint.py --epochs 4      # a quick provisional one
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the script runs without installing ecmlib

import torch  # noqa: E402

from ecmlib.io import atomic_torch_save, atomic_write_text  # noqa: E402
from ecmlib.data.safeload import load_checkpoint_file  # noqa: E402

DEST_NAME = "thumos14-mini_ecm.pth"


def train_command(epochs: int, seed: int, hidden_dim: int, eval_every: int, out: str,
                  synthetic: str = "thumos14-mini", extra: list[str] | None = None) -> list[str]:
    """The ``python -m ecmlib train`` argv that produces the demo run."""
    sets = [f"hidden_dim={hidden_dim}", f"train.seed={seed}", f"eval.eval_every={eval_every}",
            *(extra or [])]
    return ["python", "-m", "ecmlib", "train", "--dataset", "THUMOS14", "--synthetic", synthetic,
            "--epochs", str(epochs), "--set", *sets, "--device", "cpu", "--quiet", "--out", out]


def slim_checkpoint(best: Path, provenance: dict) -> dict:
    """``best.pth`` without the optimizer state, plus where it came from."""
    ckpt = load_checkpoint_file(best)
    if "ecmlib_config" not in ckpt:
        raise ValueError(f"{best}: has no 'ecmlib_config'; was it written by ecmlib train?")
    return {"epoch": ckpt["epoch"], "state_dict": ckpt["state_dict"], "optimizer": {},
            "ecmlib_config": ckpt["ecmlib_config"], "ecmlib_provenance": provenance}


def readme_text(prov: dict, sha256: str, size: int) -> str:
    """``data/checkpoints/README.md``: how the shipped checkpoint was made and what it reached."""
    m = prov["metrics"]
    rows = "\n".join(f"| {k} | {100 * v:.2f} |" for k, v in m.items()
                     if k.startswith(("mAP@", "average_mAP@")) and isinstance(v, (int, float)))
    return f"""# Demo checkpoint

`{DEST_NAME}` is a small ECM model trained on the synthetic `{prov['synthetic']}`
benchmark (`ecmlib.data.synthetic`, generator seed {prov['synthetic_seed']}). Notebooks 05
(detection explorer) and 06 (evaluate a checkpoint) load it, so they open without
training. It is a demonstration model, not a reproduction of the paper's THUMOS14 numbers.

Format: the authors' `{{'epoch', 'state_dict', 'optimizer'}}` (the optimizer state is left
empty to keep the file small) plus `ecmlib_config` (every value of the run's
ExperimentConfig) and `ecmlib_provenance` (this file's facts).

## How it was made

```
{prov['script_command']}
```

which runs, from the repository root,

```
{prov['command']}
```

and copies the best epoch's `best.pth` here.

| fact | value |
| --- | --- |
| training seed (`train.seed`) | {prov['seed']} |
| epochs (evaluated every {prov['eval_every']}) | {prov['epochs']} |
| best epoch (by {m.get('selection_metric', 'mAP@0.5')}) | {m.get('best_epoch')} |
| hidden_dim / feat_dim / num_snippets | {prov['hidden_dim']} / {prov['feat_dim']} / {prov['num_snippets']} |
| train / test videos | {m.get('train_videos')} / {m.get('test_videos')} |
| wall time (whole command, data generation included) | {prov['wall_time_s']:.0f} s |
| hardware | {prov['hardware']} |
| torch | {prov['torch']} |
| made | {prov['made']} |
| file size | {size / 1e6:.2f} MB |
| sha256 | `{sha256}` |
| test split fingerprint (`ecmlib.views.explorer.split_fingerprint`) | `{prov['test_split_sha256'][:16]}…` |

## Detection mAP (%) of the best epoch, synthetic test split

| metric | value |
| --- | --- |
{rows}
| classification mAP | {100 * (m.get('classification_mAP') or float('nan')):.2f} |
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    p.add_argument("--seed", type=int, default=16, help="train.seed (default 16, the paper's)")
    p.add_argument("--hidden-dim", type=int, default=128, help="trunk width (default 128)")
    p.add_argument("--eval-every", type=int, default=5, help="evaluate every N epochs")
    p.add_argument("--synthetic", default="thumos14-mini", help="synthetic preset")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra config overrides passed to ecmlib train")
    p.add_argument("--run-dir", help="training run directory (default runs/demo-checkpoint-<time>)")
    p.add_argument("--dest", default=str(Path("data") / "checkpoints"),
                   help="folder of the shipped checkpoint and its README (default data/checkpoints)")
    args = p.parse_args(argv)

    run_dir = args.run_dir or str(Path("runs") / f"demo-checkpoint-{datetime.now():%Y%m%d-%H%M%S}")
    cmd = train_command(args.epochs, args.seed, args.hidden_dim, args.eval_every, run_dir,
                        args.synthetic, args.set)
    print("running:", shlex.join(cmd), flush=True)
    env = {**os.environ, "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    # sys.executable stands for "python": the same interpreter (the venv's) that runs us.
    proc = subprocess.run([sys.executable, *cmd[1:]], cwd=REPO_ROOT, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"error: training failed (exit {proc.returncode}); nothing was copied", file=sys.stderr)
        return proc.returncode
    run = REPO_ROOT / run_dir
    metrics = json.loads((run / "metrics.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    script = ["python", "scripts/make_demo_checkpoint.py", "--epochs", str(args.epochs),
              "--seed", str(args.seed), "--hidden-dim", str(args.hidden_dim),
              "--eval-every", str(args.eval_every)]
    if args.synthetic != "thumos14-mini":
        script += ["--synthetic", args.synthetic]
    if args.set:
        script += ["--set", *args.set]
    prov = {"command": shlex.join(cmd), "script_command": shlex.join(script),
            "synthetic": args.synthetic,
            "synthetic_seed": cfg["data"]["synthetic_seed"], "seed": args.seed,
            "epochs": args.epochs, "eval_every": args.eval_every, "hidden_dim": args.hidden_dim,
            "feat_dim": cfg["model"]["feat_dim"], "num_snippets": cfg["model"]["num_snippets"],
            "metrics": metrics, "wall_time_s": wall, "torch": str(torch.__version__),
            "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores visible, "
                        f"{metrics.get('cpu_threads')} torch threads",
            "made": f"{datetime.now():%Y-%m-%d}"}
    # Notebook 06 re-evaluates the checkpoint and compares with these metrics; the
    # fingerprint tells it whether the synthetic generator changed since (then the numbers
    # legitimately differ and the checkpoint should be made again).
    from ecmlib.training.config import ExperimentConfig
    from ecmlib.views.explorer import load_test_split, split_fingerprint
    prov["test_split_sha256"] = split_fingerprint(load_test_split(ExperimentConfig.from_dict(cfg)))
    dest = REPO_ROOT / args.dest
    target = dest / DEST_NAME
    atomic_torch_save(target, slim_checkpoint(run / "best.pth", prov))
    data = target.read_bytes()
    atomic_write_text(dest / "README.md", readme_text(prov, hashlib.sha256(data).hexdigest(), len(data)))
    print(f"best epoch {metrics['best_epoch']}: mAP@0.5 = {100 * metrics['mAP@0.5']:.2f} "
          f"({wall:.0f} s); wrote {target.relative_to(REPO_ROOT)} ({len(data) / 1e6:.2f} MB) "
          f"and {(dest / 'README.md').relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
