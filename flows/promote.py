"""Flow `promote`: judge a registered version by the weekly rules, on demand; audit it."""

from __future__ import annotations

from prefect import flow

from flows.naming import run_name
from flows.orphans import PROCESS_HOOKS
from flows.params import RunParams
from tasks.features import load_model_frame, split_frame
from tasks.registry import apply_weekly, decide_registered, load_champion, newest_version
from tasks.reporting import publish_decision


@flow(name="promote", flow_run_name=run_name, log_prints=True, on_running=PROCESS_HOOKS)
def promote_flow(
    params: RunParams,
    challenger_version: str | None = None,
    actor: str = "promote",
) -> dict:
    """Promote ``challenger_version`` (default: the newest) only if it passes the gate.

    The same rules as the weekly retrain: a first champion needs per-horizon skill
    over the naive baselines, the champion's recipe on newer data is a refresh,
    another recipe must beat the champion on CPCV paths.
    """
    cfg = params.load()
    parts = split_frame(cfg, load_model_frame(cfg))
    challenger = challenger_version or newest_version(cfg)
    champion_version, champion = load_champion(cfg)
    verdict, registered = decide_registered(cfg, parts, challenger, champion_version, champion)
    decision = apply_weekly(cfg, verdict, registered, champion_version, actor=actor)
    publish_decision(cfg, decision)
    return decision
