"""Stored batches: list what was ingested, and take one batch out again (audited).

Every candle carries the id of the batch that wrote it (inserted it, or last revised
it, see ``ml_core.data.ingest``); a batch that revised stored candles kept their
earlier values in ``candle_revisions``. Removing a batch, in one transaction:

- deletes the candles it inserted,
- sets the candles it revised back to their values (and batch) before it, unless
  those came from a batch removed since (then they are deleted too),
- keeps the candles it wrote that a later batch has revised since (those values are
  the later batch's; remove that one first to take them out), counted in ``n_kept``,
- marks its ``ingest_log`` row(s) ``removed``, writes one ``batch_removals`` row (who,
  why, what changed) and one ``candle_edits`` row per series, so the feature table
  rebuilds those timeframes on its next refresh.

A file ingested in chunks has one id for the file (its first chunk) and ``<id>.2``,
``<id>.3``, ... for the others: removing the file's id removes every chunk.

Example::

    plan = plan_removal(wh, "3f2a...")        # reads only: what removing would do
    done = remove_batch(wh, "3f2a...", actor="alice", reason="exchange glitch")
"""

from __future__ import annotations

import getpass
from dataclasses import asdict, dataclass

import duckdb
import pandas as pd

from ml_core.data.warehouse import Warehouse
from ml_core.errors import DataContractError

_VALUES = ["open", "high", "low", "close", "volume"]
#: The shortest start of a batch id that names it (ids are 32 hex characters).
MIN_PREFIX = 8
#: The batch and its chunks (``<id>.2``, ...), as a SQL condition on ``batch_id``.
_OF_BATCH = "(batch_id = $id OR starts_with(batch_id, $id || '.'))"
#: A revision's earlier values can be set back: they came from no batch (stored before
#: batch ids were recorded) or from one that was not removed since.
_PREV_LIVE = (
    "(r.prev_batch_id IS NULL OR split_part(r.prev_batch_id, '.', 1) NOT IN "
    "(SELECT batch_id FROM batch_removals))"
)


@dataclass(frozen=True)
class BatchRemoval:
    """What removing a batch does (a plan) or did (``removed_at`` set)."""

    batch_id: str
    source: str
    symbols: list[str]
    timeframe: str
    n_batches: int  # the file's chunks
    n_deleted: int
    n_restored: int
    n_kept: int
    series: list[dict]  # per (symbol, timeframe): deleted, restored, kept
    removed_at: str | None = None
    actor: str | None = None
    reason: str | None = None

    @property
    def n_changed(self) -> int:
        return self.n_deleted + self.n_restored

    def as_dict(self) -> dict:
        return asdict(self)


def list_batches(warehouse: Warehouse, *, limit: int = 20) -> pd.DataFrame:
    """The newest ingested batches, one row per file (its chunks folded in), newest first:
    batch_id, created_at, source, symbols, timeframe, n_rows, n_new, n_updated, status,
    n_chunks."""
    with warehouse.connect(read_only=True) as con:
        return con.execute(
            """SELECT split_part(batch_id, '.', 1) AS batch_id, min(created_at) AS created_at,
                      any_value(source) AS source,
                      string_agg(DISTINCT symbols, ',') AS symbols,
                      string_agg(DISTINCT timeframe, ',') AS timeframe,
                      sum(n_rows)::BIGINT AS n_rows, sum(n_new)::BIGINT AS n_new,
                      sum(coalesce(n_updated, 0))::BIGINT AS n_updated,
                      string_agg(DISTINCT status, ',') AS status, count(*) AS n_chunks
               FROM ingest_log GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?""",
            [limit],
        ).df()


def plan_removal(warehouse: Warehouse, batch_id: str) -> BatchRemoval:
    """What ``remove_batch`` would do, read-only; raises ``DataContractError`` when the
    batch cannot be removed (unknown id, quarantined, already removed, stored before
    coincast recorded batch ids). Opens read-write (no write) so that a warehouse made
    by an older coincast gets the batch columns first."""
    with warehouse.connect() as con:
        return _plan(con, batch_id.strip())


def remove_batch(
    warehouse: Warehouse, batch_id: str, *, actor: str | None = None, reason: str = ""
) -> BatchRemoval:
    """Take a loaded batch out of the warehouse in one transaction (see the module text);
    ``batch_id`` may be its first ``MIN_PREFIX`` or more characters. Returns what changed. Raises ``DataContractError`` (nothing changed) when it cannot."""
    batch_id = batch_id.strip()
    actor = actor or _user()
    with warehouse.connect() as con:
        con.begin()
        try:
            plan = _plan(con, batch_id)
            at = pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime()
            _apply(con, plan.batch_id)
            _audit(con, plan, at=at, actor=actor, reason=reason)
            con.commit()
        except Exception:
            con.rollback()
            raise
    return BatchRemoval(
        **{**plan.as_dict(), "removed_at": str(pd.Timestamp(at)), "actor": actor, "reason": reason}
    )


def _resolve(con: duckdb.DuckDBPyConnection, given: str) -> str:
    """The file batch id that ``given`` names: itself, or the one id it is a prefix of (8
    characters at least, as `coincast batches` and `coincast ingest` show them)."""
    if not given or "." in given:
        raise DataContractError(
            f"Batch id {given!r} is not a file's batch id (the part before any '.'); "
            "`coincast batches` lists them."
        )
    if len(given) < MIN_PREFIX:
        return given
    found = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT split_part(batch_id, '.', 1) FROM ingest_log "
            "WHERE starts_with(batch_id, ?)",
            [given],
        ).fetchall()
    ]
    if len(found) > 1:
        raise DataContractError(
            f"Batch id {given!r} is the start of {len(found)} batch ids "
            f"({', '.join(sorted(found)[:4])}); give more of it."
        )
    return found[0] if found else given


def _plan(con: duckdb.DuckDBPyConnection, given: str) -> BatchRemoval:
    batch_id = _resolve(con, given)
    p = {"id": batch_id}
    logged = con.execute(
        f"SELECT batch_id, source, symbols, timeframe, status FROM ingest_log WHERE {_OF_BATCH}",
        p,
    ).fetchall()
    if not logged:
        raise DataContractError(
            f"No batch {batch_id!r} in this warehouse; `coincast batches` lists the stored "
            "ones with their ids."
        )
    statuses = {row[4] for row in logged}
    removed = con.execute(
        "SELECT removed_at, actor FROM batch_removals WHERE batch_id = $id", p
    ).fetchone()
    if removed is not None or statuses == {"removed"}:
        when = f" at {removed[0]} by {removed[1]}" if removed else ""
        raise DataContractError(f"Batch {batch_id} was removed already{when}; nothing to do.")
    if statuses == {"quarantined"}:
        raise DataContractError(
            f"Batch {batch_id} was quarantined: its candles never reached the warehouse, so "
            "there is nothing to remove (the quarantine keeps it for inspection)."
        )
    series = con.execute(
        f"""WITH mine AS (SELECT symbol, timeframe, ts, batch_id FROM candles WHERE {_OF_BATCH}),
                 revised AS (SELECT DISTINCT symbol, timeframe, ts FROM candle_revisions r
                             WHERE {_OF_BATCH} AND {_PREV_LIVE}),
                 later AS (SELECT DISTINCT r.symbol, r.timeframe, r.ts FROM candle_revisions r
                           WHERE {_OF_BATCH.replace("batch_id", "r.prev_batch_id")})
            SELECT s.symbol, s.timeframe,
                   count(*) FILTER (WHERE s.kind = 'mine' AND v.ts IS NULL) AS deleted,
                   count(*) FILTER (WHERE s.kind = 'mine' AND v.ts IS NOT NULL) AS restored,
                   count(*) FILTER (WHERE s.kind = 'later') AS kept
            FROM (SELECT symbol, timeframe, ts, 'mine' AS kind FROM mine
                  UNION ALL
                  SELECT l.symbol, l.timeframe, l.ts, 'later' FROM later l
                  WHERE NOT EXISTS (SELECT 1 FROM mine m WHERE m.symbol = l.symbol
                                    AND m.timeframe = l.timeframe AND m.ts = l.ts)) AS s
            LEFT JOIN revised v USING (symbol, timeframe, ts)
            GROUP BY s.symbol, s.timeframe ORDER BY s.symbol, s.timeframe""",
        p,
    ).fetchall()
    if not series:
        n_rows = con.execute(
            f"SELECT sum(n_new + coalesce(n_updated, 0)) FROM ingest_log WHERE {_OF_BATCH}", p
        ).fetchone()[0]
        if n_rows:
            raise DataContractError(
                f"Batch {batch_id} wrote {int(n_rows):,} candle(s), but they do not carry its "
                "id: it was loaded before coincast recorded which batch wrote each candle. "
                "Remove those candles by ingesting corrected data with --allow-revisions."
            )
    rows = [
        {"symbol": s, "timeframe": tf, "deleted": int(d), "restored": int(r), "kept": int(k)}
        for s, tf, d, r, k in series
    ]
    return BatchRemoval(
        batch_id=batch_id,
        source=str(logged[0][1]),
        symbols=sorted({s for row in logged for s in (row[2] or "").split(",") if s}),
        timeframe=",".join(sorted({t for row in logged for t in (row[3] or "").split(",") if t})),
        n_batches=len(logged),
        n_deleted=sum(r["deleted"] for r in rows),
        n_restored=sum(r["restored"] for r in rows),
        n_kept=sum(r["kept"] for r in rows),
        series=rows,
    )


def _apply(con: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    """Restore what the batch revised, delete what it inserted (candles it still holds)."""
    p = {"id": batch_id}
    sets = ", ".join(f"{v} = r.{v}" for v in _VALUES)
    con.execute(
        f"""UPDATE candles AS c SET {sets}, batch_id = r.prev_batch_id
            FROM (SELECT * FROM candle_revisions AS r WHERE {_OF_BATCH} AND {_PREV_LIVE}) AS r
            WHERE c.symbol = r.symbol AND c.timeframe = r.timeframe AND c.ts = r.ts
              AND c.batch_id = r.batch_id""",
        p,
    )
    con.execute(f"DELETE FROM candles WHERE {_OF_BATCH}", p)


def _audit(
    con: duckdb.DuckDBPyConnection, plan: BatchRemoval, *, at: object, actor: str, reason: str
) -> None:
    p = {"id": plan.batch_id}
    con.execute(f"UPDATE ingest_log SET status = 'removed' WHERE {_OF_BATCH}", p)
    con.execute(
        "INSERT INTO batch_removals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            plan.batch_id,
            at,
            actor,
            reason,
            plan.source,
            ",".join(plan.symbols),
            plan.timeframe,
            plan.n_deleted,
            plan.n_restored,
            plan.n_kept,
        ],
    )
    for s in plan.series:
        if s["deleted"] or s["restored"]:
            con.execute(
                "INSERT INTO candle_edits VALUES (?, ?, 'removed', ?, ?, ?)",
                [at, plan.batch_id, s["symbol"], s["timeframe"], s["deleted"] + s["restored"]],
            )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container): say so rather than fail
        return "unknown"
