"""ml_core.monitoring: incremental scoring, realized outcomes, drift, the rollback rules.

Real DuckDB warehouses in tmp_path with seeded random-walk candles; the
scorers are small deterministic functions of the candles (no registry needed:
the monitoring library takes loaded models as plain callables).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ml_core.config import EvaluationConfig, MonitorConfig
from ml_core.data.warehouse import CANDLE_COLUMNS, Warehouse
from ml_core.errors import ConfigError, DataContractError
from ml_core.monitoring.detector import PageHinkley
from ml_core.monitoring.drift import feature_drift, psi
from ml_core.monitoring.loss_stream import (
    feed_outcomes,
    read_detector_state,
    read_detector_states,
    write_detector_state,
)
from ml_core.monitoring.monitor import (
    champion_breach_history,
    evaluate_models,
    monitor_rows,
    write_monitor_metrics,
)
from ml_core.monitoring.naive import fit_naive_reference, naive_probabilities
from ml_core.monitoring.predictions import (
    PREDICTION_COLUMNS,
    Scorer,
    alias_by_version,
    read_predictions,
    read_scoring_window,
    score_window,
    scoring_cursors,
    upsert_predictions,
)
from ml_core.monitoring.realized import realized_outcomes, version_metrics
from ml_core.monitoring.rules import (
    ChampionEvidence,
    assess_breach,
    decide_rollback,
    trailing_breaches,
)
from ml_core.monitoring.simulate import StreamSpec, monitor_days, simulate_stream

SYMBOLS = ["AAA/USDT", "BBB/USDT"]
HORIZONS = (1, 3)
LOOKBACK = 5


def make_candles(n_bars: int, start: str = "2025-01-01", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for i, symbol in enumerate(SYMBOLS):
        close = 10.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0, 0.01, n_bars)))
        open_ = np.r_[close[0], close[:-1]]
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "timeframe": "1m",
                    "ts": pd.date_range(start, periods=n_bars, freq="1min").astype("<M8[us]"),
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.001,
                    "low": np.minimum(open_, close) * 0.999,
                    "close": close,
                    "volume": rng.uniform(1, 10, n_bars),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def insert_candles(wh: Warehouse, candles: pd.DataFrame) -> None:
    with wh.connect() as con:
        con.register("c_in", candles[CANDLE_COLUMNS])
        con.execute("INSERT INTO candles BY NAME SELECT * FROM c_in")


def momentum_scorer(version: str, alias: str, *, sign: float = 1.0) -> Scorer:
    """P(up) from the last LOOKBACK-bar return; bars with less history are not scored."""

    def predict(candles: pd.DataFrame) -> pd.DataFrame:
        c = candles.sort_values(["symbol", "ts"])
        mom = np.log(c["close"]).groupby(c["symbol"]).diff(LOOKBACK)
        ok = mom.notna()
        p = 1.0 / (1.0 + np.exp(-sign * 50.0 * mom[ok]))
        return pd.concat(
            [
                pd.DataFrame(
                    {"symbol": c.loc[ok, "symbol"], "ts": c.loc[ok, "ts"], "horizon": h, "p_up": p}
                )
                for h in HORIZONS
            ],
            ignore_index=True,
        )

    return Scorer("m", version, alias, predict, lookback_bars=LOOKBACK)


@pytest.fixture()
def wh(tmp_path) -> Warehouse:
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    insert_candles(warehouse, make_candles(200))
    return warehouse


def run_predict(wh: Warehouse, scorers: list[Scorer], initial_bars: int = 50) -> dict:
    cursors = scoring_cursors(
        wh, model_name="m", timeframe="1m", versions=[s.version for s in scorers]
    )
    window = read_scoring_window(
        wh, timeframe="1m", cursors=cursors, lookback_bars=LOOKBACK, initial_bars=initial_bars
    )
    preds = score_window(window.candles, scorers, cursors=cursors, initial_bars=initial_bars)
    return {"read": window.n_rows, "scored": len(preds), "written": upsert_predictions(wh, preds)}


# ---------------------------------------------------------------- predictions
def test_alias_by_version_prefers_champion_when_a_version_holds_two():
    got = alias_by_version({"challenger": "3", "champion": "3", "previous": "2"})
    assert got == {"3": "champion", "2": "previous"}


def test_first_run_scores_initial_bars_then_only_new_bars(wh):
    scorers = [momentum_scorer("2", "champion"), momentum_scorer("1", "previous")]
    first = run_predict(wh, scorers)
    per_bar = len(SYMBOLS) * len(HORIZONS) * len(scorers)
    assert first == {"read": 2 * (50 + LOOKBACK), "scored": 50 * per_bar, "written": 50 * per_bar}
    stored = read_predictions(wh, model_name="m")
    again = run_predict(wh, scorers)  # nothing new
    assert again == {"read": 2 * (LOOKBACK + 1), "scored": 0, "written": 0}
    pd.testing.assert_frame_equal(read_predictions(wh, model_name="m"), stored)

    insert_candles(wh, make_candles(210).groupby("symbol").tail(10))
    third = run_predict(wh, scorers)
    assert third == {
        "read": 2 * (LOOKBACK + 1 + 10),
        "scored": 10 * per_bar,
        "written": 10 * per_bar,
    }
    assert len(read_predictions(wh, model_name="m")) == 60 * per_bar


def test_upsert_of_the_same_rows_is_idempotent(wh):
    scorer = momentum_scorer("1", "champion")
    cursors = scoring_cursors(wh, model_name="m", timeframe="1m", versions=["1"])
    window = read_scoring_window(
        wh, timeframe="1m", cursors=cursors, lookback_bars=LOOKBACK, initial_bars=30
    )
    preds = score_window(window.candles, [scorer], cursors=cursors, initial_bars=30)
    upsert_predictions(wh, preds)
    upsert_predictions(wh, preds.assign(p_up=0.5))  # same keys: replaced, not added
    stored = read_predictions(wh, model_name="m")
    assert len(stored) == len(preds) and (stored["p_up"] == 0.5).all()


def test_new_shadow_version_starts_with_initial_bars_while_champion_continues(wh):
    run_predict(wh, [momentum_scorer("2", "champion")])
    out = run_predict(wh, [momentum_scorer("2", "champion"), momentum_scorer("3", "challenger")])
    assert out["scored"] == 50 * len(SYMBOLS) * len(HORIZONS)  # only the newcomer scored
    assert set(read_predictions(wh, model_name="m", version="3")["alias"]) == {"challenger"}


def test_scorer_output_without_p_up_is_a_contract_error(wh):
    def bad(candles: pd.DataFrame) -> pd.DataFrame:
        return candles[["symbol", "ts"]].assign(horizon=1, prob=0.5)

    with pytest.raises(DataContractError, match="lacking \\['p_up'\\]"):
        run_predict(wh, [Scorer("m", "1", "champion", bad, lookback_bars=1)])


def test_read_window_rejects_bad_bar_counts(wh):
    cursors = scoring_cursors(wh, model_name="m", timeframe="1m", versions=["1"])
    with pytest.raises(DataContractError, match="initial_bars >= 1"):
        read_scoring_window(wh, timeframe="1m", cursors=cursors, lookback_bars=5, initial_bars=0)


# ---------------------------------------------------------------- realized outcomes
def test_outcomes_match_the_candles_and_skip_bars_not_yet_arrived(wh):
    run_predict(wh, [momentum_scorer("1", "champion")])
    window = realized_outcomes(wh, model_name="m", timeframe="1m", window_days=1)
    out = window.outcomes
    candles = make_candles(200).set_index(["symbol", "ts"])["close"]
    row = out.iloc[7]
    later = candles[(row["symbol"], row["ts"] + pd.Timedelta(minutes=int(row["horizon"])))]
    now = candles[(row["symbol"], row["ts"])]
    assert row["up"] == float(later > now) and row["ret"] == pytest.approx(math.log(later / now))
    # the last h bars of each symbol have no outcome yet
    for h in HORIZONS:
        assert (out["horizon"] == h).sum() == len(SYMBOLS) * (50 - h)
    assert window.window_end == pd.Timestamp("2025-01-01") + pd.Timedelta(minutes=199)


def test_window_keeps_only_recent_outcomes(wh):
    run_predict(wh, [momentum_scorer("1", "champion")])
    recent = realized_outcomes(wh, model_name="m", timeframe="1m", window_days=10 / 1440)
    assert recent.outcomes["t1"].min() > recent.window_end - pd.Timedelta(minutes=10)
    assert len(recent.outcomes) == len(SYMBOLS) * 10 * len(HORIZONS)


def test_version_metrics_perfect_and_inverted_forecasters():
    ts = pd.date_range("2025-01-01", periods=40, freq="1min")
    up = np.tile([1.0, 0.0], 20)
    base = pd.DataFrame({"symbol": "A", "ts": ts, "horizon": 1, "up": up, "ret": (up - 0.5) / 100})
    good = base.assign(model_version="1", p_up=np.where(up == 1, 0.9, 0.1))
    bad = base.assign(model_version="2", p_up=np.where(up == 1, 0.1, 0.9))
    m = version_metrics(pd.concat([good, bad]), eval_cfg=EvaluationConfig(), timeframe="1m")
    summary = m[m["horizon"] == 0].set_index("model_version")
    assert summary.loc["1", "auc"] == 1.0 and summary.loc["2", "auc"] == 0.0
    assert summary.loc["1", "accuracy"] == 1.0 and summary.loc["1", "n_outcomes"] == 40
    assert summary.loc["1", "trading_return"] > 0 > summary.loc["2", "trading_return"]


# ---------------------------------------------------------------- drift
def test_psi_is_zero_on_the_same_sample_and_large_on_a_shift():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, 5000)
    assert psi(ref, ref, bins=10) == pytest.approx(0.0, abs=1e-12)
    assert psi(ref, rng.normal(0, 1, 5000), bins=10) < 0.02
    assert psi(ref, rng.normal(1.5, 1, 5000), bins=10) > 0.25
    with pytest.raises(ConfigError, match="at least 2"):
        psi(ref, ref, bins=1)


def test_feature_drift_flags_only_the_shifted_feature():
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 3000), "b": rng.normal(0, 1, 3000)})
    live = pd.DataFrame({"a": rng.normal(0, 1, 3000), "b": rng.normal(2, 1, 3000)})
    d = feature_drift(ref, live, ["a", "b", "missing"], bins=10, psi_alert=0.25).set_index(
        "feature"
    )
    assert list(d.index) == ["a", "b"]
    assert not d.loc["a", "drifted"] and d.loc["b", "drifted"]
    assert d.loc["b", "ks_pvalue"] < 1e-6 < d.loc["a", "ks_pvalue"]


# ---------------------------------------------------------------- the rule
CFG = MonitorConfig(
    min_outcomes=100,
    auc_floor=0.5,
    consecutive_breaches=2,
    previous_margin=0.01,
    streak_rollback=True,
)


def evidence(auc: float = 0.45, n: int = 500, **kw) -> ChampionEvidence:
    return ChampionEvidence(version="3", auc=auc, n_outcomes=n, previous_version="2", **kw)


@pytest.mark.parametrize(
    ("history", "expected"),
    [([], 0), ([True], 1), ([True, True, False, True], 2), ([None, True], 1), ([False, True], 0)],
)
def test_trailing_breaches(history, expected):
    assert trailing_breaches(history) == expected


def test_too_few_outcomes_decide_nothing():
    d = decide_rollback(evidence(auc=0.1, n=99), past_breaches=[True, True], cfg=CFG)
    assert d.breach is None and not d.rollback and "min_outcomes=100" in d.reason


def test_second_breach_in_a_row_rolls_back_with_numbers():
    first = decide_rollback(evidence(), past_breaches=[], cfg=CFG)
    assert first.breach and not first.rollback and "waiting for 2" in first.reason
    second = decide_rollback(evidence(), past_breaches=[None, True], cfg=CFG)
    assert second.rollback and second.n_consecutive == 2
    assert "0.4500 < auc_floor 0.5000" in second.reason and second.metrics["auc"] == 0.45


def test_healthy_evaluation_breaks_the_streak():
    d = decide_rollback(evidence(auc=0.53), past_breaches=[True], cfg=CFG)
    assert d.breach is False and not d.rollback and d.n_consecutive == 0


def test_champion_trailing_previous_on_the_same_rows_breaches():
    ev = evidence(auc=0.55, previous_auc=0.58, champion_paired_auc=0.55, n_paired=300)
    breach, reasons = assess_breach(ev, CFG)
    assert breach and "trails previous v2" in reasons[0]
    few = evidence(auc=0.55, previous_auc=0.58, champion_paired_auc=0.55, n_paired=50)
    assert assess_breach(few, CFG) == (False, [])
    off = CFG.model_copy(update={"compare_previous": False})
    assert assess_breach(ev, off) == (False, [])


def test_no_rollback_when_disabled_or_without_previous():
    off = CFG.model_copy(update={"enabled": False})
    d = decide_rollback(evidence(), past_breaches=[True], cfg=off)
    assert d.breach and not d.rollback and "disabled" in d.reason
    lone = ChampionEvidence(version="3", auc=0.4, n_outcomes=500)
    d = decide_rollback(lone, past_breaches=[True], cfg=CFG)
    assert not d.rollback and "no previous version" in d.reason


# ---------------------------------------------------------------- one evaluation, stored
def test_breach_streak_lives_in_the_warehouse(wh):
    run_predict(wh, [momentum_scorer("2", "champion", sign=-1.0), momentum_scorer("1", "previous")])
    cfg = MonitorConfig(
        min_outcomes=50, consecutive_breaches=2, window_days=1, streak_rollback=True
    )
    aliases = {"champion": "2", "previous": "1"}

    def evaluate():
        return evaluate_models(
            wh,
            model_name="m",
            timeframe="1m",
            aliases=aliases,
            monitor_cfg=cfg,
            eval_cfg=EvaluationConfig(),
        )

    ev1 = evaluate()
    assert ev1.decision.breach is True and not ev1.decision.rollback
    rows = monitor_rows(ev1, flow_run_id="run-1")
    assert set(rows["model_version"]) == {"1", "2"}
    assert rows["breach"].notna().sum() == 1  # only the champion's summary row holds the flag
    assert write_monitor_metrics(wh, ev1, flow_run_id="run-1") == len(rows)
    assert champion_breach_history(wh, "m", "2") == [True]
    assert champion_breach_history(wh, "m", "1") == []  # streaks are per champion version
    ev2 = evaluate()
    assert ev2.decision.rollback and ev2.decision.n_consecutive == 2


# ---------------------------------------------------------------- the change detector
#: Hourly candles of 30 symbols (a memecoin universe), horizons 1/4/12/24: ~1,000 outcomes
#: a day on the non-overlapping grid; champion AUC ~0.54, previous a little weaker.
STREAM = StreamSpec(n_symbols=30, n_days=84)
FLIP_DAY = 42
#: The flip is rolled back by the daily run at most this many days after it (over 100
#: seeds of this stream: mean 4.7, 95th percentile 12.5, max 16.3 days; see docs/operations.md).
MAX_DAYS_AFTER_FLIP = 14
#: Only the detector decides: today's streak rule (7-day window AUC) is noisy on these
#: streams on its own; docs/operations.md has its numbers.
DETECTOR_ONLY = MonitorConfig(auc_floor=0.0, compare_previous=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_champion_whose_signal_flips_is_rolled_back_within_days_of_the_flip(seed):
    stream = simulate_stream(replace(STREAM, flip_day=FLIP_DAY), seed)
    days = monitor_days(stream, DETECTOR_ONLY)
    last = days[-1]
    assert last.decision.rollback and last.decision.trigger == "detector"
    after = last.day + 1 - FLIP_DAY  # the run after day `last.day` rolls back
    assert 0 < after <= MAX_DAYS_AFTER_FLIP, after
    assert all(not d.decision.rollback for d in days[:-1])
    alarm = last.state.alarm
    assert alarm.at >= stream.flip_at and alarm.mean_diff_since_change > 0
    assert last.decision.reason.startswith("champion v2: Page-Hinkley alarm: cumulative log-loss")
    assert last.decision.metrics["detector_alarm_at"] == alarm.at.isoformat()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_stable_signal_is_never_rolled_back_over_12_weeks(seed):
    days = monitor_days(simulate_stream(STREAM, seed), DETECTOR_ONLY)
    assert len(days) == 84 and not any(d.decision.rollback for d in days)
    final = days[-1].state
    assert final.alarm is None and final.n_outcomes > 84 * 900


def test_daily_feeding_equals_one_pass_over_the_stream():
    stream = simulate_stream(replace(STREAM, n_days=14, flip_day=7), 5)
    days = monitor_days(stream, DETECTOR_ONLY, stop_at_rollback=False)
    det = PageHinkley(
        delta=DETECTOR_ONLY.detector_delta,
        threshold=DETECTOR_ONLY.detector_threshold,
        min_outcomes=DETECTOR_ONLY.detector_min_outcomes,
    )
    one_pass = feed_outcomes(
        det, det.new_state(version="2", reference="previous v1"), stream.paired()
    )
    assert days[-1].state == one_pass


def test_naive_reference_picks_by_the_window_before_and_falls_back_to_a_coin_flip():
    ts = pd.date_range("2025-01-01", periods=400, freq="1h").astype("<M8[us]")
    zigzag = 100 * np.exp(np.cumsum(np.tile([0.01, -0.01], 200)))  # every move reverts
    candles = pd.DataFrame({"symbol": "A", "ts": ts, "close": zigzag})
    naive = fit_naive_reference(
        candles, horizons=[1], before=ts[300], timeframe="1h", reference_bars=200
    )
    spec = naive["1"]
    assert spec["name"] in {"persistence", "momentum_sign"}  # h=1: the same signal
    assert spec["sign_rates"]["1.0"] < 0.1 < 0.9 < spec["sign_rates"]["-1.0"]
    assert spec["n_fit"] + spec["n_select"] == 200 and spec["log_loss"] < 0.2
    rows = pd.DataFrame(
        {
            "horizon": [1, 1, 1],
            "close": [10.0, 10.0, 10.0],
            "close_lag1": [9.0, 11.0, np.nan],
            "close_lag_h": [9.0, 11.0, np.nan],
        }
    )
    p = naive_probabilities(naive, rows)
    assert p[0] == spec["sign_rates"]["1.0"] and p[1] == spec["sign_rates"]["-1.0"]
    assert p[2] == spec["rate"]  # a gap before the bar: the unconditional rate
    few = fit_naive_reference(
        candles, horizons=[1], before=ts[20], timeframe="1h", reference_bars=200
    )
    assert few["1"]["name"] == "coin_flip" and naive_probabilities(few, rows).tolist() == [0.5] * 3


def _stream_warehouse(tmp_path, stream) -> Warehouse:
    wh = Warehouse(tmp_path / "detector.duckdb")
    insert_candles(wh, stream.candles[stream.candles["ts"] < stream.start])
    return wh


def _add_day(wh: Warehouse, stream, day: int) -> None:
    lo = stream.start + pd.Timedelta(days=day)
    hi = lo + pd.Timedelta(days=1)
    c = stream.candles
    insert_candles(wh, c[(c["ts"] >= lo) & (c["ts"] < hi)])
    p = stream.predictions
    p = p[(p["ts"] >= lo) & (p["ts"] < hi)]
    alias = p["model_version"].map({"2": "champion", "1": "previous"})
    rows = p.assign(
        model_name="m",
        alias=alias,
        timeframe="1h",
        exp_ret=np.nan,
        uncertainty=np.nan,
        regime=None,
        scored_at=pd.Timestamp("2025-01-01"),
        flow_run_id=None,
    )
    upsert_predictions(wh, rows[PREDICTION_COLUMNS])


def _detector_row(wh: Warehouse) -> tuple:
    with wh.connect(read_only=True) as con:
        return con.execute("SELECT * FROM detector_state ORDER BY model_version").fetchall()


def test_monitor_resumes_its_detector_daily_and_rolls_back_on_its_alarm(tmp_path):
    stream = simulate_stream(
        StreamSpec(n_days=6, warmup_days=3, flip_day=2, signal=0.09), 3, with_predictions=True
    )
    wh = _stream_warehouse(tmp_path, stream)
    cfg = MonitorConfig(
        auc_floor=0.0, compare_previous=False, detector_threshold=3.0, detector_min_outcomes=50
    )
    aliases = {"champion": "2", "previous": "1"}

    def evaluate(aliases=aliases):
        ev = evaluate_models(
            wh,
            model_name="m",
            timeframe="1h",
            aliases=aliases,
            monitor_cfg=cfg,
            eval_cfg=EvaluationConfig(),
        )
        return ev, write_detector_state(wh, "m", ev.detector, evaluation_id=ev.evaluation_id)

    decisions = []
    for day in range(6):
        _add_day(wh, stream, day)
        ev, written = evaluate()
        assert written == 1 and ev.detector.n_new > 0
        assert ev.detector.reset_reason == ("no stored state" if day == 0 else None)
        if day == 1:  # the same day again: nothing new to feed, nothing changes
            before = _detector_row(wh)
            again, written = evaluate()
            assert written == 0 and again.detector.n_new == 0 and _detector_row(wh) == before
            assert again.detector.state == ev.detector.state
        decisions.append(ev.decision)
        if ev.decision.rollback:
            break
    last = decisions[-1]
    assert last.rollback and last.trigger == "detector", last.reason
    assert "Page-Hinkley alarm" in last.reason and "vs previous v1" in last.reason
    assert last.metrics["detector_alarm"] and last.metrics["detector_threshold"] == 3.0
    assert ev.summary()["trigger"] == "detector" and ev.summary()["detector"]["detector_alarm"]

    # the state built day by day is the state of one pass over the same outcomes
    det = PageHinkley(delta=cfg.detector_delta, threshold=3.0, min_outcomes=50)
    end = stream.start + pd.Timedelta(days=len(decisions)) - pd.Timedelta(hours=1)
    seen = stream.paired()[lambda f: f["t1"] <= end]
    one_pass = feed_outcomes(det, det.new_state(version="2", reference="previous v1"), seen)
    assert ev.detector.state == one_pass

    # the rollback consumed `previous`: the new champion starts afresh against a naive baseline
    ev, written = evaluate({"champion": "1"})
    run = ev.detector
    assert run.reset_reason == "champion changed (v2 -> v1)" and written == 1
    assert run.state.version == "1" and run.state.reference == "naive baseline"
    assert set(run.naive) == {"1", "4", "12", "24"} and run.state.n_outcomes == run.n_new > 0
    assert len(_detector_row(wh)) == 2  # one row per (model, champion version)
    assert read_detector_state(wh, "m")["model_version"] == "1"
    assert set(read_detector_states(wh, "m")["model_version"]) == {"1", "2"}


def test_detector_off_changes_nothing(wh):
    run_predict(wh, [momentum_scorer("2", "champion", sign=-1.0), momentum_scorer("1", "previous")])
    cfg = MonitorConfig(min_outcomes=50, window_days=1, detector="off")
    ev = evaluate_models(
        wh,
        model_name="m",
        timeframe="1m",
        aliases={"champion": "2", "previous": "1"},
        monitor_cfg=cfg,
        eval_cfg=EvaluationConfig(),
    )
    assert ev.detector is None and ev.decision.trigger is None
    assert "detector" not in " ".join(ev.decision.metrics) and ev.summary()["detector"] is None
    assert write_detector_state(wh, "m", ev.detector, evaluation_id=ev.evaluation_id) == 0
