"""Flow `promote`: re-score challenger and champion on the same test window, gate, audit."""

from __future__ import annotations

from prefect import flow

from flows.params import RunParams
from tasks.features import load_model_frame, split_frame
from tasks.registry import (
    cpcv_compare,
    current_champion,
    decide_and_apply,
    newest_version,
    rescore,
)
from tasks.reporting import publish_decision
from tasks.training import baseline_metrics


@flow(name="promote", log_prints=True)
def promote_flow(
    params: RunParams,
    challenger_version: str | None = None,
    actor: str = "promote",
    run_id: str | None = None,
    selection: dict | None = None,
) -> dict:
    """Promote ``challenger_version`` (default: the newest) only if it passes the gate.

    Gate v2 also refits both configurations on CPCV splits of the train + val
    parts; ``selection`` (PBO and DSR from the train flow) feeds the PBO rule.
    """
    cfg = params.load()
    parts = split_frame(cfg, load_model_frame(cfg))
    baselines = baseline_metrics(cfg, parts)
    challenger = challenger_version or newest_version(cfg)
    champion = current_champion(cfg)
    challenger_scores = rescore(cfg, parts, challenger)
    champion_scores = rescore(cfg, parts, champion) if champion and champion != challenger else None
    decision = decide_and_apply(
        cfg,
        challenger_version=challenger,
        challenger=challenger_scores,
        champion_version=champion,
        champion=champion_scores,
        baselines=baselines,
        actor=actor,
        run_id=run_id,
        cpcv=cpcv_compare(cfg, parts, challenger, champion),
        selection=selection,
    )
    publish_decision(cfg, decision)
    return decision
