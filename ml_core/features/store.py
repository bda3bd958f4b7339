"""The materialized feature table ``features_v1`` and its incremental refresh.

``features_v1`` holds one row per candle (key symbol, timeframe, ts) with
``segment_start``, ``close`` and ``FEATURE_COLUMNS``; ``features_v1_meta``
records, per timeframe, the settings the rows were built with, and
``features_v1_state``, per symbol, where the next refresh resumes (last bar,
its segment, the first of the last ``LOOKBACK_BARS`` bars, row count).

An incremental refresh recomputes, per symbol, only the new candles plus the
``LOOKBACK_BARS`` stored rows before them (all in the symbol's last segment,
whose start is passed to the query as a seed), and appends the new rows. Its
cost grows with the new bars, not with the history, and because every window
sum is an exact integer sum (see ``feature_set``) the appended rows equal a
full rebuild bit for bit.

It assumes candles are appended: a symbol whose stored row count no longer
matches its candles up to the last stored bar (a backfill) is rebuilt whole,
and a change of settings or of the feature columns rebuilds the timeframe.
Candles changed in place (a batch's allowed revisions, a removed batch) are
seen through ``candle_edits``: the timeframe is rebuilt on its next refresh.
Other changes of stored values (by hand) are not detected: pass ``full=True``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import duckdb
import pandas as pd

from ml_core.config import FeatureConfig, timeframe_seconds
from ml_core.features import _sql
from ml_core.features.feature_set import (
    FEATURE_COLUMNS,
    FEATURE_SET_NAME,
    FEATURE_SET_VERSION,
    LOOKBACK_BARS,
    OUTPUT_COLUMNS,
    feature_query,
    feature_stages,
)

log = logging.getLogger(__name__)

TABLE = f"features_{FEATURE_SET_NAME}"
META_TABLE = f"{TABLE}_meta"
STATE_TABLE = f"{TABLE}_state"
_PLAN = "_features_refresh_plan"
_ROWS = "_features_refresh_rows"
_EPOCH = datetime(1970, 1, 1)

# refreshed_at: when; edits_seen: ``candle_edits`` rows of the timeframe the rows reflect
_META_EDITS_SEEN = f"ALTER TABLE {META_TABLE} ADD COLUMN IF NOT EXISTS edits_seen BIGINT"
_DDL = [
    f"CREATE TABLE IF NOT EXISTS {TABLE} (symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, "
    "ts TIMESTAMP NOT NULL, segment_start TIMESTAMP NOT NULL, close DOUBLE, "
    + ", ".join(f"{c} DOUBLE" for c in FEATURE_COLUMNS)
    + ")",
    f"CREATE TABLE IF NOT EXISTS {META_TABLE} (timeframe VARCHAR PRIMARY KEY, "
    "feature_set VARCHAR, version INTEGER, max_gap_bars INTEGER, columns VARCHAR, "
    "refreshed_at TIMESTAMP, edits_seen BIGINT)",
    _META_EDITS_SEEN,
    # Per symbol: where an incremental refresh resumes (see _plan).
    f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (timeframe VARCHAR NOT NULL, "
    "symbol VARCHAR NOT NULL, first_ts TIMESTAMP, first_close DOUBLE, last_ts TIMESTAMP, "
    "last_seg TIMESTAMP, "
    "ctx_start TIMESTAMP, n_rows BIGINT, PRIMARY KEY (timeframe, symbol))",
]


def refresh_features(
    con: duckdb.DuckDBPyConnection,
    *,
    timeframe: str,
    cfg: FeatureConfig,
    relation: str = "candles",
    full: bool = False,
) -> dict[str, object]:
    """Bring ``features_v1`` up to date with ``relation`` for one timeframe.

    Rebuilds the timeframe when the table is missing, when it was built with
    other settings or columns, or when ``full=True``; otherwise appends the
    new bars incrementally. ``con`` must be a read-write connection; the
    refresh runs in one transaction. Returns ``mode`` ('full' or
    'incremental'), ``n_rows_recomputed`` (candle rows fed to the feature
    query), ``n_rows_written``, ``n_symbols_rebuilt`` and ``seconds``.
    """
    timeframe_seconds(timeframe)
    _sql.check_relation(relation)
    started = time.perf_counter()
    con.execute("BEGIN TRANSACTION")
    try:
        current = _is_current(con, timeframe, cfg)
        for ddl in _DDL:
            con.execute(ddl)
        mode = "incremental" if current and not full else "full"
        if mode == "full":
            stats = _rebuild(con, timeframe=timeframe, cfg=cfg, relation=relation)
        else:
            stats = _append(con, timeframe=timeframe, cfg=cfg, relation=relation)
        _write_meta(con, timeframe, cfg)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    stats = {"mode": mode, "timeframe": timeframe, **stats}
    stats["seconds"] = round(time.perf_counter() - started, 6)
    log.info("features refresh %s", stats)
    return stats


def read_features(
    con: duckdb.DuckDBPyConnection, *, timeframe: str, symbols: list[str] | None = None
) -> pd.DataFrame:
    """Stored rows of ``features_v1`` (``OUTPUT_COLUMNS``) sorted by symbol, ts."""
    sym = " AND list_contains($symbols, symbol)" if symbols is not None else ""
    sql = (
        f"SELECT {', '.join(OUTPUT_COLUMNS)} FROM {TABLE} "
        f"WHERE timeframe = $timeframe{sym} ORDER BY symbol, ts"
    )
    return _sql.fetch_df(con, sql, _sql.query_params(timeframe, symbols))


def _table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = $name AND NOT temporary",
        {"name": name},
    ).fetchall()
    return rows[0][0] > 0


def _is_current(con: duckdb.DuckDBPyConnection, timeframe: str, cfg: FeatureConfig) -> bool:
    """True when the stored rows of ``timeframe`` were built like this code builds them.

    Drops the tables when their columns belong to another build of the set.
    """
    if not all(_table_exists(con, t) for t in (TABLE, META_TABLE, STATE_TABLE)):
        return False
    stored = [r[0] for r in con.execute(f"DESCRIBE {TABLE}").fetchall()]
    if stored != OUTPUT_COLUMNS:
        log.warning("%s has the columns of another feature-set build; dropping it", TABLE)
        for name in (TABLE, META_TABLE, STATE_TABLE):
            con.execute(f"DROP TABLE {name}")
        return False
    con.execute(_META_EDITS_SEEN)  # a meta table from before edits_seen
    rows = con.execute(
        f"SELECT feature_set, version, max_gap_bars, columns, coalesce(edits_seen, 0) "
        f"FROM {META_TABLE} WHERE timeframe = $timeframe",
        {"timeframe": timeframe},
    ).fetchall()
    wanted = (FEATURE_SET_NAME, FEATURE_SET_VERSION, cfg.max_gap_bars, ",".join(FEATURE_COLUMNS))
    if not rows or tuple(rows[0][:4]) != wanted:
        return False
    if rows[0][4] != _edit_count(con, timeframe):
        log.info("stored %s candles were revised or removed since the last refresh", timeframe)
        return False
    return True


def _edit_count(con: duckdb.DuckDBPyConnection, timeframe: str) -> int:
    """How many times stored candles of ``timeframe`` were changed in place (revised by a
    batch, or a batch removed): ``candle_edits`` rows, written by ``ml_core.data``."""
    if not _table_exists(con, "candle_edits"):
        return 0
    return _scalar(
        con,
        "SELECT count(*) FROM candle_edits WHERE timeframe = $timeframe",
        {"timeframe": timeframe},
    )


def _write_meta(con: duckdb.DuckDBPyConnection, timeframe: str, cfg: FeatureConfig) -> None:
    con.execute(
        f"INSERT OR REPLACE INTO {META_TABLE} VALUES "
        "($timeframe, $name, $version, $gap, $columns, now()::TIMESTAMP, $edits)",
        {
            "timeframe": timeframe,
            "name": FEATURE_SET_NAME,
            "version": FEATURE_SET_VERSION,
            "gap": cfg.max_gap_bars,
            "columns": ",".join(FEATURE_COLUMNS),
            "edits": _edit_count(con, timeframe),
        },
    )


def _rebuild(
    con: duckdb.DuckDBPyConnection, *, timeframe: str, cfg: FeatureConfig, relation: str
) -> dict[str, int]:
    """Recompute every row of ``timeframe`` from all candles."""
    params = {"timeframe": timeframe}
    con.execute(f"DELETE FROM {TABLE} WHERE timeframe = $timeframe", params)
    sql, params = feature_query(timeframe=timeframe, cfg=cfg, relation=relation)
    n_written = _scalar(con, f"INSERT INTO {TABLE} {sql}", params)
    con.execute(f"DELETE FROM {STATE_TABLE} WHERE timeframe = $timeframe", params)
    rows = f"(SELECT * FROM {TABLE} WHERE timeframe = $timeframe)"
    _insert_state(con, rows, timeframe=timeframe, cfg=cfg, prior=None)
    n_symbols = _scalar(
        con, f"SELECT count(*) FROM {STATE_TABLE} WHERE timeframe = $timeframe", params
    )
    return {
        "n_rows_recomputed": n_written,
        "n_rows_written": n_written,
        "n_symbols_rebuilt": n_symbols,
    }


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> int:
    return int(con.execute(sql, params).fetchall()[0][0])


def _insert_state(
    con: duckdb.DuckDBPyConnection,
    rows: str,
    *,
    timeframe: str,
    cfg: FeatureConfig,
    prior: str | None,
) -> None:
    """Write the resume point of each symbol in ``rows`` (symbol, ts, segment_start).

    ``ctx_start`` is the ts of the ``LOOKBACK_BARS``-th last row of the
    symbol's last segment (or that segment's start): a later refresh feeds
    the query from there. ``rows`` must hold at least those rows. With
    ``prior`` (the plan of an incremental refresh) ``rows`` holds only the
    recomputed tail, and first_ts / n_rows continue the stored ones.
    """
    if prior is None:
        first, n_rows, join = "min(r.ts) AS first_ts, arg_min(r.close, r.ts)", "count(*)", ""
    else:
        first = "any_value(p.first_ts) AS first_ts, any_value(p.first_close)"
        n_rows = (
            "any_value(p.n_before) "
            "+ count(*) FILTER (WHERE p.after_ts IS NULL OR r.ts > p.after_ts)"
        )
        join = f"JOIN {prior} p ON p.symbol = r.symbol"
    con.execute(
        f"""
        INSERT INTO {STATE_TABLE}
        WITH last AS (
            SELECT r.symbol, {first} AS first_close, max(r.ts) AS last_ts,
                   arg_max(r.segment_start, r.ts) AS last_seg, {n_rows} AS n_rows
            FROM {rows} r {join} GROUP BY r.symbol
        ), tail AS (
            SELECT r.symbol, r.ts, row_number() OVER (PARTITION BY r.symbol ORDER BY r.ts DESC) AS k
            FROM {rows} r JOIN last l ON l.symbol = r.symbol
            WHERE r.segment_start = l.last_seg AND r.ts >= l.last_ts - to_seconds($bound_s)
        )
        SELECT $timeframe, l.symbol, l.first_ts, l.first_close, l.last_ts, l.last_seg, min(t.ts),
               l.n_rows
        FROM last l JOIN tail t ON t.symbol = l.symbol AND t.k <= $lookback
        GROUP BY ALL
        """,
        {
            "timeframe": timeframe,
            "bound_s": (LOOKBACK_BARS + 1) * (cfg.max_gap_bars + 1) * timeframe_seconds(timeframe),
            "lookback": LOOKBACK_BARS,
        },
    )


def _append(
    con: duckdb.DuckDBPyConnection, *, timeframe: str, cfg: FeatureConfig, relation: str
) -> dict[str, int]:
    """Append the rows of new candles; rebuild symbols whose history changed."""
    params: dict[str, object] = {"timeframe": timeframe}
    _plan(con, timeframe=timeframe, relation=relation)
    rebuilt = [r[0] for r in con.execute(f"SELECT symbol FROM {_PLAN} WHERE rebuild").fetchall()]
    if rebuilt:
        log.warning("rebuilding the features of %s: their candle history changed", rebuilt)
        con.execute(
            f"DELETE FROM {TABLE} WHERE timeframe = $timeframe AND list_contains($symbols, symbol)",
            {**params, "symbols": rebuilt},
        )
    # A constant lower bound lets DuckDB skip old row groups of the candles.
    params["min_start"] = con.execute(f"SELECT min(start_ts) FROM {_PLAN}").fetchall()[0][0]
    source = (
        "SELECT c.symbol, c.ts, c.open, c.high, c.low, c.close, c.volume, p.first_ts, "
        "p.first_close, "
        "CASE WHEN c.ts = p.start_ts THEN p.seed END AS seg_seed "
        f"FROM {relation} c JOIN {_PLAN} p ON p.symbol = c.symbol "
        "WHERE c.timeframe = $timeframe AND c.ts >= $min_start AND c.ts >= p.start_ts"
    )
    sql = _sql.render(source, feature_stages(timeframe, cfg, seeded=True))
    n_recomputed = 0
    n_written = 0
    if params["min_start"] is not None:
        n_recomputed = _scalar(con, f"CREATE OR REPLACE TEMP TABLE {_ROWS} AS {sql}", params)
        n_written = _scalar(
            con,
            f"INSERT INTO {TABLE} SELECT r.* FROM {_ROWS} r JOIN {_PLAN} p ON p.symbol = r.symbol "
            "WHERE p.after_ts IS NULL OR r.ts > p.after_ts",
            {},
        )
        con.execute(
            f"DELETE FROM {STATE_TABLE} WHERE timeframe = $timeframe AND symbol IN "
            f"(SELECT symbol FROM {_PLAN})",
            {"timeframe": timeframe},
        )
        _insert_state(con, _ROWS, timeframe=timeframe, cfg=cfg, prior=_PLAN)
        con.execute(f"DROP TABLE {_ROWS}")
    con.execute(f"DROP TABLE {_PLAN}")
    return {
        "n_rows_recomputed": n_recomputed,
        "n_rows_written": n_written,
        "n_symbols_rebuilt": len(rebuilt),
    }


def _plan(con: duckdb.DuckDBPyConnection, *, timeframe: str, relation: str) -> None:
    """Temp table: per symbol with new candles, where to start and what to write.

    ``start_ts`` is the stored resume point (``ctx_start``), ``seed`` the start
    of that segment, ``after_ts`` the last stored bar (later rows are written).
    A symbol without stored rows, or whose candle count no longer equals its
    stored rows plus its new candles (a backfill), is recomputed from its
    first candle (``rebuild``; ``after_ts`` NULL writes every row).
    """
    min_last = con.execute(
        f"SELECT min(last_ts) FROM {STATE_TABLE} WHERE timeframe = $timeframe",
        {"timeframe": timeframe},
    ).fetchall()[0][0]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_PLAN} AS
        WITH cs AS (
            SELECT symbol, min(ts) AS first_ts, arg_min(close, ts) AS first_close,
                   count(*) AS n_candles FROM {relation}
            WHERE timeframe = $timeframe GROUP BY symbol
        ), st AS (
            SELECT * FROM {STATE_TABLE} WHERE timeframe = $timeframe
        ), fresh AS (
            SELECT c.symbol, count(*) AS n_new FROM {relation} c JOIN st ON st.symbol = c.symbol
            WHERE c.timeframe = $timeframe AND c.ts > $min_last AND c.ts > st.last_ts
            GROUP BY c.symbol
        ), joined AS (
            SELECT cs.symbol, cs.first_ts, cs.first_close, st.last_ts, st.last_seg, st.ctx_start,
                   coalesce(st.n_rows, 0) AS n_before, coalesce(fresh.n_new, 0) AS n_new,
                   st.symbol IS NULL OR cs.first_ts <> st.first_ts
                   OR cs.first_close <> st.first_close
                   OR cs.n_candles <> st.n_rows + coalesce(fresh.n_new, 0) AS rebuild
            FROM cs LEFT JOIN st ON st.symbol = cs.symbol
            LEFT JOIN fresh ON fresh.symbol = cs.symbol
        )
        SELECT symbol, first_ts, first_close, rebuild,
               CASE WHEN rebuild THEN 0 ELSE n_before END AS n_before,
               CASE WHEN rebuild THEN first_ts ELSE ctx_start END AS start_ts,
               CASE WHEN rebuild THEN NULL ELSE last_seg END AS seed,
               CASE WHEN rebuild THEN NULL ELSE last_ts END AS after_ts
        FROM joined WHERE rebuild OR n_new > 0
        """,
        {"timeframe": timeframe, "min_last": min_last or _EPOCH},
    )
