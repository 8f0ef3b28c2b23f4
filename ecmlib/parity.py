"""Parity with the authors' code: recompute every golden number and compare.

A golden file (format: ``tests/data/README.md``) holds a tiny model's weights and inputs and
what the official implementation produced from them: training scores, losses and
gradients, inference outputs, localisation detections, NMS and AP/mAP. ``run_parity``
recomputes each of them with ecmlib and reports, per check, the largest error next to the
tolerance the golden README allows. ``python -m ecmlib parity [FILE ...]`` prints the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .io import repo_root
from .method.losses import LossConfig, compute_losses
from .method.model import ECMNet, ModelConfig
from .training.inference import predict

REPO_ROOT = repo_root()
DEFAULT_GOLDEN = (REPO_ROOT / "tests" / "data" / "official_thumos_s1.npz",
                  REPO_ROOT / "tests" / "data" / "official_anet_s2.npz")
DEFAULT_GT = REPO_ROOT / "data" / "thumos14" / "gt.json"

# golden/README.md: scores, losses, gradients to 1e-4 relative (float32).
REL_TOL = 1e-4


@dataclass
class Check:
    """One compared quantity: name, max error and the tolerance it must stay within."""

    name: str
    error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.error)) and self.error <= self.tolerance


def load_golden(path: str | Path) -> dict[str, np.ndarray]:
    """Read a golden .npz into a dict; a missing key later names this file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: golden file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as err:
        raise ValueError(f"{path}: not a readable golden .npz ({err})") from None


def _require(golden: Mapping[str, np.ndarray], keys: list[str], source: str) -> None:
    missing = [k for k in keys if k not in golden]
    if missing:
        raise ValueError(f"{source}: golden file lacks key(s) {', '.join(missing)}")


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """max |ours - ref| / max |ref|: one number per tensor, robust to tiny entries."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        return float("inf")
    return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-12))


def golden_model(golden: Mapping[str, np.ndarray], source: str = "golden") -> tuple[ECMNet, dict]:
    """The golden file's model with its weights loaded strictly under the official names."""
    _require(golden, ["config"], source)
    c = json.loads(str(golden["config"]))
    cfg = ModelConfig(feat_dim=c["feat_dim"], hidden_dim=c["hidden_dim"],
                      num_classes=c["num_classes"], num_snippets=c["num_snippets"],
                      topk_ratio=c["topk_ratio"], groups=c["groups"])
    if cfg.topk != c["k"]:
        raise ValueError(f"{source}: top-k is {cfg.topk} here but {c['k']} in the golden config")
    model = ECMNet(cfg)
    state = {k.removeprefix("weight/"): torch.from_numpy(v) for k, v in golden.items()
             if k.startswith("weight/")}
    model.load_state_dict(state, strict=True)
    return model.eval(), c


def model_checks(golden: Mapping[str, np.ndarray], source: str = "golden") -> list[Check]:
    """Training scores, losses, gradients and inference outputs of the model.

    The training checks run twice: once with the post/background streams aggregating the
    features (``train/``, ``grad/``) and once aggregating conv_1's taps (``taps:train/``,
    ``taps:grad/``), the two code paths ``ECMNet.aggregate_taps`` chooses between.
    """
    _require(golden, ["input/x", "input/cls_label", "train/score_pre", "train/score_post",
                      "train/score_agg", "train/losses", "infer/score", "infer/cas"], source)
    model, c = golden_model(golden, source)
    x = torch.from_numpy(golden["input/x"])
    labels = torch.from_numpy(golden["input/cls_label"])
    checks: list[Check] = []
    for prefix, taps in (("", False), ("taps:", True)):
        model.aggregate_taps = taps
        model.zero_grad(set_to_none=True)
        checks += _train_checks(model, x, labels, c, golden, source, prefix)
    score, cas = predict(model, x)
    checks.append(Check("infer/score", relative_error(score, golden["infer/score"]), REL_TOL))
    checks.append(Check("infer/cas", relative_error(cas, golden["infer/cas"]), REL_TOL))
    return checks


def _train_checks(model: ECMNet, x: torch.Tensor, labels: torch.Tensor, c: dict,
                  golden: Mapping[str, np.ndarray], source: str, prefix: str) -> list[Check]:
    """Scores, losses and gradients of one training forward/backward against the golden file."""
    out = model(x, labels)  # eval mode (dropout off), background stream on
    terms = compute_losses(out, labels, LossConfig(*c["loss_coefs"]))
    terms["loss_total"].backward()
    checks = [Check(f"{prefix}train/{k}", relative_error(out[o].detach().numpy(),
                                                         golden[f"train/{k}"]), REL_TOL)
              for k, o in (("score_pre", "pre_scores"), ("score_post", "post_scores"),
                           ("score_agg", "score_agg"))]
    losses = np.array([terms[k].item() for k in ("loss_pre", "loss_post", "loss_eq", "loss_agg",
                                                  "loss_total")])
    checks += [Check(f"{prefix}train/losses[{name}]",
                     relative_error(losses[i], golden["train/losses"][i]), REL_TOL)
               for i, name in enumerate(("pre", "post", "eq", "agg", "total"))]
    for name, p in model.named_parameters():
        _require(golden, [f"grad/{name}"], source)
        checks.append(Check(f"{prefix}grad/{name}",
                            relative_error(p.grad.numpy(), golden[f"grad/{name}"]), REL_TOL))
    return checks


def run_parity(path: str | Path, gt_path: str | Path = DEFAULT_GT) -> list[Check]:
    """Every check of one golden file: model, localisation, NMS and mAP."""
    from .method.evaluation import parity_check_map
    from .method.localize import parity_check_localize

    golden = load_golden(path)
    checks = model_checks(golden, str(path))
    checks += [Check(*t) for t in parity_check_localize(golden)]
    checks += [Check(*t) for t in parity_check_map(golden, gt_path)]
    return checks


def format_report(path: str | Path, checks: list[Check]) -> str:
    """A fixed-width table: check, max error, tolerance, ok/FAIL."""
    width = max(len(c.name) for c in checks)
    try:  # show paths relative to where the command runs (no machine paths in logs)
        path = Path(path).resolve().relative_to(Path.cwd())
    except ValueError:
        pass
    lines = [f"{path}", f"  {'check':<{width}}  {'max error':>10}  {'tolerance':>9}"]
    lines += [f"  {c.name:<{width}}  {c.error:>10.3g}  {c.tolerance:>9.0e}  "
              f"{'ok' if c.ok else 'FAIL'}" for c in checks]
    failed = sum(not c.ok for c in checks)
    lines.append(f"  {len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines)


def parity_main(files: list[str] | None = None, gt: str | None = None) -> int:
    """Run parity on each file (default: the copies in tests/data); 1 if any check fails."""
    paths = [Path(f) for f in files] if files else list(DEFAULT_GOLDEN)
    status = 0
    for p in paths:
        checks = run_parity(p, gt or DEFAULT_GT)
        print(format_report(p, checks))
        status |= any(not c.ok for c in checks)
    return int(status)
