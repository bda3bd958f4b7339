"""Flow `retrain`: the weekly chain of ingest, validate, build_features, train, decide, register."""

from __future__ import annotations

from prefect import flow

from flows.build_features import build_features_flow
from flows.ingest import ingest_flow
from flows.naming import mark_outcome, run_name
from flows.orphans import PROCESS_HOOKS
from flows.params import IngestParams, RetrainParams
from flows.train import train_flow
from flows.validate import validate_flow
from ml_core.data.datasets import sources_for
from tasks.registry import apply_weekly, decide_weekly, load_champion, register_served
from tasks.reporting import publish_decision, write_run_report
from tasks.tuning import record_applied_tuning


@flow(name="retrain", flow_run_name=run_name, log_prints=True, on_running=PROCESS_HOOKS)
def retrain_flow(params: RetrainParams = RetrainParams()) -> dict:  # noqa: B008 - typed default
    """Weekly retrain: new data in; the week ends in a first champion, replace, refresh or keep."""
    cfg = params.load()
    run = params.run_params(cfg)
    if params.ingest_paths or (params.download and sources_for(cfg)):
        ingest_flow(
            IngestParams(**run.model_dump(), paths=params.ingest_paths, download=params.download)
        )
    left_out = validate_flow(run)["left_out"]
    if left_out:  # one symbol's bad stored candles must not stop the others' retrain
        run = run.model_copy(update={"exclude_symbols": sorted(left_out)})
        cfg = run.load()
    build_features_flow(run)
    trained = train_flow(run)
    champion_version, champion = load_champion(cfg)
    verdict = decide_weekly(cfg, trained.parts, trained.results, champion, trained.selection)
    registered = register_served(
        cfg, verdict, trained.results, trained.baselines, trained.parts, trained.selection
    )
    decision = apply_weekly(cfg, verdict, registered, champion_version)
    if registered is not None:
        record_applied_tuning(trained.cfg, trained.tuned, registered["run_id"])
        decision["candidate"] = registered["candidate"]
    if left_out:
        decision["left_out"] = left_out
    publish_decision(cfg, decision)
    mark_outcome("promoted" if decision["promote"] else "kept")
    report = write_run_report(
        cfg,
        trained.parts,
        trained.results,
        trained.baselines,
        decision,
        registered["run_id"] if registered else None,
        extra_tables=trained.extra_tables,
    )
    return {
        "model_name": cfg.model_name,
        "decision": decision,
        "kind": verdict.kind,
        "champion_version": decision["champion_after"],
        "report_path": str(report),
        "tracking_uri": cfg.tracking_uri,
    }
