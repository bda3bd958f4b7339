"""Predict throughput on the embedded 1m sample: a first run, then +1 hour incremental.

Usage: python benchmarks/bench_predict.py [--initial-bars 1440] [--new-bars 60]

Builds a temporary warehouse with the 1m sample minus its last ``new_bars``
bars, fits a logistic ``CandlePipeline`` (all default 1m horizons, no regime
model) on the first week, then times the library path the predict flow runs
(cursors -> read window -> score -> upsert), with the pipeline in process
(pyfunc loading, a fixed per-run cost of a few seconds, is left out):

1. first run: ``initial_bars`` bars per symbol scored;
2. the held-back ``new_bars`` appended, incremental run: only those scored.

Figures: candle rows read, prediction rows, seconds, and (symbol x horizon)
series scored per second (a "series" = one symbol and one horizon, every new
bar of it) and prediction rows per second.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd

from ml_core.config import CoincastConfig
from ml_core.data.warehouse import CANDLE_COLUMNS, Warehouse
from ml_core.features import FEATURE_COLUMNS, build_model_frame
from ml_core.models.pipeline import fit_pipeline
from ml_core.monitoring.predictions import (
    Scorer,
    read_scoring_window,
    score_window,
    scoring_cursors,
    upsert_predictions,
)
from ml_core.validation.split import chronological_split

ROOT = Path(__file__).resolve().parents[1]


def insert(wh: Warehouse, candles: pd.DataFrame) -> None:
    with wh.connect() as con:
        con.register("c_in", candles[CANDLE_COLUMNS])
        con.execute("INSERT INTO candles BY NAME SELECT * FROM c_in")


def fit(candles: pd.DataFrame, cfg: CoincastConfig):  # noqa: ANN201 - CandlePipeline
    train = candles.groupby("symbol").head(7 * 1440)
    con = duckdb.connect()
    con.register("c", train)
    frame = build_model_frame(
        con, timeframe="1m", horizons=cfg.horizons, cfg=cfg.features, relation="c"
    )
    con.close()
    parts = chronological_split(
        frame, horizons=cfg.horizons, cfg=cfg.split, complete_columns=list(FEATURE_COLUMNS)
    )
    return fit_pipeline(
        "logistic",
        parts,
        horizons=cfg.horizons,
        timeframe="1m",
        feature_cfg=cfg.features,
        model_cfg=cfg.models,
    )


def timed_run(wh: Warehouse, scorer: Scorer, initial_bars: int) -> dict[str, float]:
    start = time.perf_counter()
    cursors = scoring_cursors(wh, model_name="bench", timeframe="1m", versions=[scorer.version])
    window = read_scoring_window(
        wh,
        timeframe="1m",
        cursors=cursors,
        lookback_bars=scorer.lookback_bars,
        initial_bars=initial_bars,
    )
    preds = score_window(window.candles, [scorer], cursors=cursors, initial_bars=initial_bars)
    upsert_predictions(wh, preds)
    seconds = time.perf_counter() - start
    return {"read": window.n_rows, "rows": len(preds), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--initial-bars", type=int, default=1440)
    parser.add_argument("--new-bars", type=int, default=60)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="coincast-bench-predict-"))
    try:
        cfg = CoincastConfig(home=home)
        sample = pd.read_parquet(ROOT / "data" / "sample_1m.parquet").assign(timeframe="1m")
        sample["ts"] = sample["ts"].dt.tz_localize(None).astype("datetime64[us]")
        last = sample.groupby("symbol").tail(args.new_bars)
        wh = Warehouse(cfg.warehouse_path)
        insert(wh, sample.drop(last.index))
        pipe = fit(sample, cfg)
        scorer = Scorer("bench", "1", "champion", pipe.predict, lookback_bars=pipe.lookback_bars)
        n_series = sample["symbol"].nunique() * len(pipe.horizons)
        first = timed_run(wh, scorer, args.initial_bars)
        insert(wh, last)
        incr = timed_run(wh, scorer, args.initial_bars)
        again = timed_run(wh, scorer, args.initial_bars)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(
        f"{n_series} series ({sample['symbol'].nunique()} symbols x {len(pipe.horizons)} "
        f"horizons), lookback {pipe.lookback_bars} bars"
    )
    print(
        f"{'run':<28}{'candles read':>14}{'pred rows':>11}{'seconds':>9}"
        f"{'series/s':>10}{'rows/s':>10}"
    )
    for name, r in (
        (f"first ({args.initial_bars} bars)", first),
        (f"+{args.new_bars} bars (incremental)", incr),
        ("rerun, nothing new", again),
    ):
        print(
            f"{name:<28}{r['read']:>14,}{r['rows']:>11,}{r['seconds']:>9.2f}"
            f"{n_series / r['seconds']:>10.1f}{r['rows'] / r['seconds']:>10,.0f}"
        )


if __name__ == "__main__":
    main()
