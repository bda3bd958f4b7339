"""The naive reference of the change detector when the champion has no ``previous``.

Per horizon the best of a coin flip (p = 0.5) and the baselines of
:mod:`ml_core.evaluation.baselines` (always-up, persistence, momentum sign),
fitted on the first half of the ``reference_bars`` labelled bars per symbol
before the monitored stream begins and chosen by log loss on the second half:
neither the fit nor the choice sees a monitored outcome. The result is plain
JSON (stored with the detector's state), so every later run scores with the
same baseline.

Example::

    naive = fit_naive_reference(candles, horizons=[15, 60], before=first_ts,
                                timeframe="1m", reference_bars=2880)
    p = naive_probabilities(naive, rows)   # rows: horizon, close, close_lag1, close_lag_h
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ml_core.config import timeframe_seconds
from ml_core.evaluation.baselines import fit_baselines
from ml_core.monitoring.detector import LOSS_EPS

#: Fewer labelled rows than this in either half of the fit window: coin flip (p = 0.5).
MIN_NAIVE_ROWS = 30


def fit_naive_reference(
    candles: pd.DataFrame,
    *,
    horizons: Sequence[int],
    before: pd.Timestamp,
    timeframe: str,
    reference_bars: int,
) -> dict[str, Any]:
    """Per horizon, the naive baseline with the lowest log loss, from bars before ``before``.

    Candidates: a coin flip (p = 0.5) and the baselines of
    :func:`ml_core.evaluation.baselines.fit_baselines`, fitted on the first half of the last ``reference_bars`` labelled bars per
    symbol (labels realized before ``before``), chosen on the second half.
    Returns ``{str(h): {"name", "rate", "sign_rates", "log_loss", "n_fit", "n_select"}}``;
    too little history gives ``coin_flip`` (p = 0.5).
    """
    out: dict[str, Any] = {}
    for h in horizons:
        frame = _naive_frame(candles, int(h), before, timeframe, reference_bars)
        cut = frame["ts"].quantile(0.5) if len(frame) else None
        fit, select = (
            (frame, frame) if cut is None else (frame[frame.ts < cut], frame[frame.ts >= cut])
        )
        if min(len(fit), len(select)) < MIN_NAIVE_ROWS:
            out[str(h)] = {"name": "coin_flip", "rate": 0.5, "sign_rates": {}, "n_fit": len(fit)}
            continue
        y = select[f"up_{h}"].to_numpy(dtype=float)
        best: dict[str, Any] = {
            "name": "coin_flip",
            "rate": 0.5,
            "sign_rates": {},
            "log_loss": math.log(2.0),
            "n_fit": len(fit),
            "n_select": len(select),
        }
        for name, baseline in fit_baselines(fit, int(h)).items():
            p = np.clip(baseline.predict_proba(select), LOSS_EPS, 1 - LOSS_EPS)
            loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
            if loss < best["log_loss"]:
                rates = getattr(baseline, "sign_rates_", {})
                best = {
                    "name": name,
                    "rate": float(baseline.rate_),
                    "sign_rates": {str(float(k)): float(v) for k, v in rates.items()},
                    "log_loss": loss,
                    "n_fit": len(fit),
                    "n_select": len(select),
                }
        out[str(h)] = best
    return out


def naive_probabilities(naive: Mapping[str, Any], rows: pd.DataFrame) -> np.ndarray:
    """P(up) of the stored naive baseline for each row (``close``, lags, ``horizon``)."""
    p = np.full(len(rows), 0.5)
    horizon = rows["horizon"].to_numpy(dtype=int)
    with np.errstate(invalid="ignore", divide="ignore"):
        logret_1 = np.log(rows["close"].to_numpy(float) / rows["close_lag1"].to_numpy(float))
        past_h = np.log(rows["close"].to_numpy(float) / rows["close_lag_h"].to_numpy(float))
    for h in np.unique(horizon):
        spec = naive.get(str(int(h)))
        if spec is None:
            continue
        mask = horizon == h
        p[mask] = spec["rate"]
        signal = {"persistence": logret_1, "momentum_sign": past_h}.get(spec["name"])
        if signal is None:
            continue
        sign = np.sign(signal)  # NaN (a gap) matches no key and keeps the rate
        for key, rate in spec["sign_rates"].items():
            p[mask & (sign == float(key))] = rate
    return p


def _naive_frame(
    candles: pd.DataFrame, h: int, before: pd.Timestamp, timeframe: str, reference_bars: int
) -> pd.DataFrame:
    """``symbol, ts, logret_1, past_ret_h, up_h`` per bar whose label is known before ``before``."""
    bar = pd.Timedelta(seconds=timeframe_seconds(timeframe))
    frames = []
    for symbol, g in candles[candles["ts"] < before].groupby("symbol", sort=True):
        close = g.set_index("ts")["close"].astype(float)
        ts = close.index
        future = close.reindex(ts + h * bar).to_numpy()
        frame = pd.DataFrame(
            {
                "symbol": symbol,
                "ts": ts,
                "logret_1": np.log(close.to_numpy() / close.reindex(ts - bar).to_numpy()),
                f"past_ret_{h}": np.log(close.to_numpy() / close.reindex(ts - h * bar).to_numpy()),
                f"up_{h}": np.where(np.isnan(future), np.nan, (future > close.to_numpy()) * 1.0),
            }
        ).dropna(subset=[f"up_{h}"])
        frames.append(frame.tail(reference_bars))
    if not frames:
        return pd.DataFrame(columns=["symbol", "ts", "logret_1", f"past_ret_{h}", f"up_{h}"])
    return pd.concat(frames, ignore_index=True).sort_values(["ts", "symbol"], kind="stable")
