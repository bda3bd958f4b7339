"""The replay clock: when each deployment would have run, and which bars existed then.

A replay walks history on the deployments' own cron strings
(``DeploymentsConfig.weekly_retrain_cron`` / ``daily_predict_cron`` /
``daily_monitor_cron``, in ``timezone``). At clock time ``t`` a home may hold
only bars that have *closed* by ``t``: a bar opened at ``ts`` closes at
``ts + bar``, and it exists at ``t`` when ``ts + bar <= t`` (the bar ending
exactly at ``t`` is in; the one still open at ``t`` is not).

Example::

    steps = replay_schedule(start=pd.Timestamp("2024-06-01"), end=pd.Timestamp("2024-06-22"),
                            retrain_cron="0 3 * * 1", predict_cron="10 0 * * *",
                            monitor_cron="30 0 * * *")
    steps[0]            # ClockStep(at=Timestamp('2024-06-03 03:00:00'), kind='retrain')
    closed_by(candles, steps[0].at, "1h")   # the candles a home holds then
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from ml_core.config import timeframe_seconds
from ml_core.errors import ConfigError, DataContractError

#: Step kinds, in the order they run when two fall on the same clock time.
STEP_KINDS = ("retrain", "predict", "monitor")
#: 1970-01-05 was a Monday: weekly bars open on Mondays (as the candle suite checks).
_WEEK_ORIGIN = pd.Timestamp("1970-01-05")
_EPOCH = pd.Timestamp("1970-01-01")


class ClockViolation(DataContractError):
    """A home held a candle, or stored a prediction, for a bar that had not closed yet."""


@dataclass(frozen=True)
class ClockStep:
    """One scheduled run: ``kind`` (retrain | predict | monitor) at clock time ``at`` (naive UTC)."""

    at: pd.Timestamp
    kind: str

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.kind}"


@dataclass(frozen=True)
class ReplayWeek:
    """Week ``number`` (1-based) of a replay: from its retrain at ``start`` until ``stop``."""

    number: int
    start: pd.Timestamp
    stop: pd.Timestamp


def to_clock(moment: pd.Timestamp | datetime | str) -> pd.Timestamp:
    """A moment as naive UTC, the warehouse convention (aware ones are converted)."""
    try:
        t = pd.Timestamp(moment)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{moment!r} is not a date or time; write e.g. '2024-06-03' or '2024-06-03 03:00'."
        ) from None
    if pd.isna(t):
        raise ConfigError(f"{moment!r} is not a date or time; write e.g. '2024-06-03'.")
    return t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t


def cron_times(
    cron: str,
    start: pd.Timestamp | datetime | str,
    end: pd.Timestamp | datetime | str,
    *,
    timezone: str = "UTC",
) -> list[pd.Timestamp]:
    """Fire times of ``cron`` (5 fields, read in ``timezone``) in ``[start, end]``, naive UTC.

    >>> [str(t) for t in cron_times("0 3 * * 1", "2024-01-01", "2024-01-15 03:00")]
    ['2024-01-01 03:00:00', '2024-01-08 03:00:00', '2024-01-15 03:00:00']
    """
    from cronsim import CronSim, CronSimError

    zone = _zone(timezone)
    lo, hi = to_clock(start), to_clock(end)
    if hi < lo:
        raise ConfigError(f"end {hi} is before start {lo}; pass an end after the start.")
    # CronSim yields times strictly after its start: begin one second early (cron has minutes)
    first = lo.tz_localize("UTC").tz_convert(zone).to_pydatetime() - timedelta(seconds=1)
    try:
        sim = CronSim(cron, first)
    except CronSimError as exc:
        raise ConfigError(
            f"cron {cron!r} is not a valid 5-field cron string ({exc}); e.g. '0 3 * * 1'."
        ) from None
    out: list[pd.Timestamp] = []
    for moment in sim:
        t = to_clock(pd.Timestamp(moment))
        if t > hi:
            break
        if t >= lo:
            out.append(t)
    return out


def replay_schedule(
    *,
    start: pd.Timestamp | datetime | str,
    end: pd.Timestamp | datetime | str,
    retrain_cron: str,
    predict_cron: str,
    monitor_cron: str,
    timezone: str = "UTC",
    warmup: pd.Timedelta = pd.Timedelta(0),
) -> list[ClockStep]:
    """Every scheduled run in ``[start, end]``, in clock order.

    The first retrain is the first weekly fire time at or after ``start +
    warmup``; predict and monitor runs start after it (there is nothing to
    score before a first champion). Runs at the same time go retrain, predict,
    monitor. Raises ``ConfigError`` when no retrain falls in the range.
    """
    lo, hi = to_clock(start), to_clock(end)
    first_from = lo + pd.Timedelta(warmup)
    retrains = (
        cron_times(retrain_cron, first_from, hi, timezone=timezone) if first_from <= hi else []
    )
    if not retrains:
        raise ConfigError(
            f"No weekly retrain ({retrain_cron!r}, {timezone}) between {first_from} "
            f"(start {lo} + warm-up {pd.Timedelta(warmup)}) and end {hi}; move the start "
            "earlier, the end later, or shorten the warm-up."
        )
    steps = [ClockStep(t, "retrain") for t in retrains]
    for kind, cron in (("predict", predict_cron), ("monitor", monitor_cron)):
        steps += [
            ClockStep(t, kind)
            for t in cron_times(cron, retrains[0], hi, timezone=timezone)
            if t >= retrains[0]
        ]
    return sorted(steps, key=lambda s: (s.at, STEP_KINDS.index(s.kind)))


def cycles_end(
    *,
    start: pd.Timestamp | datetime | str,
    retrain_cron: str,
    n_cycles: int,
    timezone: str = "UTC",
    warmup: pd.Timedelta = pd.Timedelta(0),
) -> pd.Timestamp:
    """End of ``n_cycles`` retrain cycles from ``start``: one second before retrain n + 1.

    >>> str(cycles_end(start="2024-01-01", retrain_cron="0 3 * * 1", n_cycles=2))
    '2024-01-15 02:59:59'
    """
    if n_cycles < 1:
        raise ConfigError(f"n_cycles={n_cycles}: replay at least one weekly cycle.")
    first_from = to_clock(start) + pd.Timedelta(warmup)
    span = pd.Timedelta(days=8 * (n_cycles + 1))
    while span < pd.Timedelta(days=366 * 20):
        times = cron_times(retrain_cron, first_from, first_from + span, timezone=timezone)
        if len(times) > n_cycles:
            return times[n_cycles] - pd.Timedelta(seconds=1)
        span *= 2
    raise ConfigError(
        f"retrain cron {retrain_cron!r} fires fewer than {n_cycles + 1} times in 20 years "
        f"from {first_from}; pass an end date instead."
    )


def previous_fire(
    cron: str, before: pd.Timestamp | datetime | str, *, timezone: str = "UTC"
) -> pd.Timestamp | None:
    """The last fire time of ``cron`` strictly before ``before`` (None within about a year)."""
    t = to_clock(before)
    for days in (1, 8, 32, 400):
        times = cron_times(cron, t - pd.Timedelta(days=days), t, timezone=timezone)
        times = [x for x in times if x < t]
        if times:
            return times[-1]
    return None


def scoring_windows(
    steps: Sequence[ClockStep], *, predict_cron: str, timezone: str = "UTC"
) -> dict[pd.Timestamp, tuple[pd.Timestamp | None, pd.Timestamp]]:
    """For each predict step at ``t``: the window ``(after, t]`` of bars it serves.

    ``after`` is the later of the previous predict fire time (for the first
    step, the one before it on the cron) and the latest retrain at or before
    ``t``. So a bar counts as served only when it closed after the retrain
    that made the models of that day (no model is judged on a bar whose label
    it may have been fitted on), and every policy serves the same bars in the
    same runs.
    """
    predicts = [s.at for s in steps if s.kind == "predict"]
    retrains = sorted(s.at for s in steps if s.kind == "retrain")
    if not predicts:
        return {}
    afters = [previous_fire(predict_cron, predicts[0], timezone=timezone), *predicts[:-1]]
    out: dict[pd.Timestamp, tuple[pd.Timestamp | None, pd.Timestamp]] = {}
    for after, at in zip(afters, predicts, strict=True):
        latest = [r for r in retrains if r <= at]
        if latest and (after is None or latest[-1] > after):
            after = latest[-1]
        out[at] = (after, at)
    return out


def replay_weeks(
    steps: Sequence[ClockStep], end: pd.Timestamp | datetime | str
) -> list[ReplayWeek]:
    """The weeks of a schedule: each from one retrain to the next (the last until ``end``)."""
    starts = [s.at for s in steps if s.kind == "retrain"]
    stops = [*starts[1:], to_clock(end)]
    return [ReplayWeek(i + 1, a, b) for i, (a, b) in enumerate(zip(starts, stops, strict=True))]


def week_of(moments: pd.Series, weeks: Sequence[ReplayWeek]) -> pd.Series:
    """Week number of each moment (``start <= t < stop``; the last week includes ``stop``).

    0 for a moment before the first week, NA after the last.
    """
    if not weeks:
        return pd.Series(pd.NA, index=moments.index, dtype="Int64")
    t = pd.to_datetime(moments)
    out = pd.Series(0, index=moments.index, dtype="Int64")
    for week in weeks:
        out[t >= week.start] = week.number
    out[t > weeks[-1].stop] = pd.NA
    return out


# ---- closed bars ------------------------------------------------------------------------------


def bar_length(timeframe: str) -> pd.Timedelta:
    """Length of one bar of ``timeframe``."""
    return pd.Timedelta(seconds=timeframe_seconds(timeframe))


def bar_close(ts_open: pd.Series | pd.Timestamp, timeframe: str) -> pd.Series | pd.Timestamp:
    """When the bar opened at ``ts_open`` closes."""
    return ts_open + bar_length(timeframe)


def closed_mask(ts_open: pd.Series, at: pd.Timestamp, timeframe: str) -> pd.Series:
    """True where the bar opened at ``ts_open`` has closed by clock time ``at``."""
    return pd.to_datetime(ts_open) + bar_length(timeframe) <= to_clock(at)


def closed_by(candles: pd.DataFrame, at: pd.Timestamp, timeframe: str) -> pd.DataFrame:
    """The candles whose bar has closed by ``at`` (a copy; the input is not changed)."""
    return candles.loc[closed_mask(candles["ts"], at, timeframe)].reset_index(drop=True)


def closed_between(
    candles: pd.DataFrame, after: pd.Timestamp | None, until: pd.Timestamp, timeframe: str
) -> pd.DataFrame:
    """Candles whose bar closed in ``(after, until]`` (``after`` None: all up to ``until``)."""
    close = pd.to_datetime(candles["ts"]) + bar_length(timeframe)
    keep = close <= to_clock(until)
    if after is not None:
        keep &= close > to_clock(after)
    return candles.loc[keep].reset_index(drop=True)


def last_closed_open(at: pd.Timestamp, timeframe: str) -> pd.Timestamp:
    """Open time of the newest aligned bar that has closed by ``at``.

    >>> str(last_closed_open(pd.Timestamp("2024-01-01 00:10"), "1h"))
    '2023-12-31 23:00:00'
    >>> str(last_closed_open(pd.Timestamp("2024-01-01 01:00"), "1h"))
    '2024-01-01 00:00:00'
    """
    bar = bar_length(timeframe)
    origin = _WEEK_ORIGIN if timeframe == "1w" else _EPOCH
    t = to_clock(at)
    current_open = origin + ((t - origin) // bar) * bar  # the bar running at t (or starting)
    return current_open - bar


def check_clock(
    *,
    at: pd.Timestamp,
    timeframe: str,
    latest_candle_ts: pd.Timestamp | None,
    latest_prediction_ts: pd.Timestamp | None,
    where: str,
) -> None:
    """Raise ``ClockViolation`` unless every stored bar (candle, prediction) closed by ``at``.

    ``latest_*_ts`` are bar open times (None: nothing stored). ``where`` names
    the home and step for the message.
    """
    bar = bar_length(timeframe)
    t = to_clock(at)
    for what, ts in (("candle", latest_candle_ts), ("prediction", latest_prediction_ts)):
        if ts is None or pd.isna(ts):
            continue
        close = to_clock(ts) + bar
        if close > t:
            raise ClockViolation(
                f"{where}: the home holds a {what} for the {timeframe} bar opened {to_clock(ts)}, "
                f"which closes at {close}, after the clock time {t}. A replay step may only see "
                "bars that have closed; this is a bug in how candles are fed (or a home reused "
                "from a later replay: use an empty output folder)."
            )


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"Unknown timezone {timezone!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'."
        ) from None
