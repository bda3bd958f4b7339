"""The model frame of a data set, built from candles with dead tails trimmed first.

A memecoin that stops trading leaves a flat tail of unchanged closes; labels
over it are an easy, meaningless "no change". The lifecycle of every symbol
is classified on its candles, dead tails are trimmed (keeping a couple of
bars of context) **before** features and labels are computed, and each row
carries its symbol's ``lifecycle`` category for sliced metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb
import pandas as pd

from ml_core.config import CoincastConfig
from ml_core.data.datasets import model_symbols
from ml_core.data.warehouse import Warehouse
from ml_core.errors import DataContractError
from ml_core.features.labels import build_model_frame
from ml_core.features.triple_barrier import add_triple_barrier_labels
from ml_core.quality.lifecycle import classify_lifecycle, trim_dead_tails

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """Model frame plus what the lifecycle step found and trimmed."""

    frame: pd.DataFrame
    lifecycle: pd.DataFrame
    trimmed: pd.DataFrame


def build_dataset(warehouse: Warehouse, cfg: CoincastConfig) -> Dataset:
    """Features and labels of ``cfg.data`` from the warehouse, dead tails trimmed."""
    tf = cfg.data.timeframe
    candles = warehouse.read_candles(timeframe=tf, symbols=model_symbols(cfg))
    if candles.empty:
        raise DataContractError(
            f"No {tf} candles in {warehouse.path}; ingest some with `coincast ingest PATH`."
        )
    lifecycle = classify_lifecycle(candles, cfg.lifecycle, timeframe=tf)
    trimmed_record = lifecycle.iloc[0:0]
    if cfg.lifecycle.enabled:
        candles, trimmed_record = trim_dead_tails(candles, lifecycle)
        for row in trimmed_record.to_dict(orient="records"):
            log.info("lifecycle: trimmed dead tail %s", row)
    con = duckdb.connect()
    try:
        con.register("candles_trimmed", candles)
        frame = build_model_frame(
            con, timeframe=tf, horizons=cfg.horizons, cfg=cfg.features, relation="candles_trimmed"
        )
    finally:
        con.close()
    if cfg.labels.triple_barrier.enabled:
        frame = _with_triple_barrier(frame, candles, cfg)
    category = lifecycle.set_index("symbol")["category"]
    frame = frame.assign(lifecycle=frame["symbol"].map(category).astype(str))
    return Dataset(frame=frame, lifecycle=lifecycle, trimmed=trimmed_record)


def _with_triple_barrier(
    frame: pd.DataFrame, candles: pd.DataFrame, cfg: CoincastConfig
) -> pd.DataFrame:
    """``tb_h, tb_t1_h, tb_ret_h`` per horizon (intrabar touches need the candles' OHLC)."""
    tb = cfg.labels.triple_barrier
    bars = candles[["symbol", "ts", "open", "high", "low"]]
    with_ohlc = frame.merge(bars, on=["symbol", "ts"], how="left", validate="one_to_one")
    labelled = add_triple_barrier_labels(with_ohlc, cfg.horizons, tb)
    return labelled.drop(columns=["open", "high", "low"])
