"""The warm scoring service over a real registry (sqlite MLflow) and a real DuckDB warehouse.

Two tiny pipelines are registered (v1 logistic, v2 logistic + HMM regimes,
v2 champion). The routes are exercised in process through FastAPI's test
client, and once as a real `coincast serve-model` process on 127.0.0.1 that
must notice an alias move while it runs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ml_core.config import CoincastConfig
from ml_core.data.warehouse import Warehouse
from ml_core.registry.store import RegistryStore
from ml_core.service import ScoringService, _records, running_service, state_file
from ml_core.service_app import create_app
from tests.fitted_registry import fit_versions, store_candles

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ["BTC/USDT:USDT", "DOGE/USDT:USDT"]
HORIZONS = [15, 60]


@pytest.fixture(scope="module")
def served_home(tmp_path_factory, sample_1m):
    home = tmp_path_factory.mktemp("serve") / "home"
    cfg = CoincastConfig(home=home, labels={"horizons": {"1m": HORIZONS}})
    subset = sample_1m[sample_1m["symbol"].isin(SYMBOLS)].groupby("symbol").head(2 * 1440)
    store_candles(cfg, subset)
    subset = subset.assign(timeframe="1m", ts=lambda f: f["ts"].dt.tz_localize(None))
    fit_versions(subset.reset_index(drop=True), cfg, horizons=HORIZONS, train_bars=1440)
    return cfg


@pytest.fixture()
def client(served_home):
    RegistryStore(served_home.tracking_uri, served_home.model_name).set_alias("champion", "2")
    service = ScoringService(served_home, poll_s=3600)
    service.refresh()
    return TestClient(create_app(service)), service


def _latest_candles(cfg: CoincastConfig, n: int) -> pd.DataFrame:
    with Warehouse(cfg.warehouse_path).connect(read_only=True) as con:
        return con.execute(
            """SELECT symbol, ts, open, high, low, close, volume FROM (
                 SELECT *, row_number() OVER (PARTITION BY symbol ORDER BY ts DESC) AS rn
                 FROM candles) WHERE rn <= ? ORDER BY symbol, ts""",
            [n],
        ).df()


def _body(candles: pd.DataFrame) -> dict:
    out = candles.assign(ts=candles["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return {"candles": out.to_dict(orient="records")}


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"reply holds bare {name}, which strict JSON parsers reject")

    return json.loads(text, parse_constant=refuse)


def test_service_answers_equal_the_pyfunc_on_the_same_candles(client, served_home):
    http, service = client
    store = RegistryStore(served_home.tracking_uri, served_home.model_name)
    lookback = service.served().lookback
    candles = _latest_candles(served_home, lookback + 5)
    posted = http.post("/predict", json=_body(candles))
    assert posted.status_code == 200, posted.text
    reply = _strict(posted.text)
    assert reply["version"] == "2" and reply["unscored"] == []
    got = pd.DataFrame(reply["predictions"])

    expected = store.load_pyfunc("2").predict(candles, params={"latest_only": True})
    assert sorted(got["symbol"].unique()) == SYMBOLS
    assert len(got) == len(expected) == len(SYMBOLS) * len(HORIZONS)
    merged = got.merge(expected, on=["symbol", "horizon"], suffixes=("", "_pyfunc"))
    assert (pd.to_datetime(merged["ts"]).dt.tz_localize(None) == merged["ts_pyfunc"]).all()
    np.testing.assert_allclose(merged["p_up"], merged["p_up_pyfunc"], rtol=0, atol=1e-12)
    # what both serve is the calibrated P(up): the validation-fitted calibrator of each
    # horizon applied to the model's raw probability
    import copy

    pipe = store.load_pipeline("2")
    assert set(pipe.calibrators) == set(HORIZONS)
    bare = copy.copy(pipe)
    bare.calibrators = {}
    raw = bare.predict(candles, latest_only=True)
    merged = merged.merge(raw[["symbol", "horizon", "p_up"]].rename(columns={"p_up": "raw"}))
    for h, rows in merged.groupby("horizon"):
        want = pipe.calibrators[h](rows["raw"].to_numpy())
        np.testing.assert_allclose(rows["p_up"], want, rtol=0, atol=1e-12)
        # ... and its conformal direction set (MAPIE, fitted on validation)
        assert h in pipe.conformal
        assert list(rows["p_set"]) == list(pipe.direction_sets(h, want))
        assert set(rows["p_set"]) <= {"up", "down", "both", "none"}
        if pipe.calibrators[h].method != "none":
            assert not np.allclose(rows["p_up"], rows["raw"])
    assert set(got["regime"]) <= {"Bear", "Sideways", "Bull"} and got["regime"].notna().all()

    # the same candles read from the warehouse give the same answer
    one = http.get("/predict/" + SYMBOLS[0].replace("/", "-", 1))
    assert one.status_code == 200, one.text
    from_warehouse = pd.DataFrame(_strict(one.text)["predictions"])
    pd.testing.assert_frame_equal(
        from_warehouse, got[got["symbol"] == SYMBOLS[0]].reset_index(drop=True)
    )
    every = _strict(http.get("/predict").text)
    assert pd.DataFrame(every["predictions"]).equals(got)


def test_new_candles_give_a_new_answer_and_a_repeat_is_served_again(client, served_home):
    http, service = client
    candles = _latest_candles(served_home, service.served().lookback + 5)
    first = _strict(http.post("/predict", json=_body(candles)).text)["predictions"]
    again = _strict(http.post("/predict", json=_body(candles)).text)["predictions"]
    assert again == first
    # a new bar that closes far higher moves the answer and its timestamp
    last = candles.groupby("symbol").tail(1).copy()
    last["ts"] += pd.Timedelta(minutes=1)
    close = last["close"].to_numpy()
    last = last.assign(open=close, low=close, high=close * 1.05, close=close * 1.05)
    moved = _strict(http.post("/predict", json=_body(pd.concat([candles, last]))).text)
    new = pd.DataFrame(moved["predictions"])
    assert (pd.to_datetime(new["ts"]) > pd.to_datetime(pd.DataFrame(first)["ts"])).all()
    assert not np.allclose(new["p_up"], pd.DataFrame(first)["p_up"])


def _candle(**change: object) -> dict:
    bar = {"symbol": "BTC/USDT:USDT", "ts": "2024-01-01T00:00:00Z", "open": 10.0}
    bar.update({"high": 11.0, "low": 9.0, "close": 10.5, "volume": 3.0})
    bar.update(change)
    return bar


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ("not json", 400, "not JSON"),
        ({"rows": []}, 422, '{"candles"'),
        ({"candles": []}, 422, "no candles"),
        ({"candles": [{k: v for k, v in _candle().items() if k != "volume"}]}, 422, "volume"),
        ({"candles": [_candle(high=8.0)]}, 422, "not valid OHLCV"),
        ({"candles": [_candle(close=float("inf"))]}, 422, "finite"),
        ({"candles": [_candle(open="ten")]}, 422, "not a number"),
        ({"candles": [_candle(ts="yesterday")]}, 422, "'yesterday'"),
        ({"candles": [_candle(ts="2024-01-01T00:00:30Z")]}, 422, "1m grid"),
        ({"candles": [_candle(), _candle()]}, 422, "duplicate"),
        ({"candles": [_candle()]}, 422, "Too few candles"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_what_is_wrong(client, body, status, says):
    http, _ = client
    if isinstance(body, str):
        reply = http.post("/predict", content=body)
    else:  # inf is not JSON: send it the way a careless client would
        reply = http.post("/predict", content=json.dumps(body))
    assert reply.status_code == status, reply.text
    assert says in reply.json()["detail"]


def test_an_unknown_symbol_is_404_and_no_champion_is_503(client, served_home, tmp_path):
    http, _ = client
    reply = http.get("/predict/NOPE-USDT")
    assert reply.status_code == 404 and "NOPE/USDT" in reply.json()["detail"]

    empty = CoincastConfig(home=tmp_path / "empty")
    service = ScoringService(empty)
    service.refresh()
    bare = TestClient(create_app(service))
    assert bare.get("/health").json()["status"] == "no_model"
    reply = bare.get("/predict/BTC-USDT")
    assert reply.status_code == 503 and "coincast retrain" in reply.json()["detail"]


def test_a_version_that_cannot_be_loaded_is_not_swapped_in(client, served_home):
    from urllib.parse import urlparse

    from mlflow import MlflowClient

    http, service = client
    store = RegistryStore(served_home.tracking_uri, served_home.model_name)
    source = store.get_version("1").source  # models:/m-<id>
    logged = MlflowClient(tracking_uri=served_home.tracking_uri).get_logged_model(
        source.rsplit("/", 1)[-1]
    )
    pickle = next(Path(urlparse(logged.artifact_location).path).rglob("pipeline*"))
    original = pickle.read_bytes()
    try:
        pickle.write_bytes(original + b"tampered")
        store.set_alias("champion", "1")
        assert service.refresh() is False
        health = http.get("/health").json()
        assert health["status"] == "degraded" and health["version"] == "2"
        assert "changed since they were registered" in health["error"]
        assert http.get("/predict").json()["version"] == "2"  # still the loaded version
    finally:
        pickle.write_bytes(original)
        store.set_alias("champion", "2")
    assert service.refresh() is False and service.health()["status"] == "ok"


def test_a_horizon_without_edge_is_null_not_a_number():
    preds = pd.DataFrame(
        {
            "symbol": ["A", "A"],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-01"]),
            "horizon": [1, 4],
            "p_up": [0.6, 0.7],
            "uncertainty": [np.nan, 0.1],
            "exp_ret": [0.01, 0.02],
            "edge": [True, False],
        }
    )
    first, second = _records(preds)
    assert first["p_up"] == 0.6 and first["uncertainty"] is None and first["exp_ret"] == 0.01
    assert second["p_up"] is None and second["exp_ret"] is None and second["edge"] is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict | None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return json.loads(reply.read())
    except OSError:
        return None


@pytest.mark.slow
def test_a_running_service_follows_the_alias_and_serves_the_predict_command(served_home):
    store = RegistryStore(served_home.tracking_uri, served_home.model_name)
    store.set_alias("champion", "2")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cli = [sys.executable, "-m", "coincast_cli"]
    common = ["--home", str(served_home.home), "--timeframe", "1m"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [*cli, "serve-model", *common, "--port", str(port), "--poll-seconds", "0.5"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while (health := _get(url + "/health")) is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.3)
        assert health is not None and health["version"] == "2", health
        assert running_service(served_home) == url

        # `coincast predict` on this home answers through the service
        out = subprocess.run(
            [*cli, "predict", *common, "--symbol", SYMBOLS[0]],
            cwd=ROOT,
            env={**env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert f"served at {url}" in " ".join(out.stdout.split()) and "v2" in out.stdout
        shown = subprocess.run(
            [*cli, "status", "--home", str(served_home.home)],
            cwd=ROOT,
            env={**env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert f"Scoring service: {served_home.model_name}@champion at {url}" in shown.stdout

        store.set_alias("champion", "1")  # a rollback, as `coincast rollback` makes it
        deadline = time.monotonic() + 30
        while (reply := _get(url + "/predict")) and reply["version"] != "1":
            assert time.monotonic() < deadline, "the service never picked up the alias move"
            time.sleep(0.2)
        assert reply is not None and reply["version"] == "1"
        assert all(r["regime"] is None for r in reply["predictions"])  # v1 has no regimes
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        store.set_alias("champion", "2")
    assert not state_file(served_home).exists()
