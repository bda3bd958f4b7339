"""Feature set v1: causal, scale-free candle features in one DuckDB query.

Every feature at bar t reads only bars at or before t of the same segment
(see ``_sql.py``: one sort, streaming windows, segment masks) and is NULL
until its whole window lies inside the segment; rows with incomplete
features are kept, with NULLs. All features are ratios, log returns or
z-scores, so one model serves every symbol whatever its price level.

Exact window sums (``_v1_sql.py``). Rolling sums are differences of running
sums of *integers*: each bar's return, log price, powers, log volume and
volume are rounded to fixed point (the return to 2**-56, below float noise)
and summed in HUGEINT. Integer sums are exact, so a window sum depends only
on the rows in the window: full history, history truncated at t and an
incremental refresh give bit-identical features, and no float running sum
can lose the quiet windows after a 50% memecoin bar. Every per-bar value is
computed from price *ratios*, so rescaling a symbol's prices changes nothing
beyond float noise.

Performance. One sort by (symbol, ts), then streaming windows (see
``_sql.py``); each running sum costs ~80 ns per row in DuckDB 2.0, so the set
shares them: 12 running sums (25 window sums) serve 38 features.

Definitions (r = 1-bar log return, lc = ln(close); windows in bars):

* ``logret_k``: ln(close_t / close_t-k), k = 1, 5, 15, 60, 240 (the labels
  own the names ``ret_h`` / ``past_ret_h``).
* Windows come in the scales 15 / 60 / 240 bars (20 for Bollinger).
* ``volatility_n``: sample std of r over n bars; ``volatility_ratio_15_240``.
* ``mom_z_n``: logret_n / (volatility_n * sqrt(n)), risk-adjusted momentum.
* ``sma_gap_n``: lc minus its n-bar simple moving average (log distance).
* ``rsi_n`` (15, 60): RSI with simple moving averages (Cutler's RSI) of
  log-return gains and losses: 100 * sum(gains) / sum(|r|); 50 when flat.
  DuckDB has no EWM, and an SMA RSI depends only on its n bars, which keeps it
  causal and exactly reproducible from any starting point (Wilder's EWM never
  forgets).
* ``macd_15_60`` / ``macd_60_240``: SMA_a(lc) - SMA_b(lc), an SMA-based MACD
  in log space (so it is a ratio of moving averages, scale-free).
* ``bb_pctb_20`` / ``bb_width_20``: Bollinger %B and band width (4 std) of lc.
* ``atr_n`` (15, 60): mean log true range, ln(max(high, prev close) /
  min(low, prev close)): the ATR normalized by price.
* ``range_hl`` = ln(high / low); ``close_pos`` = (close - low) / (high - low).
* ``volume_z_n``: z-score of ln(volume) over n bars (zero-volume bars are left
  out of the statistics; NULL at a zero-volume bar).
* ``volume_ratio_15_240``: mean ln(volume) over 15 bars minus over 240.
* ``obv_slope_n``: OBV change over n bars / volume over n bars, in [-1, 1].
* ``skew_n`` / ``kurt_n``: bias-corrected sample skewness / excess kurtosis of
  r (pandas' definitions); 0 when r is constant.
* ``tod_*`` / ``dow_*``: sin/cos of time of day and of time of week (UTC).
* ``token_age``: ln(1 + bars since the symbol's first candle), computed from
  timestamps so an incremental refresh (or serving with ``first_ts``) agrees.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading

import duckdb
import pandas as pd

from ml_core.config import FeatureConfig, timeframe_seconds
from ml_core.errors import DataContractError
from ml_core.features import _sql
from ml_core.features import _v1_sql as _v1

log = logging.getLogger(__name__)

FEATURE_SET_NAME = "v1"
FEATURE_SET_VERSION = 1

_f = _v1.f


Spec = tuple[str, int, str]  # (name, lookback bars, SQL expression over _v1_sql names)


def _price_specs() -> list[Spec]:
    """Returns, volatility, momentum, RSI, MACD, Bollinger, ATR, bar shape."""
    specs: list[Spec] = [("logret_1", 1, "r")]
    specs += [(f"logret_{k}", k, f"lret_{k}") for k in (5, 15, 60, 240)]
    specs += [(f"volatility_{n}", n, f"sd_{n}") for n in (15, 60, 240)]
    specs.append(
        ("volatility_ratio_15_240", 240, "CASE WHEN sd_240 > 0 THEN sd_15 / sd_240 ELSE 1.0 END")
    )
    specs += [
        (
            f"mom_z_{n}",
            n,
            f"CASE WHEN sd_{n} > 0 THEN lret_{n} / (sd_{n} * {_f(math.sqrt(n))}) ELSE 0.0 END",
        )
        for n in (60, 240)
    ]
    specs += [(f"sma_gap_{n}", n - 1, f"gap_{n}") for n in (15, 60, 240)]
    specs += [
        (
            f"rsi_{n}",
            n,
            f"CASE WHEN s_aq_{n} > 0 THEN greatest(0.0, least(100.0, 50.0 + 50.0 * lret_{n} "
            f"* {_f(_v1.R)} / s_aq_{n}::DOUBLE)) ELSE 50.0 END",
        )
        for n in (15, 60)
    ]
    specs += [("macd_15_60", 59, "gap_60 - gap_15"), ("macd_60_240", 239, "gap_240 - gap_60")]
    specs += [
        ("bb_pctb_20", 19, "CASE WHEN bb_sd > 0 THEN 0.5 + gap_20 / (4.0 * bb_sd) ELSE 0.5 END"),
        ("bb_width_20", 19, "4.0 * bb_sd"),
    ]
    specs += [(f"atr_{n}", n, f"s_tr_{n}::DOUBLE / {_f(n * _v1.L)}") for n in (15, 60)]
    specs += [
        ("range_hl", 0, "ln(high / low)"),
        ("close_pos", 0, "CASE WHEN high > low THEN (close - low) / (high - low) ELSE 0.5 END"),
    ]
    return specs


def _volume_shape_time_specs() -> list[Spec]:
    """Volume z-scores and OBV, return skew/kurtosis, calendar and token age."""
    specs: list[Spec] = [
        (
            f"volume_z_{n}",
            n - 1,
            f"CASE WHEN nv = 0 OR s_nv_{n} < 2 THEN NULL WHEN vvar_{n} <= 0 THEN 0.0 "
            f"ELSE vdev_{n} * sqrt((s_nv_{n} - 1) / (s_nv_{n} * vvar_{n})) END",
        )
        for n in (60, 240)
    ]
    specs.append(
        (
            "volume_ratio_15_240",
            239,
            "CASE WHEN s_nv_15 > 0 AND s_nv_240 > 0 THEN (s_lv_15::DOUBLE / s_nv_15::DOUBLE "
            f"- s_lv_240::DOUBLE / s_nv_240::DOUBLE) / {_f(_v1.LV)} END",
        )
    )
    specs += [
        (
            f"obv_slope_{n}",
            n,
            f"CASE WHEN s_v_{n} > 0 THEN s_sv_{n}::DOUBLE / s_v_{n}::DOUBLE ELSE 0.0 END",
        )
        for n in (60, 240)
    ]
    for n in (60, 240):
        specs += [(f"skew_{n}", n, f"skew_{n}"), (f"kurt_{n}", n, f"kurt_{n}")]
    specs += [
        ("tod_sin", 0, "sin(2 * pi() * tod)"),
        ("tod_cos", 0, "cos(2 * pi() * tod)"),
        ("dow_sin", 0, "sin(2 * pi() * tow)"),
        ("dow_cos", 0, "cos(2 * pi() * tow)"),
        ("token_age", 0, "ln(1.0 + age_bars)"),
    ]
    return specs


_SPECS = _price_specs() + _volume_shape_time_specs()

#: Feature columns of set v1, in output order.
FEATURE_COLUMNS: list[str] = [name for name, _, _ in _SPECS]
#: Past bars (besides bar t) a prediction at t needs: the largest lookback.
LOOKBACK_BARS: int = max(lookback for _, lookback, _ in _SPECS)
#: Lookback of each feature (bars before t it reads).
FEATURE_LOOKBACK: dict[str, int] = {name: lookback for name, lookback, _ in _SPECS}
#: Columns of a feature frame, in order.
OUTPUT_COLUMNS: list[str] = [
    "symbol",
    "timeframe",
    "ts",
    "segment_start",
    "close",
    *FEATURE_COLUMNS,
]


def feature_stages(timeframe: str, cfg: FeatureConfig, *, seeded: bool = False) -> _sql.Stages:
    """Skeleton stages whose ``out`` is ``OUTPUT_COLUMNS`` (see ``_sql.render``)."""
    outputs = [
        "symbol",
        f"'{timeframe}' AS timeframe",
        "ts",
        "segment_start",
        "close",
        *[f"{_sql.mask(expr, lookback)}::DOUBLE AS {name}" for name, lookback, expr in _SPECS],
    ]
    bar_us = timeframe_seconds(timeframe) * 1_000_000
    segments = _sql.segment_stages(timeframe, cfg, seeded=seeded)
    return segments.merged(_v1.v1_stages(bar_us, outputs))


def feature_query(
    *,
    timeframe: str,
    cfg: FeatureConfig,
    relation: str = "candles",
    symbols: list[str] | None = None,
) -> tuple[str, dict[str, object]]:
    """SQL text and parameters of the v1 feature frame (rows sorted by symbol, ts)."""
    timeframe_seconds(timeframe)  # raises ConfigError on an unknown timeframe
    source = _sql.candle_source(relation, symbols=symbols)
    return _sql.render(source, feature_stages(timeframe, cfg)), _sql.query_params(
        timeframe, symbols
    )


def compute_features(
    con: duckdb.DuckDBPyConnection,
    *,
    timeframe: str,
    cfg: FeatureConfig,
    relation: str = "candles",
    symbols: list[str] | None = None,
) -> pd.DataFrame:
    """Feature set v1 for every candle of ``timeframe`` in ``relation``.

    Returns ``OUTPUT_COLUMNS`` (symbol, timeframe, ts, segment_start, close,
    FEATURE_COLUMNS) sorted by symbol, ts; one row per candle, features NULL
    (NaN) where their window is not yet full inside the segment.
    """

    def build(group: list[str] | None) -> tuple[str, dict[str, object]]:
        return feature_query(timeframe=timeframe, cfg=cfg, relation=relation, symbols=group)

    return _sql.fetch_parallel(con, build, relation=relation, timeframe=timeframe, symbols=symbols)


def features_from_candles(
    candles: pd.DataFrame,
    cfg: FeatureConfig,
    *,
    timeframe: str | None = None,
    first_ts: dict[str, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """The same v1 SQL run on an in-memory DuckDB over a candle frame (serving).

    ``candles`` follows the candle contract; ``timeframe`` is needed only when
    the frame has no ``timeframe`` column. ``first_ts`` maps symbol -> first
    candle ever seen, so ``token_age`` matches training when the frame holds
    only recent candles (default: each symbol's first row in the frame).
    """
    frame, tf = candle_frame_for_sql(candles, timeframe)
    scratch = _scratch()
    con = scratch.con
    _load(con, "candles_in", frame[[*CANDLE_IN_COLUMNS]])
    first_rel = None
    if first_ts is not None:
        _load(con, "first_ts_in", _first_ts_frame(frame, first_ts))
        first_rel = "first_ts_in"
    source = _sql.candle_source("candles_in", symbols=None, first_ts_relation=first_rel)
    if not re.fullmatch(r"[0-9]+[a-zA-Z]+", tf):  # it goes into the statement's text
        raise DataContractError(f"timeframe {tf!r} is not like 1m, 1h or 1d.")
    sql = _sql.render(source, feature_stages(tf, cfg)).replace("$timeframe", f"'{tf}'")
    name = scratch.prepared.get(sql)
    if name is None:  # planned once per thread and query text, then only executed
        name = scratch.prepared[sql] = f"features_{len(scratch.prepared)}"
        con.execute(f"PREPARE {name} AS {sql}")
    return con.sql(f"EXECUTE {name}").to_arrow_table().to_pandas()


#: The serving tables of the scratch database (``candle_frame_for_sql``'s columns).
CANDLE_IN_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume", "timeframe")

_SCRATCH = threading.local()
# a forked child must not use its parent's database handle
os.register_at_fork(after_in_child=lambda: _SCRATCH.__dict__.clear())


def _scratch() -> threading.local:
    """This thread's in-memory DuckDB for serving queries, with its two input tables and
    prepared feature queries. Opening a database and planning the feature query each cost
    more than running it over one symbol's lookback, so both happen once per thread."""
    if getattr(_SCRATCH, "con", None) is None:
        con = duckdb.connect()
        con.execute(
            """CREATE TABLE candles_in (symbol VARCHAR, ts TIMESTAMP, open DOUBLE, high DOUBLE,
                 low DOUBLE, close DOUBLE, volume DOUBLE, timeframe VARCHAR);
               CREATE TABLE first_ts_in (symbol VARCHAR, first_ts TIMESTAMP, first_close DOUBLE)"""
        )
        _SCRATCH.con, _SCRATCH.prepared = con, {}
    return _SCRATCH


def _load(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Replace the rows of ``table`` by ``frame`` (same columns, same order)."""
    con.register("rows_in", frame)
    try:
        con.execute(f"DELETE FROM {table}; INSERT INTO {table} SELECT * FROM rows_in")
    finally:
        con.unregister("rows_in")


def candle_frame_for_sql(candles: pd.DataFrame, timeframe: str | None) -> tuple[pd.DataFrame, str]:
    """A copy of ``candles`` with naive-UTC ``ts`` and one ``timeframe``; checks columns."""
    required = ["symbol", "ts", "open", "high", "low", "close", "volume"]
    missing = [c for c in required if c not in candles.columns]
    if missing:
        raise DataContractError(
            f"Candle frame lacks columns {missing}; it needs {required} (+ timeframe)."
        )
    frame = candles[required + (["timeframe"] if "timeframe" in candles.columns else [])].copy()
    if isinstance(frame["ts"].dtype, pd.DatetimeTZDtype):
        frame["ts"] = frame["ts"].dt.tz_convert("UTC").dt.tz_localize(None)
    frame["ts"] = frame["ts"].astype("datetime64[us]")
    if timeframe is None:
        found = sorted(frame["timeframe"].unique()) if "timeframe" in frame.columns else []
        if len(found) != 1:
            raise DataContractError(
                f"Candle frame has timeframes {found}; pass timeframe=... or give one "
                "timeframe column with a single value."
            )
        timeframe = str(found[0])
    timeframe_seconds(timeframe)
    frame["timeframe"] = timeframe
    return frame, timeframe


def _first_ts_frame(frame: pd.DataFrame, first_ts: dict[str, pd.Timestamp]) -> pd.DataFrame:
    """symbol -> first_ts (from ``first_ts`` where known, else the frame's first
    row) and first_close (the frame's first close: it only anchors fixed-point
    log prices, and any anchor gives the same features up to ~1e-12)."""
    first = frame.sort_values("ts").groupby("symbol", sort=True).first()
    known = {s: _naive(t) for s, t in first_ts.items()}
    return pd.DataFrame(
        {
            "symbol": first.index.astype(str),
            "first_ts": [min(known.get(s, t), t) for s, t in first["ts"].items()],
            "first_close": first["close"].to_numpy(),
        }
    )


def _naive(ts: pd.Timestamp) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    return t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t
