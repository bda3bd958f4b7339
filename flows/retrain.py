"""Flow `retrain`: the weekly chain of ingest, validate, build_features, train, promote."""

from __future__ import annotations

from prefect import flow

from flows.build_features import build_features_flow
from flows.ingest import ingest_flow
from flows.params import IngestParams, RetrainParams
from flows.promote import promote_flow
from flows.train import train_flow
from flows.validate import validate_flow
from tasks.reporting import write_run_report

REPORTED_DECISION_KEYS = (
    "promote",
    "reason",
    "candidate",
    "challenger_version",
    "champion_before",
    "champion_after",
    "created_at",
    "metrics",
)


@flow(name="retrain", log_prints=True)
def retrain_flow(params: RetrainParams = RetrainParams()) -> dict:  # noqa: B008 - typed default
    """Weekly retrain: new data in, a challenger trained, promoted only if better."""
    cfg = params.load()
    run = params.run_params()
    if params.ingest_paths:
        ingest_flow(IngestParams(**run.model_dump(), paths=params.ingest_paths))
    validate_flow(run)
    build_features_flow(run)
    trained = train_flow(run)
    decision = promote_flow(
        run,
        challenger_version=trained.registered["version"],
        actor="retrain",
        run_id=trained.registered["run_id"],
        selection=trained.selection,
    )
    decision["candidate"] = trained.registered["candidate"]
    report = write_run_report(
        cfg,
        trained.parts,
        trained.results,
        trained.baselines,
        decision,
        trained.registered["run_id"],
        extra_tables=trained.extra_tables,
    )
    return {
        "model_name": cfg.model_name,
        "decision": decision,
        "champion_version": decision["champion_after"],
        "report_path": str(report),
        "tracking_uri": cfg.tracking_uri,
    }
