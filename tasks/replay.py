"""Tasks of the replay flow: homes, feeding candles on the clock, checks, captures, report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from ml_core.config import CoincastConfig, load_config
from ml_core.data.ingest import ingest_frame
from ml_core.data.warehouse import Warehouse
from ml_core.monitoring.predictions import PREDICTION_COLUMNS, utc_now
from ml_core.registry.promotion import AUDIT_COLUMNS
from ml_core.registry.replay_log import REPLAY_EXPERIMENT, log_replay_run
from ml_core.registry.store import RegistryStore
from ml_core.registry.tracking import TrackingContext
from ml_core.replay import homes
from ml_core.replay.clock import check_clock
from ml_core.replay.dataset import load_candles, model_frame
from ml_core.replay.report import ReplayReport, policy_summary, write_replay_report
from tasks.artifacts import publish_markdown, publish_table
from tasks.retrying import transient_only


@task(name="load-replay-data", cache_policy=NONE)
def load_replay_data(source: str, timeframe: str | None, symbols: list[str] | None) -> pd.DataFrame:
    """Every candle the replay plays back (the clock decides which a home sees)."""
    candles = load_candles(source, timeframe=timeframe, symbols=symbols)
    get_run_logger().info(
        "replay data: %d candles of %d symbols from %s",
        len(candles),
        candles["symbol"].nunique(),
        source,
    )
    return candles


@task(name="prepare-replay-home", cache_policy=NONE)
def prepare_home(base: dict, policy: str, home: str, overwrite: bool) -> tuple[str, CoincastConfig]:
    """An empty home with its config file; returns the file and the config it loads to."""
    path = homes.write_home_config(
        base, policy=policy, home=homes.prepare_home(Path(home), overwrite=overwrite)
    )
    cfg = load_config(path, home=home)
    homes.check_home_locations(
        policy=policy,
        home=Path(home),
        tracking_uri=cfg.tracking_uri,
        warehouse_path=cfg.warehouse_path,
    )
    return str(path), cfg


@task(
    name="feed-candles",
    cache_policy=NONE,
    retries=2,
    retry_condition_fn=transient_only,
    retry_delay_seconds=2,
)
def feed_candles(cfg: CoincastConfig, candles: pd.DataFrame, at: pd.Timestamp) -> int:
    """Ingest the bars closed since the last feed through the quality gate; rows new."""
    if candles.empty:
        return 0
    result = ingest_frame(
        Warehouse(cfg.warehouse_path),
        candles,
        cfg.quality,
        source=f"replay@{at:%Y-%m-%dT%H:%M}",
        now=at,
    )
    return result.n_new


@task(name="check-replay-clock", cache_policy=NONE)
def check_home_clock(cfg: CoincastConfig, at: pd.Timestamp, where: str) -> None:
    """The home's newest candle and prediction must have closed by the clock time."""
    with Warehouse(cfg.warehouse_path).connect(read_only=True) as con:
        tf = cfg.data.timeframe
        candle = con.execute("SELECT max(ts) FROM candles WHERE timeframe = ?", [tf]).fetchone()[0]
        pred = con.execute("SELECT max(ts) FROM predictions WHERE timeframe = ?", [tf]).fetchone()[
            0
        ]
    check_clock(
        at=at, timeframe=tf, latest_candle_ts=candle, latest_prediction_ts=pred, where=where
    )


@task(name="champion-version", cache_policy=NONE)
def champion_version(cfg: CoincastConfig) -> str | None:
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    return store.aliases().get("champion") if store.exists() else None


@task(name="new-audit-rows", cache_policy=NONE)
def new_audit_rows(cfg: CoincastConfig, seen: set[str]) -> pd.DataFrame:
    """Audit rows (``promotions``) of the home's model not in ``seen`` (ids)."""
    with Warehouse(cfg.warehouse_path).connect(read_only=True) as con:
        rows = con.execute(
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM promotions WHERE model_name = ? "
            "ORDER BY created_at, id",
            [cfg.model_name],
        ).df()
    return rows[~rows["id"].isin(seen)].reset_index(drop=True)


@task(name="written-predictions", cache_policy=NONE)
def written_predictions(cfg: CoincastConfig, since: object) -> pd.DataFrame:
    """Prediction rows the home stored at or after wall time ``since`` (one predict run)."""
    with Warehouse(cfg.warehouse_path).connect(read_only=True) as con:
        return con.execute(
            f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM predictions "
            "WHERE model_name = ? AND scored_at >= ?",
            [cfg.model_name, since],
        ).df()


def wall_clock() -> object:
    """Now, naive UTC: the ``scored_at`` convention of the predictions table."""
    return utc_now()


@task(name="replay-model-frame", cache_policy=NONE)
def replay_model_frame(cfg: CoincastConfig, candles: pd.DataFrame) -> pd.DataFrame:
    """Features and labels of the replayed candles: the baselines' inputs and targets."""
    return model_frame(
        candles, timeframe=cfg.data.timeframe, horizons=cfg.horizons, feature_cfg=cfg.features
    )


@task(name="write-replay-report", cache_policy=NONE)
def write_report(report: ReplayReport, out_dir: str) -> dict[str, str]:
    paths = write_replay_report(report, Path(out_dir))
    get_run_logger().info("replay report: %s", paths["html"])
    return {k: str(v) for k, v in paths.items()}


@task(
    name="log-replay-mlflow",
    cache_policy=NONE,
    retries=1,
    retry_condition_fn=transient_only,
    retry_delay_seconds=3,
)
def log_replay(
    tracking_uri: str, artifact_location: str | None, report: ReplayReport, paths: dict[str, str]
) -> str:
    """One run in the ``coincast-replay`` experiment: parameters, per-policy summary, files."""
    summary = policy_summary(report)
    metrics = {
        f"{row['policy']}_{key}": float(row[key])
        for row in summary.to_dict(orient="records")
        for key in ("auc", "log_loss", "brier", "hit_rate_confident", "total_trading_return")
    }
    return log_replay_run(
        TrackingContext(tracking_uri, artifact_location, REPLAY_EXPERIMENT),
        params=report.spec,
        metrics=metrics,
        artifacts=[Path(p) for p in paths.values()],
    )


@task(name="publish-replay", cache_policy=NONE)
def publish_replay(report: ReplayReport, paths: dict[str, str]) -> None:
    """Prefect artifacts: the per-policy summary table and where the report is."""
    publish_table("replay-summary", policy_summary(report), "What each replay policy served.")
    publish_markdown(
        "replay-report",
        f"### Replay report\n\n- HTML: `{paths['html']}`\n- weekly CSV: `{paths['csv']}`\n"
        f"- timeline CSV: `{paths['timeline_csv']}`",
        "Where the replay report is.",
    )
