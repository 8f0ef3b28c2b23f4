"""One training step's inputs and losses, as ``train`` computes them.

Shared by the training loop (``train.train_epoch``) and by fast mode's timing of the
aggregation paths (``speed.time_aggregation_paths``), so the path measured fastest is
measured on the step the run then takes.
"""

from __future__ import annotations

import torch

from ..method.losses import compute_losses
from ..method.model import ECMNet, channels_last, is_channels_last
from .config import ExperimentConfig


def training_inputs(model: ECMNet, x: torch.Tensor, cfg: ExperimentConfig,
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(features, grouped snippets) of a training split as a run holds them.

    Under bf16 the features are kept in bf16 (autocast would cast them in every batch: the
    same numbers, once), and on the CPU stored time-major (``model.channels_last``: the
    trunk's bf16 convolutions then run without reordering, to the same numbers). The
    grouped snippets are ``model.grouped_features`` (None where the model's streams do not
    aggregate the features), built once for the whole run.
    """
    if cfg.train.precision == "bf16":
        x = x.to(torch.bfloat16)
        if x.device.type == "cpu":
            x = channels_last(x)
    return x, model.grouped_features(x)


def take_videos(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Videos ``idx`` of x [N, ...] in x's memory layout, as whole-row copies.

    ``index_select`` copies whole rows of a contiguous tensor (plain ``x[idx]`` gathers
    element by element, 3x slower); a channels-last x is gathered through its time-major
    storage, where ``index_select`` of the strided view would transpose every row.
    """
    if is_channels_last(x):
        return x.transpose(1, 2).index_select(0, idx).transpose(1, 2)
    return x.index_select(0, idx)


def step_losses(model: ECMNet, x: torch.Tensor, y: torch.Tensor, cfg: ExperimentConfig,
                grouped: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The loss terms of one batch (forward under the run's precision, ``compute_losses``)."""
    background = cfg.loss.background and cfg.model.streams != "pre"
    use_bf16 = cfg.train.precision == "bf16"
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_bf16):
        out = model(x, y, background=background, grouped=grouped)
    out = {k: v.float() for k, v in out.items()}
    return compute_losses(out, y, cfg.loss, cfg.model.streams)
