"""Flow run names that say what ran, and a retrain's outcome on its run.

Prefect names runs at random ('cinnamon-ibis'); in the UI's run list a user wants
``retrain-1h-2026-12-01`` and, for the weekly retrain, whether it promoted: the run
ends as ``retrain-1h-2026-12-01-promoted`` (or ``-kept``) with the same word as a tag,
so a rejected retrain does not look like a promoted one.
"""

from __future__ import annotations

import datetime as dt

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext


def run_name() -> str:
    """``<flow>-<timeframe>-<date>`` of the run being named (``flow_run_name=run_name``);
    the timeframe is left out when the run's parameters do not give one (the warehouse's
    only timeframe is resolved later)."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:  # pragma: no cover - Prefect names inside a run
        return "coincast"
    params = (ctx.parameters or {}).get("params")
    timeframe = (
        params.get("timeframe") if isinstance(params, dict) else getattr(params, "timeframe", None)
    )
    when = ctx.flow_run.expected_start_time or dt.datetime.now(dt.UTC)
    parts = [ctx.flow.name if ctx.flow else "run", timeframe, when.strftime("%Y-%m-%d")]
    return "-".join(str(p) for p in parts if p)


def mark_outcome(word: str) -> None:
    """Append ``word`` ('promoted', 'kept') to the current flow run's name and tags."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    run = ctx.flow_run
    name = run.name if run.name.endswith(f"-{word}") else f"{run.name}-{word}"
    with get_client(sync_client=True) as client:
        client.update_flow_run(run.id, name=name, tags=sorted({*(run.tags or []), word}))
    run.name = name
