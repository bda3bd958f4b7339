"""Tasks of the build_features step and the model frame / split."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from ml_core.config import CoincastConfig
from ml_core.data.warehouse import Warehouse
from ml_core.features import refresh_features
from ml_core.features.dataset import build_dataset
from ml_core.validation.split import SplitParts, chronological_split
from tasks.artifacts import publish_table


@task(name="refresh-features", cache_policy=NONE)
def refresh_feature_table(cfg: CoincastConfig) -> dict:
    """Bring the materialized feature table up to date (incrementally)."""
    with Warehouse(cfg.warehouse_path).connect() as con:
        relation = "candles"
        if cfg.data.exclude_symbols:  # symbols a retrain leaves out (bad stored candles)
            con.execute("CREATE OR REPLACE TEMP TABLE left_out (symbol VARCHAR)")
            con.executemany(
                "INSERT INTO left_out VALUES (?)", [[x] for x in cfg.data.exclude_symbols]
            )
            con.execute(
                "CREATE OR REPLACE TEMP VIEW candles_kept AS SELECT * FROM candles "
                "WHERE symbol NOT IN (SELECT symbol FROM left_out)"
            )
            relation = "candles_kept"
        stats = refresh_features(
            con, timeframe=cfg.data.timeframe, cfg=cfg.features, relation=relation
        )
    get_run_logger().info("features refreshed: %s", stats)
    return stats


@task(name="model-frame", cache_policy=NONE)
def load_model_frame(cfg: CoincastConfig) -> pd.DataFrame:
    """Features and multi-horizon labels, built after trimming dead tails."""
    dataset = build_dataset(Warehouse(cfg.warehouse_path), cfg)
    logger = get_run_logger()
    counts = dataset.lifecycle["category"].value_counts().to_dict()
    logger.info(
        "model frame: %d rows, %d symbols; lifecycle %s; %d dead tail(s) trimmed",
        len(dataset.frame),
        dataset.frame["symbol"].nunique(),
        counts,
        len(dataset.trimmed),
    )
    publish_table(
        f"lifecycle-{cfg.data.timeframe}",
        dataset.lifecycle[
            [
                "symbol",
                "category",
                "n_bars",
                "max_abs_return",
                "flat_tail_bars",
                "missing_ratio",
                "n_trim_bars",
            ]
        ],
        "Token lifecycle per symbol and the dead-tail bars trimmed before labels.",
    )
    return dataset.frame


@task(name="split", cache_policy=NONE)
def split_frame(cfg: CoincastConfig, frame: pd.DataFrame) -> SplitParts:
    """Chronological train/val/test (shared calendar cuts by default) with purge gaps."""
    from ml_core.features import FEATURE_COLUMNS

    parts = chronological_split(
        frame,
        horizons=cfg.horizons,
        cfg=cfg.split,
        complete_columns=list(FEATURE_COLUMNS),
        timeframe=cfg.data.timeframe,
    )
    logger = get_run_logger()
    logger.info(
        "split (%s): train %d / val %d / test %d rows (gap %d bars)%s",
        parts.mode,
        len(parts.train),
        len(parts.val),
        len(parts.test),
        parts.gap_bars,
        "".join(f"; {k} {v}" for k, v in parts.cut_ts.items()),
    )
    for symbol, note in parts.notes.items():
        logger.warning("split: symbol %s: %s", symbol, note)
    return parts
