"""End to end: real candles -> ingest -> retrain flow twice -> champion -> pyfunc.

Runs the real Prefect flow (on the session's test server), a real DuckDB file,
Great Expectations, LightGBM and an MLflow sqlite registry in a temp folder.
"""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml_core.config import load_config
from ml_core.data.ingest import ingest_paths
from ml_core.data.warehouse import Warehouse
from ml_core.registry.promotion import read_audit
from ml_core.registry.store import RegistryStore

pytestmark = pytest.mark.slow

SYMBOLS = ["BTC/USDT:USDT", "DOGE/USDT:USDT", "SOL/USDT:USDT"]
N_BARS = 8 * 1440


@pytest.fixture(scope="module")
def small_home(tmp_path_factory, sample_1m):
    """A COINCAST_HOME with a config for a quick but real retrain on 3 symbols x 8 days."""
    home = tmp_path_factory.mktemp("home")
    subset = sample_1m[sample_1m["symbol"].isin(SYMBOLS)].groupby("symbol").head(N_BARS + 1440)
    data = home / "candles_1m.parquet"
    subset.groupby("symbol").head(N_BARS).to_parquet(data, index=False)
    subset.to_parquet(home / "candles_1m_next_day.parquet", index=False)  # one more day
    cfg_path = home / "config.json"
    cfg_path.write_text(
        json.dumps(
            {
                "home": str(home),
                "labels": {"horizons": {"1m": [15, 60]}},
                # 8 days of 3 symbols is too little to promise beating the naive baselines;
                # this test is about the mechanics (the gate has its own unit tests).
                "registry": {"require_beat_baselines": False},
                "models": {
                    "lightgbm_params": {
                        "n_estimators": 80,
                        "learning_rate": 0.05,
                        "num_leaves": 15,
                        "min_child_samples": 100,
                    }
                },
            }
        )
    )
    return home, cfg_path, data


def test_retrain_twice_promotes_then_decides_and_pyfunc_matches(prefect_harness, small_home):
    from flows.params import RetrainParams
    from flows.retrain import retrain_flow

    home, cfg_path, data = small_home
    params = RetrainParams(home=str(home), config_path=str(cfg_path), ingest_paths=[str(data)])
    first = retrain_flow(params)
    cfg = load_config(cfg_path)
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    champion = store.get_alias("champion")
    assert first["decision"]["promote"], first["decision"]["reason"]
    assert champion is not None and champion.version == first["decision"]["challenger_version"]
    assert (home / "reports" / cfg.model_name / "latest.html").exists()

    assert first["kind"] == "first"
    from mlflow.tracking import MlflowClient

    card = MlflowClient(cfg.tracking_uri).get_model_version(cfg.model_name, champion.version)
    assert card.description.startswith(f"**{cfg.model_name}**: `")  # the model card
    assert "**Decision (first):** promoted" in card.description
    assert "| lightgbm" in card.description and "**Data:** train 2025-" in card.description

    same = retrain_flow(params)  # same data: the champion's recipe has nothing new to learn
    assert same["kind"] == "no_new_data" and not same["decision"]["promote"]
    assert "no new data" in same["decision"]["reason"]
    assert len(store.list_versions()) == 1  # nothing registered, nothing moved
    # the ingest of the same file the second time changed nothing
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        n = con.execute("SELECT count(*) FROM candles").fetchone()[0]
    assert n == len(pd.read_parquet(data))

    next_day = home / "candles_1m_next_day.parquet"
    second = retrain_flow(params.model_copy(update={"ingest_paths": [str(next_day)]}))
    audit = read_audit(Warehouse(cfg.warehouse_path), cfg.model_name)
    assert len(audit) == 3
    assert list(audit["action"])[1:] == ["keep", "promote"]  # newest first
    assert set(audit["action"]) <= {"promote", "reject", "keep"}
    assert second["kind"] in {"refresh", "replace", "keep"}, second["decision"]["reason"]
    assert second["decision"]["champion_before"] == champion.version
    assert "champion" in second["decision"]["reason"]
    assert len(store.list_versions()) == 2
    _assert_run_names_say_what_ran()

    # the registered pyfunc predicts exactly what the in-process pipeline predicts
    candles = Warehouse(cfg.warehouse_path).read_candles(timeframe="1m")
    recent = candles.groupby("symbol").tail(600).drop(columns="timeframe").reset_index(drop=True)
    pipe = store.load_pipeline("champion")
    # the HMM regime model travels inside the registered pipeline, fit on training rows
    assert pipe.regime_model is not None and pipe.feature_set.endswith("+hmm3")
    assert {"regime_p_bull", "regime_p_bear"} <= set(pipe.feature_columns)
    expected = pipe.predict(recent)
    got = pd.DataFrame(store.load_pyfunc("champion").predict(recent))
    assert len(expected) > 0
    np.testing.assert_array_equal(got["p_up"].to_numpy(), expected["p_up"].to_numpy())
    assert list(got["symbol"]) == list(expected["symbol"])
    latest = store.load_pyfunc("champion").predict(recent, params={"latest_only": True})
    assert len(latest) == len(SYMBOLS) * 2


def _assert_run_names_say_what_ran() -> None:
    """In the Prefect UI's run list: retrain-<date>-promoted / -kept, tagged the same; the
    sub-flows named by the data set the retrain resolved (train-1m-<date>)."""
    import re

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = {
            name: client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
                sort=FlowRunSort.START_TIME_DESC,  # the sync client sends null otherwise
                limit=200,
            )
            for name in ("retrain", "train")
        }
    outcomes = {}
    for run in runs["retrain"]:
        found = re.fullmatch(r"retrain(-[0-9a-z]+)?-\d{4}-\d{2}-\d{2}-(promoted|kept)", run.name)
        assert found, run.name
        assert found.group(2) in run.tags
        outcomes[found.group(2)] = outcomes.get(found.group(2), 0) + 1
    assert outcomes.get("promoted", 0) >= 1 and outcomes.get("kept", 0) >= 1, outcomes
    assert any(re.fullmatch(r"train-1m-\d{4}-\d{2}-\d{2}", r.name) for r in runs["train"])


def test_quarantined_file_changes_nothing_downstream(small_home, tmp_path):
    home, cfg_path, data = small_home
    cfg = load_config(cfg_path)
    wh = Warehouse(cfg.warehouse_path)
    ingest_paths(wh, [data], cfg.quality)  # idempotent: a no-op after the retrain test
    before = wh.table_counts()
    bad = pd.read_parquet(data).head(500).copy()
    bad.loc[10, "high"] = bad.loc[10, "low"] * 0.5  # high below low: critical
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path, index=False)
    from ml_core.errors import QualityGateError

    with pytest.raises(QualityGateError, match="high"):
        ingest_paths(wh, [path], cfg.quality)
    after = wh.table_counts()
    for table in ("candles", "features_v1", "promotions"):
        assert after.get(table) == before.get(table), table
    assert after["quarantine"] == before.get("quarantine", 0) + 1


def test_cli_predict_status_and_features_after_retrain(small_home, tmp_path):
    """What a user runs next: predict (table and JSON), status, feature export."""
    from typer.testing import CliRunner

    from coincast_cli import app

    home, cfg_path, _ = small_home
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "--config", str(cfg_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output.strip().splitlines()[-1])
    assert {(r["symbol"], r["horizon"]) for r in rows} == {
        (s, h) for s in SYMBOLS for h in (15, 60)
    }
    assert all(0.0 <= r["p_up"] <= 1.0 for r in rows)
    result = runner.invoke(app, ["predict", "--config", str(cfg_path), "--symbol", SYMBOLS[1]])
    assert result.exit_code == 0 and SYMBOLS[1] in result.output and "h=60" in result.output

    result = runner.invoke(app, ["status", "--config", str(cfg_path)])
    assert result.exit_code == 0
    assert "champion" in result.output and "Last decisions" in result.output
    assert "None" not in result.output and "nan" not in result.output  # no version: "-"

    result = runner.invoke(app, ["status", "--config", str(cfg_path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)  # strict JSON: nothing else on stdout, no NaN
    champion = next(r for r in info["aliases"] if r["alias"] == "champion")
    assert champion["version"] and info["decisions"][0]["action"] in {"promote", "reject"}
    assert info["decisions"][0]["reason"]  # the whole reason, not a table cell

    out = tmp_path / "btc.parquet"
    result = runner.invoke(
        app, ["features", "--config", str(cfg_path), "--symbol", SYMBOLS[0], "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert len(frame) == N_BARS + 1440 and {"up_15", "ret_60", "t1_60"} <= set(frame.columns)
    assert frame["up_60"].tail(60).isna().all()  # labels at the end of the series are null


def test_cli_rollback_by_hand_is_audited(small_home):
    """`coincast rollback`: no previous -> clear error; --to VERSION moves and audits."""
    from typer.testing import CliRunner

    from coincast_cli import app

    home, cfg_path, data = small_home
    cfg = load_config(cfg_path)
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    if not store.exists():  # run alone: make the two versions the retrain test makes
        from flows.params import RetrainParams
        from flows.retrain import retrain_flow

        params = RetrainParams(home=str(home), config_path=str(cfg_path), ingest_paths=[str(data)])
        retrain_flow(params)
        next_day = str(home / "candles_1m_next_day.parquet")
        retrain_flow(params.model_copy(update={"ingest_paths": [next_day]}))
    champion = store.get_alias("champion").version
    other = next(v.version for v in store.list_versions() if v.version != champion)
    runner = CliRunner()
    if store.get_alias("previous") is None:
        result = runner.invoke(app, ["rollback", "--config", str(cfg_path)])
        assert result.exit_code == 1 and "coincast rollback --to VERSION" in result.output
    result = runner.invoke(
        app, ["rollback", "--config", str(cfg_path), "--to", other, "--reason", "live AUC fell"]
    )
    assert result.exit_code == 0, result.output
    assert store.get_alias("champion").version == other
    audit = read_audit(Warehouse(cfg.warehouse_path), cfg.model_name)
    last = audit.iloc[0]
    assert last["action"] == "rollback" and last["reason"] == "live AUC fell"
    assert str(last["champion_before"]) == champion and str(last["champion_after"]) == other
