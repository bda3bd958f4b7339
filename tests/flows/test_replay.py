"""`coincast replay` end to end: 3 weekly cycles of the real flows on real 1h candles.

Three homes (coincast, latest, frozen), each with a real DuckDB warehouse, an
MLflow sqlite registry and the promotions audit, run on the session's Prefect
test server. The config is the fast one of the other flow tests (logistic
only, no regimes, no triple barrier, a small CPCV), and the daily schedules
are thinned to Friday scoring and one Friday monitor so the file stays
within a few minutes; the weekly retrain keeps the deployment's cron.
"""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from ml_core.config import load_config
from ml_core.data.warehouse import Warehouse
from ml_core.replay.clock import ClockViolation, replay_schedule, scoring_windows

pytestmark = pytest.mark.slow

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
START = "2024-02-26"  # a Monday: retrains on 02-26, 03-04 and 03-11 at 03:00
N_WEEKS = 3
PREDICT_CRON = "10 0 * * 5"  # Fridays: each scores the week's closed bars
MONITOR_CRON = "30 0 8 3 *"  # the Friday of week 2
HORIZONS = [1, 4]
BAR = pd.Timedelta(hours=1)
FAST = {
    "labels": {"horizons": {"1h": HORIZONS}, "triple_barrier": {"enabled": False}},
    "models": {"candidates": ["logistic"], "regressors": []},
    "regime": {"enabled": False},
    "monitor": {"initial_bars": 200},
    # 8 weeks of 3 symbols cannot promise skill over the naive baselines; the
    # replay's mechanics are under test here (the gate has its own tests)
    "registry": {
        "require_beat_baselines": False,
        "gate": {"cpcv_max_train_rows": 1000, "n_boot": 200, "cpcv_horizons": [1]},
    },
}


@pytest.fixture(scope="module")
def replayed(prefect_harness, tmp_path_factory):
    """Run the replay once (module scope) with a spy on every clock step."""
    import flows.replay as replay_module
    from flows.replay import ReplayParams, replay_flow

    root = tmp_path_factory.mktemp("replay")
    sample = pd.read_parquet("data/sample_1h.parquet")
    sample = sample[sample["symbol"].isin(SYMBOLS)]
    sample = sample[sample["ts"] < "2024-03-19"]  # 8 weeks of history before START
    data = root / "candles_1h.parquet"
    sample.to_parquet(data, index=False)
    config = root / "fast.json"
    config.write_text(json.dumps(FAST))

    seen: list[dict] = []
    original = replay_module._run_step

    def spy(step, home, plan, record):
        before = _latest(home.cfg.warehouse_path, "candles")
        original(step, home, plan, record)
        seen.append(
            {
                "policy": home.policy,
                "kind": step.kind,
                "at": step.at,
                "candle_before": before,
                "candle_after": _latest(home.cfg.warehouse_path, "candles"),
                "prediction_after": _latest(home.cfg.warehouse_path, "predictions"),
            }
        )

    mp = pytest.MonkeyPatch()
    mp.setattr(replay_module, "_run_step", spy)
    try:
        params = ReplayParams(
            data=str(data),
            start=START,
            weeks=N_WEEKS,
            out_dir=str(root / "out"),
            config_path=str(config),
            daily_predict_cron=PREDICT_CRON,
            daily_monitor_cron=MONITOR_CRON,
        )
        summary = replay_flow(params)
    finally:
        mp.undo()
    return summary, params, pd.DataFrame(seen), sample


def _latest(path, table: str):
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f"SELECT max(ts) FROM {table}").fetchone()[0]


def _audit(home) -> pd.DataFrame:
    cfg = load_config(home / "config.json")
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        return con.execute(
            "SELECT * FROM promotions WHERE model_name = ? ORDER BY created_at", [cfg.model_name]
        ).df()


def test_one_decision_per_weekly_retrain_and_the_policies_rules(prefect_harness, replayed):
    summary, params, _, _ = replayed
    homes = {p: params.output_dir() / p for p in ("coincast", "latest", "frozen")}
    audits = {p: _audit(h) for p, h in homes.items()}
    retrains = {p: audits[p][audits[p]["action"] != "rollback"] for p in audits}
    assert len(retrains["coincast"]) == N_WEEKS
    assert len(retrains["latest"]) == N_WEEKS
    # `latest` promotes every new challenger, every week
    assert retrains["latest"]["action"].tolist() == ["promote"] * N_WEEKS, retrains["latest"][
        ["action", "reason"]
    ].to_string()
    # `frozen` ran retrains only until its first champion, then never again
    frozen = retrains["frozen"]
    assert frozen["action"].tolist()[-1] == "promote" and len(frozen) == 1
    assert set(audits["frozen"]["action"]) == {"promote"}  # and was never rolled back
    timeline = pd.read_csv(summary["paths"]["timeline_csv"])
    assert (timeline[timeline["policy"] == "frozen"]["event"] == "frozen").sum() == N_WEEKS - 1
    # `coincast` follows its gate: each action is what its decision says
    for row in retrains["coincast"].to_dict(orient="records"):
        kind = json.loads(row["metrics_json"]).get("kind")
        if row["action"] == "promote":
            assert row["champion_after"] == row["challenger_version"]
            assert kind in {"first", "refresh", "replace"}, kind
        elif row["action"] == "reject":
            assert row["champion_after"] == row["champion_before"]
        else:
            assert row["action"] == "keep" and row["challenger_version"] is None
    first = retrains["coincast"].iloc[0]
    assert (
        pd.isna(first["champion_before"]) and json.loads(first["metrics_json"])["kind"] == "first"
    )
    events = timeline[(timeline["policy"] == "coincast") & (timeline["step"] == "retrain")]
    assert len(events) == N_WEEKS


def test_every_bar_is_served_once_by_each_champion(prefect_harness, replayed):
    summary, params, _, sample = replayed
    served = pd.read_parquet(summary["paths"]["served"])
    key = ["symbol", "ts", "horizon"]
    steps = replay_schedule(
        start=START,
        end=summary["end"],
        retrain_cron="0 3 * * 1",
        predict_cron=PREDICT_CRON,
        monitor_cron=MONITOR_CRON,
    )
    windows = scoring_windows(steps, predict_cron=PREDICT_CRON)
    candles = sample.assign(ts=sample["ts"].dt.tz_localize(None).astype("datetime64[us]"))
    close = candles["ts"] + BAR
    in_window = pd.Series(False, index=candles.index)
    for after, at in windows.values():
        in_window |= (close > after) & (close <= at)
    expected = {
        (s, t, h)
        for s, t in zip(candles["symbol"][in_window], candles["ts"][in_window], strict=True)
        for h in HORIZONS
    }
    assert len(expected) > 1000
    for policy in ("coincast", "latest", "frozen"):
        mine = served[served["policy"] == policy]
        assert not mine.duplicated(key).any(), policy
        got = set(
            zip(mine["symbol"], mine["ts"].astype("datetime64[us]"), mine["horizon"], strict=True)
        )
        assert got == expected, (policy, len(got ^ expected))
        assert (mine["ts"] + BAR <= mine["served_at"]).all()  # served after the bar closed
        assert summary["coverage"][policy].endswith(
            "0 duplicates, 0 missing, 0 outside the windows"
        )
    # the served rows are the champion's: the timeline's champion at each scoring time
    latest = served[served["policy"] == "latest"]
    assert latest.groupby("served_at")["model_version"].nunique().max() == 1
    assert latest["model_version"].nunique() == N_WEEKS  # a new champion each week


def test_no_step_saw_a_bar_that_had_not_closed(prefect_harness, replayed):
    summary, params, seen, sample = replayed
    assert set(seen["kind"]) == {"retrain", "predict", "monitor"}
    assert len(seen) == 3 * summary["n_steps"]
    assert (seen["candle_before"] + BAR <= seen["at"]).all()
    assert (seen["candle_after"] + BAR <= seen["at"]).all()
    preds = seen.dropna(subset=["prediction_after"])
    assert (preds["prediction_after"] + BAR <= preds["at"]).all()
    # and the homes hold exactly the bars closed by the last clock step, nothing later
    last = seen["at"].max()
    closed = int((sample["ts"].dt.tz_localize(None) + BAR <= last).sum())
    for policy in ("coincast", "latest", "frozen"):
        stored = Warehouse(params.output_dir() / policy / "warehouse.duckdb").read_candles()
        assert stored["ts"].max() + BAR <= last and len(stored) == closed, policy


def test_report_outputs(prefect_harness, replayed):
    summary, params, _, _ = replayed
    weekly = pd.read_csv(summary["paths"]["csv"])
    assert set(weekly["policy"]) == {"coincast", "latest", "frozen"}
    assert set(weekly["week"]) == set(range(1, N_WEEKS + 1))
    assert set(weekly["horizon"]) == {0, *HORIZONS}
    scored = weekly[weekly["n"] > 0]
    assert scored["auc"].between(0, 1).all() and scored["brier"].between(0, 1).all()
    assert scored["hit_rate_confident"].between(0, 1).all()
    assert scored["best_baseline"].notna().all()
    html = (params.output_dir() / "replay.html").read_text()
    assert "data:image/png;base64," in html and "Champion timeline" in html
    assert summary["mlflow_run_id"] and summary["tracking_uri"].endswith("coincast/mlflow.db")
    assert set(summary["seconds_by_kind"]) >= {"feed", "retrain", "predict", "monitor", "report"}
    print("replay seconds by step kind:", summary["seconds_by_kind"])


def test_a_home_holding_an_open_bar_fails_the_clock_check(prefect_harness, replayed):
    from tasks.replay import check_home_clock

    _, params, _, _ = replayed
    cfg = load_config(params.output_dir() / "latest" / "config.json")
    latest = _latest(cfg.warehouse_path, "candles")
    with pytest.raises(ClockViolation, match="latest predict: the home holds a candle"):
        check_home_clock.fn(cfg, pd.Timestamp(latest) + BAR / 2, "latest predict")
