"""Realized outcomes of stored predictions and the rolling live metrics per version.

A prediction made at bar t for horizon h is *realized* once bar t+h is in the
warehouse: ``up = close[t+h] > close[t]`` and ``ret = ln(close[t+h] / close[t])``
(the same definitions as the training labels). Predictions whose bar t+h is
missing (not yet arrived, or a gap) are left out, never guessed.

The window is the last ``window_days`` of the *data clock* (the newest candle
of the timeframe), so a warehouse of historical candles is judged like a live
one. Metrics per version and horizon reuse the training ones
(``ml_core.evaluation``): AUC, accuracy, Brier, log loss, and the trading
return after ``fee_bps`` on non-overlapping h-bar blocks. Horizon 0 is the
summary row: classification metrics averaged over horizons (as the promotion
gate does), ``n_outcomes`` summed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_core.config import EvaluationConfig, timeframe_seconds
from ml_core.data.warehouse import Warehouse
from ml_core.evaluation.metrics import classification_metrics
from ml_core.evaluation.trading import trading_metrics

log = logging.getLogger(__name__)

OUTCOME_COLUMNS = ["model_version", "alias", "symbol", "ts", "horizon", "p_up", "up", "ret", "t1"]
METRIC_COLUMNS = [
    "model_version",
    "horizon",
    "n_outcomes",
    "auc",
    "accuracy",
    "brier",
    "log_loss",
    "trading_return",
    "bh_return",
]
SUMMARY_HORIZON = 0


@dataclass(frozen=True)
class OutcomeWindow:
    """Realized outcomes of the window and its bounds (t1 = the bar the outcome ends on)."""

    outcomes: pd.DataFrame
    window_start: pd.Timestamp | None
    window_end: pd.Timestamp | None


def realized_outcomes(
    warehouse: Warehouse, *, model_name: str, timeframe: str, window_days: float
) -> OutcomeWindow:
    """Predictions of ``model_name`` joined with their realized direction and return.

    Only rows whose outcome bar t+h exists and ends within the last
    ``window_days`` before the newest candle of ``timeframe``.
    """
    bar_s = timeframe_seconds(timeframe)
    window_s = float(window_days) * 86400.0
    with warehouse.connect(read_only=True) as con:
        end = con.execute(
            "SELECT max(ts) FROM candles WHERE timeframe = ?", [timeframe]
        ).fetchone()[0]
        if end is None:
            return OutcomeWindow(_empty_outcomes(), None, None)
        start = pd.Timestamp(end) - pd.Timedelta(seconds=window_s)
        frame = con.execute(
            f"""
            SELECT p.model_version, p.alias, p.symbol, p.ts, p.horizon, p.p_up,
                   CASE WHEN f.close > c.close THEN 1.0 ELSE 0.0 END AS up,
                   ln(f.close / c.close) AS ret, f.ts AS t1
            FROM predictions p
            JOIN candles c ON c.symbol = p.symbol AND c.timeframe = p.timeframe AND c.ts = p.ts
            JOIN candles f ON f.symbol = p.symbol AND f.timeframe = p.timeframe
                          AND f.ts = p.ts + to_seconds(p.horizon * {bar_s})
            WHERE p.model_name = ? AND p.timeframe = ? AND f.ts > ? AND p.p_up IS NOT NULL
            ORDER BY p.model_version, p.horizon, p.symbol, p.ts""",
            [model_name, timeframe, start.to_pydatetime()],
        ).df()
    frame["ts"] = frame["ts"].astype("datetime64[us]")
    return OutcomeWindow(frame[OUTCOME_COLUMNS], start, pd.Timestamp(end))


def version_metrics(
    outcomes: pd.DataFrame, *, eval_cfg: EvaluationConfig, timeframe: str
) -> pd.DataFrame:
    """``METRIC_COLUMNS`` per (version, horizon), plus one horizon-0 summary row per version."""
    rows = []
    for version, by_version in outcomes.groupby("model_version", sort=True):
        per_h = []
        for horizon, g in by_version.groupby("horizon", sort=True):
            per_h.append(_horizon_metrics(g, int(horizon), eval_cfg, timeframe))
        for m in per_h:
            rows.append({"model_version": str(version), **m})
        rows.append({"model_version": str(version), **_summary(per_h)})
    if not rows:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    return pd.DataFrame(rows)[METRIC_COLUMNS]


def paired_auc(outcomes: pd.DataFrame, version_a: str, version_b: str) -> dict[str, float]:
    """Mean-over-horizons AUC of two versions on the rows both scored (same symbol, ts, h).

    Returns ``auc_a``, ``auc_b`` and ``n`` (paired rows): the honest comparison
    of a champion with the shadow score of ``previous``.
    """
    key = ["symbol", "ts", "horizon"]
    a = outcomes[outcomes["model_version"] == str(version_a)]
    b = outcomes[outcomes["model_version"] == str(version_b)]
    both = a[[*key, "p_up", "up"]].merge(b[[*key, "p_up"]], on=key, suffixes=("_a", "_b"))
    if both.empty:
        return {"auc_a": math.nan, "auc_b": math.nan, "n": 0}
    aucs_a, aucs_b = [], []
    for _, g in both.groupby("horizon", sort=True):
        aucs_a.append(classification_metrics(g["up"], g["p_up_a"])["auc"])
        aucs_b.append(classification_metrics(g["up"], g["p_up_b"])["auc"])
    return {"auc_a": _nanmean(aucs_a), "auc_b": _nanmean(aucs_b), "n": int(len(both))}


def summary_row(metrics: pd.DataFrame, version: str | None) -> Mapping[str, float] | None:
    """The horizon-0 row of ``version`` as a dict, or None when it has no outcomes."""
    if version is None:
        return None
    hit = metrics[
        (metrics["model_version"] == str(version)) & (metrics["horizon"] == SUMMARY_HORIZON)
    ]
    return None if hit.empty else hit.iloc[0].to_dict()


# ---- helpers --------------------------------------------------------------------------------
def _horizon_metrics(
    g: pd.DataFrame, horizon: int, eval_cfg: EvaluationConfig, timeframe: str
) -> dict[str, float]:
    scores = classification_metrics(g["up"].to_numpy(dtype=float), g["p_up"].to_numpy(dtype=float))
    trade_frame = pd.DataFrame(
        {"symbol": g["symbol"].to_numpy(), "ts": g["ts"].to_numpy(), f"ret_{horizon}": g["ret"]}
    )
    trading = trading_metrics(
        trade_frame,
        g["p_up"].to_numpy(dtype=float),
        horizon=horizon,
        cfg=eval_cfg,
        timeframe=timeframe,
    )
    return {
        "horizon": horizon,
        "n_outcomes": int(scores["n"]),
        "auc": scores["auc"],
        "accuracy": scores["accuracy"],
        "brier": scores["brier"],
        "log_loss": scores["log_loss"],
        "trading_return": trading["total_return"],
        "bh_return": trading["bh_total_return"],
    }


def _summary(per_h: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {"horizon": SUMMARY_HORIZON}
    out["n_outcomes"] = int(sum(m["n_outcomes"] for m in per_h))
    for key in ("auc", "accuracy", "brier", "log_loss", "trading_return", "bh_return"):
        out[key] = _nanmean([m[key] for m in per_h])
    return out


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else math.nan


def _empty_outcomes() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in OUTCOME_COLUMNS})
