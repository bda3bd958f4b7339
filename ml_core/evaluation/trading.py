"""An honest trading view of P(up) forecasts for one horizon h, after fees.

Assumptions (kept simple on purpose, and the same for every model and baseline):

- **Position** from P(up): ``long_flat`` holds 1 when ``p > threshold`` else 0;
  ``long_short`` holds +1 when ``p > threshold`` else -1.
- **Non-overlapping blocks**: h-bar forward returns of neighbouring rows
  overlap, so compounding them would count the same move h times. Trades are
  placed only on every h-th bar of a time grid that starts at the first
  tradable bar of the frame (shared by all symbols, so they trade the same
  periods); with regular bars this is every h-th row of each symbol, sorted by
  ts. A position is held for h bars and earns the row's ``ret_{h}``.
- **Returns**: ``ret_{h}`` is a forward *log* return; a block earns the simple
  return ``position * (exp(ret_h) - 1)`` (a short is rebalanced each block).
  Rows with an unknown ``ret_{h}`` (end of a segment) cannot be traded and are
  dropped before the grid is applied.
- **Fees**: ``fee_bps / 1e4 * |position change|`` per symbol, charged in the
  block where the change happens: entering from flat and flipping count, and
  every symbol's last position is closed in its last block. Buy-and-hold pays
  the same (one entry, one exit per symbol).
- **Portfolio**: equal weight across the symbols trading a period (mean of
  their net simple returns), compounded over periods. Sharpe is annualized
  with ``bars_per_year(timeframe) / h`` periods per year, risk-free rate 0.

Example::

    m = trading_metrics(test, p, horizon=3, cfg=EvaluationConfig(), timeframe="1h")
    m["total_return"], m["bh_total_return"], m["excess_return"]
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ml_core.config import EvaluationConfig, bars_per_year, timeframe_seconds
from ml_core.errors import ConfigError, DataContractError

#: Keys of :func:`trading_metrics`, in display order.
TRADING_KEYS = (
    "total_return",
    "sharpe",
    "max_drawdown",
    "win_rate",
    "n_trades",
    "exposure",
    "turnover",
    "n_periods",
    "bh_total_return",
    "bh_sharpe",
    "bh_max_drawdown",
    "excess_return",
)


def trading_metrics(
    frame: pd.DataFrame,
    p_up: ArrayLike,
    *,
    horizon: int,
    cfg: EvaluationConfig,
    timeframe: str,
) -> dict[str, float]:
    """Trade ``p_up`` on non-overlapping h-bar blocks of ``frame``; see the module doc.

    ``frame`` needs ``symbol``, ``ts`` and ``ret_{horizon}``; ``p_up`` has one
    probability per frame row. Returns ``total_return`` (compounded simple
    return), ``sharpe`` (annualized; NaN with fewer than 2 periods or zero
    variance), ``max_drawdown`` (<= 0, a fraction of the running peak),
    ``win_rate`` (share of held symbol-blocks with a positive net return; NaN
    if never in the market), ``n_trades`` (positions opened: entries and
    flips), ``exposure`` (share of symbol-blocks held), ``turnover`` (sum of
    |position change|), ``n_periods``, the buy-and-hold ``bh_total_return``,
    ``bh_sharpe``, ``bh_max_drawdown`` on the same blocks, and
    ``excess_return = total_return - bh_total_return``.
    """
    blocks = _blocks(frame, p_up, horizon, timeframe)
    ppy = bars_per_year(timeframe) / horizon
    fee_rate = cfg.fee_bps / 1e4
    strat = _net_returns(blocks, _positions(blocks["p"].to_numpy(), cfg), fee_rate)
    bh = _net_returns(blocks, np.ones(len(blocks)), fee_rate)
    s_stats = _period_stats(_portfolio(strat), ppy)
    b_stats = _period_stats(_portfolio(bh), ppy)
    held = strat["pos"].to_numpy() != 0
    n_blocks = len(strat)
    out: dict[str, float] = {
        **s_stats,
        "win_rate": float((strat["net"].to_numpy()[held] > 0).mean()) if held.any() else math.nan,
        "n_trades": int(strat["opened"].sum()),
        "exposure": float(held.mean()) if n_blocks else math.nan,
        "turnover": float(strat["turnover"].sum()),
        "n_periods": int(strat["ts"].nunique()),
        "bh_total_return": b_stats["total_return"],
        "bh_sharpe": b_stats["sharpe"],
        "bh_max_drawdown": b_stats["max_drawdown"],
    }
    out["excess_return"] = out["total_return"] - out["bh_total_return"]
    return {key: out[key] for key in TRADING_KEYS}


#: Fees (bps per unit of turnover) of the report's fee-sensitivity table.
FEE_LEVELS_BPS = (0.0, 4.0, 10.0, 20.0)


def fee_sensitivity(
    frame: pd.DataFrame,
    p_up: ArrayLike,
    *,
    horizon: int,
    cfg: EvaluationConfig,
    timeframe: str,
    fees_bps: tuple[float, ...] = FEE_LEVELS_BPS,
) -> pd.DataFrame:
    """The trading view at each fee level: one row per fee with the strategy's total
    return, Sharpe and turnover, and buy-and-hold's total return on the same blocks."""
    rows = []
    for fee in fees_bps:
        m = trading_metrics(
            frame,
            p_up,
            horizon=horizon,
            cfg=cfg.model_copy(update={"fee_bps": float(fee)}),
            timeframe=timeframe,
        )
        rows.append(
            {
                "horizon": horizon,
                "fee_bps": float(fee),
                "total_return": m["total_return"],
                "sharpe": m["sharpe"],
                "turnover": m["turnover"],
                "bh_total_return": m["bh_total_return"],
                "excess_return": m["excess_return"],
            }
        )
    return pd.DataFrame(rows)


def probability_deciles(frame: pd.DataFrame, p_up: ArrayLike, *, horizon: int) -> pd.DataFrame:
    """Rows ranked by P(up) into ten equal-count groups: per decile the rows, the mean
    P(up), the hit rate (share of up moves, ``up_h``) and the mean forward simple return
    (``exp(ret_h) - 1``). A model with an edge has hit rate and return rising with the
    decile; unlabelled rows are left out."""
    p = np.asarray(p_up, dtype=float)
    y = frame[f"up_{horizon}"].to_numpy(dtype=float)
    ret = np.expm1(frame[f"ret_{horizon}"].to_numpy(dtype=float))
    ok = np.isfinite(p) & np.isfinite(y)
    if ok.sum() < 10:
        return pd.DataFrame()
    ranks = pd.Series(p[ok]).rank(method="first").to_numpy()
    decile = np.minimum((ranks - 1) * 10 // ok.sum(), 9).astype(int) + 1
    table = pd.DataFrame({"decile": decile, "p": p[ok], "up": y[ok], "ret": ret[ok]})
    out = table.groupby("decile").agg(
        n=("p", "size"), mean_p=("p", "mean"), hit_rate=("up", "mean"), mean_return=("ret", "mean")
    )
    return out.reset_index().assign(horizon=horizon)[
        ["horizon", "decile", "n", "mean_p", "hit_rate", "mean_return"]
    ]


def equity_curve(
    frame: pd.DataFrame,
    p_up: ArrayLike,
    *,
    horizon: int,
    cfg: EvaluationConfig,
    timeframe: str,
) -> pd.Series:
    """Equity (starting at 1.0) of the strategy of :func:`trading_metrics`.

    Indexed by ts: the first point is the start of the first block (value
    1.0), then one point at the end of each period (start + h bars).
    """
    blocks = _blocks(frame, p_up, horizon, timeframe)
    net = _net_returns(blocks, _positions(blocks["p"].to_numpy(), cfg), cfg.fee_bps / 1e4)
    return _equity(_portfolio(net), horizon, timeframe, name="strategy")


def buy_and_hold_curve(
    frame: pd.DataFrame, *, horizon: int, cfg: EvaluationConfig, timeframe: str
) -> pd.Series:
    """Equity of buy-and-hold on the same blocks as :func:`equity_curve` (fees included)."""
    blocks = _blocks(frame, np.ones(len(frame)), horizon, timeframe)
    net = _net_returns(blocks, np.ones(len(blocks)), cfg.fee_bps / 1e4)
    return _equity(_portfolio(net), horizon, timeframe, name="buy_and_hold")


def _blocks(frame: pd.DataFrame, p_up: ArrayLike, horizon: int, timeframe: str) -> pd.DataFrame:
    """Tradable rows on the h-bar grid: columns symbol, ts, ret, p; sorted by symbol, ts."""
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ConfigError(f"horizon must be a positive number of bars, got {horizon!r}.")
    ret_col = f"ret_{horizon}"
    missing = [c for c in ("symbol", "ts", ret_col) if c not in frame.columns]
    if missing:
        raise DataContractError(
            f"trading frame lacks columns {missing}; pass the model frame with symbol, ts and "
            f"the forward log return {ret_col!r}."
        )
    p = np.asarray(p_up, dtype=float).ravel()
    if p.size != len(frame):
        raise DataContractError(
            f"frame has {len(frame)} rows but p_up has {p.size}; pass one probability per row."
        )
    data = pd.DataFrame(
        {
            "symbol": frame["symbol"].to_numpy(),
            "ts": pd.to_datetime(frame["ts"]).to_numpy(),
            "ret": frame[ret_col].to_numpy(dtype=float),
            "p": p,
        }
    )
    data = data[data["ret"].notna()]
    if data["p"].isna().any():
        raise DataContractError(
            f"p_up is NaN on {int(data['p'].isna().sum())} tradable rows; predict every row "
            f"with a known {ret_col} (or drop those rows from frame and p_up together)."
        )
    if data.empty:
        return data.reset_index(drop=True)
    bar = pd.Timedelta(seconds=timeframe_seconds(timeframe))
    offset_bars = (data["ts"] - data["ts"].min()) // bar
    data = data[offset_bars.to_numpy() % horizon == 0]
    data = data.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    dup = data.duplicated(["symbol", "ts"])
    if dup.any():
        first = data.loc[dup, ["symbol", "ts"]].iloc[0].tolist()
        raise DataContractError(
            f"duplicate (symbol, ts) rows, e.g. {first}; pass one row per symbol and bar."
        )
    return data


def _positions(p: np.ndarray, cfg: EvaluationConfig) -> np.ndarray:
    """Position per block from P(up) under ``cfg.mode`` and ``cfg.threshold``."""
    long = p > cfg.threshold
    if cfg.mode == "long_flat":
        return long.astype(float)
    return np.where(long, 1.0, -1.0)


def _net_returns(blocks: pd.DataFrame, pos: np.ndarray, fee_rate: float) -> pd.DataFrame:
    """Per symbol-block: position, turnover, positions opened and net simple return."""
    sym = blocks["symbol"].to_numpy()
    n = len(sym)
    first = np.ones(n, dtype=bool)
    last = np.ones(n, dtype=bool)
    if n:
        first[1:] = sym[1:] != sym[:-1]
        last[:-1] = first[1:]
    prev = np.where(first, 0.0, np.roll(pos, 1)) if n else pos
    turnover = np.abs(pos - prev) + np.where(last, np.abs(pos), 0.0)
    simple = np.expm1(blocks["ret"].to_numpy())
    return pd.DataFrame(
        {
            "symbol": sym,
            "ts": blocks["ts"].to_numpy(),
            "pos": pos,
            "turnover": turnover,
            "opened": (pos != 0) & (pos != prev),
            "net": pos * simple - fee_rate * turnover,
        }
    )


def _portfolio(net: pd.DataFrame) -> pd.Series:
    """Equal-weight portfolio return per period (ts), sorted by ts."""
    return net.groupby("ts", sort=True)["net"].mean()


def _period_stats(returns: pd.Series, periods_per_year: float) -> dict[str, float]:
    """Compounded total return, annualized Sharpe and max drawdown of period returns."""
    r = returns.to_numpy(dtype=float)
    if r.size == 0:
        return {"total_return": math.nan, "sharpe": math.nan, "max_drawdown": math.nan}
    equity = np.cumprod(1.0 + r)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    std = r.std(ddof=1) if r.size > 1 else 0.0
    sharpe = float(r.mean() / std * math.sqrt(periods_per_year)) if std > 0 else math.nan
    return {
        "total_return": float(equity[-1] - 1.0),
        "sharpe": sharpe,
        "max_drawdown": float(min(0.0, (equity / peak - 1.0).min())),
    }


def _equity(returns: pd.Series, horizon: int, timeframe: str, *, name: str) -> pd.Series:
    """Equity curve from period returns: 1.0 at the first start, then one point per period end."""
    if returns.empty:
        return pd.Series([], index=pd.DatetimeIndex([], name="ts"), dtype=float, name=name)
    step = pd.Timedelta(seconds=timeframe_seconds(timeframe) * horizon)
    index = pd.DatetimeIndex([returns.index[0]]).append(pd.DatetimeIndex(returns.index) + step)
    values = np.concatenate([[1.0], np.cumprod(1.0 + returns.to_numpy(dtype=float))])
    return pd.Series(values, index=index.rename("ts"), name=name)
