"""Two tiny but real registered ``CandlePipeline`` versions, for tests that serve them.

``fit_versions`` fits on the first ``train_bars`` 1m bars of each symbol and
registers v1 (logistic, ``previous``) and v2 (logistic with an HMM regime
model, ``champion``) in the registry of ``cfg``.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from ml_core.config import CoincastConfig
from ml_core.registry.store import RegistryStore


def store_candles(cfg: CoincastConfig, candles: pd.DataFrame) -> None:
    """Write 1m ``candles`` (tz-aware or naive ts) straight into ``cfg``'s warehouse; the
    quality gate has its own tests."""
    from ml_core.data.warehouse import CANDLE_COLUMNS, Warehouse

    rows = candles.assign(timeframe="1m", ts=pd.to_datetime(candles["ts"]).dt.tz_localize(None))
    with Warehouse(cfg.warehouse_path).connect() as con:
        con.register("c_in", rows[CANDLE_COLUMNS].reset_index(drop=True))
        con.execute("INSERT INTO candles BY NAME SELECT * FROM c_in")


def fit_versions(
    candles: pd.DataFrame, cfg: CoincastConfig, *, horizons: list[int], train_bars: int
) -> None:
    """Fit and register v1 (logistic) and v2 (logistic + HMM regimes); v2 champion."""
    from ml_core.features import FEATURE_COLUMNS, build_model_frame
    from ml_core.models.pipeline import fit_pipeline
    from ml_core.regime.hmm import RegimeModel, add_regime_features
    from ml_core.registry.store import log_pipeline
    from ml_core.registry.tracking import TrackingContext
    from ml_core.validation.split import chronological_split

    train = candles.groupby("symbol").head(train_bars)
    con = duckdb.connect()
    con.register("c", train)
    frame = build_model_frame(
        con, timeframe="1m", horizons=horizons, cfg=cfg.features, relation="c"
    )
    con.close()
    parts = chronological_split(
        frame, horizons=horizons, cfg=cfg.split, complete_columns=list(FEATURE_COLUMNS)
    )
    regime = RegimeModel(cfg.regime.model_copy(update={"n_iter": 30})).fit(parts.train)
    with_regime = type(parts)(
        *(add_regime_features(p, regime) for p in (parts.train, parts.val, parts.test)),
        gap_bars=parts.gap_bars,
        first_ts=parts.first_ts,
    )
    common = {"horizons": horizons, "timeframe": "1m", "feature_cfg": cfg.features}
    v1 = fit_pipeline("logistic", parts, model_cfg=cfg.models, **common)
    v2 = fit_pipeline("logistic", with_regime, model_cfg=cfg.models, regime_model=regime, **common)
    tracking = TrackingContext(cfg.tracking_uri, cfg.artifact_location, "coincast")
    example = train[train["symbol"] == candles["symbol"].iloc[0]].tail(v2.lookback_bars + 5)
    for pipe in (v1, v2):
        with tracking.start_run("fit"):
            log_pipeline(
                pipe,
                tracking=tracking,
                model_name=cfg.model_name,
                input_example=example.drop(columns="timeframe"),
            )
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    store.set_alias("previous", "1")
    store.set_alias("champion", "2")
