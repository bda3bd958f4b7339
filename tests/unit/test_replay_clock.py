"""The replay clock: schedules from the deployments' cron strings and the closed-bar rule."""

from __future__ import annotations

import pandas as pd
import pytest

from ml_core.config import DeploymentsConfig
from ml_core.errors import ConfigError
from ml_core.replay.clock import (
    ClockStep,
    ClockViolation,
    check_clock,
    closed_between,
    closed_by,
    closed_mask,
    cron_times,
    cycles_end,
    last_closed_open,
    previous_fire,
    replay_schedule,
    replay_weeks,
    scoring_windows,
    week_of,
)

T = pd.Timestamp
D = DeploymentsConfig()
CRONS = {
    "retrain_cron": D.weekly_retrain_cron,
    "predict_cron": D.daily_predict_cron,
    "monitor_cron": D.daily_monitor_cron,
}


def test_cron_times_are_inclusive_and_naive_utc():
    times = cron_times("0 3 * * 1", "2024-01-01 03:00", "2024-01-15 03:00")
    assert times == [T("2024-01-01 03:00"), T("2024-01-08 03:00"), T("2024-01-15 03:00")]
    assert cron_times("0 3 * * 1", "2024-01-01 03:00:01", "2024-01-08 02:59") == []
    # aware bounds are converted to UTC
    aware = cron_times("10 0 * * *", T("2024-01-01 01:00", tz="Europe/Berlin"), "2024-01-01 01:00")
    assert aware == [T("2024-01-01 00:10")]


def test_cron_in_a_timezone_follows_daylight_saving():
    # Monday 03:00 in Berlin is 02:00 UTC in winter, 01:00 UTC after 2024-03-31 (summer time)
    times = cron_times("0 3 * * 1", "2024-03-25", "2024-04-09", timezone="Europe/Berlin")
    assert times == [T("2024-03-25 02:00"), T("2024-04-01 01:00"), T("2024-04-08 01:00")]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cron": "61 3 * * 1"}, "not a valid 5-field cron"),
        ({"timezone": "Mars/Olympus"}, "Unknown timezone 'Mars/Olympus'"),
        ({"end": "2023-12-01"}, "before start"),
        ({"end": "next tuesday"}, "'next tuesday' is not a date"),
    ],
)
def test_cron_times_errors_name_the_value(kwargs, match):
    args = {"cron": "0 3 * * 1", "start": "2024-01-01", "end": "2024-02-01"} | kwargs
    timezone = args.pop("timezone", "UTC")
    with pytest.raises(ConfigError, match=match):
        cron_times(args["cron"], args["start"], args["end"], timezone=timezone)


def test_schedule_starts_with_the_first_retrain_and_orders_same_time_steps():
    steps = replay_schedule(start="2024-01-02", end="2024-01-16 00:30", **CRONS)
    assert steps[0] == ClockStep(T("2024-01-08 03:00"), "retrain")  # first Monday after start
    kinds = [s.kind for s in steps]
    assert kinds.count("retrain") == 2 and kinds.count("predict") == 8
    assert kinds.count("monitor") == 8  # daily after the first retrain, up to end inclusive
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    same = replay_schedule(
        start="2024-01-01",
        end="2024-01-02",
        retrain_cron="0 3 * * 1",
        predict_cron="0 3 * * *",
        monitor_cron="0 3 * * *",
    )
    assert [(str(s.at), s.kind) for s in same] == [
        ("2024-01-01 03:00:00", "retrain"),
        ("2024-01-01 03:00:00", "predict"),
        ("2024-01-01 03:00:00", "monitor"),
    ]


def test_warmup_delays_the_first_retrain_and_no_retrain_is_an_error():
    steps = replay_schedule(
        start="2024-01-01", end="2024-02-01", warmup=pd.Timedelta(days=8), **CRONS
    )
    assert steps[0].at == T("2024-01-15 03:00")
    with pytest.raises(ConfigError, match="No weekly retrain"):
        replay_schedule(start="2024-01-02", end="2024-01-08 02:59", **CRONS)


def test_cycles_end_gives_exactly_n_weekly_cycles():
    end = cycles_end(start="2024-01-02", retrain_cron="0 3 * * 1", n_cycles=3)
    assert end == T("2024-01-29 02:59:59")
    steps = replay_schedule(start="2024-01-02", end=end, **CRONS)
    weeks = replay_weeks(steps, end)
    assert [w.number for w in weeks] == [1, 2, 3]
    assert weeks[0].start == T("2024-01-08 03:00") and weeks[-1].stop == end
    with pytest.raises(ConfigError, match="at least one"):
        cycles_end(start="2024-01-02", retrain_cron="0 3 * * 1", n_cycles=0)


def test_scoring_windows_tile_time_and_start_after_each_retrain():
    steps = replay_schedule(start="2024-01-01", end="2024-01-15 01:00", **CRONS)
    windows = scoring_windows(steps, predict_cron=CRONS["predict_cron"])
    ats = sorted(windows)
    # the first window starts at the first retrain, not at the previous (champion-less) run
    assert windows[ats[0]] == (T("2024-01-01 03:00"), T("2024-01-02 00:10"))
    retrains = {T("2024-01-09 00:10"): T("2024-01-08 03:00")}
    for prev, at in zip(ats, ats[1:], strict=False):
        assert windows[at] == (retrains.get(at, prev), at)
    assert previous_fire("10 0 * * *", T("2024-01-02 00:10")) == T("2024-01-01 00:10")


@pytest.mark.parametrize(
    ("ts", "at", "closed"),
    [
        ("2024-01-01 00:00", "2024-01-01 01:00", True),  # closes exactly at the clock time
        ("2024-01-01 00:00", "2024-01-01 00:59:59", False),  # one second short
        ("2024-01-01 01:00", "2024-01-01 01:00", False),  # just opened
        ("2023-12-31 23:00", "2024-01-01 00:10", True),
    ],
)
def test_closed_bar_edges(ts, at, closed):
    assert bool(closed_mask(pd.Series([T(ts)]), T(at), "1h").iloc[0]) is closed


@pytest.mark.parametrize(
    ("at", "timeframe", "expected"),
    [
        ("2024-01-01 00:10", "1h", "2023-12-31 23:00"),
        ("2024-01-01 01:00", "1h", "2024-01-01 00:00"),
        ("2024-01-01 00:00:30", "1m", "2023-12-31 23:59"),
        ("2024-01-02 00:10", "1d", "2024-01-01 00:00"),
        ("2024-01-10 12:00", "1w", "2024-01-01 00:00"),  # weekly bars open on Mondays
    ],
)
def test_last_closed_open(at, timeframe, expected):
    assert last_closed_open(T(at), timeframe) == T(expected)


def test_closed_by_and_between_split_history_without_overlap():
    candles = pd.DataFrame(
        {"ts": pd.date_range("2024-01-01", periods=6, freq="1h"), "close": range(6)}
    )
    history = closed_by(candles, T("2024-01-01 02:10"), "1h")
    later = closed_between(candles, T("2024-01-01 02:10"), T("2024-01-01 04:00"), "1h")
    assert history["close"].tolist() == [0, 1]
    assert later["close"].tolist() == [2, 3]  # closing at 03:00 and 04:00
    assert closed_between(candles, None, T("2024-01-01 03:00"), "1h")["close"].tolist() == [0, 1, 2]
    assert len(candles) == 6  # input unchanged


def test_check_clock_raises_for_an_open_candle_or_prediction():
    at = T("2024-01-01 10:00")
    check_clock(
        at=at,
        timeframe="1h",
        latest_candle_ts=T("2024-01-01 09:00"),
        latest_prediction_ts=None,
        where="ok",
    )
    with pytest.raises(ClockViolation, match=r"coincast feed: .*candle .*09:30.*after the clock"):
        check_clock(
            at=at,
            timeframe="1h",
            latest_candle_ts=T("2024-01-01 09:30"),
            latest_prediction_ts=None,
            where="coincast feed",
        )
    with pytest.raises(ClockViolation, match="prediction for the 1h bar opened 2024-01-01 10:00"):
        check_clock(
            at=at,
            timeframe="1h",
            latest_candle_ts=None,
            latest_prediction_ts=T("2024-01-01 10:00"),
            where="latest predict",
        )


def test_week_of_assigns_from_retrain_to_retrain():
    steps = replay_schedule(start="2024-01-01", end="2024-01-20", **CRONS)
    weeks = replay_weeks(steps, T("2024-01-20"))
    moments = pd.Series(
        [
            T("2024-01-01 02:00"),
            T("2024-01-01 03:00"),
            T("2024-01-08 03:00"),
            T("2024-01-20"),
            T("2024-01-21"),
        ]
    )
    assert week_of(moments, weeks).tolist() == [0, 1, 2, 3, pd.NA]
