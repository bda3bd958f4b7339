"""The DuckDB warehouse: one file, short write transactions, read-only readers.

DuckDB allows one writing process per file. Writers hold a connection only for
one unit of work and retry with backoff when another process holds the lock;
readers open read-only. All timestamps are stored as naive ``TIMESTAMP`` in
UTC (candle open time).

Example::

    wh = Warehouse(cfg.warehouse_path)
    with wh.connect() as con:          # read-write, schema ensured
        con.execute("select count(*) from candles").fetchone()
    with wh.connect(read_only=True) as con:
        df = con.execute("select * from candles").df()
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from ml_core.errors import WarehouseError

log = logging.getLogger(__name__)

CANDLE_COLUMNS = ["symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"]

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS candles (
    symbol VARCHAR NOT NULL,
    timeframe VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE,
    PRIMARY KEY (symbol, timeframe, ts)
);
CREATE TABLE IF NOT EXISTS ingest_log (
    batch_id VARCHAR PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    source VARCHAR,
    symbols VARCHAR,
    timeframe VARCHAR,
    n_rows BIGINT,
    n_new BIGINT,
    status VARCHAR            -- 'loaded' | 'quarantined'
);
ALTER TABLE ingest_log ADD COLUMN IF NOT EXISTS n_updated BIGINT DEFAULT 0;
-- the batch that wrote each candle (inserted it, or last revised it); NULL: stored before
-- coincast recorded it
ALTER TABLE candles ADD COLUMN IF NOT EXISTS batch_id VARCHAR;
CREATE TABLE IF NOT EXISTS candle_revisions (  -- a candle's values before a batch revised it
    batch_id VARCHAR NOT NULL,
    revised_at TIMESTAMP NOT NULL,
    symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, ts TIMESTAMP NOT NULL,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE,
    prev_batch_id VARCHAR
);
CREATE TABLE IF NOT EXISTS candle_edits (  -- stored candles changed: derived tables rebuild
    edited_at TIMESTAMP NOT NULL,
    batch_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,    -- 'revised' | 'removed'
    symbol VARCHAR NOT NULL,
    timeframe VARCHAR NOT NULL,
    n_rows BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_removals (
    batch_id VARCHAR PRIMARY KEY,
    removed_at TIMESTAMP NOT NULL,
    actor VARCHAR,
    reason VARCHAR,
    source VARCHAR,
    symbols VARCHAR,
    timeframe VARCHAR,
    n_deleted BIGINT,         -- candles the batch inserted, deleted
    n_restored BIGINT,        -- candles it revised, set back to their values before it
    n_kept BIGINT             -- candles it wrote that a later batch revised since: kept
);
CREATE TABLE IF NOT EXISTS quarantine (
    batch_id VARCHAR PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    source VARCHAR,
    symbols VARCHAR,
    timeframe VARCHAR,
    n_rows BIGINT,
    failed_expectations VARCHAR,
    message VARCHAR,
    report_json VARCHAR
);
CREATE TABLE IF NOT EXISTS quarantine_candles (
    batch_id VARCHAR NOT NULL,
    symbol VARCHAR, timeframe VARCHAR, ts TIMESTAMP,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE
);
CREATE TABLE IF NOT EXISTS quality_findings (
    batch_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    symbol VARCHAR,
    timeframe VARCHAR,
    expectation VARCHAR,
    severity VARCHAR,         -- 'critical' | 'soft'
    n_rows BIGINT,
    detail VARCHAR
);
CREATE TABLE IF NOT EXISTS promotions (
    id VARCHAR PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    model_name VARCHAR NOT NULL,
    action VARCHAR NOT NULL,  -- 'promote' | 'reject' | 'rollback'
    decision VARCHAR NOT NULL,
    champion_before VARCHAR,
    champion_after VARCHAR,
    challenger_version VARCHAR,
    reason VARCHAR,
    metrics_json VARCHAR,
    actor VARCHAR,
    run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS alias_moves (
    id VARCHAR PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    model_name VARCHAR NOT NULL,
    action VARCHAR NOT NULL,        -- 'promote' | 'reject' | 'rollback'
    planned_json VARCHAR NOT NULL,  -- {alias: {"before": v | null, "after": v | null}}
    status VARCHAR NOT NULL,        -- 'intent' | 'done' | 'reverted' | 'completed_by_repair' | 'superseded'
    finished_at TIMESTAMP,
    audit_id VARCHAR,               -- the promotions row that records the move
    actor VARCHAR,
    audit_json VARCHAR,             -- the audit row the move writes on completion
    tags_json VARCHAR,              -- which version / run the decision tags go on
    pid BIGINT,                     -- process that recorded the intent (repair skips live ones)
    host VARCHAR
);
CREATE TABLE IF NOT EXISTS predictions (
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    alias VARCHAR,            -- alias of the version at scoring time ('' when none)
    symbol VARCHAR NOT NULL,
    timeframe VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    horizon INTEGER NOT NULL,
    p_up DOUBLE,
    exp_ret DOUBLE,
    uncertainty DOUBLE,
    regime VARCHAR,
    scored_at TIMESTAMP NOT NULL,
    flow_run_id VARCHAR,
    PRIMARY KEY (model_name, model_version, symbol, ts, horizon)
);
CREATE TABLE IF NOT EXISTS monitor_metrics (
    evaluation_id VARCHAR NOT NULL,
    evaluated_at TIMESTAMP NOT NULL,
    flow_run_id VARCHAR,
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    alias VARCHAR,            -- alias(es) of the version at evaluation time
    horizon INTEGER NOT NULL, -- 0: mean over horizons (the row the rule reads)
    window_start TIMESTAMP,
    window_end TIMESTAMP,
    n_outcomes BIGINT,
    auc DOUBLE, accuracy DOUBLE, brier DOUBLE, log_loss DOUBLE,
    trading_return DOUBLE, bh_return DOUBLE,
    previous_auc DOUBLE,      -- shadow AUC of `previous` on the same rows (champion rows)
    breach BOOLEAN,           -- champion rows only; NULL when not decided
    decision VARCHAR,
    PRIMARY KEY (evaluation_id, model_version, horizon)
);
CREATE TABLE IF NOT EXISTS migrations (
    name VARCHAR PRIMARY KEY,
    applied_at TIMESTAMP NOT NULL,
    detail_json VARCHAR       -- what the migration changed (e.g. symbol renames)
);
CREATE TABLE IF NOT EXISTS drift_metrics (
    evaluation_id VARCHAR NOT NULL,
    evaluated_at TIMESTAMP NOT NULL,
    model_name VARCHAR NOT NULL,
    feature VARCHAR NOT NULL,
    psi DOUBLE, ks_stat DOUBLE, ks_pvalue DOUBLE,
    n_reference BIGINT, n_live BIGINT,
    reference_start TIMESTAMP, reference_end TIMESTAMP,
    live_start TIMESTAMP, live_end TIMESTAMP,
    drifted BOOLEAN,
    PRIMARY KEY (evaluation_id, feature)
);
"""


class Warehouse:
    """Handle on the warehouse file; cheap to create, opens nothing until used."""

    def __init__(
        self, path: Path | str, *, lock_timeout_s: float = 60.0, base_backoff_s: float = 0.05
    ) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.base_backoff_s = base_backoff_s

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open a connection, retrying while another process holds the write lock.

        Read-write connections ensure the schema and are meant for one short
        unit of work. A read-only connection on a missing file raises a
        ``WarehouseError`` telling the user to ingest first.
        """
        if read_only and not self.exists:
            raise WarehouseError(
                f"No warehouse at {self.path}. Run `coincast ingest PATH` (or `make run`) first."
            )
        con = self._open_with_retry(read_only=read_only)
        held = _held_in_thread()
        key = os.path.abspath(self.path)
        held[key] = held.get(key, 0) + 1
        try:
            if not read_only:
                con.execute(SCHEMA_SQL)
                _migrate(con, self.path)
            yield con
        finally:
            held[key] -= 1
            con.close()

    def _open_with_retry(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        """Connect, retrying with jittered exponential backoff up to ``lock_timeout_s``.

        Transient: another process holds the file lock (DuckDB's IOException
        "Could not set lock on file ... Conflicting lock is held in ... (PID n)";
        read-only opens fail this way too while a writer is open), or another
        thread of this process holds a connection in the other mode ("different
        configuration"). The same thread holding one is a bug: fail at once.
        """
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = "read-only" if read_only else "read-write"
        deadline = time.monotonic() + self.lock_timeout_s
        attempt = 0
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except (
                duckdb.IOException,
                duckdb.ConnectionException,
                duckdb.ResourceInUseException,
            ) as exc:
                # another thread of this process opening the same file at the same moment
                # ("Unique file handle conflict") is as transient as a lock held elsewhere
                in_process = not isinstance(exc, duckdb.IOException)
                if not _is_lock_conflict(exc):
                    if in_process:
                        raise
                    raise WarehouseError(
                        f"Could not open warehouse {self.path} ({mode}): {exc}"
                    ) from exc
                if in_process and _held_in_thread().get(os.path.abspath(self.path)):
                    raise WarehouseError(
                        f"Cannot open warehouse {self.path} {mode} while this thread holds "
                        "a connection to it in the other mode; reuse that connection or "
                        "close it first."
                    ) from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WarehouseError(
                        f"Warehouse {self.path} stayed locked for {self.lock_timeout_s:g}s "
                        f"({mode} open, {attempt + 1} attempts){_lock_holder(exc)}. Another "
                        "coincast process (a retrain, monitor or ingest run) holds its write "
                        "lock: wait for it to finish, or raise the lock timeout. "
                        f"DuckDB said: {exc}"
                    ) from exc
                delay = min(2.0, self.base_backoff_s * 2**attempt) * (0.5 + random.random())
                log.debug("warehouse locked, retry %d in %.2fs", attempt, delay)
                time.sleep(min(delay, remaining))
                attempt += 1

    # ---- small read helpers used across the library ----
    def read_candles(
        self,
        *,
        timeframe: str | None = None,
        symbols: list[str] | None = None,
        since: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Candles sorted by (symbol, timeframe, ts); empty frame when none match."""
        where, params = _candle_filter(timeframe=timeframe, symbols=symbols, since=since)
        with self.connect(read_only=True) as con:
            # Arrow then pandas: ~15x faster than .df() on DuckDB 2.0 for large reads.
            return (
                con.sql(
                    f"SELECT {', '.join(CANDLE_COLUMNS)} FROM candles {where} "
                    "ORDER BY symbol, timeframe, ts",
                    params=params,
                )
                .to_arrow_table()
                .to_pandas()
            )

    def table_counts(self) -> dict[str, int]:
        """Row count of every table, for status displays and 'nothing changed' checks."""
        with self.connect(read_only=True) as con:
            names = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
            return {n: int(con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]) for n in names}


# ---- migrations -----------------------------------------------------------------------

#: Migrations run once per warehouse, on the first read-write open, each recorded in
#: ``migrations`` with what it changed (and logged as a warning when it changed data).
CANONICAL_SYMBOLS = "canonical_symbols_v1"


def _migrate(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    done = {r[0] for r in con.execute("SELECT name FROM migrations").fetchall()}
    if CANONICAL_SYMBOLS in done:
        return
    con.begin()
    try:
        detail = migrate_symbols(con)
        con.execute(
            "INSERT INTO migrations VALUES (?, ?, ?)",
            [CANONICAL_SYMBOLS, _utc_now(), json.dumps(detail, sort_keys=True)],
        )
        con.commit()
    except Exception:
        con.rollback()
        raise
    if detail["renamed"] or detail["conflicts"]:
        moved = ", ".join(f"{r['from']} -> {r['to']} ({r['rows']} rows)" for r in detail["renamed"])
        kept = "; ".join(
            f"{c['symbol']}: {c['rows']} bar(s) differ from {c['to']}, kept under the old name"
            for c in detail["conflicts"]
        )
        log.warning(
            "warehouse %s migrated to canonical symbol names: %s%s",
            path,
            moved or "nothing renamed",
            f". Conflicts: {kept}" if kept else "",
        )


def migrate_symbols(con: duckdb.DuckDBPyConnection) -> dict:
    """Rename the stored series to canonical symbols (``BTCUSDT`` -> ``BTC/USDT``), in the
    caller's transaction. Rows already stored under the canonical name with the same
    values are merged; rows whose values differ stay under the old name and are listed
    as conflicts. Names with no known quote asset are left as they are (``unresolved``).
    Candles and predictions are renamed; logs keep the names they were written with.
    """
    from ml_core.data.symbols import canonical_symbol
    from ml_core.errors import DataContractError

    names = [r[0] for r in con.execute("SELECT DISTINCT symbol FROM candles").fetchall()]
    names += [r[0] for r in con.execute("SELECT DISTINCT symbol FROM predictions").fetchall()]
    detail: dict[str, list] = {"renamed": [], "conflicts": [], "unresolved": []}
    for old in sorted(set(names)):
        try:
            new = canonical_symbol(old)
        except DataContractError:
            detail["unresolved"].append(old)
            continue
        if new == old:
            continue
        before = int(
            con.execute("SELECT count(*) FROM candles WHERE symbol = ?", [old]).fetchone()[0]
        )
        _rename_series(con, "candles", old, new, ["timeframe", "ts"])
        _rename_series(
            con, "predictions", old, new, ["model_name", "model_version", "ts", "horizon"]
        )
        left = int(
            con.execute("SELECT count(*) FROM candles WHERE symbol = ?", [old]).fetchone()[0]
        )
        detail["renamed"].append({"from": old, "to": new, "rows": before - left})
        if left:
            detail["conflicts"].append({"symbol": old, "to": new, "rows": left})
    return detail


def _rename_series(
    con: duckdb.DuckDBPyConnection, table: str, old: str, new: str, key: list[str]
) -> None:
    """Move ``old``'s rows of ``table`` to ``new`` where ``new`` has no row with that key;
    drop ``old``'s rows that ``new`` now holds with identical values."""
    cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] != "symbol"]
    same_key = " AND ".join(f"n.{k} IS NOT DISTINCT FROM o.{k}" for k in key)
    same_row = " AND ".join(f"n.{c} IS NOT DISTINCT FROM o.{c}" for c in cols)
    con.execute(
        f"""INSERT INTO {table} (symbol, {", ".join(cols)})
            SELECT ?, {", ".join(f"o.{c}" for c in cols)} FROM {table} AS o
            WHERE o.symbol = ? AND NOT EXISTS (
                SELECT 1 FROM {table} AS n WHERE n.symbol = ? AND {same_key})""",
        [new, old, new],
    )
    con.execute(
        f"""DELETE FROM {table} AS o WHERE o.symbol = ? AND EXISTS (
                SELECT 1 FROM {table} AS n WHERE n.symbol = ? AND {same_row})""",
        [old, new],
    )


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime()


_THREAD_STATE = threading.local()
_LOCK_HOLDER = re.compile(r"lock is held in (?P<exe>.+?) \(PID (?P<pid>\d+)\)")


def _held_in_thread() -> dict[str, int]:
    """Open warehouse connections of the calling thread, by absolute path."""
    if not hasattr(_THREAD_STATE, "held"):
        _THREAD_STATE.held = {}
    return _THREAD_STATE.held


def _is_lock_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "different configuration" in text or "file handle conflict" in text


def _lock_holder(exc: Exception) -> str:
    """', held by PID n (exe)' when DuckDB names the process holding the lock."""
    found = _LOCK_HOLDER.search(str(exc))
    return f", held by PID {found['pid']} ({found['exe']})" if found else ""


def to_naive_utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    """A timestamp as naive UTC, the warehouse convention (aware ones are converted)."""
    t = pd.Timestamp(ts)
    return t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t


def _candle_filter(
    *, timeframe: str | None, symbols: list[str] | None, since: pd.Timestamp | None
) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if timeframe is not None:
        clauses.append("timeframe = ?")
        params.append(timeframe)
    if symbols:
        clauses.append(f"symbol IN ({', '.join('?' for _ in symbols)})")
        params.extend(symbols)
    if since is not None:
        clauses.append("ts >= ?")
        params.append(to_naive_utc(since).to_pydatetime())
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
