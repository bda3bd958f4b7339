"""Crash-safe alias moves: an intent record before, a completion record after.

A promotion or rollback moves up to three aliases with separate MLflow calls,
then writes its audit row. A process killed between two of those calls would
leave the registry half-moved and the audit silent. So every move is first
written to the warehouse ``alias_moves`` table (status ``intent``: the aliases
before and after, the audit row it will write, where its tags go, its PID and
host), the aliases are moved in a safe order (other aliases before
``champion``, deletions last, so ``champion`` always names an existing
version), and the audit row and the completion (``done``) are written in one
transaction. Decision tags follow.

``repair_unfinished`` finds intents left by runs that died and rolls them
forward when every target version still exists (status
``completed_by_repair``, the audit row written with actor ``repair``);
otherwise it puts the aliases back as they were (``reverted``, audited as a
``revert``). An intent whose aliases someone else has moved since is left
alone (``superseded``, audited as ``abandon``). Intents of live processes are
skipped until ``stale_after_s``. ``apply_decision`` and ``rollback`` call it
first, and ``serving_aliases`` (what retrain, score, monitor and status read the
champion through) too; ``unfinished_moves`` lets a status display show them.

Example::

    repaired = repair_unfinished(store, warehouse)   # [] when nothing was left half-done
    read_moves(warehouse, store.model_name)          # the move log, newest first
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pandas as pd
from mlflow.exceptions import MlflowException

from ml_core.data.warehouse import Warehouse
from ml_core.errors import RegistryError
from ml_core.processes import pid_alive
from ml_core.registry.store import RegistryStore

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
REPAIR_ACTOR = "repair"

TAG_DECISION = "coincast.decision"
TAG_REASON = "coincast.reason"
TAG_DECIDED_AT = "coincast.decided_at"
TAG_AUDIT_ID = "coincast.audit_id"

AUDIT_COLUMNS = [
    "id",
    "created_at",
    "model_name",
    "action",
    "decision",
    "champion_before",
    "champion_after",
    "challenger_version",
    "reason",
    "metrics_json",
    "actor",
    "run_id",
]
MOVE_COLUMNS = [
    "id",
    "created_at",
    "model_name",
    "action",
    "planned_json",
    "status",
    "finished_at",
    "audit_id",
    "actor",
    "audit_json",
    "tags_json",
    "pid",
    "host",
]

#: Test hook: called with the name of each step a move has just finished
#: ("intent", "alias:challenger", "alias:previous", "alias:champion", "audit",
#: "tags"). An exception it raises stops the move there, like a crash would.
_FAULT_HOOK: Callable[[str], None] | None = None

_IN_FLIGHT: set[str] = set()
_N_CLOSE_ATTEMPTS = 5
_IN_FLIGHT_LOCK = threading.Lock()


def utc_now() -> datetime:
    """Now as naive UTC (the warehouse convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class AliasMove:
    """One recorded move: ``planned`` maps alias -> (version before, version after)."""

    id: str
    created_at: datetime
    model_name: str
    action: str
    planned: dict[str, tuple[str | None, str | None]]
    audit: dict[str, Any]
    tags: dict[str, Any]
    actor: str
    pid: int
    host: str
    status: str = "intent"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AliasMove:
        planned = json.loads(row["planned_json"])
        return cls(
            id=row["id"],
            created_at=row["created_at"],
            model_name=row["model_name"],
            action=row["action"],
            planned={a: (p["before"], p["after"]) for a, p in planned.items()},
            audit=json.loads(row["audit_json"] or "{}"),
            tags=json.loads(row["tags_json"] or "{}"),
            actor=row["actor"],
            pid=int(row["pid"]) if row["pid"] is not None else -1,
            host=row["host"] or "",
            status=row["status"],
        )


# ---------------------------------------------------------------- running a move
def run_move(
    store: RegistryStore,
    warehouse: Warehouse,
    *,
    action: str,
    targets: Mapping[str, str | None],
    audit_row: dict[str, Any],
    tag_version: str,
    run_key: str,
) -> dict[str, Any]:
    """Move aliases to ``targets`` (None deletes) crash-safely; return the audit row written.

    Steps: intent record, each changed alias in safe order, audit row plus
    completion in one transaction, decision tags on ``tag_version`` and on
    ``audit_row['run_id']`` (if any). Returns the row a concurrent repair
    wrote instead when one completed this move first.
    """
    aliases = store.aliases()
    move = AliasMove(
        id=uuid.uuid4().hex,
        created_at=utc_now(),
        model_name=store.model_name,
        action=action,
        planned={a: (aliases.get(a), v) for a, v in targets.items() if aliases.get(a) != v},
        audit=audit_row,
        tags={"version": tag_version, "run_id": audit_row.get("run_id"), "run_key": run_key},
        actor=str(audit_row.get("actor")),
        pid=os.getpid(),
        host=socket.gethostname(),
    )
    with _in_flight(move.id):
        _record_intent(warehouse, move)
        _reach("intent")
        _move_aliases(store, {a: after for a, (_, after) in move.planned.items()})
        row = _complete(warehouse, move, audit_row, status="done")
        _reach("audit")
    if row.get("action") != audit_row["action"]:
        raise RegistryError(
            f"Alias move {move.id} of {store.model_name!r} was {row.get('action')}ed by a "
            f"concurrent repair while this {action} ran ({row.get('decision')}). "
            "Check `coincast status` and re-run."
        )
    tag_decision(store, tag_version, audit_row.get("run_id"), row, run_key=run_key)
    _reach("tags")
    return row


def _reach(step: str) -> None:
    if _FAULT_HOOK is not None:
        _FAULT_HOOK(step)


@contextlib.contextmanager
def _in_flight(move_id: str) -> Iterator[None]:
    """Mark a move as being run by this process, so a repair here leaves it alone."""
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT.add(move_id)
    try:
        yield
    finally:
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.discard(move_id)


def _move_aliases(store: RegistryStore, targets: Mapping[str, str | None]) -> None:
    """Set aliases in the safe order: others, then ``champion``, then deletions."""
    sets = sorted((a for a, v in targets.items() if v is not None), key=lambda a: a == CHAMPION)
    for alias in sets:
        store.set_alias(alias, str(targets[alias]))
        _reach(f"alias:{alias}")
    for alias in (a for a, v in targets.items() if v is None):
        store.delete_alias(alias)
        _reach(f"alias:{alias}")


def _record_intent(warehouse: Warehouse, move: AliasMove) -> None:
    values = {
        "id": move.id,
        "created_at": move.created_at,
        "model_name": move.model_name,
        "action": move.action,
        "planned_json": json.dumps(
            {a: {"before": b, "after": v} for a, (b, v) in move.planned.items()}, sort_keys=True
        ),
        "status": "intent",
        "finished_at": None,
        "audit_id": move.audit.get("id"),
        "actor": move.actor,
        "audit_json": json.dumps(move.audit, sort_keys=True),
        "tags_json": json.dumps(move.tags, sort_keys=True),
        "pid": move.pid,
        "host": move.host,
    }
    with warehouse.connect() as con:
        con.execute(
            f"INSERT INTO alias_moves ({', '.join(MOVE_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in MOVE_COLUMNS)})",
            [values[c] for c in MOVE_COLUMNS],
        )


def _complete(
    warehouse: Warehouse, move: AliasMove, audit_row: dict[str, Any] | None, *, status: str
) -> dict[str, Any]:
    """Close ``move`` with ``status`` and write ``audit_row``, in one transaction.

    Only the first closer writes (the update is conditional on 'intent'); a
    later one gets the row the first wrote. Returns the audit row.
    """
    with warehouse.connect() as con:
        for attempt in range(_N_CLOSE_ATTEMPTS):
            try:
                won = _close_in_transaction(con, move, audit_row, status=status)
                break
            except duckdb.TransactionException:  # another thread of this process closing it
                if attempt == _N_CLOSE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        if won:
            return audit_row or {}
        found = con.execute(
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM promotions WHERE id = "
            "(SELECT audit_id FROM alias_moves WHERE id = ?)",
            [move.id],
        ).fetchone()
    if found is None:
        raise RegistryError(
            f"Alias move {move.id} of {move.model_name!r} ({move.action}) was closed by a "
            "concurrent repair without an audit row; check `coincast status` and re-run."
        )
    return _row_from_db(found)


def _close_in_transaction(
    con: Any, move: AliasMove, audit_row: dict[str, Any] | None, *, status: str
) -> bool:
    """Whether this call closed the move (and wrote ``audit_row``); all or nothing."""
    con.execute("BEGIN TRANSACTION")
    try:
        won = con.execute(
            "UPDATE alias_moves SET status = ?, finished_at = ?, audit_id = ? "
            "WHERE id = ? AND status = 'intent' RETURNING id",
            [status, utc_now(), audit_row["id"] if audit_row else None, move.id],
        ).fetchall()
        if won and audit_row is not None:
            _insert_audit(con, audit_row)
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed COMMIT has rolled back already
            con.execute("ROLLBACK")
        raise
    return bool(won)


# ---------------------------------------------------------------- repair
def repair_unfinished(
    store: RegistryStore, warehouse: Warehouse, *, stale_after_s: float = 600.0
) -> list[dict[str, Any]]:
    """Finish or revert the moves of ``store``'s model that a dead run left as intents.

    A move counts as dead when its process is gone (same host), is this very
    process but no longer running it, or is older than ``stale_after_s``.
    Returns the audit rows written (one per repaired move, actor 'repair').
    """
    repaired = []
    for move in unfinished_moves(warehouse, store.model_name):
        if not _is_orphaned(move, stale_after_s=stale_after_s):
            log.info(
                "alias move %s of %s still running (pid %d)", move.id, move.model_name, move.pid
            )
            continue
        repaired.append(_repair(store, warehouse, move))
    return repaired


def serving_aliases(store: RegistryStore, warehouse: Warehouse) -> dict[str, str]:
    """The aliases after repairing what a killed run left half-moved: what every command
    that reads the champion (retrain, score, monitor, status) must start from, so it
    decides about, and serves, the version that is actually the champion. Empty when
    the model is not registered."""
    if not store.exists():
        return {}
    if warehouse.exists and unfinished_moves(warehouse, store.model_name):
        for row in repair_unfinished(store, warehouse):
            log.warning(
                "repaired an alias move a killed run left unfinished: %s (%s)",
                row.get("action"),
                row.get("reason"),
            )
    return store.aliases()


def unfinished_moves(warehouse: Warehouse, model_name: str | None = None) -> list[AliasMove]:
    """Moves still marked 'intent' (oldest first); read-only, empty without a warehouse."""
    where, params = "status = 'intent'", []
    if model_name is not None:
        where += " AND model_name = ?"
        params.append(model_name)
    rows = _read_moves_table(
        warehouse,
        f"SELECT {', '.join(MOVE_COLUMNS)} FROM alias_moves WHERE {where} ORDER BY created_at, id",
        params,
    )
    return [AliasMove.from_row(dict(zip(MOVE_COLUMNS, r, strict=True))) for r in rows]


def read_moves(warehouse: Warehouse, model_name: str, limit: int = 20) -> pd.DataFrame:
    """The latest ``limit`` alias moves of ``model_name``, newest first."""
    cols = [c for c in MOVE_COLUMNS if c not in ("audit_json", "tags_json")]
    rows = _read_moves_table(
        warehouse,
        f"SELECT {', '.join(cols)} FROM alias_moves WHERE model_name = ? "
        "ORDER BY created_at DESC, id LIMIT ?",
        [model_name, int(limit)],
    )
    return pd.DataFrame(rows, columns=cols)


def _read_moves_table(warehouse: Warehouse, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on ``alias_moves``; none when the warehouse or table is absent."""
    if not warehouse.exists:
        return []
    with warehouse.connect(read_only=True) as con:
        found = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'alias_moves'"
        ).fetchone()
        return con.execute(sql, params).fetchall() if found and found[0] else []


def _repair(store: RegistryStore, warehouse: Warehouse, move: AliasMove) -> dict[str, Any]:
    aliases = store.aliases()
    missing = sorted({v for _, v in move.planned.values() if v is not None and not _has(store, v)})
    moved_since = {
        a: aliases.get(a)
        for a, (b, v) in move.planned.items()
        if aliases.get(a) not in (b, v) and not (aliases.get(a) is None and v in missing)
    }  # deleting a version drops its aliases: that alone is not someone else's move
    if moved_since:
        return _close_superseded(store, warehouse, move, aliases, moved_since)
    if not missing:
        _move_aliases(store, {a: v for a, (_, v) in move.planned.items()})
        row = {
            **move.audit,
            "actor": REPAIR_ACTOR,
            "decision": f"{move.audit.get('decision')} [completed by repair: the run of "
            f"{move.actor} stopped mid-move {move.id}]",
        }
        row = _complete(warehouse, move, row, status="completed_by_repair")
        _retag(store, move, row)
        log.warning("%s: finished interrupted %s move %s", store.model_name, move.action, move.id)
        return row
    before = {a: (b if b is None or _has(store, b) else None) for a, (b, _) in move.planned.items()}
    _move_aliases(store, before)
    after = store.aliases()
    row = audit_row(
        store.model_name,
        created_at=utc_now(),
        metrics={"move_id": move.id, "missing_versions": missing},
        action="revert",
        decision=f"interrupted {move.action} by {move.actor} reverted: target version(s) "
        f"{', '.join(missing)} no longer exist; champion v{after.get(CHAMPION)}",
        champion_before=aliases.get(CHAMPION),
        champion_after=after.get(CHAMPION),
        challenger_version=after.get(CHALLENGER),
        reason=f"repair of alias move {move.id}",
        actor=REPAIR_ACTOR,
        run_id=move.audit.get("run_id"),
    )
    log.warning("%s: reverted interrupted %s move %s", store.model_name, move.action, move.id)
    return _complete(warehouse, move, row, status="reverted")


def _close_superseded(
    store: RegistryStore,
    warehouse: Warehouse,
    move: AliasMove,
    aliases: Mapping[str, str],
    moved_since: Mapping[str, str | None],
) -> dict[str, Any]:
    """Someone moved the aliases since the intent: leave them, record that it was abandoned."""
    now = ", ".join(f"{a}->{v}" for a, v in sorted(moved_since.items()))
    row = audit_row(
        store.model_name,
        created_at=utc_now(),
        metrics={"move_id": move.id},
        action="abandon",
        decision=f"interrupted {move.action} by {move.actor} abandoned: aliases moved since "
        f"({now}); left as they are",
        champion_before=aliases.get(CHAMPION),
        champion_after=aliases.get(CHAMPION),
        challenger_version=aliases.get(CHALLENGER),
        reason=f"repair of alias move {move.id}",
        actor=REPAIR_ACTOR,
        run_id=move.audit.get("run_id"),
    )
    log.warning("%s: alias move %s superseded (%s)", store.model_name, move.id, now)
    return _complete(warehouse, move, row, status="superseded")


def _retag(store: RegistryStore, move: AliasMove, row: Mapping[str, Any]) -> None:
    """The tags the interrupted run did not write; best effort (the audit row is what counts)."""
    version, run_id = move.tags.get("version"), move.tags.get("run_id")
    try:
        if version and _has(store, version):
            tag_decision(store, version, run_id, row, run_key=move.tags.get("run_key", "version"))
    except (RegistryError, MlflowException) as exc:
        log.warning("could not tag v%s / run %s after repair: %s", version, run_id, exc)


def _is_orphaned(move: AliasMove, *, stale_after_s: float) -> bool:
    if move.host == socket.gethostname():
        if move.pid == os.getpid():
            with _IN_FLIGHT_LOCK:
                return move.id not in _IN_FLIGHT
        if not pid_alive(move.pid):
            return True
    return (utc_now() - move.created_at).total_seconds() > stale_after_s


def _has(store: RegistryStore, version: str) -> bool:
    try:
        store.get_version(version)
    except RegistryError:
        return False
    return True


# ---------------------------------------------------------------- audit rows and tags
def audit_row(
    model_name: str, *, created_at: datetime, metrics: Mapping[str, Any], **values: Any
) -> dict[str, Any]:
    """A ``promotions`` row (new id, ISO ``created_at``, metrics as JSON)."""
    row = {
        "id": uuid.uuid4().hex,
        "created_at": naive_utc(created_at).isoformat(),
        "model_name": model_name,
        **values,
        "metrics_json": json.dumps(jsonable(metrics), sort_keys=True),
    }
    return {col: row.get(col) for col in AUDIT_COLUMNS}


def record_audit(warehouse: Warehouse, row: Mapping[str, Any]) -> dict[str, Any]:
    """Write one audit row for a decision that moves no alias (e.g. "no new data")."""
    with warehouse.connect() as con:
        _insert_audit(con, row)
    return dict(row)


def _insert_audit(con: Any, row: Mapping[str, Any]) -> None:
    values = [
        datetime.fromisoformat(row["created_at"]) if c == "created_at" else row[c]
        for c in AUDIT_COLUMNS
    ]
    con.execute(
        f"INSERT INTO promotions ({', '.join(AUDIT_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in AUDIT_COLUMNS)})",
        values,
    )


def _row_from_db(found: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(AUDIT_COLUMNS, found, strict=True))
    row["created_at"] = row["created_at"].isoformat()
    return row


def tag_decision(
    store: RegistryStore, version: str, run_id: str | None, row: Mapping[str, Any], *, run_key: str
) -> None:
    """Decision tags on the version the decision was about, and on the run if any."""
    tags = {
        TAG_DECISION: row["action"],
        TAG_REASON: row["reason"],
        TAG_DECIDED_AT: row["created_at"],
        TAG_AUDIT_ID: row["id"],
    }
    store.set_version_tags(version, tags)
    if run_id is not None:
        for key, value in {**tags, run_key: version}.items():
            store.client.set_tag(run_id, key, str(value))


def naive_utc(ts: datetime) -> datetime:
    """``ts`` as naive UTC (aware values converted, naive ones taken as UTC)."""
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo is not None else ts


def jsonable(value: Any) -> Any:
    """Numbers as plain floats/ints (numpy included), NaN/inf as null, recursively."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float):
        return value
    return str(value)
