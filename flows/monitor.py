"""Flow `monitor`: realized metrics and drift of the stored predictions; automatic rollback."""

from __future__ import annotations

from prefect import flow

from flows.naming import mark_outcome, run_name
from flows.orphans import PROCESS_HOOKS
from flows.params import MonitorParams, RetrainParams
from tasks.monitoring import (
    drift_of_features,
    evaluate_realized,
    log_to_mlflow,
    publish_monitor,
    record_evaluation,
    rollback_champion,
)


@flow(name="monitor", flow_run_name=run_name, log_prints=True, on_running=PROCESS_HOOKS)
def monitor_flow(params: MonitorParams = MonitorParams()) -> dict:  # noqa: B008 - typed default
    """Judge the champion on realized outcomes; roll it back after M breaches in a row or
    when its change detector (paired log-loss difference) alarms."""
    cfg = params.load()
    evaluation = evaluate_realized(cfg)
    drift = drift_of_features(cfg, evaluation)
    records = record_evaluation(cfg, evaluation, drift)
    mlflow_run_id = log_to_mlflow(cfg, evaluation, drift)
    publish_monitor(cfg, evaluation, drift)
    rolled = {"rolled_back": False}
    if params.allow_rollback and evaluation.decision and evaluation.decision.rollback:
        rolled = rollback_champion(cfg, evaluation, mlflow_run_id)
    if rolled["rolled_back"]:
        mark_outcome("rolled-back")
    if rolled["rolled_back"] and cfg.monitor.retrain_on_rollback:
        from flows.retrain import retrain_flow

        retrain_flow(RetrainParams(**params.shared().model_dump()))  # same profile, symbols
    return {
        **evaluation.summary(),
        **records,
        "mlflow_run_id": mlflow_run_id,
        "n_drifted": int(drift["drifted"].sum()) if not drift.empty else 0,
        "rolled_back": rolled["rolled_back"],
        "rollback": rolled,
    }
