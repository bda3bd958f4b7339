"""Chronological train / validation / test split with purge gaps.

Two modes (``SplitConfig.mode``):

- ``calendar`` (default): the parts are cut at two **shared** calendar dates,
  the row-count quantiles of all symbols' pooled timestamps at ``train_frac``
  and ``train_frac + val_frac``. Crypto symbols co-move, so per-symbol cuts
  would put one symbol's test-period market moves into another symbol's
  training or validation rows; shared cuts keep the parts disjoint in time
  across symbols. A symbol contributes where it has data; one too short for a
  part is reported in ``SplitParts.notes`` (and logged), not silently dropped.
- ``per_symbol``: each symbol's own rows are cut at the fractions (the parts
  overlap in calendar time when symbols start at different dates).

Between two parts a gap of ``gap_bars`` bars (default: the largest label
horizon) is left out, and rows whose label end time ``t1_h`` still reaches
the next part are purged.

Example::

    parts = chronological_split(frame, horizons=[15, 60], cfg=SplitConfig(), timeframe="1m")
    parts.train, parts.val, parts.test     # DataFrames
    parts.cut_ts["test_start"], parts.notes  # shared dates; symbols lacking a part
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ml_core.config import SplitConfig, timeframe_seconds
from ml_core.errors import DataContractError

log = logging.getLogger(__name__)

PART_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitParts:
    """The three parts, each sorted by (symbol, ts), plus how they were cut.

    ``mode`` is the split mode (None when built by hand). ``cut_ts`` holds the
    shared dates of a calendar split: train rows have ``ts < train_end``,
    validation rows ``val_start <= ts < val_end``, test rows ``ts >= test_start``
    (``train_end`` is ``gap_bars`` bars before ``val_start``). ``notes`` maps a
    symbol to what it lacks (a part it has no or too few rows in).
    """

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    gap_bars: int
    first_ts: dict[str, pd.Timestamp] = field(default_factory=dict)
    mode: str | None = None
    cut_ts: dict[str, pd.Timestamp] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Rows and date range per part and symbol, for reports."""
        rows = []
        for name in PART_NAMES:
            part: pd.DataFrame = getattr(self, name)
            for symbol, g in part.groupby("symbol", sort=True):
                rows.append(
                    {
                        "part": name,
                        "symbol": symbol,
                        "rows": len(g),
                        "start": g["ts"].min(),
                        "end": g["ts"].max(),
                    }
                )
        return pd.DataFrame(rows)

    def notes_frame(self) -> pd.DataFrame:
        """``symbol, note`` per symbol that lacks a part, for reports."""
        return pd.DataFrame(
            {"symbol": list(self.notes), "note": list(self.notes.values())},
            columns=["symbol", "note"],
        )


def chronological_split(
    frame: pd.DataFrame,
    *,
    horizons: list[int],
    cfg: SplitConfig,
    complete_columns: list[str] | None = None,
    timeframe: str | None = None,
) -> SplitParts:
    """Split the model frame in time order; leave ``gap_bars`` bars out between parts.

    Rows with a NULL in any of ``complete_columns`` (features whose window is
    not full yet) are left out first; each symbol's first ts is kept in
    ``first_ts`` (for token age at serving). ``cfg.mode`` chooses shared
    calendar cuts or per-symbol cuts (module docstring). ``timeframe`` gives
    the bar length of the calendar gap; without it the most common spacing of
    the frame's timestamps is used.
    """
    if frame.empty:
        raise DataContractError("Cannot split an empty model frame; ingest candles first.")
    missing = {"symbol", "ts"} - set(frame.columns)
    if missing:
        raise DataContractError(f"Model frame lacks columns {sorted(missing)}.")
    first_ts = {str(k): v for k, v in frame.groupby("symbol")["ts"].min().items()}
    gap = cfg.gap_bars if cfg.gap_bars is not None else max(horizons)
    bar = _bar_length(frame, timeframe) if cfg.mode == "calendar" and gap > 0 else None
    if complete_columns:
        frame = frame.dropna(subset=list(complete_columns))
    notes = {s: "no rows with complete features" for s in first_ts}
    for symbol in frame["symbol"].unique():
        notes.pop(str(symbol), None)
    if frame.empty:
        raise DataContractError(
            f"No row of the model frame has all of {len(complete_columns or [])} feature columns; "
            "ingest more history than the longest feature window."
        )
    if cfg.mode == "calendar":
        gap_td = pd.Timedelta(0) if bar is None else gap * bar
        parts = _split_calendar(frame, horizons=horizons, cfg=cfg, gap_bars=gap, gap_td=gap_td)
    else:
        parts = _split_per_symbol(frame, horizons=horizons, cfg=cfg, gap_bars=gap)
    notes.update(parts.notes)
    for symbol, note in notes.items():
        log.warning("split (%s): symbol %s: %s", cfg.mode, symbol, note)
    return replace(parts, first_ts=first_ts, notes=dict(sorted(notes.items())))


# ---------------------------------------------------------------- calendar mode
def calendar_cuts(ts: pd.Series, cfg: SplitConfig, gap_td: pd.Timedelta) -> dict[str, pd.Timestamp]:
    """Shared cut dates from the pooled timestamps of all symbols.

    ``val_start`` and ``test_start`` are the pooled row-count quantiles at
    ``train_frac`` and ``train_frac + val_frac``. The gap is taken from the end
    of the earlier part (its labels look forward into it): ``train_end =
    val_start - gap``, ``val_end = test_start - gap``; the test window is kept
    whole. Example: 1000 pooled rows, 60/20/20 -> ``val_start`` is the ts of
    pooled row 600, ``test_start`` that of row 800.
    """
    ordered = ts.sort_values(kind="stable").reset_index(drop=True)
    n = len(ordered)
    val_start = ordered.iloc[min(int(np.floor(n * cfg.train_frac)), n - 1)]
    test_start = ordered.iloc[min(int(np.floor(n * (cfg.train_frac + cfg.val_frac))), n - 1)]
    return {
        "train_end": val_start - gap_td,
        "val_start": val_start,
        "val_end": test_start - gap_td,
        "test_start": test_start,
    }


def _split_calendar(
    frame: pd.DataFrame,
    *,
    horizons: list[int],
    cfg: SplitConfig,
    gap_bars: int,
    gap_td: pd.Timedelta,
) -> SplitParts:
    """Parts at the shared cuts, purged against the shared starts; short symbols noted."""
    cuts = calendar_cuts(frame["ts"], cfg, gap_td)
    ordered = frame.sort_values(["symbol", "ts"], kind="stable")
    ts = ordered["ts"]
    label_end = _label_end(ordered, horizons)
    # a label that ends at/after the next part's start is purged (NaT: no label, kept)
    in_train = (ts < cuts["train_end"]) & ~(label_end >= cuts["val_start"])
    in_val = (ts >= cuts["val_start"]) & (ts < cuts["val_end"]) & ~(label_end >= cuts["test_start"])
    in_test = ts >= cuts["test_start"]
    n_purged = int(((ts < cuts["train_end"]) & ~in_train).sum())
    n_purged += int(((ts >= cuts["val_start"]) & (ts < cuts["val_end"]) & ~in_val).sum())
    if n_purged:
        log.info("purged %d rows whose labels reach the next part", n_purged)
    train, val, test = (ordered.loc[m.to_numpy()] for m in (in_train, in_val, in_test))
    _check_calendar_parts(val, test, frame, cuts, cfg, gap_bars)
    n_train = train.groupby("symbol").size()
    short = n_train.index[n_train < cfg.min_train_rows]
    notes = _calendar_notes(ordered, n_train, val, test, cuts, cfg)
    if len(short) == len(n_train):
        _raise_no_training_symbol(n_train, cuts, cfg, gap_bars)
    train = train[~train["symbol"].isin(short)]
    return SplitParts(
        *(p.reset_index(drop=True) for p in (train, val, test)),
        gap_bars=gap_bars,
        mode="calendar",
        cut_ts=cuts,
        notes=notes,
    )


def _calendar_notes(
    ordered: pd.DataFrame,
    n_train: pd.Series,
    val: pd.DataFrame,
    test: pd.DataFrame,
    cuts: dict[str, pd.Timestamp],
    cfg: SplitConfig,
) -> dict[str, str]:
    """What each symbol lacks under the shared cuts, with its data range."""
    n_val, n_test = val.groupby("symbol").size(), test.groupby("symbol").size()
    span = ordered.groupby("symbol")["ts"].agg(["min", "max"])
    notes = {}
    for symbol, (start, end) in span.iterrows():
        lacks = []
        rows = int(n_train.get(symbol, 0))
        if rows < cfg.min_train_rows:
            lacks.append(
                f"{rows} training rows < min_train_rows={cfg.min_train_rows} "
                f"before {cuts['train_end']}; left out of train"
            )
        if int(n_val.get(symbol, 0)) == 0:
            lacks.append(f"no validation rows in [{cuts['val_start']}, {cuts['val_end']})")
        if int(n_test.get(symbol, 0)) == 0:
            lacks.append(f"no test rows from {cuts['test_start']}")
        if lacks:
            notes[str(symbol)] = f"data {start} .. {end}: " + "; ".join(lacks)
    return notes


def _check_calendar_parts(
    val: pd.DataFrame,
    test: pd.DataFrame,
    frame: pd.DataFrame,
    cuts: dict[str, pd.Timestamp],
    cfg: SplitConfig,
    gap_bars: int,
) -> None:
    for name, part in (("validation", val), ("test", test)):
        if part.empty:
            raise DataContractError(
                f"A calendar split of {len(frame)} rows from {frame['ts'].min()} to "
                f"{frame['ts'].max()} leaves no {name} rows (val_start={cuts['val_start']}, "
                f"test_start={cuts['test_start']}, gap_bars={gap_bars}, fractions "
                f"{cfg.train_frac}/{cfg.val_frac}/{cfg.test_frac}). Ingest more history, "
                "lower split.gap_bars or raise split.val_frac / split.test_frac."
            )


def _raise_no_training_symbol(
    n_train: pd.Series, cuts: dict[str, pd.Timestamp], cfg: SplitConfig, gap_bars: int
) -> None:
    most = f"{n_train.idxmax()} with {int(n_train.max())} rows" if len(n_train) else "none"
    raise DataContractError(
        f"No symbol has enough training rows for a calendar split: min_train_rows="
        f"{cfg.min_train_rows} before the shared train end {cuts['train_end']} (train_frac="
        f"{cfg.train_frac}, gap_bars={gap_bars}; most: {most}). Ingest more history, lower "
        "split.min_train_rows, or set split.mode='per_symbol'."
    )


def _bar_length(frame: pd.DataFrame, timeframe: str | None) -> pd.Timedelta:
    """One bar: from ``timeframe`` if given, else the most common spacing of ``ts``."""
    if timeframe is not None:
        return pd.Timedelta(seconds=timeframe_seconds(timeframe))
    steps = frame.sort_values(["symbol", "ts"]).groupby("symbol")["ts"].diff()
    steps = steps[steps > pd.Timedelta(0)]
    if steps.empty:
        raise DataContractError(
            "Cannot infer the bar length for the calendar split gap: no symbol has two distinct "
            "timestamps; pass timeframe= (e.g. cfg.data.timeframe) or set split.gap_bars=0."
        )
    return pd.Timedelta(steps.mode().iloc[0])


def _label_end(frame: pd.DataFrame, horizons: list[int]) -> pd.Series:
    """Latest label end ``t1_h`` over the horizons per row (NaT where there is none)."""
    t1_cols = [f"t1_{h}" for h in horizons if f"t1_{h}" in frame.columns]
    if not t1_cols:
        return pd.Series(pd.NaT, index=frame.index, dtype=frame["ts"].dtype)
    return frame[t1_cols].max(axis=1)


# ---------------------------------------------------------------- per-symbol mode
def _split_per_symbol(
    frame: pd.DataFrame, *, horizons: list[int], cfg: SplitConfig, gap_bars: int
) -> SplitParts:
    """Cut every symbol's own rows by position, so each contributes 60/20/20 of itself.

    Symbols too short to give ``cfg.min_train_rows`` training rows are left out
    (and noted).
    """
    gap = gap_bars
    pieces: dict[str, list[pd.DataFrame]] = {name: [] for name in PART_NAMES}
    notes: dict[str, str] = {}
    ordered = frame.sort_values(["symbol", "ts"], kind="stable")
    for symbol, g in ordered.groupby("symbol", sort=True):
        bounds = _part_bounds(len(g), cfg, gap)
        if bounds is None:
            notes[str(symbol)] = (
                f"{len(g)} rows are too few for train >= {cfg.min_train_rows} rows with gap "
                f"{gap}; left out"
            )
            continue
        for name, (lo, hi) in zip(PART_NAMES, bounds, strict=True):
            pieces[name].append(g.iloc[lo:hi])
    if not pieces["train"]:
        raise DataContractError(
            f"No symbol has enough rows for a split with min_train_rows={cfg.min_train_rows} "
            f"and gap_bars={gap} (largest symbol: {ordered.groupby('symbol').size().max()} rows). "
            "Ingest more history or lower split.min_train_rows."
        )
    parts = SplitParts(
        *(pd.concat(pieces[n], ignore_index=True) for n in PART_NAMES),
        gap_bars=gap,
        mode="per_symbol",
        notes=notes,
    )
    return _purge_overlaps(parts, horizons)


def _part_bounds(n_rows: int, cfg: SplitConfig, gap: int) -> list[tuple[int, int]] | None:
    usable = n_rows - 2 * gap
    n_train = int(np.floor(usable * cfg.train_frac))
    n_val = int(np.floor(usable * cfg.val_frac))
    if n_train < cfg.min_train_rows or n_val < 1 or usable - n_train - n_val < 1:
        return None
    val_lo = n_train + gap
    test_lo = val_lo + n_val + gap
    return [(0, n_train), (val_lo, val_lo + n_val), (test_lo, n_rows)]


def _purge_overlaps(parts: SplitParts, horizons: list[int]) -> SplitParts:
    """Drop earlier-part rows whose label ends at or after the next part's start.

    The row gap already separates the parts; this purge by each label's own end
    time ``t1_h`` covers what a row count cannot (rows dropped inside a gap,
    segment boundaries), so no training label overlaps validation or test.
    """
    t1_cols = [f"t1_{h}" for h in horizons if f"t1_{h}" in parts.train.columns]
    if not t1_cols:
        return parts
    train = _purge_before(parts.train, parts.val, t1_cols)
    val = _purge_before(parts.val, parts.test, t1_cols)
    return replace(parts, train=train, val=val)


def _purge_before(early: pd.DataFrame, late: pd.DataFrame, t1_cols: list[str]) -> pd.DataFrame:
    if early.empty or late.empty:
        return early
    next_start = early["symbol"].map(late.groupby("symbol")["ts"].min())
    label_end = early[t1_cols].max(axis=1)
    overlap = label_end.notna() & next_start.notna() & (label_end >= next_start)
    if overlap.any():
        log.info("purged %d rows whose labels overlap the next part", int(overlap.sum()))
    return early.loc[~overlap].reset_index(drop=True)
