"""Drift of the live features against a training-time reference: PSI and KS per feature.

The reference. A registered version does not store feature quantiles yet, so
the reference is rebuilt from the warehouse: the feature rows (v1, the same
SQL as training and serving) of the ``reference_bars`` bars per symbol just
*before the champion's earliest scored bar*. Those bars precede every live
prediction and end where the champion's training data (and holdout) ended, so
they stand for "what the model saw", without storing anything at registration
time. The live sample is the feature rows of the monitor window. Both are
pooled over symbols (the features are scale-free ratios and z-scores).

* PSI: ``sum((live% - ref%) * ln(live% / ref%))`` over ``bins`` quantile bins
  of the reference (open-ended outer bins; empty bins floored at 1e-4). Rule of
  thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 drifted (``psi_alert``).
* KS: two-sample Kolmogorov-Smirnov statistic and p-value (scipy).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from ml_core.config import FeatureConfig, timeframe_seconds
from ml_core.data.warehouse import CANDLE_COLUMNS, Warehouse
from ml_core.errors import ConfigError

log = logging.getLogger(__name__)

DRIFT_COLUMNS = [
    "feature",
    "psi",
    "ks_stat",
    "ks_pvalue",
    "n_reference",
    "n_live",
    "drifted",
]
_PSI_FLOOR = 1e-4


def psi(reference: np.ndarray, live: np.ndarray, *, bins: int = 10) -> float:
    """Population stability index of ``live`` against ``reference`` (NaNs dropped).

    >>> round(psi(np.arange(1000.0), np.arange(1000.0)), 6)
    0.0
    """
    if bins < 2:
        raise ConfigError(f"psi bins={bins}; use at least 2 (monitor.psi_bins, e.g. 10).")
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(live, dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if ref.size == 0 or cur.size == 0:
        return math.nan
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_pct = _bin_shares(ref, edges)
    cur_pct = _bin_shares(cur, edges)
    return float(np.sum((cur_pct - ref_pct) * np.log(cur_pct / ref_pct)))


def feature_drift(
    reference: pd.DataFrame,
    live: pd.DataFrame,
    columns: Sequence[str],
    *,
    bins: int,
    psi_alert: float,
) -> pd.DataFrame:
    """``DRIFT_COLUMNS`` per feature of ``columns`` present in both frames."""
    rows = []
    for col in columns:
        if col not in reference.columns or col not in live.columns:
            continue
        ref = reference[col].to_numpy(dtype=float)
        cur = live[col].to_numpy(dtype=float)
        ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        value = psi(ref, cur, bins=bins)
        if ref.size and cur.size:
            ks = ks_2samp(ref, cur)
            stat, pvalue = float(ks.statistic), float(ks.pvalue)
        else:
            stat = pvalue = math.nan
        rows.append(
            {
                "feature": col,
                "psi": value,
                "ks_stat": stat,
                "ks_pvalue": pvalue,
                "n_reference": int(ref.size),
                "n_live": int(cur.size),
                "drifted": bool(math.isfinite(value) and value > psi_alert),
            }
        )
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS)


def drift_samples(
    warehouse: Warehouse,
    *,
    timeframe: str,
    feature_cfg: FeatureConfig,
    scored_from: dict[str, pd.Timestamp],
    live_start: pd.Timestamp,
    reference_bars: int,
    lookback_bars: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature rows of the reference and of the live window (see the module doc).

    ``scored_from`` maps symbol -> the champion's earliest scored ts. Reads
    ``reference_bars + lookback_bars`` bars per symbol before it, and the live
    window from ``live_start`` (with the lookback before it).
    """
    bar = pd.Timedelta(seconds=timeframe_seconds(timeframe))
    symbols = sorted(scored_from)
    if not symbols:
        empty = pd.DataFrame()
        return empty, empty
    starts = pd.DataFrame(
        {
            "symbol": symbols,
            "scored_from": pd.to_datetime([scored_from[s] for s in symbols]).astype("<M8[us]"),
        }
    )
    n_ref = int(reference_bars) + int(lookback_bars)
    with warehouse.connect(read_only=True) as con:
        con.register("scored_from_in", starts)
        ref_candles = con.sql(
            f"""SELECT {", ".join(CANDLE_COLUMNS)} FROM (
                    SELECT c.*, row_number() OVER (PARTITION BY c.symbol ORDER BY c.ts DESC) AS rn
                    FROM candles c JOIN scored_from_in s ON s.symbol = c.symbol
                    WHERE c.timeframe = $tf AND c.ts < s.scored_from)
                WHERE rn <= $n ORDER BY symbol, ts""",
            params={"tf": timeframe, "n": n_ref},
        ).df()
        live_candles = con.sql(
            f"""SELECT {", ".join(CANDLE_COLUMNS)} FROM candles
                WHERE timeframe = $tf AND ts >= $since AND list_contains($symbols, symbol)
                ORDER BY symbol, ts""",
            params={
                "tf": timeframe,
                "since": (pd.Timestamp(live_start) - bar * 2 * lookback_bars).to_pydatetime(),
                "symbols": symbols,
            },
        ).df()
    reference = _features(ref_candles, feature_cfg)
    reference = reference.groupby("symbol", sort=True).tail(reference_bars)
    live = _features(live_candles, feature_cfg)
    live = live[live["ts"] >= pd.Timestamp(live_start)] if not live.empty else live
    return reference.reset_index(drop=True), live.reset_index(drop=True)


def _features(candles: pd.DataFrame, cfg: FeatureConfig) -> pd.DataFrame:
    from ml_core.features import FEATURE_COLUMNS, features_from_candles

    if candles.empty:
        return pd.DataFrame(columns=["symbol", "ts", *FEATURE_COLUMNS])
    feats = features_from_candles(candles, cfg)
    return feats.dropna(subset=list(FEATURE_COLUMNS)).assign(
        ts=lambda f: f["ts"].astype("datetime64[us]")
    )


def _bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
    return np.maximum(counts / values.size, _PSI_FLOOR)
