"""Tasks of the ingest and validate steps."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from ml_core.config import CoincastConfig
from ml_core.data.datasets import model_symbols, sources_for
from ml_core.data.ingest import ingest_run
from ml_core.data.warehouse import Warehouse
from ml_core.errors import DataContractError
from ml_core.quality.report import QualityReport
from ml_core.quality.suite import validate_candles
from tasks.retrying import transient_only


@task(
    name="ingest-files",
    cache_policy=NONE,
    retries=1,
    retry_condition_fn=transient_only,
    retry_delay_seconds=2,
)
def ingest_files(
    cfg: CoincastConfig,
    paths: list[str],
    symbol: str | None,
    timeframe: str | None,
    allow_revisions: bool = False,
) -> list[dict]:
    """Load files into the warehouse behind the quality gate; one batch per file."""
    logger = get_run_logger()
    run = ingest_run(
        Warehouse(cfg.warehouse_path),
        [Path(p) for p in paths],
        cfg.quality,
        symbol=symbol,
        timeframe=timeframe,
        allow_revisions=allow_revisions,
    )
    for r in run.results:
        logger.info(
            "%s: %d rows, %d new, %d revised, %d unchanged, %d forming, %d soft findings",
            *(r.source, r.n_rows, r.n_new, r.n_updated, r.n_unchanged, r.n_forming),
            len(r.findings),
        )
    for path, reason in run.skipped:
        logger.info("%s skipped: %s", path, reason)
    run.raise_for_failure()
    return [r.as_dict() for r in run.results]


@task(name="download-sources", cache_policy=NONE)
def download_configured(cfg: CoincastConfig) -> list[dict]:
    """New candles from the configured exchange sources of this data set (none: nothing).

    A quarantined batch stops its symbol and is logged as a warning (the run goes on
    with what is stored); retries exhausted fail the task with the exchange's error.
    """
    from ml_core.data.exchange import download_sources

    logger = get_run_logger()
    sources = sources_for(cfg)
    if not sources:
        return []
    results = download_sources(Warehouse(cfg.warehouse_path), sources, cfg.quality)
    rows = [r.as_dict() for r in results]
    for r in rows:
        for sym in r["symbols"]:
            line = (
                f"{r['exchange']} {r['market']} {sym['symbol']} {r['timeframe']}: "
                f"{sym['n_new']} new bars (up to {sym['last_ts']}), {sym['n_forming']} forming, "
                f"{sym['n_retries']} retries"
            )
            if sym["status"] == "quarantined":
                logger.warning("%s; QUARANTINED: %s", line, sym["quarantine_reason"])
            else:
                logger.info(line)
    return rows


@task(name="validate-warehouse", cache_policy=NONE)
def validate_warehouse(cfg: CoincastConfig) -> dict:
    """Re-run the candle suite over the stored candles of the configured timeframe.

    Symbols whose stored candles fail are listed in ``left_out`` (symbol -> what failed)
    so the retrain goes on without them; only when every symbol fails (or the suite
    itself errs) does this raise."""
    logger = get_run_logger()
    candles = Warehouse(cfg.warehouse_path).read_candles(
        timeframe=cfg.data.timeframe, symbols=model_symbols(cfg)
    )
    if candles.empty:
        raise DataContractError(
            f"No {cfg.data.timeframe} candles in {cfg.warehouse_path}; ingest some with "
            "`coincast ingest PATH` or pass ingest_paths to the retrain."
        )
    report = validate_candles(candles, cfg.quality)
    logger.info(report.summary())
    left_out = bad_symbols(report)
    symbols = set(candles["symbol"].unique())
    if not report.passed and (left_out is None or set(left_out) >= symbols):
        raise DataContractError(f"Stored candles fail the candle suite: {report.summary()}")
    for sym, why in (left_out or {}).items():
        logger.warning("left out of this run: %s (stored candles fail %s)", sym, why)
    return {
        "passed": report.passed,
        "summary": report.summary(),
        "findings": report.findings,
        "n_rows": len(candles),
        "left_out": left_out or {},
    }


def bad_symbols(report: QualityReport) -> dict[str, str] | None:
    """Symbol -> the failed expectations, from a report; None when a failure cannot be
    pinned on symbols (the suite erred, or a row has no symbol)."""
    out: dict[str, list[str]] = {}
    for f in report.failures:
        if f.get("error") or "<null>" in f["by_symbol"]:
            return None
        for sym in f["by_symbol"]:
            out.setdefault(sym, []).append(f["label"])
    return {sym: ", ".join(labels) for sym, labels in sorted(out.items())}
