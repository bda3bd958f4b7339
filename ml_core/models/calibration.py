"""Calibrated P(up): a map from a model's raw probability to one that means what it says.

A model's P(up) ranks rows (that is what AUC measures) but is rarely a frequency: a
boosted model at 0.77 may be up 55% of the time. Each horizon of a pipeline gets a
``Calibrator`` fitted on the **validation** part, which the model never trained on,
in time order:

1. the earlier 2/3 of the validation rows (by time) fit each method: ``sigmoid``
   (Platt scaling: scikit-learn's logistic regression on the logit of p) and
   ``isotonic`` (scikit-learn's ``IsotonicRegression``, clipped);
2. the later 1/3 scores them and ``none`` (the raw p) by log loss; the lowest wins
   (``models.calibration: auto``; a named method skips the choice), a method with more
   parameters only when it beats the simpler ones by ``MIN_LOG_LOSS_GAIN`` (on a model
   that is calibrated already, isotonic steps win by noise, 1e-4 nats, about half the
   time);
3. the winner is refit on all validation rows.

The calibrator travels inside the registered pipeline, so ``predict``, ``score`` and
the scoring service serve calibrated values. Both methods are non-decreasing, so the
ranking (AUC) is kept (a sigmoid fit with a falling slope, where validation ranks the
other way round, is refused: raw p kept); isotonic's steps can tie rows, moving AUC by
a little.

What the choice guards against: crypto's share of up moves swings with the market, so a
calibrator fitted on some weeks can be worse on the next ones than the raw p. On the
embedded 1h sample the share of up moves at h=24 went from 0.385 in the earlier
validation weeks to 0.647 in the later ones; every calibrator fitted on the earlier
weeks lost log loss on the later ones, and ``auto`` keeps the raw p there.

Example::

    cal, table = fit_calibrator(p_val, y_val, ts_val)
    cal(p_test)          # calibrated P(up)
    table                # log loss of each method on the later validation rows
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: The methods ``models.calibration: auto`` chooses from, simplest first (ties keep it).
CALIBRATION_METHODS = ("none", "sigmoid", "isotonic")

#: Holdout log loss (nats per row) a method must gain over every simpler one to be chosen.
MIN_LOG_LOSS_GAIN = 3e-4

#: Fewest labelled validation rows (and of each class) a calibrator is fitted on.
MIN_CALIBRATION_ROWS = 200

_EPS = 1e-6


@dataclass
class Calibrator:
    """A fitted P(up) map (``method`` one of ``CALIBRATION_METHODS``)."""

    method: str = "none"
    model: object | None = None
    n_rows: int = 0

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        if self.method == "none" or self.model is None or p.size == 0:
            return p
        finite = np.isfinite(p)
        out = p.copy()
        if self.method == "sigmoid":
            out[finite] = self.model.predict_proba(_logit(p[finite]).reshape(-1, 1))[:, 1]
        else:
            out[finite] = self.model.predict(p[finite])
        return np.clip(out, _EPS, 1.0 - _EPS, where=finite, out=out)


def fit_calibrator(
    p: np.ndarray, y: np.ndarray, ts: np.ndarray | pd.Series, *, method: str = "auto"
) -> tuple[Calibrator, pd.DataFrame]:
    """The calibrator of one horizon from validation predictions (module doc).

    ``p``: raw P(up), ``y``: 0/1 labels (NaN rows are dropped), ``ts``: each row's bar
    time (the choice holds out the latest third). Returns the calibrator and a table of
    the holdout log loss per method (``chosen`` marks the winner; empty when too few
    rows: the raw p is kept).
    """
    p = np.asarray(p, dtype=float)
    y = np.asarray(y, dtype=float)
    ts = np.asarray(pd.to_datetime(pd.Series(ts)).to_numpy())
    ok = np.isfinite(p) & np.isfinite(y)
    p, y, ts = p[ok], y[ok], ts[ok]
    if method == "none" or not _enough(y):
        return Calibrator("none", None, 0), pd.DataFrame()
    order = np.argsort(ts, kind="stable")
    p, y = p[order], y[order]
    cut = int(len(p) * 2 / 3)
    methods = CALIBRATION_METHODS if method == "auto" else ("none", method)
    rows = []
    if _enough(y[:cut]) and len(p) - cut >= MIN_CALIBRATION_ROWS // 2:
        for name in methods:
            cal = _fit(name, p[:cut], y[:cut])
            rows.append({"method": name, "holdout_log_loss": _log_loss(y[cut:], cal(p[cut:]))})
    table = pd.DataFrame(rows)
    chosen = _choose(rows) if method == "auto" else method
    if not table.empty:
        table["chosen"] = table["method"] == chosen
    return _fit(chosen, p, y), table


def _choose(rows: list[dict]) -> str:
    """Rows in ``CALIBRATION_METHODS`` order (simplest first): a method replaces the one
    chosen so far only when its holdout log loss is lower by ``MIN_LOG_LOSS_GAIN``."""
    chosen, best = "none", np.inf
    for row in rows:
        if row["holdout_log_loss"] < best - (MIN_LOG_LOSS_GAIN if np.isfinite(best) else 0):
            chosen, best = row["method"], row["holdout_log_loss"]
    return chosen


def _fit(method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
    if method == "none":
        return Calibrator("none", None, len(p))
    if method == "sigmoid":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1e4).fit(_logit(p).reshape(-1, 1), y.astype(int))
        if model.coef_[0, 0] <= 0:  # a falling map would turn the model's ranking around
            log.info("sigmoid calibration has slope %.3g <= 0: raw p kept", model.coef_[0, 0])
            return Calibrator("none", None, len(p))
        return Calibrator("sigmoid", model, len(p))
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip").fit(p, y)
        return Calibrator("isotonic", model, len(p))
    raise ValueError(f"unknown calibration method {method!r}; use one of {CALIBRATION_METHODS}")


def _enough(y: np.ndarray) -> bool:
    n_up = int((y == 1).sum())
    return len(y) >= MIN_CALIBRATION_ROWS and min(n_up, len(y) - n_up) >= 20


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(q / (1.0 - q))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    from ml_core.evaluation.metrics import classification_metrics

    return float(classification_metrics(y, p)["log_loss"])
