"""Incremental scoring of new candles by the registered versions, stored as predictions.

Each predict run scores, with every version that holds an alias (``champion``,
and ``challenger`` / ``previous`` as shadows), the bars it has not scored yet,
so the monitor later has one prediction per bar and horizon to judge. Work
grows with the new bars, never with the history: per symbol the run reads only
the candles after the last scored bar (the *cursor*, the earliest over the
versions scored) plus the ``lookback_bars`` rows before it that the features
need. A symbol no version has scored yet starts ``initial_bars`` back from its
latest candle. Rows are upserted on (model_name, model_version, symbol, ts,
horizon): scoring the same candles again changes nothing.

The models arrive as :class:`Scorer` objects built by the caller (the task
layer loads each pyfunc once); this module never touches the registry.

Example::

    cursors = scoring_cursors(wh, model_name="coincast", timeframe="1m",
                              versions=["3", "2"])
    window = read_scoring_window(wh, timeframe="1m", cursors=cursors,
                                 lookback_bars=700, initial_bars=1440)
    preds = score_window(window.candles, scorers, cursors=cursors, initial_bars=1440)
    n = upsert_predictions(wh, preds)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from ml_core.config import FeatureConfig
from ml_core.data.warehouse import CANDLE_COLUMNS, Warehouse
from ml_core.errors import DataContractError

log = logging.getLogger(__name__)

#: Columns of the ``predictions`` table, in order.
PREDICTION_COLUMNS = [
    "model_name",
    "model_version",
    "alias",
    "symbol",
    "timeframe",
    "ts",
    "horizon",
    "p_up",
    "exp_ret",
    "uncertainty",
    "regime",
    "scored_at",
    "flow_run_id",
]
#: Alias priority when one version holds several (champion and challenger after a promotion).
ALIAS_ORDER = ("champion", "challenger", "previous")


@dataclass(frozen=True)
class Scorer:
    """One registered version, loaded once, with what incremental scoring needs.

    ``predict`` maps a candle frame (``symbol, ts, open, high, low, close,
    volume``) to ``symbol, ts, horizon, p_up`` (plus ``exp_ret`` /
    ``uncertainty`` when the model provides them). ``regime_model`` (a fitted
    ``ml_core.regime.RegimeModel``) with ``feature_cfg`` fills the ``regime``
    column with the most likely forward-filtered state at t.
    """

    model_name: str
    version: str
    alias: str
    predict: Callable[[pd.DataFrame], pd.DataFrame]
    lookback_bars: int
    regime_model: Any | None = None
    feature_cfg: FeatureConfig | None = None
    first_ts: Mapping[str, pd.Timestamp] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoringWindow:
    """Candles read for one run and where each symbol's read started."""

    candles: pd.DataFrame
    starts: dict[str, pd.Timestamp]

    @property
    def n_rows(self) -> int:
        return len(self.candles)


def utc_now() -> datetime:
    """Now as naive UTC (the warehouse convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


def alias_by_version(aliases: Mapping[str, str]) -> dict[str, str]:
    """version -> the highest-priority alias it holds ({'champion': '3'} -> {'3': 'champion'})."""
    out: dict[str, str] = {}
    for alias in (*ALIAS_ORDER, *sorted(set(aliases) - set(ALIAS_ORDER))):
        version = aliases.get(alias)
        if version is not None and str(version) not in out:
            out[str(version)] = alias
    return out


def scoring_cursors(
    warehouse: Warehouse,
    *,
    model_name: str,
    timeframe: str,
    versions: Sequence[str],
    symbols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Last scored ts per (version, symbol): columns ``model_version, symbol, last_ts``.

    One row per version and candle symbol of ``timeframe``; ``last_ts`` is NaT
    where that version has not scored the symbol yet.
    """
    if not versions:
        raise DataContractError("No model versions to score; register a champion first.")
    sym_sql, params = _symbol_filter(symbols)
    with warehouse.connect(read_only=True) as con:
        frame = con.execute(
            f"""
            WITH syms AS (SELECT DISTINCT symbol FROM candles WHERE timeframe = ? {sym_sql}),
                 vers AS (SELECT unnest(?::VARCHAR[]) AS model_version),
                 last AS (SELECT model_version, symbol, max(ts) AS last_ts FROM predictions
                          WHERE model_name = ? AND timeframe = ? GROUP BY ALL)
            SELECT v.model_version, s.symbol, l.last_ts
            FROM vers v CROSS JOIN syms s
            LEFT JOIN last l ON l.model_version = v.model_version AND l.symbol = s.symbol
            ORDER BY v.model_version, s.symbol""",
            [timeframe, *params, [str(v) for v in versions], model_name, timeframe],
        ).df()
    return frame


def read_scoring_window(
    warehouse: Warehouse,
    *,
    timeframe: str,
    cursors: pd.DataFrame,
    lookback_bars: int,
    initial_bars: int,
) -> ScoringWindow:
    """Candles each symbol needs for this run, read in one query (the count is the cost).

    Per symbol the cursor is the earliest ``last_ts`` over the versions (none
    when a version has not scored it): the read starts ``lookback_bars`` rows
    before the cursor (so the first new bar has complete features), or
    ``initial_bars + lookback_bars`` rows before the latest candle.
    """
    if lookback_bars < 0 or initial_bars < 1:
        raise DataContractError(
            f"lookback_bars={lookback_bars} and initial_bars={initial_bars}: need "
            "lookback_bars >= 0 and initial_bars >= 1 (monitor.initial_bars)."
        )
    per_symbol = _symbol_cursors(cursors)
    if per_symbol.empty:
        return ScoringWindow(pd.DataFrame(columns=CANDLE_COLUMNS), {})
    with warehouse.connect(read_only=True) as con:
        con.register("cursor_in", per_symbol)
        frame = (
            con.sql(
                f"""
                WITH ranked AS (
                    SELECT c.symbol, c.ts, k.cursor,
                           row_number() OVER (PARTITION BY c.symbol ORDER BY c.ts DESC) AS rn
                    FROM candles c JOIN cursor_in k ON k.symbol = c.symbol
                    WHERE c.timeframe = $tf AND (k.cursor IS NULL OR c.ts <= k.cursor)),
                starts AS (
                    SELECT symbol, min(ts) AS start_ts FROM ranked
                    WHERE rn <= CASE WHEN cursor IS NULL THEN $initial + $lookback
                                     ELSE $lookback + 1 END
                    GROUP BY symbol)
                SELECT {", ".join("c." + col for col in CANDLE_COLUMNS)}
                FROM candles c JOIN starts s ON s.symbol = c.symbol
                WHERE c.timeframe = $tf AND c.ts >= s.start_ts
                ORDER BY c.symbol, c.ts""",
                params={"tf": timeframe, "initial": initial_bars, "lookback": lookback_bars},
            )
            .to_arrow_table()
            .to_pandas()
        )
    starts = {str(s): t for s, t in frame.groupby("symbol")["ts"].min().items()}
    return ScoringWindow(frame, starts)


def score_window(
    candles: pd.DataFrame,
    scorers: Sequence[Scorer],
    *,
    cursors: pd.DataFrame,
    initial_bars: int,
    flow_run_id: str | None = None,
    scored_at: datetime | None = None,
) -> pd.DataFrame:
    """Prediction rows (``PREDICTION_COLUMNS``) of every scorer for its not-yet-scored bars.

    A version scores, per symbol, the bars after its own cursor, or the last
    ``initial_bars`` bars when it has none there. Bars whose features are not
    complete (too little history) are skipped by the model itself.
    """
    if candles.empty or not scorers:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    scored_at = scored_at or utc_now()
    initial_from = _initial_starts(candles, initial_bars)
    frames = []
    for scorer in scorers:
        raw = pd.DataFrame(scorer.predict(candles.drop(columns="timeframe", errors="ignore")))
        _check_output(raw, scorer)
        keep = _new_rows(raw, cursors, scorer.version, initial_from)
        out = raw.loc[keep].reset_index(drop=True)
        out = out.assign(
            ts=pd.to_datetime(out["ts"]).astype("datetime64[us]"),
            horizon=out["horizon"].astype("int32"),
            model_name=scorer.model_name,
            model_version=str(scorer.version),
            alias=scorer.alias,
            timeframe=str(candles["timeframe"].iloc[0]) if "timeframe" in candles else None,
            scored_at=scored_at,
            flow_run_id=flow_run_id,
        )
        for col in ("exp_ret", "uncertainty"):
            out[col] = out[col].astype("float64") if col in out else float("nan")
        out["regime"] = _regimes(candles, scorer, out) if len(out) else pd.Series(dtype="string")
        frames.append(out[PREDICTION_COLUMNS])
        log.info("v%s (%s): %d new prediction rows", scorer.version, scorer.alias, len(out))
    return pd.concat(frames, ignore_index=True)


def upsert_predictions(warehouse: Warehouse, predictions: pd.DataFrame) -> int:
    """Insert or replace rows on the table key; returns the rows written (one short write)."""
    if predictions.empty:
        return 0
    frame = predictions[PREDICTION_COLUMNS]
    with warehouse.connect() as con:
        con.register("predictions_in", frame)
        con.execute(
            f"INSERT OR REPLACE INTO predictions ({', '.join(PREDICTION_COLUMNS)}) "
            f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM predictions_in"
        )
    return len(frame)


def read_predictions(
    warehouse: Warehouse, *, model_name: str, version: str | None = None
) -> pd.DataFrame:
    """Stored predictions of a model (one version, or all), sorted by version, symbol, ts."""
    where, params = "model_name = ?", [model_name]
    if version is not None:
        where += " AND model_version = ?"
        params.append(str(version))
    with warehouse.connect(read_only=True) as con:
        return con.execute(
            f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM predictions WHERE {where} "
            "ORDER BY model_version, symbol, ts, horizon",
            params,
        ).df()


# ---- helpers --------------------------------------------------------------------------------
def _symbol_filter(symbols: Sequence[str] | None) -> tuple[str, list[Any]]:
    if not symbols:
        return "", []
    return f"AND symbol IN ({', '.join('?' for _ in symbols)})", list(symbols)


def _symbol_cursors(cursors: pd.DataFrame) -> pd.DataFrame:
    """symbol -> earliest last_ts over versions; NaT when any version has not scored it."""
    if cursors.empty:
        return pd.DataFrame({"symbol": pd.Series(dtype=str), "cursor": pd.Series(dtype="<M8[us]")})
    g = cursors.groupby("symbol", sort=True)["last_ts"]
    cursor = g.min().where(~g.apply(lambda s: s.isna().any()))
    return pd.DataFrame(
        {"symbol": cursor.index.astype(str), "cursor": cursor.to_numpy().astype("<M8[us]")}
    )


def _initial_starts(candles: pd.DataFrame, initial_bars: int) -> pd.Series:
    """Per symbol, the ts of the ``initial_bars``-th last candle (first bar of a first run)."""
    return candles.groupby("symbol", sort=True)["ts"].apply(
        lambda s: s.iloc[max(0, len(s) - initial_bars)]
    )


def _new_rows(
    raw: pd.DataFrame, cursors: pd.DataFrame, version: str, initial_from: pd.Series
) -> pd.Series:
    mine = cursors[cursors["model_version"] == str(version)].set_index("symbol")["last_ts"]
    ts = pd.to_datetime(raw["ts"])
    last = raw["symbol"].map(mine)
    first_run = last.isna()
    after_cursor = ts > pd.to_datetime(last)
    in_initial = ts >= pd.to_datetime(raw["symbol"].map(initial_from))
    return (~first_run & after_cursor) | (first_run & in_initial)


def _check_output(raw: pd.DataFrame, scorer: Scorer) -> None:
    missing = [c for c in ("symbol", "ts", "horizon", "p_up") if c not in raw.columns]
    if missing:
        raise DataContractError(
            f"{scorer.model_name} v{scorer.version} returned columns {list(raw.columns)}, "
            f"lacking {missing}; a registered pipeline must output symbol, ts, horizon, p_up."
        )


def _regimes(candles: pd.DataFrame, scorer: Scorer, rows: pd.DataFrame) -> pd.Series:
    """Most likely filtered regime at each row's (symbol, ts); NA without a regime model."""
    if scorer.regime_model is None or scorer.feature_cfg is None:
        return pd.Series(pd.NA, index=rows.index, dtype="string")
    from ml_core.features import features_from_candles

    feats = features_from_candles(candles, scorer.feature_cfg, first_ts=dict(scorer.first_ts))
    probs = scorer.regime_model.filtered_probabilities(feats)
    regime = pd.DataFrame(
        {
            "symbol": feats["symbol"],
            "ts": feats["ts"].astype("datetime64[us]"),
            "r": probs["regime"],
        }
    )
    merged = rows[["symbol", "ts"]].merge(regime, on=["symbol", "ts"], how="left")
    return pd.Series(merged["r"].to_numpy(), index=rows.index, dtype="string")
