"""The paper's ablations and the variants as named config overrides, and the consistency
of the weight transition.

``SETTINGS`` maps a setting name to the ``--set`` overrides it applies on top of the
dataset's configuration (``ecmlib.training.setup.make_config``); the studies of record
(``ecmlib.studies.design``) train each setting with the same protocol:

============================  ===============================================================
``ecm``                       full ECM: both streams, L_eq weight 0.05, L_agg weight of the
                              preset (5 on THUMOS14), learned equivalent weight transition
``pre_only``                  pre-classification stream alone (a plain top-k MIL baseline)
``post_only``                 post-classification stream alone (attention-style aggregation,
                              with L_agg); the CAS is still the shared classifier's
``no_leq``                    both streams, no equivalent classification loss (w_eq = 0)
``leq_0.5``                   both streams, L_eq ten times stronger (w_eq = 0.5)
``no_lagg``                   both streams, no aggregation consistency loss: w_agg = 0 and
                              the background stream is not run at all
``fixed_transition``          a = sigmoid(CAS): the transition has no parameters
``independent_transition``    a = sigmoid(Conv1x1(trunk features)): the weights no longer
                              come from the CAS (the "decoupled" baseline)
``weight_sparsity``           ECM plus STPN's L1 sparsity loss on the label classes'
                              aggregation weights, weight 1e-4 (notebook 08's variant)
============================  ===============================================================

Consistency of the transition
-----------------------------
:func:`transition_consistency` measures how closely the post stream's aggregation weights
follow the pre stream's CAS: for every (video, label class) pair of a split, the Spearman
rank correlation over snippets between ``cas[b, c, :]`` and ``a[b, c, :]``, averaged over
the pairs. A rank correlation is used because the property of interest is "the snippets
the CAS ranks high are the snippets aggregated most", whatever monotone squashing maps
one to the other: with the fixed transition a = sigmoid(CAS) it is exactly 1, while
Pearson's r of min-max(CAS) vs sigmoid(CAS) is below 1 whenever the sigmoid bends (and
min-max normalisation never changes Pearson's r: it is an affine map). Pearson's r is
reported too (``consistency_pearson``). Pairs where either sequence is constant are
skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # annotations only: importing these at run time is not needed here
    from ..method.model import ECMNet

__all__ = [
    "SETTINGS",
    "EQUIVALENT_LOSS_SETTINGS",
    "TRANSITION_SETTINGS",
    "VARIANT_SETTINGS",
    "transition_consistency",
    "consistency_of",
    "consistency_examples",
]

#: Overrides per setting (keys as accepted by ExperimentConfig.with_overrides).
SETTINGS: dict[str, dict[str, Any]] = {
    "ecm": {"model.streams": "both", "loss.w_eq": 0.05, "loss.background": True,
            "model.transition": "learned"},
    "pre_only": {"model.streams": "pre"},
    "post_only": {"model.streams": "post"},
    "no_leq": {"loss.w_eq": 0.0},
    "leq_0.5": {"loss.w_eq": 0.5},
    "no_lagg": {"loss.w_agg": 0.0, "loss.background": False},
    "fixed_transition": {"model.transition": "fixed"},
    "independent_transition": {"model.transition": "independent"},
    # Notebook 08's variant: ECM plus STPN's sparsity loss on the aggregation weights, at
    # STPN's weight 1e-4 (declared before any run; see ecmlib.method.losses.weight_sparsity).
    "weight_sparsity": {"loss.terms": "weight_sparsity=0.0001"},
}

#: The settings of notebook 03 (equivalent classification loss) and 04 (weight transition).
EQUIVALENT_LOSS_SETTINGS = ("ecm", "pre_only", "post_only", "no_leq", "leq_0.5", "no_lagg")
TRANSITION_SETTINGS = ("ecm", "fixed_transition", "independent_transition")
#: Variants from the literature, each against ECM (notebook 08).
VARIANT_SETTINGS = ("weight_sparsity",)


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair of [P, T] arrays (average ranks for ties)."""
    import pandas as pd
    rx = pd.DataFrame(x).rank(axis=1, method="average").to_numpy()
    ry = pd.DataFrame(y).rank(axis=1, method="average").to_numpy()
    return _pearson_rows(rx, ry)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of [P, T] arrays; NaN where a row is constant."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    sx, sy = np.sqrt((x * x).sum(axis=1)), np.sqrt((y * y).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (x * y).sum(axis=1) / (sx * sy)
    # A row is constant when its spread is nothing next to its values' rounding.
    r[(sx <= 1e-12) | (sy <= 1e-12)] = np.nan
    return r


@torch.no_grad()
def _cas_and_weights(model: ECMNet, features: np.ndarray | torch.Tensor, labels: np.ndarray,
                     batch_size: int = 64) -> tuple[np.ndarray, np.ndarray] | None:
    """(CAS [N, C, T], aggregation weights [N, C, T]) in eval mode; None for a pre-only model.

    ``labels`` is unused (the weights do not depend on them); kept for the callers.
    """
    if model.cfg.streams == "pre":
        return None
    from ..training.inference import predict
    _, cas, weights = predict(model, features, batch_size, weights=True)
    return cas, weights


def transition_consistency(model: ECMNet, features: np.ndarray | torch.Tensor, labels: np.ndarray,
                           method: str = "spearman") -> float:
    """Mean over (video, label class) of the correlation over time of CAS and weights a.

    ``features`` [N, D, T], ``labels`` [N, C] multi-hot (the pairs scored are the label
    classes of each video). ``method`` 'spearman' (rank correlation, the default; 1.0 for
    a = sigmoid(CAS)) or 'pearson'. NaN for a model without a post stream, or when every
    pair is constant. See the module docstring for why ranks.
    """
    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")
    got = _cas_and_weights(model, features, labels)
    if got is None:
        return float("nan")
    return consistency_of(*got, labels, method)


def consistency_of(cas: np.ndarray, weights: np.ndarray, labels: np.ndarray,
                   method: str = "spearman") -> float:
    """:func:`transition_consistency` from a model's outputs already computed:
    CAS and aggregation weights [N, C, T], ``labels`` [N, C] multi-hot."""
    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")
    vid, cls = np.nonzero(np.asarray(labels) > 0)
    if vid.size == 0:
        raise ValueError("transition_consistency: no video has a label class")
    x, y = cas[vid, cls].astype(np.float64), weights[vid, cls].astype(np.float64)
    r = _spearman_rows(x, y) if method == "spearman" else _pearson_rows(x, y)
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def consistency_examples(model: ECMNet, features: np.ndarray, labels: np.ndarray, video: int
                         ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{label class: (CAS [T], weights [T])} of one video (notebook 04 draws them with
    ``plots.plot_cas_vs_weights``)."""
    got = _cas_and_weights(model, features[video:video + 1], labels[video:video + 1])
    if got is None:
        return {}
    cas, weights = got
    return {int(c): (cas[0, c], weights[0, c]) for c in np.nonzero(labels[video] > 0)[0]}

