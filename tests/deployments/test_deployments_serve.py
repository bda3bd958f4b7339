"""End to end against a real Prefect server: `coincast serve` registers the deployments
with their schedules; runs triggered through the API complete and publish artifacts.

The server comes from `live_prefect_server` (conftest, session scope); `coincast serve`
runs as a real subprocess (its own process group) and is stopped at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from deployments.servers import ManagedProcess, deployment_server
from ml_core.config import load_config

# real Prefect server + `coincast serve` + flow-run processes: minutes on a busy 2-core box
pytestmark = pytest.mark.slow

SYMBOLS = ["BTC/USDT:USDT", "DOGE/USDT:USDT"]
N_BARS = 1440  # one day of 1m candles per symbol


@pytest.fixture(scope="module")
def served(live_prefect_server, tmp_path_factory, sample_1m) -> Iterator[tuple[Path, Path]]:
    """A home with a small candle file, and `coincast serve` for it against the server."""
    home = tmp_path_factory.mktemp("served-home")
    candles = home / "candles_1m.parquet"
    sample_1m[sample_1m["symbol"].isin(SYMBOLS)].groupby("symbol").head(N_BARS).to_parquet(
        candles, index=False
    )
    proc: ManagedProcess = deployment_server(
        load_config(None, home=home), live_prefect_server.api_url, log_dir=home / "logs"
    )
    proc.env["PREFECT_RUNNER_POLL_FREQUENCY"] = "2"  # pick up triggered runs quickly
    proc.start()
    try:
        proc.wait_ready(timeout_s=300)
        yield home, candles
    finally:
        proc.stop()
        assert not proc.alive


@pytest.fixture
def api(live_prefect_server):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: live_prefect_server.api_url}):
        yield


def _artifacts(flow_run_id) -> dict:
    """Artifacts of one flow run, by key (POST /artifacts/filter through the API client).

    prefect 3.8.8's ``read_artifacts`` sends ``null`` for every filter left out, which
    this server rejects (422), and an empty task-run filter drops flow-level artifacts:
    send the flow-run filter alone.
    """
    from prefect import get_client
    from prefect.client.schemas.objects import Artifact

    with get_client(sync_client=True) as client:
        response = client.request(
            "POST",
            "/artifacts/filter",
            json={"flow_runs": {"id": {"any_": [str(flow_run_id)]}}, "limit": 50},
        )
    return {a.key: a for a in Artifact.model_validate_list(response.json())}


def test_deployments_registered_with_schedules(served, api):
    from prefect import get_client

    home, _ = served
    with get_client(sync_client=True) as client:
        retrain = client.read_deployment_by_name("retrain/weekly-retrain-1m")
        on_demand = [client.read_deployment_by_name(f"{n}/{n}-1m") for n in ("ingest", "rollback")]
    (sched,) = retrain.schedules
    assert (sched.schedule.cron, sched.schedule.timezone) == ("0 3 * * 1", "UTC")
    assert sched.active and not retrain.paused
    assert retrain.parameters["params"]["home"] == str(home.resolve())
    assert retrain.entrypoint == "flows.retrain.retrain_flow"
    assert "RetrainParams" in retrain.parameter_openapi_schema["definitions"]
    for dep in on_demand:
        assert dep.schedules == [], dep.name


def test_ingest_run_through_the_api_completes_with_artifacts(served, api):
    from prefect.deployments import run_deployment

    home, candles = served
    run = run_deployment(
        "ingest/ingest-1m",
        parameters={"params": {"home": str(home), "paths": [str(candles)]}},
        timeout=240,
        poll_interval=1,
    )
    assert run.state.is_completed(), run.state.message
    artifacts = _artifacts(run.id)
    summary = json.loads(artifacts["ingest-summary"].data)
    assert [row["n_new"] for row in summary] == [len(SYMBOLS) * N_BARS]
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        n = con.execute("SELECT count(DISTINCT symbol), count(*) FROM candles").fetchone()
    assert n == (len(SYMBOLS), len(SYMBOLS) * N_BARS)


def _registry_with_two_versions(home: Path) -> None:
    """Model `coincast` v1 (previous) and v2 (champion): enough for a rollback."""
    from mlflow.tracking import MlflowClient

    cfg = load_config(None, home=home)
    client = MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    client.create_registered_model(cfg.model_name)
    source = home / "model-src"
    source.mkdir()
    for _ in range(2):
        client.create_model_version(cfg.model_name, source=source.as_uri())
    client.set_registered_model_alias(cfg.model_name, "previous", "1")
    client.set_registered_model_alias(cfg.model_name, "champion", "2")


def test_rollback_run_moves_champion_and_publishes_the_audit_row(served, api):
    from prefect.deployments import run_deployment

    from ml_core.data.warehouse import Warehouse
    from ml_core.registry.promotion import read_audit
    from ml_core.registry.store import RegistryStore

    home, _ = served
    _registry_with_two_versions(home)
    params = {"home": str(home), "reason": "live AUC below bound"}
    run = run_deployment("rollback/rollback-1m", parameters={"params": params}, timeout=240)
    assert run.state.is_completed(), run.state.message

    cfg = load_config(None, home=home)
    assert RegistryStore(cfg.tracking_uri, cfg.model_name).aliases()["champion"] == "1"
    audit = read_audit(Warehouse(cfg.warehouse_path), cfg.model_name)
    row = audit.iloc[0]
    assert (row["action"], row["champion_before"], row["champion_after"]) == ("rollback", "2", "1")
    assert row["actor"].startswith("prefect:")
    artifacts = _artifacts(run.id)
    assert "live AUC below bound" in artifacts["rollback-coincast"].data
    (table_row,) = json.loads(artifacts["rollback-coincast-audit"].data)
    assert (table_row["id"], table_row["champion_after"]) == (row["id"], "1")

    # `previous` was consumed: a second rollback fails, naming the fix
    again = run_deployment("rollback/rollback-1m", parameters={"params": params}, timeout=240)
    assert again.state.is_failed()
    assert "no 'previous' alias" in again.state.message
