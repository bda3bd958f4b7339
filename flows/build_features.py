"""Flow `build_features`: refresh the materialized feature table incrementally."""

from __future__ import annotations

from prefect import flow

from flows.naming import run_name
from flows.orphans import PROCESS_HOOKS
from flows.params import RunParams
from tasks.features import refresh_feature_table


@flow(name="build_features", flow_run_name=run_name, log_prints=True, on_running=PROCESS_HOOKS)
def build_features_flow(params: RunParams) -> dict:
    """Compute feature set v1 for new bars (plus their lookback) in DuckDB."""
    cfg = params.load()
    return refresh_feature_table(cfg)
