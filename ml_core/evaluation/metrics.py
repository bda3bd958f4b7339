"""Classification metrics of P(up) forecasts, and the calibration table.

Labels come from the model frame (``up_{h}``: 1.0 / 0.0, NaN at the end of a
segment, where the future is unknown). Rows whose label is NaN are dropped
from both inputs together and counted in ``n_dropped``; a NaN probability on a
labelled row is a contract error (a model must score every row it is given).

Example::

    >>> m = classification_metrics([0, 1, 1, float("nan")], [0.2, 0.7, 0.9, 0.5])
    >>> m["auc"], m["n"], m["n_dropped"]
    (1.0, 3, 1)
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ml_core.config import EvaluationConfig
from ml_core.errors import ConfigError, DataContractError
from ml_core.evaluation.trading import trading_metrics

logger = logging.getLogger(__name__)

#: Probabilities are clipped to [EPS, 1 - EPS] before taking logs.
PROB_EPS = 1e-6

#: Keys of :func:`classification_metrics`, in display order.
CLASSIFICATION_KEYS = (
    "auc",
    "accuracy",
    "f1",
    "brier",
    "log_loss",
    "n",
    "n_dropped",
    "base_rate",
)


def labelled_pairs(y_true: ArrayLike, p_up: ArrayLike) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate and align labels with probabilities; drop unlabelled rows.

    Returns ``(y, p, n_dropped)`` with ``y`` in {0.0, 1.0} and ``p`` in [0, 1].
    Raises :class:`DataContractError` on mismatched lengths, labels other than
    0/1/NaN, probabilities outside [0, 1], or NaN probabilities on labelled rows.
    """
    y = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(p_up, dtype=float).ravel()
    if y.shape != p.shape:
        raise DataContractError(
            f"y_true has {y.size} rows but p_up has {p.size}; pass one probability per label row "
            "(predict on exactly the frame the labels come from)."
        )
    labelled = ~np.isnan(y)
    y, p = y[labelled], p[labelled]
    bad_labels = np.setdiff1d(np.unique(y), [0.0, 1.0])
    if bad_labels.size:
        raise DataContractError(
            f"y_true must hold 1.0 (up), 0.0 (down) or NaN; found {bad_labels[:5].tolist()}. "
            "Pass an up_{h} label column."
        )
    if np.isnan(p).any():
        n_nan = int(np.isnan(p).sum())
        raise DataContractError(
            f"p_up is NaN on {n_nan} labelled rows; every labelled row needs a probability "
            "(drop rows with incomplete features before predicting, or impute)."
        )
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise DataContractError(
            f"p_up must lie in [0, 1]; found values in [{p.min():.4g}, {p.max():.4g}]. "
            "Pass probabilities, not scores or logits."
        )
    return y, p, int((~labelled).sum())


def classification_metrics(
    y_true: ArrayLike, p_up: ArrayLike, *, threshold: float = 0.5
) -> dict[str, float]:
    """Score P(up) forecasts against 0/1 labels.

    Keys: ``auc`` (ROC AUC; NaN when the labelled rows hold a single class,
    since ranking is then undefined), ``accuracy`` and ``f1`` (of the up class)
    with "up" predicted when ``p > threshold``, ``brier`` (mean squared error of
    p), ``log_loss`` (p clipped to [1e-6, 1 - 1e-6]), ``n`` (labelled rows
    scored), ``n_dropped`` (rows dropped for a NaN label) and ``base_rate``
    (share of up labels). With no labelled row every metric is NaN and n = 0.
    """
    y, p, n_dropped = labelled_pairs(y_true, p_up)
    n = int(y.size)
    if n == 0:
        logger.warning("classification_metrics: no labelled rows (%d dropped)", n_dropped)
        out = dict.fromkeys(CLASSIFICATION_KEYS, math.nan)
        out.update(n=0, n_dropped=n_dropped)
        return out
    pred = p > threshold
    truth = y == 1.0
    tp = int((pred & truth).sum())
    n_pred, n_true = int(pred.sum()), int(truth.sum())
    f1 = 2.0 * tp / (n_pred + n_true) if (n_pred + n_true) else 0.0
    clipped = np.clip(p, PROB_EPS, 1.0 - PROB_EPS)
    log_loss = -np.mean(y * np.log(clipped) + (1.0 - y) * np.log(1.0 - clipped))
    return {
        "auc": _auc(y, p),
        "accuracy": float(np.mean(pred == truth)),
        "f1": float(f1),
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(log_loss),
        "n": n,
        "n_dropped": n_dropped,
        "base_rate": float(y.mean()),
    }


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties at half; NaN with one class."""
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = pd.Series(p).rank(method="average").to_numpy()
    return float((ranks[y == 1.0].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def calibration_table(y_true: ArrayLike, p_up: ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table: forecasts grouped into ``n_bins`` equal-width bins of p.

    One row per non-empty bin with columns ``bin`` (0-based), ``p_lo``, ``p_hi``
    (bin edges), ``n``, ``mean_p`` (mean forecast) and ``frac_up`` (observed up
    share). A calibrated forecaster has ``frac_up`` close to ``mean_p``.
    Unlabelled rows are dropped as in :func:`classification_metrics`.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(f"n_bins must be a positive integer, got {n_bins!r}; use e.g. 10.")
    y, p, _ = labelled_pairs(y_true, p_up)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # p == 1.0 belongs to the last bin, not to a bin of its own.
    bins = np.minimum(np.floor(p * n_bins).astype(int), n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "p": p, "y": y})
    grouped = frame.groupby("bin", sort=True).agg(
        n=("y", "size"), mean_p=("p", "mean"), frac_up=("y", "mean")
    )
    idx = grouped.index.to_numpy()
    return pd.DataFrame(
        {
            "bin": idx.astype(int),
            "p_lo": edges[idx],
            "p_hi": edges[idx + 1],
            "n": grouped["n"].to_numpy().astype(int),
            "mean_p": grouped["mean_p"].to_numpy(),
            "frac_up": grouped["frac_up"].to_numpy(),
        }
    )


def expected_calibration_error(y_true: ArrayLike, p_up: ArrayLike, n_bins: int = 10) -> float:
    """ECE: the mean gap |mean forecast - observed up share| over the bins of
    :func:`calibration_table`, weighted by their row counts (0 = calibrated; NaN
    without labelled rows).

    >>> round(expected_calibration_error([0, 1, 0, 1], [0.9, 0.9, 0.1, 0.1]), 3)
    0.4
    """
    table = calibration_table(y_true, p_up, n_bins)
    if table.empty:
        return math.nan
    gap = (table["mean_p"] - table["frac_up"]).abs()
    return float((gap * table["n"]).sum() / table["n"].sum())


def score_predictions(
    frame: pd.DataFrame,
    p_up: ArrayLike,
    *,
    horizon: int,
    cfg: EvaluationConfig,
    timeframe: str,
    trade_p: ArrayLike | None = None,
) -> dict[str, float]:
    """Classification metrics on ``up_{horizon}`` plus the trading view, in one dict.

    The one scoring call for models and baselines alike, so both are measured
    the same way. Accuracy/F1 use the 0.5 cut; the trading view uses
    ``cfg.threshold`` on ``trade_p`` (default: ``p_up``). Keys: those of
    :func:`classification_metrics` then those of
    :func:`ml_core.evaluation.trading.trading_metrics`.
    """
    label = f"up_{horizon}"
    if label not in frame.columns:
        raise DataContractError(
            f"frame lacks the label column {label!r}; pass the model frame for horizon {horizon}."
        )
    scores = classification_metrics(frame[label].to_numpy(dtype=float), p_up)
    trading = trading_metrics(
        frame,
        p_up if trade_p is None else trade_p,
        horizon=horizon,
        cfg=cfg,
        timeframe=timeframe,
    )
    return {**scores, **trading}
