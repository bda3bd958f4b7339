"""Tasks of the monitor flow: realized metrics, drift, records, rollback, artifacts, event."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.events import emit_event
from prefect.runtime import flow_run

from ml_core.config import CoincastConfig
from ml_core.data.warehouse import Warehouse
from ml_core.features import LOOKBACK_BARS
from ml_core.monitoring.loss_stream import write_detector_state
from ml_core.monitoring.monitor import (
    MonitorEvaluation,
    evaluate_models,
    measure_drift,
    write_drift_metrics,
    write_monitor_metrics,
)
from ml_core.registry.monitoring_log import log_monitor_evaluation
from ml_core.registry.moves import serving_aliases
from ml_core.registry.promotion import rollback
from ml_core.registry.store import RegistryStore
from ml_core.registry.tracking import TrackingContext
from tasks.artifacts import publish_markdown, publish_table
from tasks.retrying import transient_only

ROLLBACK_EVENT = "coincast.champion.rolled-back"


def _store(cfg: CoincastConfig) -> RegistryStore:
    return RegistryStore(cfg.tracking_uri, cfg.model_name)


@task(
    name="evaluate-realized",
    cache_policy=NONE,
    retries=1,
    retry_condition_fn=transient_only,
    retry_delay_seconds=2,
)
def evaluate_realized(cfg: CoincastConfig) -> MonitorEvaluation:
    """Realized metrics per version over the window and the rollback rule's decision."""
    store = _store(cfg)
    aliases = serving_aliases(store, Warehouse(cfg.warehouse_path))
    ev = evaluate_models(
        Warehouse(cfg.warehouse_path),
        model_name=cfg.model_name,
        timeframe=cfg.data.timeframe,
        aliases=aliases,
        monitor_cfg=cfg.monitor,
        eval_cfg=cfg.evaluation,
    )
    get_run_logger().info("monitor: %s", ev.summary())
    return ev


@task(
    name="measure-drift",
    cache_policy=NONE,
    retries=1,
    retry_condition_fn=transient_only,
    retry_delay_seconds=2,
)
def drift_of_features(cfg: CoincastConfig, ev: MonitorEvaluation) -> pd.DataFrame:
    """PSI / KS per feature: live window vs the bars before the champion's first prediction."""
    drift = measure_drift(
        Warehouse(cfg.warehouse_path),
        ev,
        feature_cfg=cfg.features,
        monitor_cfg=cfg.monitor,
        lookback_bars=int(LOOKBACK_BARS),
    )
    if not drift.empty:
        get_run_logger().info(
            "drift: max PSI %.3f, %d feature(s) above %.2f",
            drift["psi"].max(),
            int(drift["drifted"].sum()),
            cfg.monitor.psi_alert,
        )
    return drift


@task(
    name="record-evaluation",
    cache_policy=NONE,
    retries=2,
    retry_condition_fn=transient_only,
    retry_delay_seconds=2,
)
def record_evaluation(cfg: CoincastConfig, ev: MonitorEvaluation, drift: pd.DataFrame) -> dict:
    """Rows of ``monitor_metrics`` (with the breach flag), ``drift_metrics`` and the
    detector's state; before any rollback, so a crash after this repeats the decision
    instead of losing it."""
    wh = Warehouse(cfg.warehouse_path)
    run_id = str(flow_run.id) if flow_run.id else None
    # the detector's upsert first: a retry after a later failure rewrites the same row
    n_detector = write_detector_state(
        wh, ev.model_name, ev.detector, evaluation_id=ev.evaluation_id
    )
    return {
        "n_detector_rows": n_detector,
        "n_monitor_rows": write_monitor_metrics(wh, ev, flow_run_id=run_id),
        "n_drift_rows": write_drift_metrics(wh, ev, drift),
    }


@task(
    name="log-monitor-mlflow",
    cache_policy=NONE,
    retries=1,
    retry_condition_fn=transient_only,
    retry_delay_seconds=3,
)
def log_to_mlflow(cfg: CoincastConfig, ev: MonitorEvaluation, drift: pd.DataFrame) -> str:
    """A run in the ``coincast-monitor`` experiment with the metrics, drift and decision."""
    tracking = TrackingContext(cfg.tracking_uri, cfg.artifact_location, cfg.monitor.experiment_name)
    return log_monitor_evaluation(
        tracking,
        model_name=cfg.model_name,
        evaluation=ev.summary(),
        metrics=ev.metrics,
        drift=drift,
    )


@task(name="rollback-on-breach", cache_policy=NONE)
def rollback_champion(cfg: CoincastConfig, ev: MonitorEvaluation, mlflow_run_id: str) -> dict:
    """Move champion to ``previous`` (audited), publish it and emit the rollback event.

    Skipped (returns ``rolled_back=False``) when the champion moved since the
    evaluation, e.g. a retrain promoted a new version meanwhile.
    """
    logger = get_run_logger()
    d = ev.decision
    if d is None or not d.rollback:
        return {"rolled_back": False, "reason": "no rollback decided"}
    store = _store(cfg)
    aliases = store.aliases()
    if aliases.get("champion") != d.champion_version or aliases.get("previous") is None:
        msg = (
            f"champion is now v{aliases.get('champion')} (previous "
            f"v{aliases.get('previous')}); the decision about v{d.champion_version} is stale"
        )
        logger.warning("rollback skipped: %s", msg)
        return {"rolled_back": False, "reason": msg}
    row = rollback(
        store,
        Warehouse(cfg.warehouse_path),
        reason=d.reason,
        actor="monitor",
        metrics={**d.metrics, "evaluation_id": ev.evaluation_id},
        run_id=mlflow_run_id,
    )
    publish_markdown(
        f"rollback-{cfg.model_name}",
        f"## Champion rolled back\n\n**{row['decision']}**\n\n"
        f"- model: `{cfg.model_name}`\n- rule: {d.trigger}\n- from v{row['champion_before']} to "
        f"v{row['champion_after']}\n- audit id: `{row['id']}`\n- evaluation: "
        f"`{ev.evaluation_id}`\n",
        f"Automatic rollback of {cfg.model_name} by the monitor.",
    )
    emit_event(
        event=ROLLBACK_EVENT,
        resource={"prefect.resource.id": f"coincast.model.{cfg.model_name}"},
        payload={
            "model_name": cfg.model_name,
            "from_version": row["champion_before"],
            "to_version": row["champion_after"],
            "reason": row["reason"],
            "audit_id": row["id"],
            "evaluation_id": ev.evaluation_id,
            "trigger": d.trigger,
        },
    )
    logger.warning(row["decision"])
    return {"rolled_back": True, **row}


@task(name="publish-monitor", cache_policy=NONE)
def publish_monitor(cfg: CoincastConfig, ev: MonitorEvaluation, drift: pd.DataFrame) -> None:
    """Table artifacts: realized metrics per version and horizon, the drift per feature and
    the champion's change detector."""
    if not ev.metrics.empty:
        by_version: dict[str, str] = {v: a for a, v in ev.aliases.items()}
        table = ev.metrics.assign(alias=ev.metrics["model_version"].map(by_version))
        publish_table(
            f"monitor-{cfg.model_name}",
            table,
            f"Realized metrics ({ev.summary()['reason']}); horizon 0 = mean over horizons.",
        )
    detector = ev.detector_summary()
    if detector is not None:
        publish_table(
            f"detector-{cfg.model_name}",
            pd.DataFrame({"field": list(detector), "value": [str(v) for v in detector.values()]}),
            f"{cfg.monitor.detector} on the champion's log-loss difference vs "
            f"{detector['detector_reference']} (alarm rolls back).",
        )
    if not drift.empty:
        cols = ["feature", "psi", "ks_stat", "ks_pvalue", "n_reference", "n_live", "drifted"]
        publish_table(
            f"drift-{cfg.model_name}",
            drift[cols].sort_values("psi", ascending=False),
            f"Feature drift vs the bars before scoring began (PSI > {cfg.monitor.psi_alert}: "
            "drifted).",
        )
