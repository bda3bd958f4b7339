"""Triple-barrier labels: which of take-profit, stop-loss or the vertical barrier comes first.

For the bar at t (entry at ``close_t``) and a horizon of h bars, the path is the
next h bars t+1 .. t+h of the *same symbol and segment* (``segment_start``):

* take-profit  ``U_t = close_t * exp(+pt_mult * sigma_t * sqrt(h))``
* stop-loss    ``L_t = close_t * exp(-sl_mult * sigma_t * sqrt(h))``
* vertical     bar t+h.

``sigma_t`` is a per-bar volatility of 1-bar log returns known at t (default the
causal feature ``volatility_60``; with ``vol_column=None`` it is computed here
as the sample std of the last ``vol_window`` 1-bar log returns of the segment,
the same definition). Under a random walk the std of an h-bar log return is
``sigma_t * sqrt(h)``, so ``pt_mult`` / ``sl_mult`` are multiples of the h-bar std.

Touches (``touch``):

* ``"high_low"`` (default): intrabar. Bar j touches U when ``high_j >= U`` and L
  when ``low_j <= L``. The fill is the barrier, or the bar's ``open`` when the bar
  opened beyond it (a gap through the barrier). **Tie rule**: when one bar
  touches both, its open decides if it already lies beyond a barrier (that
  barrier came first); otherwise the intrabar order is unknown and the label is
  the conservative stop-loss.
* ``"close"``: only closes count; the fill is the touching bar's close; no ties.

Output per row (aligned to the input index), for horizon h:

* ``tb_{h}``: +1.0 take-profit first, -1.0 stop-loss first, 0.0 vertical barrier
  (a touch on bar t+h itself still counts as a touch);
* ``tb_t1_{h}``: ts of the touching bar, or of bar t+h (the label's end, for purging);
* ``tb_ret_{h}``: log return from ``close_t`` to the fill (vertical: to ``close_{t+h}``).

All three are NULL (NaN / NaT), never filled, when bar t+h lies beyond the end of
the segment (even if a barrier was touched earlier: otherwise whether a label
exists would depend on its outcome), or when ``sigma_t`` is missing or not
positive (warm-up, or a flat stretch with no meaningful barriers). Only bars
t+1 .. t+h are read: prices after t+h never change the label.

Vectorized: one pass over the frame sorted by (symbol, ts), comparing each row's
barriers with a sliding window of the next h bars, in chunks of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from ml_core.config import TripleBarrierConfig
from ml_core.errors import ConfigError, DataContractError
from ml_core.features.windows import CHUNK_ELEMENTS, rolling_std

Touch = Literal["high_low", "close"]

#: Window elements compared per chunk (rows x horizon); bounds memory at a few MB.


def triple_barrier_columns(horizon: int) -> list[str]:
    """Names of the triple-barrier columns for ``horizon``."""
    return [f"tb_{horizon}", f"tb_t1_{horizon}", f"tb_ret_{horizon}"]


def triple_barrier_labels(
    frame: pd.DataFrame,
    *,
    horizon: int,
    pt_mult: float | None = 2.0,
    sl_mult: float | None = 2.0,
    vol_column: str | None = "volatility_60",
    vol_window: int = 60,
    touch: Touch = "high_low",
) -> pd.DataFrame:
    """Triple-barrier labels ``tb_h, tb_t1_h, tb_ret_h`` for every row of ``frame``.

    ``frame`` needs ``symbol, ts, segment_start, close`` (a ``timeframe``
    column, if present, is part of the key), ``high, low`` for
    ``touch="high_low"`` (``open`` optional, used for gaps and ties) and
    ``vol_column`` unless it is None. The result has ``frame``'s index; the
    input is not modified. See the module docstring for the rules.
    """
    _check_params(horizon, pt_mult, sl_mult, vol_window, touch)
    order, seg = _sorted_segments(frame)
    bars = _bar_arrays(frame, order, touch)
    sigma = _sigma(frame, order, seg, bars.lc, vol_column, vol_window)
    scale = sigma * np.sqrt(horizon)
    up = bars.lc + (np.inf if pt_mult is None else pt_mult * scale)
    dn = bars.lc - (np.inf if sl_mult is None else sl_mult * scale)
    valid = _valid_rows(seg, sigma, horizon)
    label, end_pos, fill = _first_touches(bars, up, dn, valid, horizon)
    ret = fill - bars.lc
    return _assemble(frame, order, horizon, label, end_pos, ret)


def add_triple_barrier_labels(
    frame: pd.DataFrame, horizons: list[int], cfg: TripleBarrierConfig
) -> pd.DataFrame:
    """A copy of ``frame`` with ``tb_h, tb_t1_h, tb_ret_h`` added for every horizon
    (the label horizons of the timeframe, e.g. ``LabelConfig.for_timeframe``)."""
    if not horizons:
        raise ConfigError("horizons=[] is empty; pass at least one horizon in bars, e.g. [60].")
    parts = [frame]
    for h in sorted(set(horizons)):
        parts.append(
            triple_barrier_labels(
                frame,
                horizon=h,
                pt_mult=cfg.pt_mult,
                sl_mult=cfg.sl_mult,
                vol_column=cfg.vol_column,
                vol_window=cfg.vol_window,
                touch=cfg.touch,
            )
        )
    return pd.concat(parts, axis=1)


def _check_params(
    horizon: int, pt_mult: float | None, sl_mult: float | None, vol_window: int, touch: str
) -> None:
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
        raise ConfigError(f"horizon={horizon!r} must be a positive number of bars, e.g. 60.")
    for name, mult in (("pt_mult", pt_mult), ("sl_mult", sl_mult)):
        if mult is not None and not (np.isfinite(mult) and mult > 0):
            raise ConfigError(f"{name}={mult!r} must be a positive finite number or None.")
    if vol_window < 2:
        raise ConfigError(f"vol_window={vol_window} must be at least 2 bars for a sample std.")
    if touch not in ("high_low", "close"):
        raise ConfigError(f"touch={touch!r} must be 'high_low' or 'close'.")


def _require(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataContractError(
            f"triple-barrier labels need columns {missing} (frame has {list(frame.columns)}); "
            "build the model frame with ml_core.features.build_model_frame, which adds "
            "segment_start and the volatility features."
        )


def _sorted_segments(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row order sorted by (symbol, [timeframe], ts) and a segment id per sorted row."""
    _require(frame, ["symbol", "ts", "segment_start", "close"])
    keys = ["symbol", "timeframe"] if "timeframe" in frame.columns else ["symbol"]
    key_frame = frame[[*keys, "segment_start", "ts"]].reset_index(drop=True)
    order = key_frame.sort_values([*keys, "ts"], kind="mergesort").index.to_numpy()
    ordered = key_frame.iloc[order]
    group = ordered[[*keys, "segment_start"]]
    new_seg = (group != group.shift()).any(axis=1).to_numpy()
    not_after = (ordered["ts"].diff() <= pd.Timedelta(0)).to_numpy()
    repeated = ~new_seg & not_after
    if repeated.any():
        at = ordered.iloc[int(np.flatnonzero(repeated)[0])]
        raise DataContractError(
            f"duplicate ts {at['ts']} for symbol {at['symbol']!r}; "
            "deduplicate on (symbol, timeframe, ts) before labelling."
        )
    return order, np.cumsum(new_seg)


@dataclass(frozen=True)
class _Bars:
    """Log prices in sorted order; ``hi``/``lo`` are the touch paths (closes for 'close')."""

    lc: np.ndarray
    hi: np.ndarray
    lo: np.ndarray
    op: np.ndarray | None
    close_only: bool


def _bar_arrays(frame: pd.DataFrame, order: np.ndarray, touch: str) -> _Bars:
    cols = ["close", "high", "low"] if touch == "high_low" else ["close"]
    _require(frame, cols)
    if touch == "high_low" and "open" in frame.columns:
        cols.append("open")
    logs: dict[str, np.ndarray] = {}
    for col in cols:
        values = frame[col].to_numpy(dtype="float64", na_value=np.nan)[order]
        if (values <= 0).any():
            raise DataContractError(
                f"column {col!r} has non-positive prices (min {np.nanmin(values):g}); "
                "quarantine or drop such candles before labelling."
            )
        logs[col] = np.log(values)
    lc = logs["close"]
    return _Bars(
        lc=lc,
        hi=logs.get("high", lc),
        lo=logs.get("low", lc),
        op=logs.get("open"),
        close_only=touch == "close",
    )


def _sigma(
    frame: pd.DataFrame,
    order: np.ndarray,
    seg: np.ndarray,
    lc: np.ndarray,
    vol_column: str | None,
    vol_window: int,
) -> np.ndarray:
    """Per-bar volatility known at t, in sorted order."""
    if vol_column is not None:
        _require(frame, [vol_column])
        return frame[vol_column].to_numpy(dtype="float64", na_value=np.nan)[order]
    ret = np.full(len(lc), np.nan)
    same = seg[1:] == seg[:-1]
    ret[1:] = np.where(same, lc[1:] - lc[:-1], np.nan)
    # a window reaching back over a segment start holds the NaN return there: NaN
    return rolling_std(ret, vol_window)


def _valid_rows(seg: np.ndarray, sigma: np.ndarray, horizon: int) -> np.ndarray:
    """Rows whose bar t+h lies in their segment and whose sigma is usable."""
    n = len(seg)
    valid = np.zeros(n, dtype=bool)
    if n > horizon:
        valid[: n - horizon] = seg[horizon:] == seg[: n - horizon]
    with np.errstate(invalid="ignore"):
        return valid & np.isfinite(sigma) & (sigma > 0)


def _first_touches(
    bars: _Bars, up: np.ndarray, dn: np.ndarray, valid: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label, end position (sorted row of the touch or t+h; -1 invalid) and log fill price."""
    n = len(up)
    label = np.full(n, np.nan)
    end_pos = np.full(n, -1, dtype="int64")
    fill = np.full(n, np.nan)
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        return label, end_pos, fill
    hi_win = sliding_window_view(bars.hi[1:], horizon)  # window k = bars k+1 .. k+h
    lo_win = sliding_window_view(bars.lo[1:], horizon)
    step = max(1, CHUNK_ELEMENTS // horizon)
    for start in range(int(rows[0]), int(rows[-1]) + 1, step):
        stop = min(start + step, int(rows[-1]) + 1)
        sl = slice(start, stop)
        first_up = _first_true(hi_win[sl] >= up[sl, None], horizon)
        first_dn = _first_true(lo_win[sl] <= dn[sl, None], horizon)
        _resolve(bars, up, dn, sl, first_up, first_dn, horizon, (label, end_pos, fill))
    label[~valid], end_pos[~valid], fill[~valid] = np.nan, -1, np.nan
    return label, end_pos, fill


def _first_true(hit: np.ndarray, horizon: int) -> np.ndarray:
    """Offset (0 .. h-1) of the first True per row, h where there is none."""
    return np.where(hit.any(axis=1), hit.argmax(axis=1), horizon)


def _resolve(
    bars: _Bars,
    up: np.ndarray,
    dn: np.ndarray,
    sl: slice,
    first_up: np.ndarray,
    first_dn: np.ndarray,
    horizon: int,
    out: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Turn first-touch offsets of the rows in ``sl`` into label, end position and fill."""
    label, end_pos, fill = out
    t = np.arange(sl.start, sl.stop)
    first = np.minimum(first_up, first_dn)
    touched = first < horizon
    pos = t + 1 + np.minimum(first, horizon - 1)  # touch bar, or t+h
    tp = touched & (first_up < first_dn)
    stop_loss = touched & (first_dn < first_up)
    tie = touched & (first_up == first_dn)
    if bars.op is not None:  # an open beyond a barrier tells which came first
        op = bars.op[pos]
        gap_up = tie & (op >= up[sl])
        tp |= gap_up
        stop_loss |= tie & ~gap_up
        tp_fill, sl_fill = np.fmax(up[sl], op), np.fmin(dn[sl], op)  # NaN open: barrier
    else:
        stop_loss |= tie
        tp_fill, sl_fill = up[sl], dn[sl]
    if bars.close_only:  # the fill is the touching close
        tp_fill = sl_fill = bars.lc[pos]
    label[sl] = np.select([tp, stop_loss], [1.0, -1.0], 0.0)
    end_pos[sl] = pos
    fill[sl] = np.select([tp, stop_loss], [tp_fill, sl_fill], bars.lc[pos])


def _assemble(
    frame: pd.DataFrame,
    order: np.ndarray,
    horizon: int,
    label: np.ndarray,
    end_pos: np.ndarray,
    ret: np.ndarray,
) -> pd.DataFrame:
    """Columns back in the input's row order and index."""
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    ts_sorted = frame["ts"].iloc[order].reset_index(drop=True)
    pos = end_pos[inverse]
    t1 = ts_sorted.take(np.where(pos >= 0, pos, 0)).where(pos >= 0)
    name_label, name_t1, name_ret = triple_barrier_columns(horizon)
    return pd.DataFrame(
        {
            name_label: label[inverse],
            name_t1: pd.Series(t1.array, index=frame.index),
            name_ret: ret[inverse],
        },
        index=frame.index,
    )
