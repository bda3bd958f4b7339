"""Flow `validate`: re-check the stored candles with the candle suite."""

from __future__ import annotations

from prefect import flow

from flows.naming import run_name
from flows.orphans import PROCESS_HOOKS
from flows.params import RunParams
from tasks.artifacts import publish_markdown
from tasks.data import validate_warehouse


@flow(name="validate", flow_run_name=run_name, log_prints=True, on_running=PROCESS_HOOKS)
def validate_flow(params: RunParams) -> dict:
    """Run the Great Expectations candle suite over the warehouse's data set."""
    cfg = params.load()
    report = validate_warehouse(cfg)
    publish_markdown(
        f"validate-{cfg.data.timeframe}",
        f"### Candle suite on {report['n_rows']:,} stored rows\n\n{report['summary']}",
        "Quality of the stored candles.",
    )
    return report
