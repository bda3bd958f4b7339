"""Flow `ingest`: files and configured exchange sources -> quality gate -> warehouse."""

from __future__ import annotations

from prefect import flow

from flows.naming import run_name
from flows.orphans import PROCESS_HOOKS
from flows.params import IngestParams
from ml_core.data.datasets import sources_for
from ml_core.errors import ConfigError
from tasks.artifacts import publish_table
from tasks.data import download_configured, ingest_files


@flow(name="ingest", flow_run_name=run_name, log_prints=True, on_running=PROCESS_HOOKS)
def ingest_flow(params: IngestParams) -> list[dict]:
    """Ingest candle files (``paths``) and download the configured sources, behind the
    Great Expectations gate."""
    cfg = params.load()
    if not params.paths and not sources_for(cfg):
        raise ConfigError(
            f"Nothing to ingest for {cfg.data.timeframe}: fill in `paths` (candle files on this "
            f"machine) or configure `sources:` with timeframe {cfg.data.timeframe} "
            "(docs/download.md)."
        )
    results = []
    if params.paths:
        results = ingest_files(
            cfg, params.paths, params.symbol, params.source_timeframe, params.allow_revisions
        )
    downloads = download_configured(cfg) if params.download else []
    publish_ingest_summary(results)
    if downloads:
        publish_download_summary(downloads)
    return results


def publish_ingest_summary(results: list[dict]) -> None:
    import pandas as pd

    rows = [
        {k: r[k] for k in ("source", "timeframe", "n_rows", "n_new", "n_updated", "n_unchanged")}
        | {"n_forming": r["n_forming"]}
        | {"soft_findings": len(r["findings"])}
        for r in results
    ]
    publish_table(
        "ingest-summary",
        pd.DataFrame(rows),
        "Files ingested: rows new, revised (n_updated), unchanged, still forming.",
    )


def publish_download_summary(downloads: list[dict]) -> None:
    import pandas as pd

    rows = [
        {"exchange": d["exchange"], "market": d["market"], "timeframe": d["timeframe"]}
        | {k: s[k] for k in ("symbol", "status", "n_new", "n_forming", "n_retries", "last_ts")}
        for d in downloads
        for s in d["symbols"]
    ]
    publish_table(
        "download-summary", pd.DataFrame(rows), "New candles from the configured exchanges."
    )
