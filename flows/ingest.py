"""Flow `ingest`: files -> quality gate -> warehouse (or quarantine)."""

from __future__ import annotations

from prefect import flow

from flows.params import IngestParams
from tasks.artifacts import publish_table
from tasks.data import ingest_files


@flow(name="ingest", log_prints=True)
def ingest_flow(params: IngestParams) -> list[dict]:
    """Ingest candle files behind the Great Expectations gate."""
    cfg = params.load()
    results = ingest_files(
        cfg, params.paths, params.symbol, params.source_timeframe, params.allow_revisions
    )
    publish_ingest_summary(results)
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
