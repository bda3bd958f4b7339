"""Tasks of the operator actions on the registry: rollback, audited like a promotion."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from ml_core.config import CoincastConfig
from ml_core.data.warehouse import Warehouse
from ml_core.registry.promotion import rollback
from ml_core.registry.store import RegistryStore
from tasks.artifacts import publish_markdown, publish_table

AUDIT_COLUMNS = (
    "id",
    "created_at",
    "model_name",
    "action",
    "champion_before",
    "champion_after",
    "challenger_version",
    "reason",
    "actor",
)


@task(name="rollback-on-request", cache_policy=NONE)
def rollback_champion(
    cfg: CoincastConfig, *, to_version: str | None, reason: str, actor: str
) -> dict:
    """Move ``champion`` back to ``previous`` (or ``to_version``); return the audit row."""
    row = rollback(
        RegistryStore(cfg.tracking_uri, cfg.model_name),
        Warehouse(cfg.warehouse_path),
        to_version=to_version,
        reason=reason,
        actor=actor,
    )
    get_run_logger().warning(row["decision"])
    return row


@task(name="publish-audit-row", cache_policy=NONE)
def publish_audit_row(cfg: CoincastConfig, row: dict) -> None:
    """The audit row as a markdown note and a one-row table artifact."""
    key = f"{row['action']}-{cfg.model_name}"
    publish_markdown(
        key,
        "\n".join(
            [
                f"## {cfg.model_name}: {row['action']}",
                "",
                f"champion `v{row['champion_before']}` -> `v{row['champion_after']}`",
                "",
                f"**Why:** {row['reason']}",
                "",
                f"actor `{row['actor']}`, audit id `{row['id']}`, at {row['created_at']} UTC",
            ]
        ),
        f"{row['action']} of {cfg.model_name}",
    )
    cells = {c: row.get(c) for c in AUDIT_COLUMNS}
    publish_table(f"{key}-audit", pd.DataFrame([cells]), f"Audit row of the {row['action']}.")
