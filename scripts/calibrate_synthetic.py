"""Calibrate the synthetic benchmark: train ECM on a preset and report detection mAP.

A deliberately small, self-contained training loop (ECMNet + the four losses, Adam as in
the paper except the learning rate, THUMOS14 localisation and ActivityNet-style mAP) so
the difficulty of the synthetic features can be measured with and without each difficulty
factor. It is not the project's training entry point (``python -m ecmlib train``); it
exists so the calibration figures in ``ecmlib/data/synthetic.py`` can be reproduced with one
command (about 8-10 minutes per run on one core)::

    .venv/bin/python scripts/calibrate_synthetic.py --preset thumos14-mini \
        --ablate none context boundary variation subactions distractors \
        --json runs/calib/sweep.json

Defaults: 60 epochs, evaluation every 5, hidden width 256, batch 16, Adam lr 5e-4 (the
paper's 2e-4 is tuned for a 2048-wide trunk and barely moves a 256-wide one in 60 epochs),
one torch thread. Each ``--ablate`` value is one run ('none' = the default difficulty).
The model is selected on the test split by mAP@0.5 as in ECM's own protocol; the last
evaluation is reported too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ecmlib.data.features import load_annotations  # noqa: E402
from ecmlib.method.evaluation import (  # noqa: E402
    evaluate_detection, ground_truth_from_dict, predictions_from_arrays)
from ecmlib.method.localize import LocalizeParams, localize_batch_flat  # noqa: E402
from ecmlib.method.losses import LossConfig, compute_losses  # noqa: E402
from ecmlib.method.model import ECMNet, ModelConfig  # noqa: E402
from ecmlib.data.synthetic import FACTORS, generate, get_spec, parse_knobs  # noqa: E402
from ecmlib.training.inference import predict  # noqa: E402

_THUMOS_TIOU = np.linspace(0.1, 0.9, 9)


def total_loss(out: dict, labels: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """ECM's weighted total, exactly as ``ecmlib.method.losses`` computes it (L_agg via torch's BCE)."""
    return compute_losses(out, labels, cfg)["loss_total"]


def evaluate(model: ECMNet, test, gt, params: LocalizeParams, batch: int = 64) -> dict:
    """mAP per tIoU 0.1..0.9 of ``model`` on the FeatureSet ``test`` (THUMOS14 protocol)."""
    scores_np, cas_np = predict(model, test.features, batch_size=batch)
    fps_or_dur = test.fps if params.time_unit == "fps" else test.duration
    det = localize_batch_flat(cas_np, scores_np, test.frame_num, fps_or_dur, params)
    names = np.asarray(test.names)[det.video]
    preds = predictions_from_arrays(names, det.label, det.start, det.end, det.score,
                                    classes=test.classes)
    res = evaluate_detection(gt, preds, _THUMOS_TIOU)
    out = {f"mAP@{t:.1f}": float(m) * 100 for t, m in zip(res.tiou, res.mAP)}
    out["avg0.1:0.7"] = float(np.mean(res.mAP[:7])) * 100
    out["detections"] = len(preds)
    # Video-level view: is the top class a label class, and how confident is it?
    top = scores_np.argmax(axis=1)
    out["top1_acc"] = float(np.mean(test.labels[np.arange(len(top)), top] > 0)) * 100
    out["mean_top_score"] = float(scores_np.max(axis=1).mean())
    return out


def train_once(spec, seed: int, epochs: int, eval_every: int, hidden: int, batch: int,
               lr: float, train_seed: int, threads: int) -> dict:
    """Generate ``spec``, train ECM for ``epochs``, evaluate every ``eval_every`` epochs."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    data = generate(spec, seed=seed)
    gen_s = time.perf_counter() - t0
    train_split, test_split = list(data)
    train, test = data[train_split], data[test_split]
    gt_dict = load_annotations(spec.dataset)
    subset = "test" if spec.dataset == "THUMOS14" else "validation"
    gt = ground_truth_from_dict(gt_dict, subset, classes=test.classes)
    # Evaluate on the videos that were generated (mini presets may use a subset).
    keep = set(test.names)
    gt_sub = ground_truth_from_dict(
        {"classes": gt_dict["classes"],
         "database": {k: v for k, v in gt_dict["database"].items() if k in keep}},
        subset, classes=test.classes)
    del gt
    params = LocalizeParams.thumos14()

    torch.manual_seed(train_seed)
    rng = np.random.default_rng(train_seed)
    model = ECMNet(ModelConfig(feat_dim=spec.feat_dim, hidden_dim=hidden,
                               num_classes=len(train.classes), num_snippets=spec.num_snippets,
                               topk_ratio=0.125))
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=5e-4)
    loss_cfg = LossConfig()
    x_all = torch.from_numpy(train.features)
    y_all = torch.from_numpy(train.labels)
    history = [{"epoch": 0, **evaluate(model, test, gt_sub, params)}]
    t1 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        for i in range(0, len(order), batch):
            idx = torch.from_numpy(order[i:i + batch])
            out = model(x_all[idx], y_all[idx])
            loss = total_loss(out, y_all[idx], loss_cfg)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {float(loss)} at epoch {epoch}")
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % eval_every == 0 or epoch == epochs:
            row = {"epoch": epoch, "loss": float(loss.detach()),
                   **evaluate(model, test, gt_sub, params)}
            history.append(row)
            print(f"    epoch {epoch:3d} loss {row['loss']:.3f} mAP@0.5 {row['mAP@0.5']:.2f} "
                  f"avg0.1:0.7 {row['avg0.1:0.7']:.2f} top1 {row['top1_acc']:.1f} "
                  f"score {row['mean_top_score']:.2f} dets {row['detections']}", flush=True)
    best = max(history[1:], key=lambda r: r["mAP@0.5"])
    return {"spec": spec.name, "generate_s": round(gen_s, 1),
            "train_s": round(time.perf_counter() - t1, 1), "untrained": history[0],
            "best": best, "final": history[-1], "history": history}


def main(argv: list[str] | None = None) -> int:
    """Command line: one training run per --ablate value; prints a summary table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="thumos14-mini")
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    p.add_argument("--train-seed", type=int, default=16, help="torch / shuffling seed")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ablate", nargs="+", default=["none"],
                   help=f"'none' or factor(s) joined by '+', from {sorted(FACTORS)}")
    p.add_argument("--set", nargs="*", default=[], metavar="KNOB=VALUE",
                   help="override spec knobs for every run")
    p.add_argument("--json", help="write all results to this JSON file")
    args = p.parse_args(argv)
    base = get_spec(args.preset).replace(**parse_knobs(args.set))
    if base.dataset != "THUMOS14":
        p.error(f"calibration uses the THUMOS14 protocol; {args.preset!r} is {base.dataset}")
    results: list[dict] = []

    def save(rows: list[dict]) -> None:
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({"args": vars(args), "results": rows},
                                                  indent=1) + "\n")

    for ab in args.ablate:
        spec = base if ab == "none" else base.ablate(*ab.split("+"))
        print(f"== {spec.name}", flush=True)
        try:
            res = train_once(spec, args.seed, args.epochs, args.eval_every, args.hidden,
                             args.batch, args.lr, args.train_seed, args.threads)
        except (FloatingPointError, ValueError) as err:  # NaN loss or NaN CAS
            print(f"   {ab}: diverged ({err})", flush=True)
            results.append({"ablate": ab, "spec": spec.name, "diverged": str(err)})
            save(results)
            continue
        res["ablate"] = ab
        results.append(res)
        b, f = res["best"], res["final"]
        print(f"   {ab:12s} best@{b['epoch']}: mAP@0.5 {b['mAP@0.5']:.2f} avg {b['avg0.1:0.7']:.2f}"
              f" | final: {f['mAP@0.5']:.2f} / {f['avg0.1:0.7']:.2f} | untrained "
              f"{res['untrained']['mAP@0.5']:.2f} | gen {res['generate_s']}s train "
              f"{res['train_s']}s", flush=True)
        save(results)
    print("\nablate        best mAP@0.5  best avg0.1:0.7  final mAP@0.5  final avg")
    for r in results:
        if "diverged" in r:
            print(f"{r['ablate']:12s}  diverged: {r['diverged']}")
            continue
        b, f = r["best"], r["final"]
        print(f"{r['ablate']:12s}  {b['mAP@0.5']:12.2f}  {b['avg0.1:0.7']:15.2f}  "
              f"{f['mAP@0.5']:13.2f}  {f['avg0.1:0.7']:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
