"""Ingest candle batches into the warehouse behind the quality gate.

One batch = one frame (one file). The batch is validated
(``ml_core.quality.validate_candles``), then written in ONE transaction:

- still-forming bars first: a bar that opened before ``now`` but closes after it
  (``ts <= now < ts + timeframe``) is not a finished candle; it is dropped and
  counted in ``n_forming`` (the next fetch brings it closed). A bar that opens
  after ``now`` is not forming but bogus: the gate quarantines the batch.
- passed: upsert into ``candles``, soft findings into ``quality_findings``, a
  'loaded' row into ``ingest_log``. New keys are inserted; a key stored with the
  same values (within ``QualityConfig.revision_tolerance``, relative) is left
  untouched and counts in ``n_unchanged``. A key stored with other values is a
  **revision**: counted per symbol with its largest relative change. Unless
  ``allow_revisions`` is given the whole batch is refused and quarantined
  (``RevisionError``, naming symbol, bars and sizes): good candles are never
  overwritten silently. Allowed revisions take the batch's values and count in
  ``n_updated``.
- failed: the whole batch into ``quarantine_candles``, one ``quarantine`` row
  (failed expectations, summary, report JSON), critical and soft findings into
  ``quality_findings``, a 'quarantined' row into ``ingest_log``; ``candles`` is not
  touched. Then ``QualityGateError`` is raised.

Loading the same file twice changes no candle (``n_new == n_updated == 0``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from ml_core.config import TIMEFRAME_SECONDS, QualityConfig
from ml_core.data.sources import CHUNK_ROWS, SUFFIXES, candle_files, iter_candle_file
from ml_core.data.symbols import parse_file_name
from ml_core.data.warehouse import CANDLE_COLUMNS, Warehouse, to_naive_utc
from ml_core.errors import (
    CoincastError,
    DataContractError,
    NotCandlesError,
    QualityGateError,
    RevisionError,
)
from ml_core.quality import QualityReport, validate_candles

log = logging.getLogger(__name__)

_COLS = ", ".join(CANDLE_COLUMNS)
_VALUES = ["open", "high", "low", "close", "volume"]
_KEY_JOIN = "c.symbol = b.symbol AND c.timeframe = b.timeframe AND c.ts = b.ts"
_FINDING_COLUMNS = [
    "batch_id",
    "created_at",
    "symbol",
    "timeframe",
    "expectation",
    "severity",
    "n_rows",
    "detail",
]


@dataclass(frozen=True)
class IngestResult:
    """What one loaded batch did to the warehouse.

    ``n_rows`` rows were read; ``n_forming`` of them were still-forming bars (not
    stored); of the rest ``n_new`` were inserted, ``n_unchanged`` were stored
    already with the same values and ``n_updated`` were allowed revisions
    (``revisions``: per symbol, bars and largest relative change).
    """

    batch_id: str
    source: str
    symbols: list[str]
    timeframe: str
    n_rows: int
    n_new: int
    n_updated: int
    findings: list[dict] = field(default_factory=list)
    n_forming: int = 0
    n_unchanged: int = 0
    revisions: list[dict] = field(default_factory=list)
    n_batches: int = 1  # a large file is ingested in chunks, one gate batch each

    def as_dict(self) -> dict:
        """Plain dict (for task results, artifacts and JSON)."""
        return asdict(self)


def ingest_frame(
    warehouse: Warehouse,
    candles: pd.DataFrame,
    cfg: QualityConfig,
    *,
    source: str,
    now: pd.Timestamp | None = None,
    allow_revisions: bool = False,
    batch_id: str | None = None,
) -> IngestResult:
    """Validate one candle batch and load it, or quarantine it and raise ``QualityGateError``.

    ``source`` names where the batch came from (a path, 'binance', ...); ``now``
    (default: current UTC time) bounds the open times and decides which bars are
    still forming. A batch that would revise stored candles raises ``RevisionError``
    (a ``QualityGateError``) unless ``allow_revisions``. The input is not changed.
    ``batch_id`` (default: a new one) names the batch in the logs; every candle it
    writes carries it, so ``ml_core.data.batches.remove_batch`` can take it out again.
    """
    now = to_naive_utc(now) if now is not None else _now()
    batch, n_forming = _closed_bars(candles, now)
    report = validate_candles(batch, cfg, now=now)
    batch_id = batch_id or new_batch_id()
    timeframe = ",".join(report.timeframes)
    if not report.passed:
        _quarantine(warehouse, batch, report, batch_id=batch_id, source=source)
        raise QualityGateError(
            _quarantine_message(report, batch_id, source),
            batch_id=batch_id,
            failures=report.failures,
        )
    tolerance = cfg.revision_tolerance
    try:
        counts = _write_loaded(
            warehouse,
            batch,
            report,
            batch_id=batch_id,
            source=source,
            tolerance=tolerance,
            allow_revisions=allow_revisions,
        )
    except _RefusedRevisions as refused:
        report = replace(report, passed=False, failures=[_revision_failure(refused.revisions)])
        _quarantine(warehouse, batch, report, batch_id=batch_id, source=source)
        raise RevisionError(
            f"{_revision_text(refused.revisions, tolerance)} Batch {batch_id} from {source} was "
            "refused and quarantined; nothing stored changed. If the exchange corrected these "
            "bars, ingest again with --allow-revisions (allow_revisions=True).",
            batch_id=batch_id,
            failures=report.failures,
            revisions=refused.revisions,
        ) from None
    log.info(
        "loaded batch %s from %s: %d rows, %d new, %d revised, %d unchanged, %d forming",
        *(batch_id, source, len(batch), counts.new, counts.updated, counts.unchanged, n_forming),
    )
    return IngestResult(
        batch_id=batch_id,
        source=source,
        symbols=report.symbols,
        timeframe=timeframe,
        n_rows=len(batch) + n_forming,
        n_new=counts.new,
        n_updated=counts.updated,
        findings=report.findings,
        n_forming=n_forming,
        n_unchanged=counts.unchanged,
        revisions=counts.revisions,
    )


def ingest_paths(
    warehouse: Warehouse,
    paths: Iterable[Path | str] | Path | str,
    cfg: QualityConfig,
    **options: Any,
) -> list[IngestResult]:
    """Ingest files one batch each, in order; a folder stands for its candle files (walked,
    sorted; ``ml_core.data.sources.candle_files``). ``options`` are ``ingest_run``'s
    (``symbol``, ``timeframe``, ``now``, ``allow_revisions``, ``market``, ``chunk_rows``).

    Stops at the first file that cannot be read or fails the gate, raising its
    error with what was loaded before it and what was not; the files before it
    stay loaded (each batch is its own transaction). ``ingest_run`` is the same
    without the raise, for callers that show a per-file summary.
    """
    run = ingest_run(warehouse, paths, cfg, **options)
    run.raise_for_failure()
    return run.results


@dataclass
class IngestRun:
    """A multi-file ingest: what loaded, what was skipped (and why), what failed, what was
    never read."""

    results: list[IngestResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    failed: tuple[str, CoincastError] | None = None
    not_read: list[str] = field(default_factory=list)

    def raise_for_failure(self) -> None:
        """Re-raise the failure, its message extended by what loaded and what did not."""
        if self.failed is None:
            return
        path, exc = self.failed
        loaded = ", ".join(f"{Path(r.source).name} ({r.n_new} new)" for r in self.results)
        tail = f" Loaded before it: {loaded}." if loaded else " Nothing was loaded."
        if self.not_read:
            tail += f" Not read: {', '.join(Path(p).name for p in self.not_read)}."
        exc.args = (f"{exc.args[0] if exc.args else exc}{tail}", *exc.args[1:])
        raise exc


def ingest_run(
    warehouse: Warehouse,
    paths: Iterable[Path | str] | Path | str,
    cfg: QualityConfig,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    now: pd.Timestamp | None = None,
    allow_revisions: bool = False,
    market: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> IngestRun:
    """Ingest files one batch each, in order, recording what loaded, what was skipped (files
    that are not candles: a funding-rate table, a README) and the first failure (then
    stopping). ``market`` ('spot' or 'futures') names the market when a file's name and
    folders do not.

    A file longer than ``chunk_rows`` is read and gated in chunks of that many rows
    (one batch each), so memory stays flat as files grow; a failing chunk stops the
    file there, the chunks before it stay loaded and the error says how many rows."""
    entries = candle_files(paths)
    files = [e.path for e in entries if e.skip_reason is None]
    run = IngestRun(skipped=[(str(e.path), e.skip_reason) for e in entries if e.skip_reason])
    if not files:
        skipped = "".join(f"; {Path(p).name}: {why}" for p, why in run.skipped[:5])
        raise DataContractError(
            f"No candle files in {paths!r} (accepted: {', '.join(SUFFIXES)}, and folders of "
            f"them){skipped}. See docs/formats.md."
        )
    if symbol is not None:
        _one_symbol_for_files(files, symbol, market)
    for i, path in enumerate(files):
        done: list[IngestResult] = []
        file_batch = new_batch_id()
        try:
            chunks = iter_candle_file(
                path, symbol=symbol, timeframe=timeframe, market=market, chunk_rows=chunk_rows
            )
            for k, candles in enumerate(chunks):  # a large file in pieces: memory stays flat
                done.append(
                    ingest_frame(
                        warehouse,
                        candles,
                        cfg,
                        source=str(path),
                        now=now,
                        allow_revisions=allow_revisions,
                        batch_id=chunk_batch_id(file_batch, k),
                    )
                )
        except NotCandlesError as exc:  # found out by reading: a funding-rate table, ...
            run.skipped.append((str(path), str(exc)))
            continue
        except CoincastError as exc:
            if done:  # the chunks before the bad one stay loaded: say so
                run.results.append(_merged(done))
                exc.args = (
                    f"{exc.args[0] if exc.args else exc} {path.name}: its first "
                    f"{sum(r.n_rows for r in done):,} rows (up to the failing chunk) were "
                    "loaded.",
                    *exc.args[1:],
                )
            run.failed = (str(path), exc)
            run.not_read = [str(p) for p in files[i + 1 :]]
            return run
        run.results.append(_merged(done))
    return run


def new_batch_id() -> str:
    return uuid.uuid4().hex


def chunk_batch_id(file_batch: str, k: int) -> str:
    """Batch id of chunk ``k`` (from 0) of a file: the file's id, then ``<id>.2``, ``<id>.3``,
    ... so that removing the file's batch id removes all its chunks."""
    return file_batch if k == 0 else f"{file_batch}.{k + 1}"


def _merged(parts: list[IngestResult]) -> IngestResult:
    """One file's chunks as one result (counts summed; the first chunk's batch id, which
    names them all)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return IngestResult(
        batch_id=first.batch_id,
        source=first.source,
        symbols=sorted({s for r in parts for s in r.symbols}),
        timeframe=",".join(sorted({tf for r in parts for tf in r.timeframe.split(",") if tf})),
        n_rows=sum(r.n_rows for r in parts),
        n_new=sum(r.n_new for r in parts),
        n_updated=sum(r.n_updated for r in parts),
        findings=[f for r in parts for f in r.findings],
        n_forming=sum(r.n_forming for r in parts),
        n_unchanged=sum(r.n_unchanged for r in parts),
        revisions=[v for r in parts for v in r.revisions],
        n_batches=sum(r.n_batches for r in parts),
    )


def _one_symbol_for_files(files: list[Path], symbol: str, market: str | None) -> None:
    """One --symbol names one asset: refuse it for files whose names say different ones."""
    named = {f.name: parse_file_name(f, market=market).symbol for f in files}
    named = {name: sym for name, sym in named.items() if sym is not None}
    if len(files) > 1 and len(set(named.values())) > 1:
        listing = ", ".join(f"{name} -> {sym}" for name, sym in named.items())
        raise DataContractError(
            f"--symbol {symbol} was given for {len(files)} files whose names say different "
            f"symbols ({listing}); one --symbol would store them all as {symbol}. Ingest each "
            "file with its own --symbol, or drop --symbol to take the names."
        )


def _closed_bars(candles: pd.DataFrame, now: pd.Timestamp) -> tuple[pd.DataFrame, int]:
    """The batch (canonical columns, ts naive) without still-forming bars, and their count."""
    batch = candles.loc[:, [c for c in CANDLE_COLUMNS if c in candles.columns]]
    batch = batch.reset_index(drop=True)
    if "ts" not in batch or "timeframe" not in batch or batch.empty:
        return batch, 0  # the gate names what is missing
    if not pd.api.types.is_datetime64_any_dtype(batch["ts"]):
        return batch, 0
    batch["ts"] = _naive_us(batch["ts"])
    seconds = batch["timeframe"].map(TIMEFRAME_SECONDS)
    closes = batch["ts"] + pd.to_timedelta(seconds, unit="s")
    forming = (batch["ts"] <= now) & (closes > now) & seconds.notna()
    n_forming = int(forming.sum())
    if n_forming:
        log.info("dropped %d still-forming bar(s) (closing after %s)", n_forming, now)
        batch = batch.loc[~forming].reset_index(drop=True)
    return batch, n_forming


def _naive_us(ts: pd.Series) -> pd.Series:
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.astype("datetime64[us]")


def _sym(symbol: str) -> str | None:
    return None if symbol == "<null>" else symbol


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


# ---- revisions --------------------------------------------------------------------------


class _RefusedRevisions(Exception):
    def __init__(self, revisions: list[dict]) -> None:
        super().__init__("refused revisions")
        self.revisions = revisions


@dataclass(frozen=True)
class _Counts:
    new: int
    updated: int
    unchanged: int
    revisions: list[dict]


def _rel_change(col: str) -> str:
    """SQL: relative change of one value, stored c -> batch b (NULL mismatch: infinite)."""
    return (
        f"CASE WHEN c.{col} IS NOT DISTINCT FROM b.{col} THEN 0.0 "
        f"WHEN c.{col} IS NULL OR b.{col} IS NULL THEN 'inf'::DOUBLE "
        f"ELSE abs(b.{col} - c.{col}) / greatest(abs(c.{col}), 1e-12) END"
    )


_REL = f"greatest({', '.join(_rel_change(v) for v in _VALUES)})"


def _revisions(con: duckdb.DuckDBPyConnection, tolerance: float) -> list[dict]:
    """Per symbol: stored bars the batch changes beyond ``tolerance``, with sizes."""
    frame = con.execute(
        f"""SELECT b.symbol, b.timeframe, count(*) AS bars, max({_REL}) AS max_rel_change,
                   arg_max(b.ts, {_REL}) AS largest_at, min(b.ts) AS first_ts,
                   max(b.ts) AS last_ts
            FROM batch_frame AS b JOIN candles AS c ON {_KEY_JOIN}
            WHERE {_REL} > ?
            GROUP BY b.symbol, b.timeframe ORDER BY b.symbol, b.timeframe""",
        [tolerance],
    ).fetchall()
    keys = ["symbol", "timeframe", "bars", "max_rel_change", "largest_at", "first_ts", "last_ts"]
    out = []
    for row in frame:
        d = dict(zip(keys, row, strict=True))
        d["bars"] = int(d["bars"])
        d["max_rel_change"] = float(d["max_rel_change"])
        for k in ("largest_at", "first_ts", "last_ts"):
            d[k] = str(pd.Timestamp(d[k]))
        out.append(d)
    return out


def _revision_text(revisions: list[dict], tolerance: float) -> str:
    parts = [
        f"{r['symbol']} {r['timeframe']}: {r['bars']} bar(s) from {r['first_ts']} to "
        f"{r['last_ts']}, largest change {r['max_rel_change']:.3%} at {r['largest_at']}"
        for r in revisions
    ]
    return (
        f"The batch would revise stored candles beyond the tolerance {tolerance:g} (relative): "
        + "; ".join(parts)
        + "."
    )


def _revision_failure(revisions: list[dict]) -> dict:
    """A report failure (the shape ``QualityReport.failures`` has) for refused revisions."""
    return {
        "expectation": "no_silent_revision",
        "label": "stored candles keep their values",
        "columns": list(_VALUES),
        "symbols": [r["symbol"] for r in revisions],
        "by_symbol": {r["symbol"]: r["bars"] for r in revisions},
        "n_rows": sum(r["bars"] for r in revisions),
        "examples": [
            {"symbol": r["symbol"], "ts": r["largest_at"], "rel_change": r["max_rel_change"]}
            for r in revisions
        ],
        "error": None,
    }


def _quarantine_message(report: QualityReport, batch_id: str, source: str) -> str:
    return f"{report.summary()} Batch {batch_id} from {source} was quarantined."


def _quarantine(
    warehouse: Warehouse, batch: pd.DataFrame, report: QualityReport, *, batch_id: str, source: str
) -> None:
    message = _quarantine_message(report, batch_id, source)
    _write_quarantine(warehouse, batch, report, batch_id=batch_id, source=source, msg=message)
    log.warning("quarantined batch %s from %s: %s", batch_id, source, report.failed_expectations)


# ---- the two transactions ---------------------------------------------------------------


def _write_loaded(
    warehouse: Warehouse,
    batch: pd.DataFrame,
    report: QualityReport,
    *,
    batch_id: str,
    source: str,
    tolerance: float,
    allow_revisions: bool,
) -> _Counts:
    """Upsert a passed batch; raises ``_RefusedRevisions`` (nothing written) when it would
    revise stored candles and revisions are not allowed."""
    with warehouse.connect() as con:
        con.register("batch_frame", batch)
        con.begin()
        try:
            revisions = _revisions(con, tolerance)
            if revisions and not allow_revisions:
                raise _RefusedRevisions(revisions)
            n_new, n_stored = _count_keys(con)
            n_updated = sum(r["bars"] for r in revisions)
            if revisions:
                _keep_revised_values(con, batch_id, tolerance)
            con.execute(
                f"UPDATE candles AS c SET {', '.join(f'{v} = b.{v}' for v in _VALUES)}, "
                f"batch_id = ? FROM batch_frame AS b WHERE {_KEY_JOIN} AND {_REL} > ?",
                [batch_id, tolerance],
            )
            con.execute(
                f"INSERT INTO candles ({_COLS}, batch_id) SELECT {_COLS}, ? FROM batch_frame AS b "
                f"WHERE NOT EXISTS (SELECT 1 FROM candles AS c WHERE {_KEY_JOIN})",
                [batch_id],
            )
            _insert_findings(con, batch_id, report, critical=False)
            _insert_log(
                con, batch_id, source, report, n_new=n_new, n_updated=n_updated, status="loaded"
            )
            con.commit()
        except Exception:
            con.rollback()
            raise
        finally:
            con.unregister("batch_frame")
    return _Counts(n_new, n_updated, n_stored - n_updated, revisions)


def _keep_revised_values(con: duckdb.DuckDBPyConnection, batch_id: str, tolerance: float) -> None:
    """Before a batch revises stored candles: their values (and the batch that wrote them) into
    ``candle_revisions``, so removing the batch can set them back, and one ``candle_edits`` row
    per series, so tables derived from candles (features) know to rebuild."""
    at = _now().to_pydatetime()
    con.execute(
        f"""INSERT INTO candle_revisions
            SELECT ?, ?, c.symbol, c.timeframe, c.ts, {", ".join(f"c.{v}" for v in _VALUES)},
                   c.batch_id
            FROM candles AS c JOIN batch_frame AS b ON {_KEY_JOIN} WHERE {_REL} > ?""",
        [batch_id, at, tolerance],
    )
    con.execute(
        """INSERT INTO candle_edits
            SELECT ?, ?, 'revised', symbol, timeframe, count(*) FROM candle_revisions
            WHERE batch_id = ? GROUP BY symbol, timeframe""",
        [at, batch_id, batch_id],
    )


def _count_keys(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(batch keys not stored yet, batch keys stored already)."""
    row = con.execute(
        f"SELECT count(*) FILTER (WHERE c.symbol IS NULL), count(c.symbol) "
        f"FROM batch_frame AS b LEFT JOIN candles AS c ON {_KEY_JOIN}"
    ).fetchone()
    return int(row[0]), int(row[1])


def _write_quarantine(
    warehouse: Warehouse,
    batch: pd.DataFrame,
    report: QualityReport,
    *,
    batch_id: str,
    source: str,
    msg: str,
) -> None:
    """Store a failed batch whole with its report; ``candles`` is not touched."""
    with warehouse.connect() as con:
        con.register("batch_frame", batch)
        con.begin()
        try:
            con.execute(
                f"INSERT INTO quarantine_candles (batch_id, {_COLS}) "
                f"SELECT ?, {_COLS} FROM batch_frame",
                [batch_id],
            )
            con.execute(
                "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    batch_id,
                    _now().to_pydatetime(),
                    source,
                    ",".join(report.symbols),
                    ",".join(report.timeframes),
                    report.n_rows,
                    ",".join(report.failed_expectations),
                    msg,
                    report.to_json(),
                ],
            )
            _insert_findings(con, batch_id, report, critical=True)
            _insert_log(con, batch_id, source, report, n_new=0, n_updated=0, status="quarantined")
            con.commit()
        except Exception:
            con.rollback()
            raise
        finally:
            con.unregister("batch_frame")


def _insert_findings(
    con: duckdb.DuckDBPyConnection, batch_id: str, report: QualityReport, *, critical: bool
) -> None:
    """Soft findings, plus (``critical``) one row per failed expectation and symbol."""
    created = _now().to_pydatetime()
    tf = ",".join(report.timeframes)
    rows = [
        (batch_id, created, f["symbol"], f["timeframe"], f["check"], "soft", f["n"], f["detail"])
        for f in report.findings
    ]
    if critical:
        rows += [
            (batch_id, created, _sym(sym), tf, f["expectation"], "critical", n, f["label"])
            for f in report.failures
            for sym, n in f["by_symbol"].items()
        ]
    if rows:
        frame = pd.DataFrame(rows, columns=_FINDING_COLUMNS)
        frame["n_rows"] = frame["n_rows"].astype("int64")
        con.register("findings_frame", frame)
        try:
            con.execute(
                f"INSERT INTO quality_findings ({', '.join(_FINDING_COLUMNS)}) "
                f"SELECT {', '.join(_FINDING_COLUMNS)} FROM findings_frame"
            )
        finally:
            con.unregister("findings_frame")


def _insert_log(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    source: str,
    report: QualityReport,
    *,
    n_new: int,
    n_updated: int,
    status: str,
) -> None:
    con.execute(
        "INSERT INTO ingest_log (batch_id, created_at, source, symbols, timeframe, n_rows, "
        "n_new, status, n_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            batch_id,
            _now().to_pydatetime(),
            source,
            ",".join(report.symbols),
            ",".join(report.timeframes),
            report.n_rows,
            n_new,
            status,
            n_updated,
        ],
    )
