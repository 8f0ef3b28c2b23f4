"""One training step's inputs and losses, as ``train`` computes them.

Shared by the training loop (``train.train_epoch``) and by fast mode's timing of the
aggregation paths (``speed.time_aggregation_paths``), so the path measured fastest is
measured on the step the run then takes.
"""

from __future__ import annotations

import torch

from ..method.losses import compute_losses
from ..method.model import ECMNet
from .config import ExperimentConfig


def training_inputs(model: ECMNet, x: torch.Tensor, cfg: ExperimentConfig,
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(features, grouped snippets) of a training split as a run holds them.

    Under bf16 the features are kept in bf16 (autocast would cast them in every batch: the
    same numbers, once); the grouped snippets are ``model.grouped_features`` (None where the
    model's streams do not aggregate the features), built once for the whole run.
    """
    if cfg.train.precision == "bf16":
        x = x.to(torch.bfloat16)
    return x, model.grouped_features(x)


def step_losses(model: ECMNet, x: torch.Tensor, y: torch.Tensor, cfg: ExperimentConfig,
                grouped: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The loss terms of one batch (forward under the run's precision, ``compute_losses``)."""
    background = cfg.loss.background and cfg.model.streams != "pre"
    use_bf16 = cfg.train.precision == "bf16"
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_bf16):
        out = model(x, y, background=background, grouped=grouped)
    out = {k: v.float() for k, v in out.items()}
    return compute_losses(out, y, cfg.loss, cfg.model.streams)
