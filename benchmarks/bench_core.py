"""Core speed targets, measured side by side in one run (ratios, not absolute times).

(a) one ECM training step (pre + post + background streams, all losses, backward, Adam)
    over one trunk+classifier step on the same batch (B=16, T=750, D=2048, H=512, CPU);
    target <= 1.5x. The background stream's cost grows with the labels per video, so two
    label sets are timed: a stress batch (4 of the 16 videos carry 5 labels: 32 pairs,
    2.0 per video) that the target is judged on, and the label sets of the first 16
    THUMOS14 training videos (real annotations; THUMOS14 averages 1.14 labels per video).
(b) the evaluator on THUMOS14 test with ~50,000 predictions (benchmarks/bench_eval.py).
(c) localisation of 210 THUMOS-like videos (benchmarks/bench_localize.py).

Usage: python benchmarks/bench_core.py [--quick] [--only a|b|c]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ecmlib.data.features import load_annotations  # noqa: E402
from ecmlib.method.losses import LossConfig, compute_losses, loss_pre  # noqa: E402
from ecmlib.method.model import ECMNet, ModelConfig  # noqa: E402


def _time_steps(step, repeats: int) -> float:
    """Median wall time of ``step`` over ``repeats`` calls after one warm-up."""
    step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def stress_labels(batch: int, num_classes: int) -> torch.Tensor:
    """One label per video, plus 4 more classes on every 4th video (5 labels)."""
    labels = torch.zeros(batch, num_classes)
    labels[torch.arange(batch), torch.arange(batch) % num_classes] = 1
    labels[::4, (torch.arange(0, batch, 4) + 7) % num_classes] = 1   # a [B/4, 4] block
    return labels


def thumos_labels(batch: int) -> torch.Tensor:
    """Multi-hot labels of the first ``batch`` THUMOS14 training videos (sorted by id)."""
    gt = load_annotations("THUMOS14")
    classes = gt["classes"]
    videos = sorted(v for v, e in gt["database"].items() if e["subset"] == "train")[:batch]
    labels = torch.zeros(batch, len(classes))
    for i, v in enumerate(videos):
        for ann in gt["database"][v]["annotations"]:
            labels[i, classes.index(ann["label"])] = 1
    return labels


def bench_training_step(batch: int = 16, snippets: int = 750, feat_dim: int = 2048,
                        hidden: int = 512, num_classes: int = 20, repeats: int = 5) -> float:
    """Print the ratio ECM step / trunk+classifier step for both label sets; return the stress one."""
    print(f"(a) training step, B={batch} T={snippets} D={feat_dim} H={hidden} C={num_classes}, "
          f"{torch.get_num_threads()} CPU threads")
    ratio = _step_ratio(stress_labels(batch, num_classes), "stress batch", snippets, feat_dim,
                        hidden, repeats)
    print(f"    ratio {ratio:.2f}x (target <= 1.5x): {'PASS' if ratio <= 1.5 else 'FAIL'}")
    if num_classes == 20:
        r = _step_ratio(thumos_labels(batch), "THUMOS14 labels", snippets, feat_dim, hidden, repeats)
        print(f"    ratio {r:.2f}x (for information)")
    return ratio


def _step_ratio(labels: torch.Tensor, name: str, snippets: int, feat_dim: int, hidden: int,
                repeats: int) -> float:
    """Median ECM step over median trunk+classifier step, measured alternately."""
    batch, num_classes = labels.shape
    torch.manual_seed(0)
    cfg = ModelConfig(feat_dim=feat_dim, hidden_dim=hidden, num_classes=num_classes,
                      num_snippets=snippets)
    model = ECMNet(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=5e-4)
    x = torch.rand(batch, feat_dim, snippets)
    losses = LossConfig()

    def ecm_step() -> None:
        opt.zero_grad(set_to_none=True)
        compute_losses(model(x, labels), labels, losses)["loss_total"].backward()
        opt.step()

    def trunk_step() -> None:
        opt.zero_grad(set_to_none=True)
        _, cas = model.cas(x)
        loss_pre(model.pre_scores(cas), labels).backward()
        opt.step()

    # Interleave the two measurements so machine noise hits both alike.
    t_ecm, t_trunk = [], []
    for _ in range(repeats):
        t_trunk.append(_time_steps(trunk_step, 1))
        t_ecm.append(_time_steps(ecm_step, 1))
    t_ecm_m, t_trunk_m = sorted(t_ecm)[repeats // 2], sorted(t_trunk)[repeats // 2]
    pairs, most = int(labels.sum()), int(labels.sum(1).max())
    print(f"  {name}: {pairs} (video, label) pairs, largest label count per video {most}")
    print(f"    trunk+classifier step  {t_trunk_m * 1e3:8.1f} ms")
    print(f"    ECM step (bg stream)   {t_ecm_m * 1e3:8.1f} ms")
    return t_ecm_m / t_trunk_m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats / smaller inputs")
    ap.add_argument("--only", choices=["a", "b", "c"], help="run one part")
    args = ap.parse_args(argv)
    ok = True
    if args.only in (None, "a"):
        ok &= bench_training_step(repeats=3 if args.quick else 5) <= 1.5
    if args.only in (None, "b"):
        import bench_eval
        ok &= bench_eval.main(["--quick"] if args.quick else []) == 0
    if args.only in (None, "c"):
        import bench_localize
        ok &= bench_localize.main(["--quick"] if args.quick else []) == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
