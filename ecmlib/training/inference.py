"""A trained model on a split: video scores and CAS, detections, mAP, and the result files.

``predict`` is the one inference path (batched, dropout off); ``evaluate_model`` runs it,
localises every video and scores the detections against the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.features import FeatureSet
from ..datasets import THUMOS101_INDEX
from ..io import atomic_write_text
from ..method.evaluation import (DetectionResult, GroundTruth, Predictions, classification_map,
                                 evaluate_detection, predictions_from_arrays)
from ..method.localize import localize_batch_flat
from ..method.model import ECMNet
from .config import ExperimentConfig
from .setup import ground_truth_for
from .speed import cuda_math

@torch.no_grad()
def predict(model: ECMNet, features: torch.Tensor | np.ndarray, batch_size: int = 64,
            device: torch.device | None = None, weights: bool = False) -> tuple[np.ndarray, ...]:
    """(softmax video scores [N, C], raw CAS [N, C, T]) for every video, dropout off.

    With ``weights`` the post stream's aggregation weights a [N, C, T] are returned third
    (they exist for every stream setting; the explorer draws them).
    """
    device = device or next(model.parameters()).device
    x_all = torch.as_tensor(features)
    outs: list[list[torch.Tensor]] = [[], [], []]
    was_training = model.training
    model.eval()
    try:
        with cuda_math(device, "fp32"):  # fp32 on a GPU too (no TF32), whatever trained it
            for i in range(0, x_all.shape[0], batch_size):
                h, cas = model.cas(x_all[i:i + batch_size].to(device, non_blocking=True))
                outs[0].append(torch.softmax(model.pre_scores(cas), dim=1).float().cpu())
                outs[1].append(cas.float().cpu())
                if weights:
                    outs[2].append(model.aggregation_weights(h, cas).float().cpu())
    finally:
        model.train(was_training)
    return tuple(torch.cat(o).numpy() for o in outs if o)


def detect(scores: np.ndarray, cas: np.ndarray, fs: FeatureSet,
           cfg: ExperimentConfig) -> Predictions:
    """Localise every video and return the detections as evaluator predictions."""
    params = cfg.localize
    time_base = fs.fps if params.time_unit == "fps" else fs.duration
    flat = localize_batch_flat(cas, scores, fs.frame_num, time_base, params)
    names = np.asarray(fs.names, dtype=object)[flat.video]
    return predictions_from_arrays(names, flat.label, flat.start, flat.end, flat.score,
                                   classes=fs.classes, source="detections")


@dataclass
class Evaluation:
    """Everything one evaluation produced."""

    metrics: dict[str, float]
    result: DetectionResult
    predictions: Predictions
    scores: np.ndarray
    cas: np.ndarray


def evaluate_model(model: ECMNet, test_set: FeatureSet, cfg: ExperimentConfig,
                   gt: GroundTruth | None = None, features: torch.Tensor | None = None) -> Evaluation:
    """Inference, localisation and detection mAP (+ video classification mAP) on a split."""
    gt = gt or ground_truth_for(cfg, test_set)
    feats = features if features is not None else torch.from_numpy(test_set.features)
    scores, cas = predict(model, feats)
    if not (np.isfinite(scores).all() and np.isfinite(cas).all()):
        raise RuntimeError("the model's scores or CAS are NaN/inf: training diverged; "
                           "lower train.lr or check the features")
    preds = detect(scores, cas, test_set, cfg)
    result = evaluate_detection(gt, preds, np.asarray(cfg.eval.tiou))
    metrics = {k: float(v) for k, v in result.as_dict().items()}
    metrics["classification_mAP"] = float(classification_map(scores, test_set.labels))
    metrics["num_detections"] = int(len(preds.score))
    return Evaluation(metrics, result, preds, scores, cas)


def result_json(preds: Predictions) -> dict[str, Any]:
    """ActivityNet result-file dict: {'version', 'results': {vid: [{label, segment, score}]}}."""
    results: dict[str, list] = {}
    for v, c, s, e, sc in zip(preds.video_idx, preds.class_idx, preds.start, preds.end, preds.score):
        results.setdefault(preds.video_names[v], []).append(
            {"label": preds.classes[c], "segment": [float(s), float(e)], "score": float(sc)})
    return {"version": "VERSION 1.3", "results": results,
            "external_data": {"used": True, "details": "I3D features (or ecmlib synthetic)"}}


def write_txt_results(path: str | Path, preds: Predictions) -> None:
    """One detection a line: ``video start end class score``.

    THUMOS14 classes are written as their THUMOS-101 index (the challenge's detection
    format, which the authors' evaluation writes); other datasets use the class name.
    """
    lines = []
    for v, c, s, e, sc in zip(preds.video_idx, preds.class_idx, preds.start, preds.end, preds.score):
        name = preds.classes[c]
        label = THUMOS101_INDEX.get(name, name.replace(" ", "_"))
        lines.append(f"{preds.video_names[v]} {s:.2f} {e:.2f} {label} {sc:.4f}")
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
