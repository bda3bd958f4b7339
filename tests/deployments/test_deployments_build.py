"""The deployment list without a server: names, schedules from config, typed forms."""

from __future__ import annotations

import pytest

from deployments import build_deployments, deployment_specs, load_flow, serve
from ml_core.config import DeploymentsConfig, load_config
from ml_core.errors import ConfigError


def test_schedules_and_parameters_come_from_config(tmp_path):
    cfg = load_config(
        None,
        home=tmp_path,
        deployments={"weekly_retrain_cron": "15 4 * * 0", "timezone": "Europe/Berlin"},
    )
    deps = {d.name: d for d in build_deployments(cfg, config_path="/etc/cc.yaml")}

    retrain = deps["weekly-retrain-1m"]
    (sched,) = retrain.schedules
    assert (sched.schedule.cron, sched.schedule.timezone) == ("15 4 * * 0", "Europe/Berlin")
    assert retrain.entrypoint == "flows.retrain.retrain_flow"
    assert retrain.parameters["params"] == {
        "home": str(tmp_path.resolve()),
        "config_path": "/etc/cc.yaml",
        "timeframe": "1m",
    }
    for name in ("ingest-1m", "promote-1m", "rollback-1m"):
        assert deps[name].schedules == [], name
        assert "on-demand" in deps[name].tags
    # the UI form of ingest is the pydantic model: `paths`, or the configured sources
    schema = deps["ingest-1m"]._parameter_openapi_schema.model_dump()
    ingest_form = schema["definitions"]["IngestParams"]
    assert {"paths", "download", "allow_revisions"} <= set(ingest_form["properties"])
    assert "paths" not in ingest_form.get("required", [])
    rollback_fields = schema_fields(deps["rollback-1m"])
    assert {"to_version", "reason", "home"} <= rollback_fields


def schema_fields(deployment) -> set[str]:
    definitions = deployment._parameter_openapi_schema.model_dump()["definitions"]
    return {f for d in definitions.values() for f in d.get("properties", {})}


def test_daily_deployments_follow_their_flows(tmp_path):
    """daily-predict / daily-monitor / tune are served exactly when their flow modules exist."""
    cfg = load_config(None, home=tmp_path)
    names = {d.name for d in build_deployments(cfg)}
    for spec in deployment_specs(cfg):
        assert (f"{spec.name}-1m" in names) == (load_flow(spec) is not None), spec.name
    assert {"weekly-retrain-1m", "ingest-1m", "promote-1m", "rollback-1m"} <= names


def test_one_set_of_deployments_per_data_set_with_its_own_defaults(tmp_path):
    """A 1h user's forms default to 1h; with two data sets each has its own set."""
    import numpy as np
    import pandas as pd

    from ml_core.config import QualityConfig
    from ml_core.data.ingest import ingest_frame
    from ml_core.data.warehouse import Warehouse

    wh = Warehouse(tmp_path / "warehouse.duckdb")
    for tf, freq in (("1h", "1h"), ("1d", "1D")):
        close = 100.0 + np.arange(10)
        ingest_frame(
            wh,
            pd.DataFrame(
                {
                    "symbol": "BTC/USDT",
                    "timeframe": tf,
                    "ts": pd.date_range("2025-01-01", periods=10, freq=freq),
                    "open": close,
                    "high": close + 1,
                    "low": close - 1,
                    "close": close,
                    "volume": 1.0,
                }
            ),
            QualityConfig(),
            source=tf,
            now=pd.Timestamp("2025-06-01"),
        )
    cfg = load_config(None, home=tmp_path)
    deps = build_deployments(cfg)
    by_tf = {}
    for d in deps:
        by_tf.setdefault(d.parameters["params"]["timeframe"], []).append(d.name)
    assert sorted(by_tf) == ["1d", "1h"]
    assert "daily-predict-1h" in by_tf["1h"] and "daily-predict-1d" in by_tf["1d"]
    assert deps[-1].name == "rollback-1d"  # `coincast ui` waits for the last one
    only = build_deployments(cfg, timeframes=["1h"])
    assert {d.parameters["params"]["timeframe"] for d in only} == {"1h"}
    with pytest.raises(ConfigError, match="Unknown timeframe '7m'"):
        build_deployments(cfg, timeframes=["7m"])


def test_default_schedules_are_after_the_daily_close_in_utc():
    d = DeploymentsConfig()
    assert (d.weekly_retrain_cron, d.daily_predict_cron, d.daily_monitor_cron) == (
        "0 3 * * 1",
        "10 0 * * *",
        "30 0 * * *",
    )
    assert (d.timezone, d.host) == ("UTC", "127.0.0.1")


def test_bad_cron_names_the_fields(tmp_path):
    with pytest.raises(ConfigError, match="must have 5 fields"):
        load_config(None, home=tmp_path, deployments={"daily_predict_cron": "10 0 * *"})


def test_serve_without_a_server_says_how_to_get_one(tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(ConfigError, match="PREFECT_API_URL is not set.*coincast ui"),
    ):
        serve(load_config(None, home=tmp_path))


def test_rollback_is_registered_last(tmp_path):
    """`coincast ui` waits for the last deployment `serve` registers: keep it rollback."""
    from deployments.servers import LAST_REGISTERED

    cfg = load_config(None, home=tmp_path)
    specs = deployment_specs(cfg)
    assert f"rollback/{specs[-1].name}" == LAST_REGISTERED
    assert build_deployments(cfg, timeframes=["1h", "1d"])[-1].name == "rollback-1d"
