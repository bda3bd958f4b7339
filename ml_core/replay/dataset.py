"""The candles a replay plays back: from a candle file or an existing warehouse.

The source is read once, fully, into the canonical candle frame (naive UTC
``ts`` = bar open); the replay then hands each home only the bars closed by
its clock. A ``.duckdb`` path is read as a warehouse (read-only), anything
else as a candle file (``ml_core.data.sources.read_candle_file``: CSV,
Parquet, JSON, Feather, with the usual column spellings).

Example::

    candles = load_candles("data/sample_1h.parquet", timeframe="1h",
                           symbols=["BTC/USDT", "ETH/USDT"])
    check_range(candles, start=..., end=..., timeframe="1h")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import pandas as pd

from ml_core.config import FeatureConfig
from ml_core.data.sources import read_candle_file
from ml_core.data.warehouse import CANDLE_COLUMNS, Warehouse
from ml_core.errors import ConfigError, DataContractError
from ml_core.replay.clock import bar_length, to_clock

WAREHOUSE_SUFFIXES = (".duckdb", ".db")


def load_candles(
    source: Path | str, *, timeframe: str | None, symbols: Sequence[str] | None = None
) -> pd.DataFrame:
    """Candles of ``timeframe`` (None: the source's only one) and ``symbols`` (None: all)."""
    path = Path(source)
    if not path.exists():
        raise DataContractError(
            f"Replay data {path} does not exist; pass a candle file (e.g. data/sample_1h.parquet) "
            "or a warehouse.duckdb."
        )
    if path.suffix.lower() in WAREHOUSE_SUFFIXES:
        candles = Warehouse(path).read_candles(timeframe=timeframe)
    else:
        candles = read_candle_file(path)
    found = sorted(candles["timeframe"].unique()) if not candles.empty else []
    if timeframe is None:
        if len(found) != 1:
            raise ConfigError(
                f"{path} holds timeframes {found}; pick one with timeframe=... (--timeframe)."
            )
        timeframe = str(found[0])
    candles = candles[candles["timeframe"] == timeframe]
    if candles.empty:
        raise DataContractError(
            f"{path} has no {timeframe} candles (it holds {found}); pass --timeframe one of them."
        )
    if symbols:
        missing = sorted(set(symbols) - set(candles["symbol"].unique()))
        if missing:
            known = sorted(candles["symbol"].unique())
            raise DataContractError(
                f"{path} has no {timeframe} candles for {missing}; its symbols are {known}."
            )
        candles = candles[candles["symbol"].isin(list(symbols))]
    out = candles.loc[:, CANDLE_COLUMNS].copy()
    ts = pd.to_datetime(out["ts"])
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    out["ts"] = ts.astype("datetime64[us]")
    return out.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


def data_span(candles: pd.DataFrame, timeframe: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First bar open and last bar close of ``candles``."""
    return (
        pd.Timestamp(candles["ts"].min()),
        pd.Timestamp(candles["ts"].max()) + bar_length(timeframe),
    )


def check_range(
    candles: pd.DataFrame, *, start: pd.Timestamp, end: pd.Timestamp, timeframe: str
) -> None:
    """Raise ``ConfigError`` unless history precedes ``start`` and the data reach ``end``."""
    first, last = data_span(candles, timeframe)
    start, end = to_clock(start), to_clock(end)
    if not first < start < end:
        raise ConfigError(
            f"Replay start {start} and end {end} must satisfy first candle {first} < start < end; "
            "the candles before start are the initial history of every home."
        )
    if end > last:
        raise ConfigError(
            f"Replay end {end} is after the data's last bar close {last}; pass an end at or "
            f"before {last} (or fewer weeks)."
        )


def model_frame(
    candles: pd.DataFrame, *, timeframe: str, horizons: Sequence[int], feature_cfg: FeatureConfig
) -> pd.DataFrame:
    """The model frame (features and labels, as training builds it) of a candle frame."""
    from ml_core.features import build_model_frame
    from ml_core.features.feature_set import candle_frame_for_sql

    frame, tf = candle_frame_for_sql(candles, timeframe)
    con = duckdb.connect()
    try:
        con.register("replay_candles", frame)
        return build_model_frame(
            con,
            timeframe=tf,
            horizons=[int(h) for h in horizons],
            cfg=feature_cfg,
            relation="replay_candles",
        )
    finally:
        con.close()
