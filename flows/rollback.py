"""Flow `rollback`: champion back to `previous` (or a named version), audited and published."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from flows.naming import run_name
from flows.orphans import PROCESS_HOOKS
from flows.params import RunParams
from tasks.registry_ops import publish_audit_row, rollback_champion


class RollbackParams(RunParams):
    """Which version becomes champion again, and why (both go to the audit table)."""

    to_version: str | None = Field(
        default=None, description="Version to make champion; empty: the `previous` alias."
    )
    reason: str = Field(default="manual rollback", description="Why, for the audit table.")


@flow(name="rollback", flow_run_name=run_name, log_prints=True, on_running=PROCESS_HOOKS)
def rollback_flow(params: RollbackParams) -> dict:
    """Roll the champion back and publish the audit row as artifacts."""
    cfg = params.load()
    row = rollback_champion(
        cfg,
        to_version=params.to_version,
        reason=params.reason,
        actor=f"prefect:{flow_run.get_name() or 'rollback'}",
    )
    publish_audit_row(cfg, row)
    return row
