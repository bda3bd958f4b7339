"""What a policy served and how it scored: served rows, outcomes, weekly metrics, timeline."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ml_core.config import EvaluationConfig
from ml_core.errors import ConfigError
from ml_core.evaluation.baselines import fit_baselines
from ml_core.evaluation.metrics import classification_metrics
from ml_core.replay.clock import ReplayWeek
from ml_core.replay.homes import check_policies, home_config, prepare_home
from ml_core.replay.metrics import confident_hit_rate, weekly_metrics, worse_weeks
from ml_core.replay.report import ReplayReport, policy_summary, write_replay_report
from ml_core.replay.served import realize_outcomes, scoring_coverage, served_rows
from ml_core.replay.timeline import classify_audit_row, frozen_event, step_events

T = pd.Timestamp


def _candles(n: int = 48, symbols=("AAA/USDT", "BBB/USDT"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for s in symbols:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": s,
                    "timeframe": "1h",
                    "ts": pd.date_range("2024-01-01", periods=n, freq="1h"),
                    "close": close,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _written(ts: list[str], alias: str = "champion", version: str = "2") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model_version": version,
            "alias": alias,
            "symbol": "AAA/USDT",
            "ts": [T(t) for t in ts],
            "horizon": 1,
            "p_up": 0.6,
        }
    )


def test_served_rows_keep_the_champion_and_the_window_only():
    written = pd.concat(
        [
            _written(["2024-01-01 22:00", "2024-01-01 23:00", "2024-01-02 00:00"]),
            _written(["2024-01-01 23:00"], alias="previous", version="1"),
        ]
    )
    written.loc[written.index[-1], "p_up"] = np.nan
    out = served_rows(
        written,
        policy="coincast",
        after=T("2024-01-01 23:10"),
        at=T("2024-01-02 00:10"),
        timeframe="1h",
    )
    # 22:00 closes 23:00 (before the window), 23:00 closes 00:00 (in), 00:00 closes 01:00 (open)
    assert out["ts"].tolist() == [T("2024-01-01 23:00")]
    assert out[["policy", "served_at", "model_version"]].iloc[0].tolist() == [
        "coincast",
        T("2024-01-02 00:10"),
        "2",
    ]
    empty = served_rows(
        written.iloc[:0], policy="x", after=None, at=T("2024-01-02"), timeframe="1h"
    )
    assert empty.empty and list(empty.columns)[:2] == ["policy", "served_at"]


def test_realized_outcomes_follow_the_monitor_definition():
    candles = _candles(6, symbols=("AAA/USDT",))
    served = pd.DataFrame(
        {
            "policy": "p",
            "served_at": T("2024-01-02"),
            "model_version": "1",
            "symbol": "AAA/USDT",
            "ts": [T("2024-01-01 00:00"), T("2024-01-01 03:00"), T("2024-01-01 05:00")],
            "horizon": [2, 2, 1],
            "p_up": 0.5,
        }
    )
    out = realize_outcomes(served, candles, "1h")
    c = candles["close"].to_numpy()
    assert out["up"].iloc[0] == float(c[2] > c[0])
    assert out["ret"].iloc[0] == pytest.approx(math.log(c[2] / c[0]))
    assert out["t1"].iloc[1] == T("2024-01-01 05:00")
    assert math.isnan(out["up"].iloc[2]) and pd.isna(out["t1"].iloc[2])  # bar 06:00 not there
    assert "up" not in served.columns  # input unchanged


def test_coverage_counts_duplicates_holes_and_strays():
    candles = _candles(6, symbols=("AAA/USDT",))
    windows = [(T("2024-01-01 01:00"), T("2024-01-01 04:00"))]  # bars opened 01:00..03:00
    served = _written(
        ["2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 02:00", "2024-01-01 05:00"]
    )
    cov = scoring_coverage(
        served, candles, policy="p", windows=windows, horizons=[1], timeframe="1h"
    )
    assert (cov.n_expected, cov.n_served, cov.n_duplicates) == (3, 4, 1)
    assert (cov.n_missing, cov.n_unexpected) == (1, 1)
    assert cov.missing_examples == [("AAA/USDT", "2024-01-01 03:00:00", 1)]
    assert not cov.complete and "1 duplicates" in cov.summary()


def test_confident_hit_rate_takes_both_tails():
    up = [1, 0, 0, 1, 1, 0, 1, 0, 1, 1]
    p = [0.95, 0.02, 0.51, 0.49, 0.5, 0.6, 0.4, 0.55, 0.52, 0.45]
    # most confident: 0.02 (down, right), 0.95 (up, right): share 0.2 -> both hit
    assert confident_hit_rate(up, p, share=0.2) == (1.0, 2)
    # next: 0.6 (up, wrong) and 0.4 (down, wrong)
    assert confident_hit_rate(up, p, share=0.4) == (0.5, 4)
    assert confident_hit_rate([np.nan], [0.7]) == (pytest.approx(float("nan"), nan_ok=True), 0)
    with pytest.raises(ConfigError, match="share=0"):
        confident_hit_rate(up, p, share=0)


def _model_frame(candles: pd.DataFrame, horizon: int) -> pd.DataFrame:
    frame = candles.sort_values(["symbol", "ts"]).copy()
    g = frame.groupby("symbol")["close"]
    frame["logret_1"] = np.log(frame["close"] / g.shift(1))
    frame[f"past_ret_{horizon}"] = np.log(frame["close"] / g.shift(horizon))
    future = g.shift(-horizon)
    frame[f"ret_{horizon}"] = np.log(future / frame["close"])
    frame[f"up_{horizon}"] = np.where(future.isna(), np.nan, (future > frame["close"]) * 1.0)
    frame[f"t1_{horizon}"] = frame.groupby("symbol")["ts"].shift(-horizon)
    return frame.reset_index(drop=True)


def test_weekly_metrics_on_a_hand_made_frame():
    candles = _candles(240)
    frame = _model_frame(candles, 1)
    week = ReplayWeek(1, T("2024-01-06 00:00"), T("2024-01-09 00:00"))
    rows = frame[(frame["ts"] >= week.start) & (frame["ts"] < T("2024-01-08 00:00"))].copy()
    rng = np.random.default_rng(1)
    served = pd.DataFrame(
        {
            "policy": "coincast",
            "served_at": rows["ts"] + pd.Timedelta(hours=1),
            "model_version": "3",
            "symbol": rows["symbol"],
            "ts": rows["ts"],
            "horizon": 1,
            "p_up": np.clip(0.5 + 0.3 * (rows["up_1"] - 0.5) + rng.normal(0, 0.2, len(rows)), 0, 1),
            "up": rows["up_1"],
            "ret": rows["ret_1"],
        }
    )
    table = weekly_metrics(
        served, [week], model_frame=frame, horizons=[1], eval_cfg=EvaluationConfig(), timeframe="1h"
    )
    h1 = table[table["horizon"] == 1].iloc[0]
    expected = classification_metrics(served["up"], served["p_up"])
    assert h1["n"] == len(served) and h1["auc"] == pytest.approx(expected["auc"])
    assert h1["log_loss"] == pytest.approx(expected["log_loss"])
    assert h1["versions"] == "3" and h1["n_confident"] == math.ceil(0.1 * len(served))
    # the baselines were fitted only on labels known at the week's start (bar t+1 closed)
    known = frame[frame["t1_1"] + pd.Timedelta(hours=1) <= week.start]
    fitted = fit_baselines(known, 1)[h1["best_baseline"]]
    base_p = fitted.predict_proba(rows)
    assert h1["baseline_auc"] == pytest.approx(classification_metrics(rows["up_1"], base_p)["auc"])
    assert h1["worse_than_baseline"] == (h1["auc"] < h1["baseline_auc"])
    summary = table[table["horizon"] == 0].iloc[0]
    assert summary["auc"] == pytest.approx(h1["auc"]) and summary["n"] == h1["n"]
    # a policy that served noise is flagged worse
    noise = served.assign(policy="latest", p_up=rng.uniform(0.45, 0.55, len(served)))
    both = weekly_metrics(
        pd.concat([served, noise]),
        [week],
        model_frame=frame,
        horizons=[1],
        eval_cfg=EvaluationConfig(),
        timeframe="1h",
    )
    assert list(dict.fromkeys(both["policy"])) == ["coincast", "latest"]
    assert set(worse_weeks(both)["policy"]) <= {"coincast", "latest"}


def test_weekly_metrics_report_empty_weeks_as_missing():
    candles = _candles(100)
    frame = _model_frame(candles, 1)
    served = pd.DataFrame(
        columns=[
            "policy",
            "served_at",
            "model_version",
            "symbol",
            "ts",
            "horizon",
            "p_up",
            "up",
            "ret",
        ]
    )
    served.loc[0] = [
        "frozen",
        T("2024-01-03 01:00"),
        "1",
        "AAA/USDT",
        T("2024-01-03"),
        1,
        0.6,
        1.0,
        0.01,
    ]
    weeks = [
        ReplayWeek(1, T("2024-01-02"), T("2024-01-03")),
        ReplayWeek(2, T("2024-01-03"), T("2024-01-04")),
    ]
    table = weekly_metrics(
        served, weeks, model_frame=frame, horizons=[1], eval_cfg=EvaluationConfig(), timeframe="1h"
    )
    first = table[(table["week"] == 1) & (table["horizon"] == 0)].iloc[0]
    assert first["n"] == 0 and math.isnan(first["auc"]) and first["worse_than_baseline"] is None


@pytest.mark.parametrize(
    ("row", "kind", "expected"),
    [
        ({"action": "promote", "champion_before": None}, None, ("first", "first")),
        ({"action": "promote", "champion_before": "1"}, "refresh", ("refresh", "refresh")),
        (
            {
                "action": "promote",
                "champion_before": "1",
                "metrics_json": json.dumps({"kind": "replace"}),
            },
            None,
            ("replace", "replace"),
        ),
        ({"action": "promote", "champion_before": "1"}, "latest", ("latest", "latest")),
        ({"action": "reject", "champion_before": "2"}, "keep", ("reject", "replace")),
        (
            {
                "action": "reject",
                "champion_before": "2",
                "reason": "no refresh: worse (tried first: no replace: ...)",
            },
            "keep",
            ("reject", "refresh"),
        ),
        (
            {"action": "reject", "champion_before": None, "reason": "no first champion: ..."},
            "keep",
            ("reject", "first"),
        ),
        ({"action": "reject", "champion_before": None}, None, ("reject", "first")),
        (
            {"action": "keep", "metrics_json": json.dumps({"kind": "no_new_data"})},
            None,
            ("no_new_data", "no_new_data"),
        ),
        ({"action": "keep"}, "keep", ("keep", "keep")),
        ({"action": "rollback", "champion_before": "3"}, "refresh", ("rollback", "rollback")),
    ],
)
def test_audit_rows_become_timeline_events(row, kind, expected):
    assert classify_audit_row(row, kind) == expected


def test_step_events_and_frozen_rows():
    audit = pd.DataFrame(
        [
            {
                "id": "b",
                "created_at": T("2026-01-01 10:00:01"),
                "action": "rollback",
                "champion_before": "3",
                "champion_after": "2",
                "challenger_version": None,
                "reason": "breach",
                "metrics_json": "{}",
            },
            {
                "id": "a",
                "created_at": T("2026-01-01 10:00:00"),
                "action": "promote",
                "champion_before": "2",
                "champion_after": "3",
                "challenger_version": "3",
                "reason": "better",
                "metrics_json": "{}",
            },
        ]
    )
    events = step_events(
        policy="coincast",
        at=T("2024-01-08 03:00"),
        step="retrain",
        audit_rows=audit,
        decision_kind="replace",
    )
    assert events["event"].tolist() == ["replace", "rollback"]  # oldest first
    assert events["champion_after"].tolist() == ["3", "2"]
    frozen = frozen_event(at=T("2024-01-15 03:00"), champion="1")
    assert frozen.iloc[0]["event"] == "frozen" and "v1" in frozen.iloc[0]["reason"]


def test_policy_homes_get_their_own_registry(tmp_path):
    base = {
        "registry": {"tracking_uri": "postgresql://db/mlflow", "min_improvement": 0.01},
        "tuning": {"storage_url": "postgresql://db/optuna"},
        "home": "/elsewhere",
    }
    cfg = home_config(base, policy="latest", home=tmp_path / "latest")
    assert cfg["home"] == str((tmp_path / "latest").resolve())
    assert cfg["registry"] == {
        "tracking_uri": None,
        "artifact_location": None,
        "min_improvement": 0.01,
        "policy": "latest",
    }
    assert cfg["tuning"]["storage_url"] is None and base["registry"]["tracking_uri"]
    assert home_config(base, policy="frozen", home=tmp_path)["registry"]["policy"] == "coincast"
    with pytest.raises(ConfigError, match="choose from"):
        check_policies(["coincast", "greedy"])
    assert check_policies(["latest", "latest", "frozen"]) == ["latest", "frozen"]


def test_a_used_home_is_refused_and_only_replay_homes_are_overwritten(tmp_path):
    home = prepare_home(tmp_path / "coincast")
    (home / "warehouse.duckdb").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        prepare_home(home)
    prepare_home(home, overwrite=True)
    assert not (home / "warehouse.duckdb").exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="refusing to delete"):
        prepare_home(other, overwrite=True)
    assert (other / "notes.txt").exists()


def test_report_files_hold_every_policy(tmp_path):
    weekly = pd.DataFrame(
        [
            {
                "policy": p,
                "week": w,
                "week_start": T("2024-01-01") + pd.Timedelta(weeks=w),
                "week_stop": T("2024-01-08") + pd.Timedelta(weeks=w),
                "horizon": h,
                "n": 100,
                "auc": 0.5 + 0.01 * w,
                "log_loss": 0.69,
                "brier": 0.25,
                "hit_rate_confident": 0.55,
                "n_confident": 10,
                "trading_return": 0.01,
                "bh_return": 0.02,
                "best_baseline": "persistence",
                "baseline_auc": 0.52,
                "baseline_log_loss": 0.69,
                "auc_vs_baseline": 0.01 * w - 0.02,
                "worse_than_baseline": 0.01 * w - 0.02 < 0,
                "versions": "1",
            }
            for p in ("coincast", "frozen")
            for w in (1, 2, 3)
            for h in (0, 1)
        ]
    )
    timeline = frozen_event(at=T("2024-01-15 03:00"), champion="1")
    report = ReplayReport(
        title="Replay test",
        spec={"start": T("2024-01-01")},
        weekly=weekly,
        timeline=timeline,
        policies=["coincast", "frozen"],
    )
    paths = write_replay_report(report, tmp_path)
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and "coincast" in html and "frozen" in html
    assert pd.read_csv(paths["csv"]).shape[0] == len(weekly)
    summary = policy_summary(report).set_index("policy")
    assert summary.loc["coincast", "weeks_worse_than_baseline"] == "1 of 3"
    assert summary.loc["coincast", "total_trading_return"] == pytest.approx(1.01**3 - 1)
