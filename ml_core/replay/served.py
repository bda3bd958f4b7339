"""What a policy served: the champion's predictions at scoring time, and their outcomes.

The predict flow scores each new bar with every aliased version and stores
the rows in the ``predictions`` table with the alias the version held at
scoring time. A newly promoted champion also scores back over the last
``monitor.initial_bars`` bars, and those rows say ``champion`` too, but
nobody was served them: they were made after the fact. So the replay keeps,
for each predict run at clock time ``t`` (the previous one at ``t_prev``),
only the ``champion`` rows written by that run for bars that closed in
``(t_prev, t]``: exactly what a user reading the champion's scores after
each daily run saw. Every bar closes in one such window, so each
(symbol, bar, horizon) is served at most once.

Outcomes follow ``ml_core.monitoring.realized``: a prediction at bar t for
horizon h is realized when bar t+h exists; ``up = close[t+h] > close[t]``,
``ret = ln(close[t+h] / close[t])``. Missing bars are left out, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_core.replay.clock import bar_length, to_clock

#: Columns of a served-predictions frame.
SERVED_COLUMNS = ["policy", "served_at", "model_version", "symbol", "ts", "horizon", "p_up"]
#: Columns added by :func:`realize_outcomes`.
OUTCOME_COLUMNS = ["up", "ret", "t1"]
_KEY = ["symbol", "ts", "horizon"]


@dataclass(frozen=True)
class Coverage:
    """How completely a policy's champion served the bars of its scoring windows."""

    policy: str
    n_expected: int
    n_served: int
    n_duplicates: int
    n_missing: int
    n_unexpected: int
    missing_examples: list[tuple[str, str, int]]

    @property
    def complete(self) -> bool:
        """Every expected (symbol, bar, horizon) served exactly once, and nothing else."""
        return self.n_duplicates == 0 and self.n_missing == 0 and self.n_unexpected == 0

    def summary(self) -> str:
        return (
            f"{self.policy}: {self.n_served:,} served of {self.n_expected:,} expected "
            f"(symbol, bar, horizon); {self.n_duplicates} duplicates, {self.n_missing} missing, "
            f"{self.n_unexpected} outside the windows"
        )


def served_rows(
    written: pd.DataFrame,
    *,
    policy: str,
    after: pd.Timestamp | None,
    at: pd.Timestamp,
    timeframe: str,
) -> pd.DataFrame:
    """The champion rows of one predict run (``written``) for bars closed in ``(after, at]``.

    ``written`` has the ``predictions`` table's columns (at least ``alias``,
    ``model_version``, ``symbol``, ``ts``, ``horizon``, ``p_up``). Returns
    ``SERVED_COLUMNS`` with ``served_at = at``; rows without a probability
    are dropped.
    """
    if written.empty:
        return empty_served()
    close = pd.to_datetime(written["ts"]) + bar_length(timeframe)
    keep = (written["alias"] == "champion") & (close <= to_clock(at)) & written["p_up"].notna()
    if after is not None:
        keep &= close > to_clock(after)
    out = written.loc[keep, ["model_version", "symbol", "ts", "horizon", "p_up"]].copy()
    out["ts"] = pd.to_datetime(out["ts"]).astype("datetime64[us]")
    out["horizon"] = out["horizon"].astype("int64")
    out["model_version"] = out["model_version"].astype(str)
    out["policy"] = policy
    out["served_at"] = to_clock(at)
    return out[SERVED_COLUMNS].sort_values(_KEY, kind="stable").reset_index(drop=True)


def realize_outcomes(served: pd.DataFrame, candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """``served`` with ``up``, ``ret`` and ``t1`` (bar t+h); NaN where bar t+h is missing."""
    out = served.copy()
    if out.empty:
        for col in OUTCOME_COLUMNS:
            out[col] = pd.Series(dtype="float64" if col != "t1" else "datetime64[us]")
        return out
    bar = bar_length(timeframe)
    prices = candles[["symbol", "ts", "close"]].copy()
    prices["ts"] = pd.to_datetime(prices["ts"]).astype("datetime64[us]")
    out["t1"] = (out["ts"] + out["horizon"].astype("int64") * bar).astype("datetime64[us]")
    now = out.merge(prices, on=["symbol", "ts"], how="left")["close"].to_numpy()
    later = out.merge(
        prices.rename(columns={"ts": "t1", "close": "close_t1"}), on=["symbol", "t1"], how="left"
    )["close_t1"].to_numpy()
    known = ~(np.isnan(now) | np.isnan(later))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["up"] = np.where(known, (later > now).astype(float), np.nan)
        out["ret"] = np.where(known, np.log(later / now), np.nan)
    out.loc[~known, "t1"] = pd.NaT
    return out


def scoring_coverage(
    served: pd.DataFrame,
    candles: pd.DataFrame,
    *,
    policy: str,
    windows: Sequence[tuple[pd.Timestamp | None, pd.Timestamp]],
    horizons: Sequence[int],
    timeframe: str,
    n_examples: int = 5,
) -> Coverage:
    """Compare the served keys with every (candle bar, horizon) closing in the ``windows``.

    ``windows`` are the ``(after, at]`` intervals of the predict runs that
    served (one per run with a champion). A bar the champion could not score
    (too little history after a gap) shows up as missing.
    """
    close = pd.to_datetime(candles["ts"]) + bar_length(timeframe)
    in_window = pd.Series(False, index=candles.index)
    for after, at in windows:
        hit = close <= to_clock(at)
        if after is not None:
            hit &= close > to_clock(after)
        in_window |= hit
    bars = candles.loc[in_window, ["symbol", "ts"]].copy()
    bars["ts"] = pd.to_datetime(bars["ts"]).astype("datetime64[us]")
    expected = bars.merge(pd.DataFrame({"horizon": [int(h) for h in horizons]}), how="cross")
    keys = served[_KEY].copy()
    keys["ts"] = pd.to_datetime(keys["ts"]).astype("datetime64[us]")
    keys["horizon"] = keys["horizon"].astype("int64")
    n_dup = int(keys.duplicated().sum())
    unique = keys.drop_duplicates()
    both = expected.merge(unique, on=_KEY, how="outer", indicator=True)
    missing = both[both["_merge"] == "left_only"].sort_values(_KEY)
    return Coverage(
        policy=policy,
        n_expected=len(expected),
        n_served=len(keys),
        n_duplicates=n_dup,
        n_missing=len(missing),
        n_unexpected=int((both["_merge"] == "right_only").sum()),
        missing_examples=[
            (str(r.symbol), str(r.ts), int(r.horizon))
            for r in missing.head(n_examples).itertuples(index=False)
        ],
    )


def empty_served() -> pd.DataFrame:
    """A served frame with no rows (typed columns)."""
    return pd.DataFrame(
        {
            "policy": pd.Series(dtype=str),
            "served_at": pd.Series(dtype="datetime64[us]"),
            "model_version": pd.Series(dtype=str),
            "symbol": pd.Series(dtype=str),
            "ts": pd.Series(dtype="datetime64[us]"),
            "horizon": pd.Series(dtype="int64"),
            "p_up": pd.Series(dtype="float64"),
        }
    )[SERVED_COLUMNS]
