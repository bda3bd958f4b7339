"""The paired loss stream the change detector reads, and its state in the warehouse.

Each daily monitor run feeds the detector (:mod:`ml_core.monitoring.detector`)
the champion's realized outcomes it has not fed before, in the order they were
realized (t1, then symbol, horizon), each paired with the reference's P(up) of
the same (symbol, ts, horizon):

* the ``previous`` version's shadow prediction of that row when there is a
  previous (rows it did not score are left out), else
* a naive baseline per horizon (:mod:`ml_core.monitoring.naive`), fitted on
  the ``reference_bars`` bars before the stream's first outcome and chosen by
  its log loss on the later half of them, so neither its fit nor its choice
  sees the monitored outcomes. Its parameters are stored with the state, so
  every later run uses the same one.

Only outcomes on each horizon's **non-overlapping grid** are fed (bar index
since the epoch divisible by h, as the trading metrics use non-overlapping
h-bar blocks): two predictions h bars apart share no future bar, so the fed
d_i are close to independent and the detector's noise does not grow with the
horizon length; with overlapping rows one threshold could not serve both
h = 1 and h = 720.

The state lives in table ``detector_state``, one row per (model, champion
version), with a cursor per (symbol, horizon): the last ts fed. A run feeds
rows after the cursor (a symbol or horizon new to the state: rows realized
after the last fed outcome), so re-running a day feeds nothing and changes
nothing. The model's most recently written row is resumed only while it judges
the same champion against the same reference with the same settings; any
change (promotion, rollback, ``previous`` gone, new delta) starts a fresh state
over the monitor window (``window_days``).

Example::

    run = run_detector(wh, model_name="coincast", timeframe="1m", champion="3",
                       previous="2", monitor_cfg=cfg.monitor, window_start=start)
    run.state.alarm, run.n_new
    write_detector_state(wh, "coincast", run, evaluation_id="...")
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ml_core.config import MonitorConfig, timeframe_seconds
from ml_core.data.warehouse import Warehouse
from ml_core.monitoring.detector import (
    Cusum,
    DetectorState,
    PageHinkley,
    log_loss_difference,
    make_detector,
)
from ml_core.monitoring.naive import fit_naive_reference, naive_probabilities
from ml_core.monitoring.predictions import utc_now

log = logging.getLogger(__name__)

TABLE = "detector_state"
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,   -- the champion the state judges
    detector VARCHAR NOT NULL,
    reference VARCHAR NOT NULL,       -- 'previous v2' or 'naive baseline'
    n_outcomes BIGINT,
    statistic DOUBLE,
    threshold DOUBLE,
    mean_diff DOUBLE,                 -- mean log-loss difference, champion - reference
    started_at TIMESTAMP,             -- realization time of the first outcome fed
    last_at TIMESTAMP,                -- ... and of the last one
    alarm_at TIMESTAMP,               -- first alarm (NULL: none)
    state_json VARCHAR NOT NULL,      -- DetectorState.to_dict()
    cursors_json VARCHAR NOT NULL,    -- {{"symbol|horizon": last ts fed}}
    naive_json VARCHAR,               -- the naive baseline per horizon (naive reference)
    updated_at TIMESTAMP NOT NULL,
    evaluation_id VARCHAR,
    PRIMARY KEY (model_name, model_version)
);
"""
#: Columns of a paired outcome frame (one realized outcome of the champion per row).
PAIRED_COLUMNS = ["symbol", "ts", "horizon", "t1", "up", "p_champion", "p_reference"]
NAIVE_REFERENCE = "naive baseline"


@dataclass(frozen=True)
class DetectorRun:
    """One run's detector update (nothing written yet)."""

    state: DetectorState
    n_new: int
    cursors: dict[str, str]
    naive: dict[str, Any] | None = None
    reset_reason: str | None = None  # why a stored state was not resumed (None: resumed)

    @property
    def changed(self) -> bool:
        """Whether there is anything to write: outcomes were fed (a fresh state that fed
        none is not stored, the next run starts it again)."""
        return self.n_new > 0


def previous_reference(version: str) -> str:
    """The reference label of a previous version ('previous v2')."""
    return f"previous v{version}"


def feed_outcomes(
    detector: PageHinkley | Cusum, state: DetectorState, outcomes: pd.DataFrame
) -> DetectorState:
    """Feed paired outcomes (``PAIRED_COLUMNS``) in realization order; the new state."""
    if outcomes.empty:
        return state
    rows = outcomes.sort_values(["t1", "symbol", "horizon", "ts"], kind="stable")
    d = log_loss_difference(rows["p_champion"], rows["p_reference"], rows["up"])
    return detector.update(state, d, rows["t1"])


def run_detector(
    warehouse: Warehouse,
    *,
    model_name: str,
    timeframe: str,
    champion: str,
    previous: str | None,
    monitor_cfg: MonitorConfig,
    window_start: pd.Timestamp | None,
) -> DetectorRun | None:
    """Resume (or start) the champion's detector and feed it the new outcomes.

    None when ``monitor.detector`` is ``"off"``. Reads only; write the result
    with :func:`write_detector_state`.
    """
    detector = make_detector(
        monitor_cfg.detector,
        delta=monitor_cfg.detector_delta,
        threshold=monitor_cfg.detector_threshold,
        min_outcomes=monitor_cfg.detector_min_outcomes,
    )
    if detector is None:
        return None
    has_previous = previous is not None and str(previous) != str(champion)
    reference = previous_reference(str(previous)) if has_previous else NAIVE_REFERENCE
    stored = read_detector_state(warehouse, model_name)
    state, why = detector.resume(
        stored["state"] if stored else None, version=str(champion), reference=reference
    )
    resumed = why is None
    cursors: dict[str, str] = dict(stored["cursors"]) if resumed and stored else {}
    naive = (stored["naive"] if resumed and stored else None) if not has_previous else None
    lower = state.last_at if resumed else window_start
    if lower is None:
        return DetectorRun(state, 0, cursors, naive, why)
    rows = new_outcomes(
        warehouse,
        model_name=model_name,
        timeframe=timeframe,
        champion=str(champion),
        previous=str(previous) if has_previous else None,
        cursors=cursors,
        lower=pd.Timestamp(lower),
    )
    if not has_previous and not rows.empty:
        if naive is None:
            naive = _fit_naive(warehouse, rows, timeframe, monitor_cfg.reference_bars)
        rows = rows.assign(p_reference=naive_probabilities(naive, rows))
    new_state = feed_outcomes(detector, state, rows[PAIRED_COLUMNS])
    if not rows.empty:
        last = rows.groupby(["symbol", "horizon"])["ts"].max()
        cursors.update({_key(s, h): pd.Timestamp(t).isoformat() for (s, h), t in last.items()})
    if why and why != "no stored state":
        log.info("detector of %s v%s restarted: %s", model_name, champion, why)
    return DetectorRun(new_state, len(rows), cursors, naive, why)


def new_outcomes(
    warehouse: Warehouse,
    *,
    model_name: str,
    timeframe: str,
    champion: str,
    previous: str | None,
    cursors: Mapping[str, str],
    lower: pd.Timestamp,
) -> pd.DataFrame:
    """Realized grid outcomes of ``champion`` after the cursors, with the reference's P(up).

    A (symbol, horizon) with a cursor returns rows with ts after it; one
    without returns rows realized (t1) after ``lower``. With ``previous`` only
    the rows it scored too; without it ``p_reference`` is NaN and the
    ``close``, ``close_lag1`` and ``close_lag_h`` columns feed the naive baseline.
    """
    bar_s = timeframe_seconds(timeframe)
    keys = [k.rsplit("|", 1) for k in cursors]
    cursor_in = pd.DataFrame(
        {
            "symbol": pd.Series([s for s, _ in keys], dtype="object"),
            "horizon": pd.Series([int(h) for _, h in keys], dtype="int32"),
            "last_ts": pd.Series(pd.to_datetime(list(cursors.values())), dtype="<M8[us]"),
        }
    )
    ref_join, ref_col, ref_where = "", "NULL::DOUBLE", ""
    params: list[Any] = []
    if previous is not None:
        ref_join = (
            "JOIN predictions r ON r.model_name = c.model_name AND r.model_version = ? "
            "AND r.timeframe = c.timeframe AND r.symbol = c.symbol AND r.ts = c.ts "
            "AND r.horizon = c.horizon"
        )
        ref_col, ref_where = "r.p_up", "AND r.p_up IS NOT NULL"
        params.append(previous)
    with warehouse.connect(read_only=True) as con:
        con.register("cursor_in", cursor_in)
        frame = con.execute(
            f"""
            SELECT c.symbol, c.ts, c.horizon, f.ts AS t1,
                   CASE WHEN f.close > k.close THEN 1.0 ELSE 0.0 END AS up,
                   c.p_up AS p_champion, {ref_col} AS p_reference,
                   k.close, l1.close AS close_lag1, lh.close AS close_lag_h
            FROM predictions c
            JOIN candles k ON k.symbol = c.symbol AND k.timeframe = c.timeframe AND k.ts = c.ts
            JOIN candles f ON f.symbol = c.symbol AND f.timeframe = c.timeframe
                          AND f.ts = c.ts + to_seconds(c.horizon * {bar_s})
            {ref_join}
            LEFT JOIN cursor_in q ON q.symbol = c.symbol AND q.horizon = c.horizon
            LEFT JOIN candles l1 ON l1.symbol = c.symbol AND l1.timeframe = c.timeframe
                                AND l1.ts = c.ts - to_seconds({bar_s})
            LEFT JOIN candles lh ON lh.symbol = c.symbol AND lh.timeframe = c.timeframe
                                AND lh.ts = c.ts - to_seconds(c.horizon * {bar_s})
            WHERE c.model_name = ? AND c.model_version = ? AND c.timeframe = ?
              AND c.p_up IS NOT NULL {ref_where}
              AND (CAST(epoch(c.ts) AS BIGINT) // {bar_s}) % c.horizon = 0
              AND CASE WHEN q.last_ts IS NULL THEN f.ts > ? ELSE c.ts > q.last_ts END
            ORDER BY t1, c.symbol, c.horizon, c.ts""",
            [*params, model_name, champion, timeframe, lower.to_pydatetime()],
        ).df()
    for col in ("ts", "t1"):
        frame[col] = frame[col].astype("datetime64[us]")
    frame["horizon"] = frame["horizon"].astype(int)
    return frame


# ---- storage ------------------------------------------------------------------------------
def read_detector_state(warehouse: Warehouse, model_name: str) -> dict[str, Any] | None:
    """The model's most recently written detector row: ``state``, ``cursors``, ``naive``
    (plus ``model_version``, ``updated_at``); None when there is none."""
    if not warehouse.exists:
        return None
    with warehouse.connect(read_only=True) as con:
        if not _has_table(con):
            return None
        row = con.execute(
            f"""SELECT model_version, state_json, cursors_json, naive_json, updated_at
                FROM {TABLE} WHERE model_name = ? ORDER BY updated_at DESC LIMIT 1""",
            [model_name],
        ).fetchone()
    if row is None:
        return None
    version, state_json, cursors_json, naive_json, updated_at = row
    return {
        "model_version": str(version),
        "state": DetectorState.from_dict(json.loads(state_json)),
        "cursors": json.loads(cursors_json),
        "naive": json.loads(naive_json) if naive_json else None,
        "updated_at": pd.Timestamp(updated_at),
    }


def read_detector_states(warehouse: Warehouse, model_name: str) -> pd.DataFrame:
    """Every stored detector row of ``model_name`` (newest first), for status displays."""
    cols = [
        "model_version",
        "detector",
        "reference",
        "n_outcomes",
        "statistic",
        "threshold",
        "mean_diff",
        "started_at",
        "last_at",
        "alarm_at",
        "updated_at",
    ]
    if not warehouse.exists:
        return pd.DataFrame(columns=cols)
    with warehouse.connect(read_only=True) as con:
        if not _has_table(con):
            return pd.DataFrame(columns=cols)
        return con.execute(
            f"SELECT {', '.join(cols)} FROM {TABLE} WHERE model_name = ? ORDER BY updated_at DESC",
            [model_name],
        ).df()


def write_detector_state(
    warehouse: Warehouse, model_name: str, run: DetectorRun | None, *, evaluation_id: str
) -> int:
    """Upsert the run's state row (one short write); 0 when there is nothing new."""
    if run is None or not run.changed:
        return 0
    s = run.state
    row = [
        model_name,
        s.version,
        s.detector,
        s.reference,
        s.n_outcomes,
        s.statistic,
        s.threshold,
        None if math.isnan(s.mean_diff) else s.mean_diff,
        _py(s.started_at),
        _py(s.last_at),
        None if s.alarm is None else _py(s.alarm.at),
        json.dumps(s.to_dict()),
        json.dumps(run.cursors, sort_keys=True),
        None if run.naive is None else json.dumps(run.naive, sort_keys=True),
        utc_now(),
        evaluation_id,
    ]
    with warehouse.connect() as con:
        con.execute(DDL)
        con.execute(f"INSERT OR REPLACE INTO {TABLE} VALUES ({', '.join('?' for _ in row)})", row)
    return 1


def _fit_naive(
    warehouse: Warehouse, rows: pd.DataFrame, timeframe: str, reference_bars: int
) -> dict[str, Any]:
    """The naive baseline of a fresh stream, from the candles before its first outcome."""
    first = rows["ts"].min()
    bar_s = timeframe_seconds(timeframe)
    since = first - pd.Timedelta(seconds=bar_s * (reference_bars + int(rows["horizon"].max()) + 1))
    candles = warehouse.read_candles(timeframe=timeframe, since=since)
    return fit_naive_reference(
        candles[candles["ts"] < first],
        horizons=sorted(int(h) for h in rows["horizon"].unique()),
        before=first,
        timeframe=timeframe,
        reference_bars=reference_bars,
    )


def _has_table(con: Any) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [TABLE]
    ).fetchone()
    return bool(found and found[0])


def _key(symbol: str, horizon: int) -> str:
    return f"{symbol}|{int(horizon)}"


def _py(ts: pd.Timestamp | None) -> Any:
    return None if ts is None else pd.Timestamp(ts).to_pydatetime()
