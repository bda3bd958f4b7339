"""Tasks of the predict flow: load the aliased versions once, read new candles, score, store."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from ml_core.config import CoincastConfig
from ml_core.data.datasets import model_symbols
from ml_core.data.warehouse import Warehouse
from ml_core.errors import RegistryError
from ml_core.monitoring.predictions import (
    Scorer,
    ScoringWindow,
    alias_by_version,
    read_scoring_window,
    score_window,
    scoring_cursors,
    upsert_predictions,
)
from ml_core.registry.moves import serving_aliases
from ml_core.registry.store import TAG_LOOKBACK, RegistryStore
from tasks.artifacts import publish_table
from tasks.retrying import transient_only


@task(
    name="load-scorers",
    cache_policy=NONE,
    retries=1,
    retry_condition_fn=transient_only,
    retry_delay_seconds=3,
)
def load_scorers(cfg: CoincastConfig) -> list[Scorer]:
    """One pyfunc per aliased version (champion first, then challenger / previous shadows)."""
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    aliases = serving_aliases(store, Warehouse(cfg.warehouse_path))
    if "champion" not in aliases:
        raise RegistryError(
            f"No champion for model {cfg.model_name!r} at {cfg.tracking_uri}; nothing to score. "
            "Run `coincast retrain` first."
        )
    scorers = []
    for version, alias in alias_by_version(aliases).items():
        model = store.load_pyfunc(alias)
        pipe = model.unwrap_python_model().pipeline
        info = store.get_version(version)
        lookback = int(info.tags.get(TAG_LOOKBACK) or getattr(pipe, "lookback_bars", 0))
        scorers.append(
            Scorer(
                model_name=cfg.model_name,
                version=version,
                alias=alias,
                predict=_pyfunc_predict(model),
                lookback_bars=lookback,
                regime_model=getattr(pipe, "regime_model", None),
                feature_cfg=getattr(pipe, "feature_cfg", None),
                first_ts=dict(getattr(pipe, "first_ts", {}) or {}),
            )
        )
    get_run_logger().info(
        "scoring with %s", ", ".join(f"v{s.version} ({s.alias})" for s in scorers)
    )
    return scorers


def _pyfunc_predict(model):  # noqa: ANN001, ANN202 - an mlflow PyFuncModel
    return lambda candles: pd.DataFrame(model.predict(candles))


@task(
    name="read-new-candles",
    cache_policy=NONE,
    retries=2,
    retry_condition_fn=transient_only,
    retry_delay_seconds=2,
)
def read_new_candles(
    cfg: CoincastConfig, scorers: list[Scorer], symbols: list[str] | None
) -> tuple[ScoringWindow, pd.DataFrame]:
    """Candles after each symbol's last scored bar, plus the lookback the features need."""
    wh = Warehouse(cfg.warehouse_path)
    cursors = scoring_cursors(
        wh,
        model_name=cfg.model_name,
        timeframe=cfg.data.timeframe,
        versions=[s.version for s in scorers],
        symbols=symbols or model_symbols(cfg),
    )
    window = read_scoring_window(
        wh,
        timeframe=cfg.data.timeframe,
        cursors=cursors,
        lookback_bars=max(s.lookback_bars for s in scorers),
        initial_bars=cfg.monitor.initial_bars,
    )
    get_run_logger().info("read %d candle rows for %d symbols", window.n_rows, len(window.starts))
    return window, cursors


@task(name="score-new-bars", cache_policy=NONE)
def score_new_bars(
    cfg: CoincastConfig, window: ScoringWindow, cursors: pd.DataFrame, scorers: list[Scorer]
) -> pd.DataFrame:
    """Prediction rows of every scorer for the bars it has not scored yet."""
    preds = score_window(
        window.candles,
        scorers,
        cursors=cursors,
        initial_bars=cfg.monitor.initial_bars,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
    )
    get_run_logger().info("scored %d prediction rows", len(preds))
    return preds


@task(
    name="store-predictions",
    cache_policy=NONE,
    retries=2,
    retry_condition_fn=transient_only,
    retry_delay_seconds=2,
)
def store_predictions(cfg: CoincastConfig, predictions: pd.DataFrame) -> int:
    """Upsert on (model_name, model_version, symbol, ts, horizon): reruns change nothing."""
    return upsert_predictions(Warehouse(cfg.warehouse_path), predictions)


@task(name="publish-predictions", cache_policy=NONE)
def publish_predictions(
    cfg: CoincastConfig, window: ScoringWindow, predictions: pd.DataFrame, n_written: int
) -> dict:
    """Summary (returned by the flow) and a table artifact of the latest P(up) per version."""
    per_version = (
        predictions.groupby(["model_version", "alias"]).size().to_dict()
        if not predictions.empty
        else {}
    )
    summary = {
        "model_name": cfg.model_name,
        "n_candles_read": window.n_rows,
        "n_symbols": len(window.starts),
        "n_scored": len(predictions),
        "n_written": n_written,
        "scored_by_version": {f"v{v} ({a})": int(n) for (v, a), n in per_version.items()},
        "first_ts": None if predictions.empty else str(predictions["ts"].min()),
        "last_ts": None if predictions.empty else str(predictions["ts"].max()),
    }
    if not predictions.empty:
        latest = (
            predictions.sort_values("ts").groupby(["model_version", "symbol", "horizon"]).tail(1)
        )
        cols = ["model_version", "alias", "symbol", "ts", "horizon", "p_up", "regime"]
        publish_table(
            f"predictions-{cfg.model_name}",
            latest[cols].sort_values(["model_version", "symbol", "horizon"]),
            f"Latest P(up) per version, symbol and horizon ({len(predictions)} rows scored).",
        )
    get_run_logger().info("predict summary: %s", summary)
    return summary
