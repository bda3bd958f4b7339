"""Apply promotion decisions and rollbacks to registry aliases, and audit each one.

The caller (retrain / monitor) decides; this module moves aliases, writes one
row to the warehouse ``promotions`` table and tags the MLflow version and run.
Alias moves are ordered so that ``champion`` always points at a valid version:
``previous`` is set before ``champion`` moves. Each move is crash-safe
(``ml_core.registry.moves``): an intent record before, the audit row and the
completion in one transaction after, and a run that finds a move left
unfinished by a killed process completes or reverts it first.

Example::

    decision = Decision(promote=True, reason="AUC +0.004 (p=0.01)",
                        challenger_version="3", champion_before="2",
                        metrics={"auc_challenger": 0.534, "auc_champion": 0.530})
    row = apply_decision(store, warehouse, decision, run_id=run_id)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from ml_core.data.warehouse import Warehouse
from ml_core.errors import RegistryError
from ml_core.registry import moves
from ml_core.registry.moves import (
    AUDIT_COLUMNS,
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    TAG_AUDIT_ID,
    TAG_DECIDED_AT,
    TAG_DECISION,
    TAG_REASON,
    audit_row,
    naive_utc,
    repair_unfinished,
    tag_decision,
    utc_now,
)
from ml_core.registry.store import RegistryStore

log = logging.getLogger(__name__)

__all__ = [
    "AUDIT_COLUMNS",
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS",
    "TAG_AUDIT_ID",
    "TAG_DECIDED_AT",
    "TAG_DECISION",
    "TAG_REASON",
    "Decision",
    "apply_decision",
    "read_audit",
    "repair_unfinished",
    "rollback",
    "utc_now",
]


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one challenger, with the numbers it compared."""

    promote: bool
    reason: str
    challenger_version: str
    champion_before: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utc_now)
    #: first | replace | refresh | no_new_data | latest ('' for on-demand promotions)
    kind: str = ""

    @property
    def action(self) -> str:
        return "promote" if self.promote else "reject"

    def summary(self) -> str:
        """One line for humans: what happened to which versions."""
        against = f"champion v{self.champion_before}" if self.champion_before else "no champion"
        verb = "promoted" if self.promote else "rejected"
        kind = f" ({self.kind})" if self.kind else ""
        return (
            f"challenger v{self.challenger_version} {verb}{kind} against {against}: {self.reason}"
        )


def record_no_move(
    store: RegistryStore,
    warehouse: Warehouse,
    *,
    reason: str,
    metrics: Mapping[str, Any],
    actor: str,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Audit a decision that registers and moves nothing (action ``keep``), return the row."""
    repair_unfinished(store, warehouse)
    current = store.aliases().get(CHAMPION) if store.exists() else None
    row = audit_row(
        store.model_name,
        created_at=utc_now(),
        action="keep",
        decision=f"champion v{current} kept: {reason}",
        champion_before=current,
        champion_after=current,
        challenger_version=None,
        reason=reason,
        metrics=dict(metrics),
        actor=actor,
        run_id=run_id,
    )
    moves.record_audit(warehouse, row)
    log.info("%s: %s", store.model_name, row["decision"])
    return row


def apply_decision(
    store: RegistryStore,
    warehouse: Warehouse,
    decision: Decision,
    *,
    actor: str = "retrain",
    run_id: str | None = None,
) -> dict[str, Any]:
    """Move aliases per ``decision``, audit it, and return the audit row.

    Always points ``challenger`` at the challenger version. On promote, the
    current champion (if any) becomes ``previous`` and the challenger becomes
    ``champion``. Raises ``RegistryError`` when the champion moved since the
    decision was made (``decision.champion_before`` is stale). Safe to retry
    with the same ``Decision``: a repeat finds its audit row (matched on
    ``created_at``) and returns it instead of writing a second. Moves left
    half-done by a killed run are repaired first (``repair_unfinished``).
    """
    repair_unfinished(store, warehouse)
    challenger = str(decision.challenger_version)
    store.get_version(challenger)  # clear error if it does not exist
    existing = _find_audit(warehouse, store.model_name, decision)
    if existing is not None:  # a retried call: the first one finished (or was repaired)
        tag_decision(store, challenger, run_id, existing, run_key="coincast.challenger_version")
        return existing
    aliases = store.aliases()
    current = aliases.get(CHAMPION)
    if _already_applied(decision, aliases):
        current = decision.champion_before  # aliases moved, audit missing: write it now
    elif current != decision.champion_before:
        raise RegistryError(
            f"Decision on {store.model_name!r} v{challenger} was made against champion "
            f"{decision.champion_before!r}, but the champion is now {current!r}. "
            "Re-run the promotion gate against the current champion."
        )
    targets: dict[str, str | None] = {CHALLENGER: challenger}
    champion_after = current
    if decision.promote:
        if current is not None and current != challenger:
            targets[PREVIOUS] = current
        targets[CHAMPION] = champion_after = challenger
    row = audit_row(
        store.model_name,
        created_at=decision.created_at,
        action=decision.action,
        decision=decision.summary(),
        champion_before=current,
        champion_after=champion_after,
        challenger_version=challenger,
        reason=decision.reason,
        metrics=decision.metrics,
        actor=actor,
        run_id=run_id,
    )
    row = moves.run_move(
        store,
        warehouse,
        action=decision.action,
        targets=targets,
        audit_row=row,
        tag_version=challenger,
        run_key="coincast.challenger_version",
    )
    log.info("%s: %s", store.model_name, row["decision"])
    return row


def rollback(
    store: RegistryStore,
    warehouse: Warehouse,
    *,
    to_version: str | None = None,
    reason: str,
    actor: str,
    metrics: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Move ``champion`` back to ``previous`` (or ``to_version``), audit it, return the row.

    The rollback consumes ``previous`` (the alias is removed once champion
    points there), so a second rollback needs an explicit ``to_version``
    instead of bouncing back to the version just demoted. Moves left
    half-done by a killed run are repaired first (``repair_unfinished``).
    """
    repair_unfinished(store, warehouse)
    aliases = store.aliases()
    current = aliases.get(CHAMPION)
    if current is None:
        raise RegistryError(
            f"No champion for model {store.model_name!r}; nothing to roll back. "
            "Run `coincast retrain` first."
        )
    target = str(to_version) if to_version is not None else aliases.get(PREVIOUS)
    if target is None:
        raise RegistryError(
            f"Model {store.model_name!r} has no 'previous' alias to roll back to "
            f"(champion is v{current}). Pass a version: `coincast rollback --to VERSION` "
            "(versions: `coincast status`)."
        )
    if target == current:
        raise RegistryError(
            f"Version {target} is already the champion of {store.model_name!r}; "
            "pick another to_version."
        )
    store.get_version(target)
    targets: dict[str, str | None] = {CHAMPION: target}
    if aliases.get(PREVIOUS) == target:
        targets[PREVIOUS] = None
    row = audit_row(
        store.model_name,
        created_at=utc_now(),
        action="rollback",
        decision=f"champion rolled back from v{current} to v{target}: {reason}",
        champion_before=current,
        champion_after=target,
        challenger_version=aliases.get(CHALLENGER),
        reason=reason,
        metrics=dict(metrics or {}),
        actor=actor,
        run_id=run_id,
    )
    row = moves.run_move(
        store,
        warehouse,
        action="rollback",
        targets=targets,
        audit_row=row,
        tag_version=current,
        run_key="coincast.rolled_back_version",
    )
    log.warning("%s: %s", store.model_name, row["decision"])
    return row


def read_audit(warehouse: Warehouse, model_name: str, limit: int = 20) -> pd.DataFrame:
    """The latest ``limit`` audit rows of ``model_name``, newest first."""
    with warehouse.connect(read_only=True) as con:
        return con.execute(
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM promotions WHERE model_name = ? "
            "ORDER BY created_at DESC, id LIMIT ?",
            [model_name, int(limit)],
        ).df()


def _already_applied(decision: Decision, aliases: Mapping[str, str]) -> bool:
    """Whether the aliases already show the outcome of this (promoting) decision."""
    challenger = str(decision.challenger_version)
    return (
        decision.promote
        and decision.champion_before != challenger
        and aliases.get(CHAMPION) == challenger
        and aliases.get(CHALLENGER) == challenger
        and aliases.get(PREVIOUS) == decision.champion_before
    )


def _find_audit(warehouse: Warehouse, model_name: str, decision: Decision) -> dict[str, Any] | None:
    """The audit row already written for ``decision`` (same time, action and version)."""
    if not warehouse.exists:
        return None
    created_at = naive_utc(decision.created_at)
    with warehouse.connect(read_only=True) as con:
        found = con.execute(
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM promotions WHERE model_name = ? "
            "AND action = ? AND challenger_version = ? AND created_at = ? LIMIT 1",
            [model_name, decision.action, str(decision.challenger_version), created_at],
        ).fetchone()
    if found is None:
        return None
    row = dict(zip(AUDIT_COLUMNS, found, strict=True))
    row["created_at"] = row["created_at"].isoformat()
    return row
