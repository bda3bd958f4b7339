"""Predict and monitor flows on real candles, a real DuckDB file and a sqlite MLflow registry.

Two tiny but real ``CandlePipeline`` versions are fitted on the first two days
of three sample symbols and registered (v1 logistic = ``previous``, v2
logistic with an HMM regime model = ``champion``); each test then works on its
own copy of the warehouse holding the remaining candles minus a held-back
last hour.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ml_core.config import CoincastConfig, load_config
from ml_core.data.ingest import ingest_frame
from ml_core.data.warehouse import CANDLE_COLUMNS, Warehouse
from ml_core.registry.promotion import read_audit
from ml_core.registry.store import RegistryStore
from tests.fitted_registry import fit_versions

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ["BTC/USDT:USDT", "DOGE/USDT:USDT", "SOL/USDT:USDT"]
N_BARS = 3 * 1440  # per symbol in the warehouse, the last hour held back
TRAIN_BARS = 2 * 1440
HELD_BACK = 60
HORIZONS = [15, 60]
INITIAL_BARS = 600


@pytest.fixture(scope="module")
def base_home(tmp_path_factory, sample_1m):
    """Registry with two versions + a pristine warehouse (all but the last hour)."""
    root = tmp_path_factory.mktemp("monitor")
    subset = sample_1m[sample_1m["symbol"].isin(SYMBOLS)].groupby("symbol").head(N_BARS)
    subset = subset.assign(timeframe="1m").reset_index(drop=True)
    cfg = CoincastConfig(
        home=root / "base",
        labels={"horizons": {"1m": HORIZONS}},
        registry={
            "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "artifact_location": (root / "mlartifacts").as_uri(),
        },
    )
    last = subset.groupby("symbol").tail(HELD_BACK)
    head = subset.drop(last.index).assign(ts=lambda f: f["ts"].dt.tz_localize(None))
    with Warehouse(cfg.warehouse_path).connect() as con:  # the quality gate has its own tests
        con.register("head_in", head[CANDLE_COLUMNS])
        con.execute("INSERT INTO candles BY NAME SELECT * FROM head_in")
    fit_versions(subset, cfg, horizons=HORIZONS, train_bars=TRAIN_BARS)
    return root, cfg, last


@pytest.fixture()
def home(base_home, tmp_path):
    """A fresh copy of the warehouse and a config file pointing at the shared registry."""
    root, base_cfg, last = base_home
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(base_cfg.warehouse_path, home / "warehouse.duckdb")
    cfg_path = home / "config.json"
    cfg_path.write_text(
        json.dumps(
            {
                "home": str(home),
                "labels": {"horizons": {"1m": HORIZONS}},
                "registry": base_cfg.registry.model_dump(
                    include={"tracking_uri", "artifact_location"}
                ),
                "monitor": {
                    "initial_bars": INITIAL_BARS,
                    "min_outcomes": 200,
                    "consecutive_breaches": 2,
                    "reference_bars": 500,
                    "window_days": 2,
                },
            }
        )
    )
    store = RegistryStore(base_cfg.tracking_uri, base_cfg.model_name)
    store.set_alias("previous", "1")
    store.set_alias("champion", "2")
    return load_config(cfg_path), cfg_path, last


def _predictions(cfg: CoincastConfig) -> pd.DataFrame:
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        return con.execute(
            "SELECT * EXCLUDE (scored_at, flow_run_id) FROM predictions "
            "ORDER BY model_version, symbol, ts, horizon"
        ).df()


def test_predict_is_idempotent_and_scores_only_new_bars(prefect_harness, home):
    from flows.params import PredictParams
    from flows.predict import predict_flow

    cfg, cfg_path, last = home
    lookback = (
        RegistryStore(cfg.tracking_uri, cfg.model_name)
        .get_alias("champion")
        .tags["coincast.lookback_bars"]
    )
    lookback = int(lookback)
    params = PredictParams(config_path=str(cfg_path))
    n_per_run = 2 * len(SYMBOLS) * len(HORIZONS)  # versions x symbols x horizons per bar

    first = predict_flow(params)
    assert first["n_scored"] == n_per_run * INITIAL_BARS
    assert first["n_candles_read"] == len(SYMBOLS) * (INITIAL_BARS + lookback)
    rows = _predictions(cfg)
    assert len(rows) == first["n_scored"]
    assert set(rows["alias"]) == {"champion", "previous"}
    champ = rows[rows["model_version"] == "2"]
    assert champ["regime"].notna().all() and set(champ["regime"]) <= {"Bear", "Sideways", "Bull"}
    assert rows.loc[rows["model_version"] == "1", "regime"].isna().all()  # no regime model
    assert rows["p_up"].between(0, 1).all()

    second = predict_flow(params)  # same candles: nothing new, nothing changed
    assert second["n_scored"] == 0
    assert second["n_candles_read"] == len(SYMBOLS) * (lookback + 1)
    pd.testing.assert_frame_equal(_predictions(cfg), rows)

    ingest_frame(Warehouse(cfg.warehouse_path), last, cfg.quality, source="one-more-hour")
    third = predict_flow(params)
    assert third["n_scored"] == n_per_run * HELD_BACK
    assert third["n_candles_read"] == len(SYMBOLS) * (lookback + 1 + HELD_BACK)
    after = _predictions(cfg)
    assert len(after) == len(rows) + n_per_run * HELD_BACK
    # the bars scored before were not rescored: same rows, same values
    before_keys = after.merge(rows, on=["model_version", "symbol", "ts", "horizon"])
    assert (before_keys["p_up_x"] == before_keys["p_up_y"]).all()
    assert after["ts"].max() == last["ts"].dt.tz_localize(None).max()


def _make_champion_wrong(cfg: CoincastConfig, version: str) -> int:
    """Confidently wrong P(up) for ``version`` on every realized row (against real candles)."""
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        con.execute(
            """UPDATE predictions AS p
               SET p_up = CASE WHEN f.close > c.close THEN 0.02 ELSE 0.98 END
               FROM candles AS c, candles AS f
               WHERE p.model_version = ? AND c.symbol = p.symbol AND c.timeframe = p.timeframe
                 AND c.ts = p.ts AND f.symbol = p.symbol AND f.timeframe = p.timeframe
                 AND f.ts = p.ts + to_seconds(p.horizon * 60)""",
            [version],
        )
        return con.execute(
            "SELECT count(*) FROM predictions WHERE model_version = ? AND p_up IN (0.02, 0.98)",
            [version],
        ).fetchone()[0]


def _with_monitor(cfg_path: Path, **fields) -> Path:
    """Rewrite the home's config file with these ``monitor`` settings."""
    data = json.loads(cfg_path.read_text())
    data["monitor"] = {**data["monitor"], **fields}
    cfg_path.write_text(json.dumps(data))
    return cfg_path


def _detector_rows(cfg: CoincastConfig) -> pd.DataFrame:
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        return con.execute("SELECT * FROM detector_state ORDER BY updated_at").df()


def _monitor_rows(cfg: CoincastConfig) -> pd.DataFrame:
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        return con.execute(
            "SELECT * FROM monitor_metrics WHERE horizon = 0 AND decision IS NOT NULL "
            "ORDER BY evaluated_at"
        ).df()


def test_monitor_rolls_back_after_consecutive_breaches_and_only_once(prefect_harness, home):
    from mlflow.tracking import MlflowClient

    from flows.monitor import monitor_flow
    from flows.params import MonitorParams, PredictParams
    from flows.predict import predict_flow

    cfg, cfg_path, _ = home
    _with_monitor(cfg_path, detector="off", streak_rollback=True)  # the streak rule alone
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    predict_flow(PredictParams(config_path=str(cfg_path)))
    assert _make_champion_wrong(cfg, "2") > 1000
    params = MonitorParams(config_path=str(cfg_path))

    first = monitor_flow(params)  # breach 1 of 2: recorded, no rollback yet
    assert first["breach"] is True and first["rolled_back"] is False
    assert first["n_consecutive"] == 1 and "auc_floor" in first["reason"]
    assert first["detector"] is None and first["n_detector_rows"] == 0
    assert store.get_alias("champion").version == "2"

    second = monitor_flow(params)  # breach 2 of 2: rollback to previous
    assert second["rolled_back"] is True, second["reason"]
    assert second["trigger"] == "streak"
    assert store.get_alias("champion").version == "1"
    assert store.get_alias("previous") is None  # consumed by the rollback
    audit = read_audit(Warehouse(cfg.warehouse_path), cfg.model_name)
    rollbacks = audit[audit["action"] == "rollback"]
    assert len(rollbacks) == 1
    row = rollbacks.iloc[0]
    assert row["actor"] == "monitor" and row["champion_before"] == "2"
    assert row["champion_after"] == "1"
    metrics = json.loads(row["metrics_json"])
    assert metrics["auc"] < 0.05 and metrics["n_outcomes"] >= 200
    tags = store.version_tags("2")
    assert tags["coincast.decision"] == "rollback"
    assert tags["coincast.audit_id"] == row["id"]

    third = monitor_flow(params)  # the new champion has no streak and no previous: no rollback
    assert third["rolled_back"] is False
    assert store.get_alias("champion").version == "1"
    audit = read_audit(Warehouse(cfg.warehouse_path), cfg.model_name)
    assert (audit["action"] == "rollback").sum() == 1

    flags = _monitor_rows(cfg)
    assert list(flags["model_version"]) == ["2", "2", "1"]
    assert list(flags["breach"][:2]) == [True, True]
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        drift = con.execute("SELECT * FROM drift_metrics").df()
    assert drift["evaluation_id"].nunique() == 3
    assert drift["psi"].notna().all() and (drift["psi"] >= 0).all()
    assert drift["n_reference"].min() > 0 and drift["n_live"].min() > 0
    client = MlflowClient(cfg.tracking_uri)
    exp = client.get_experiment_by_name("coincast-monitor")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) >= 3
    rolled = [r for r in runs if r.data.tags.get("coincast.rollback") == "True"]
    assert rolled and rolled[0].data.metrics["champion_auc"] < 0.05


def test_monitor_detector_alarm_rolls_back_on_the_first_run(prefect_harness, home):
    """The change detector sees the broken champion's log-loss excess at once; the streak
    rule would still be waiting (5 breaches needed). Same rollback path, its own numbers."""
    from mlflow.tracking import MlflowClient

    from flows.monitor import monitor_flow
    from flows.params import MonitorParams, PredictParams
    from flows.predict import predict_flow

    cfg, cfg_path, _ = home
    _with_monitor(cfg_path, detector_min_outcomes=50, consecutive_breaches=5)
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    predict_flow(PredictParams(config_path=str(cfg_path)))
    _make_champion_wrong(cfg, "2")
    params = MonitorParams(config_path=str(cfg_path))

    state = monitor_flow(params, return_state=True)
    first = state.result()
    assert first["rolled_back"] is True, first["reason"]
    assert first["trigger"] == "detector" and first["n_consecutive"] == 1
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # the run list shows what happened
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name.startswith("monitor-") and run.name.endswith("-rolled-back")
    assert "rolled-back" in run.tags
    assert first["reason"].startswith(
        "champion v2: Page-Hinkley alarm: cumulative log-loss excess"
    ), first["reason"]
    assert store.get_alias("champion").version == "1"
    det = first["detector"]
    assert det["detector_alarm"] and det["detector_reference"] == "previous v1"
    assert det["detector_n_outcomes"] >= 50 and first["n_detector_rows"] == 1

    audit = read_audit(Warehouse(cfg.warehouse_path), cfg.model_name)
    row = audit[audit["action"] == "rollback"].iloc[0]
    assert row["actor"] == "monitor" and "Page-Hinkley alarm" in row["reason"]
    metrics = json.loads(row["metrics_json"])
    assert metrics["trigger"] == "detector"
    assert metrics["detector_alarm_statistic"] > metrics["detector_threshold"] == 15.0
    assert metrics["detector_alarm_n_outcomes"] == 50  # the first outcome allowed to alarm
    assert metrics["detector_alarm_mean_diff"] > 1.0  # nats lost to v1 per outcome
    assert pd.Timestamp(metrics["detector_alarm_at"]) <= pd.Timestamp(metrics["detector_last_at"])
    assert store.version_tags("2")["coincast.decision"] == "rollback"
    client = MlflowClient(cfg.tracking_uri)
    exp = client.get_experiment_by_name("coincast-monitor")
    rolled = [
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("coincast.rollback") == "True"
    ]
    assert rolled[0].data.tags["coincast.trigger"] == "detector"
    assert rolled[0].data.metrics["detector_statistic"] > 15.0

    states = _detector_rows(cfg)
    assert list(states["model_version"]) == ["2"] and states["alarm_at"].notna().all()

    # the new champion v1 has no previous: a fresh detector against the naive baseline
    second = monitor_flow(params)
    assert second["rolled_back"] is False and store.get_alias("champion").version == "1"
    assert second["detector"]["detector_reference"] == "naive baseline"
    assert second["detector"]["restarted"] == "champion changed (v2 -> v1)"
    before = _detector_rows(cfg)
    assert list(before["model_version"]) == ["2", "1"]
    third = monitor_flow(params)  # the same day again: nothing new fed, nothing written
    assert third["n_detector_rows"] == 0 and third["detector"]["n_new_outcomes"] == 0
    pd.testing.assert_frame_equal(_detector_rows(cfg), before)
    audit = read_audit(Warehouse(cfg.warehouse_path), cfg.model_name)
    assert (audit["action"] == "rollback").sum() == 1


def _cli(*args: str) -> subprocess.CompletedProcess:
    """The installed `coincast` command in its own process, on the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    exe = Path(sys.executable).with_name("coincast")
    return subprocess.run(
        [str(exe), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_cli_score_then_monitor_report_only(prefect_harness, home):
    """`coincast score` then `coincast monitor --no-rollback`: rows stored, champion kept."""
    cfg, cfg_path, _ = home
    result = _cli("score", "--config", str(cfg_path), "--symbol", SYMBOLS[1])
    assert result.returncode == 0, result.stderr[-3000:]
    n = INITIAL_BARS * 2 * len(HORIZONS)  # one symbol, two versions
    assert f"Scored {n:,} rows" in result.stdout and "v2 (champion)" in result.stdout
    assert set(_predictions(cfg)["symbol"]) == {SYMBOLS[1]}
    _make_champion_wrong(cfg, "2")
    result = _cli("monitor", "--config", str(cfg_path), "--no-rollback")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no rollback" in result.stdout and "breached 1 evaluation(s)" in result.stdout
    assert RegistryStore(cfg.tracking_uri, cfg.model_name).get_alias("champion").version == "2"


_CHILD = {
    # The retrain chain's writes: ingest the new hour, then feature builds in a loop
    # (each a write transaction) until predict and monitor are done.
    "writer": """
        from flows.build_features import build_features_flow
        from flows.ingest import ingest_flow
        from flows.params import IngestParams, RunParams
        ingest_flow(IngestParams(config_path=CFG, paths=[HOUR]))
        MARK.joinpath("writer-started").touch()
        modes = []
        while len(modes) < 60 and not all(MARK.joinpath(n).exists() for n in ("predict", "monitor")):
            modes.append(build_features_flow(RunParams(config_path=CFG))["mode"])
        print(json.dumps({"modes": modes}))
    """,
    "predict": """
        wait_for_writer()
        from flows.params import PredictParams
        from flows.predict import predict_flow
        out = predict_flow(PredictParams(config_path=CFG))
        MARK.joinpath("predict").touch()
        print(json.dumps(out, default=str))
    """,
    "monitor": """
        wait_for_writer()
        from flows.monitor import monitor_flow
        from flows.params import MonitorParams
        out = [monitor_flow(MonitorParams(config_path=CFG, allow_rollback=False)) for _ in range(2)]
        MARK.joinpath("monitor").touch()
        print(json.dumps(out[-1], default=str))
    """,
}
_PRELUDE = """
import json, time
from pathlib import Path
CFG, HOUR, MARK = {cfg!r}, {hour!r}, Path({mark!r})

def wait_for_writer():
    deadline = time.monotonic() + 300
    while not MARK.joinpath("writer-started").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
"""


@pytest.mark.slow
def test_predict_and_monitor_complete_while_the_retrain_chain_writes(prefect_harness, home):
    """Three processes on one warehouse: ingest + feature builds (the retrain chain's
    writes), predict and monitor; all finish, nothing is lost."""
    from prefect.settings import PREFECT_API_URL

    cfg, cfg_path, last = home
    hour = cfg.home / "hour.parquet"
    last.to_parquet(hour, index=False)
    mark = cfg.home / "marks"
    mark.mkdir()
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT)}
    procs = {}
    for name, body in _CHILD.items():
        prelude = _PRELUDE.format(cfg=str(cfg_path), hour=str(hour), mark=str(mark))
        code = prelude + textwrap.dedent(body)
        with open(mark / f"{name}.out", "w") as out, open(mark / f"{name}.err", "w") as err:
            procs[name] = subprocess.Popen(
                [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=out, stderr=err
            )
    outputs = {}
    for name, proc in procs.items():
        proc.wait(timeout=400)
        err = (mark / f"{name}.err").read_text()
        assert proc.returncode == 0, f"{name} failed:\n{err[-3000:]}"
        outputs[name] = json.loads((mark / f"{name}.out").read_text().strip().splitlines()[-1])

    predicted = outputs["predict"]
    assert predicted["n_written"] == predicted["n_scored"] > 0
    assert outputs["monitor"]["evaluation_id"]
    modes = outputs["writer"]["modes"]
    assert modes[0] == "full" and len(modes) >= 1  # the writer wrote while the others ran
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        n_pred = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
        n_candles = con.execute("SELECT count(*) FROM candles").fetchone()[0]
        n_features = con.execute("SELECT count(*) FROM features_v1").fetchone()[0]
        n_evals = con.execute(
            "SELECT count(DISTINCT evaluation_id) FROM monitor_metrics"
        ).fetchone()
    assert n_pred == predicted["n_written"]
    assert n_candles == n_features == len(SYMBOLS) * N_BARS
    assert n_evals[0] <= 2  # an evaluation with no realized outcome yet writes no rows
