"""Candles from an exchange (ccxt) into the warehouse, page by page, behind the quality gate.

``download_candles`` runs one ``SourceConfig``: it creates the ccxt exchange
(``enableRateLimit`` on, ``urls`` overrides applied), loads its markets, checks
every symbol and the timeframe, then per symbol pages through ``fetch_ohlcv``
from the bar after the last one stored for (symbol, timeframe), else from
``since``, until the exchange has no newer complete bar:

- the still-forming bar (open time + timeframe > now) is dropped and counted;
- consecutive pages are grouped into ``ingest_frame`` batches of about
  ``batch_bars`` bars (source ``exchange:market:symbol:timeframe``; the gate costs
  ~0.5 s a batch whatever its size). A malformed row (missing or non-numeric value,
  wrong length, no open time) is kept as NaN/NaT so the gate quarantines its whole
  batch; that symbol then stops, so the next run resumes at the last good bar and no
  hole is left behind;
- network errors, HTTP 429 and 5xx (``ccxt.NetworkError``) are retried with
  jittered, capped exponential backoff up to ``max_retries``, then ``DownloadError``.

Example::

    src = SourceConfig(symbols=["BTC/USDT"], timeframe="1h", since="2024-01-01")
    result = download_candles(Warehouse(cfg.warehouse_path), src, cfg.quality)
    result.as_dict()["symbols"][0]["n_new"]
"""

from __future__ import annotations

import difflib
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import ccxt
import numpy as np
import pandas as pd

from ml_core.config import QualityConfig, SourceConfig, timeframe_seconds
from ml_core.data.ingest import ingest_frame
from ml_core.data.warehouse import CANDLE_COLUMNS, Warehouse, to_naive_utc
from ml_core.errors import CoincastError, ConfigError, QualityGateError

log = logging.getLogger(__name__)

#: ``progress(symbol, n_bars_stored_so_far, last_ts_stored)``, called after each page.
ProgressFn = Callable[[str, int, pd.Timestamp | None], None]
#: A first download without ``since`` reaches back the longer of these two.
DEFAULT_HISTORY = pd.Timedelta(days=30)
DEFAULT_HISTORY_BARS = 1000

_T = TypeVar("_T")
_NAT = np.iinfo(np.int64).min  # NaT as int64
_MARKET_TYPES = {"spot": ["spot"], "futures": ["linear", "swap"]}


class DownloadError(CoincastError):
    """An exchange download failed (retries exhausted or the exchange refused a request)."""


@dataclass
class SymbolDownload:
    """What one symbol's download did; ``first_ts``/``last_ts`` bound the bars this run stored."""

    symbol: str
    since: pd.Timestamp
    n_pages: int = 0
    n_fetched: int = 0
    n_new: int = 0
    n_updated: int = 0
    n_forming: int = 0
    n_retries: int = 0
    quarantined_batch_id: str | None = None
    quarantine_reason: str | None = None
    first_ts: pd.Timestamp | None = None
    last_ts: pd.Timestamp | None = None

    @property
    def status(self) -> str:
        """'quarantined' (stopped at a bad page; rerun after it is fixed) or 'complete'."""
        return "complete" if self.quarantined_batch_id is None else "quarantined"

    def as_dict(self) -> dict:
        out = asdict(self) | {"status": self.status}
        for key in ("since", "first_ts", "last_ts"):
            out[key] = None if out[key] is None else out[key].isoformat()
        return out


@dataclass
class DownloadResult:
    """One source's download: its symbols in config order."""

    exchange: str
    market: str
    timeframe: str
    symbols: list[SymbolDownload] = field(default_factory=list)
    n_market_retries: int = 0

    @property
    def n_new(self) -> int:
        return sum(s.n_new for s in self.symbols)

    @property
    def quarantined(self) -> list[str]:
        """Symbols stopped by a quarantined page."""
        return [s.symbol for s in self.symbols if s.quarantined_batch_id is not None]

    def as_dict(self) -> dict:
        """Plain dict (for task results, artifacts and JSON)."""
        return {
            "exchange": self.exchange,
            "market": self.market,
            "timeframe": self.timeframe,
            "n_new": self.n_new,
            "n_market_retries": self.n_market_retries,
            "quarantined": self.quarantined,
            "symbols": [s.as_dict() for s in self.symbols],
        }


@dataclass(frozen=True)
class _Retry:
    """Calls retried on ``ccxt.NetworkError`` with equal-jitter capped exponential backoff."""

    max_retries: int
    backoff_s: float
    max_backoff_s: float
    sleep: Callable[[float], None]

    def call(self, fn: Callable[[], _T], what: Callable[[], str]) -> tuple[_T, int]:
        """``(fn(), n_retries)``; ``DownloadError`` naming ``what()`` when retries run out."""
        for attempt in range(self.max_retries + 1):
            try:
                return fn(), attempt
            except ccxt.NetworkError as exc:
                if attempt == self.max_retries:
                    raise DownloadError(
                        f"{what()} failed {attempt + 1} time(s) ({self.max_retries} retries); "
                        f"last error: {type(exc).__name__}: {exc}. The exchange is down, rate "
                        "limiting or unreachable: rerun later (the download resumes where it "
                        "stopped) or raise max_retries."
                    ) from exc
                ceiling = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                delay = ceiling * random.uniform(0.5, 1.0)
                log.warning("%s: %s; retry %d in %.2fs", what(), type(exc).__name__, attempt, delay)
                self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


# ---- the frame --------------------------------------------------------------------------


def ohlcv_frame(rows: Sequence[Any], *, symbol: str, timeframe: str) -> pd.DataFrame:
    """ccxt OHLCV rows ``[ms, open, high, low, close, volume]`` as the canonical candle frame.

    Nothing is dropped: a missing, non-numeric or non-finite value becomes NaN, a
    missing or unusable open time NaT, a row of the wrong length is padded or cut
    to six fields (its missing fields NaN), so the quality gate rejects the batch.
    """
    fixed = [_six(r) for r in rows]
    cols = list(zip(*fixed, strict=True)) if fixed else [()] * 6
    numbers = [np.array([_number(v) for v in col], dtype="float64") for col in cols]
    ms = numbers[0]
    whole = np.isfinite(ms) & (np.mod(ms, 1.0) == 0)
    us = np.where(whole, np.where(whole, ms, 0).astype("int64") * 1000, _NAT)
    frame = pd.DataFrame(
        {
            "symbol": pd.Series(symbol, index=range(len(fixed)), dtype="str"),
            "timeframe": pd.Series(timeframe, index=range(len(fixed)), dtype="str"),
            "ts": us.view("datetime64[us]"),
        }
    )
    for name, values in zip(["open", "high", "low", "close", "volume"], numbers[1:], strict=True):
        frame[name] = values
    return frame.loc[:, CANDLE_COLUMNS]


def _six(row: Any) -> list[Any]:
    items = list(row) if isinstance(row, list | tuple) else []
    return (items + [None] * 6)[:6]


def _number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


# ---- the exchange -----------------------------------------------------------------------


def make_exchange(source: SourceConfig, *, enable_rate_limit: bool = True) -> ccxt.Exchange:
    """The ccxt exchange of ``source``: rate limit on, market type set, ``urls`` applied.

    Futures use ccxt's ``defaultType='swap'`` (linear perpetuals: binance USDⓈ-M);
    where the exchange lists market types to load (binance, bybit...), only the
    needed ones are loaded, which saves requests.
    """
    exchange = getattr(ccxt, source.exchange)({"enableRateLimit": enable_rate_limit})
    exchange.enableLastJsonResponse = True  # lets a page see rows ccxt could not parse
    if source.market == "futures":
        exchange.options["defaultType"] = "swap"
        exchange.options["defaultSubType"] = "linear"
    _narrow_market_types(exchange, _MARKET_TYPES[source.market])
    if source.urls:
        exchange.urls = {**exchange.urls, "api": _api_urls(exchange, source.urls)}
    return exchange


def _narrow_market_types(exchange: ccxt.Exchange, wanted: list[str]) -> None:
    option = exchange.options.get("fetchMarkets")
    types = option.get("types") if isinstance(option, dict) else option
    if isinstance(types, list) and (keep := [t for t in types if t in wanted]):
        if isinstance(option, dict):
            exchange.options["fetchMarkets"] = {**option, "types": keep}
        else:
            exchange.options["fetchMarkets"] = keep


def _api_urls(exchange: ccxt.Exchange, overrides: dict[str, str]) -> Any:
    api = exchange.urls.get("api")
    if isinstance(api, str):
        if set(overrides) != {"api"}:
            raise ConfigError(
                f"{exchange.id} has one API base URL; set urls: {{api: URL}}, not {overrides}."
            )
        return overrides["api"]
    api = dict(api or {})
    bad = [k for k in overrides if not isinstance(api.get(k), str)]
    if bad:
        known = sorted(k for k, v in api.items() if isinstance(v, str))
        raise ConfigError(
            f"urls keys {bad} are not API base URLs of {exchange.id}; use some of {known}."
        )
    return api | overrides


def _resolve_market(exchange: ccxt.Exchange, symbol: str, market_kind: str) -> dict:
    """The loaded ccxt market of ``symbol``; ``ConfigError`` with close matches otherwise."""
    try:
        market = exchange.market(symbol)
    except ccxt.BadSymbol:
        market = None
    wanted = _MARKET_TYPES[market_kind] + (["future"] if market_kind == "futures" else [])
    if market is not None and market.get("type") in wanted:
        return market
    listed = [s for s, m in exchange.markets.items() if m.get("type") in wanted]
    close = difflib.get_close_matches(symbol, listed, n=5, cutoff=0.6)
    if market is None:
        problem = f"{exchange.id} has no {market_kind} market {symbol!r}"
        if ":" in symbol and market_kind == "spot":
            problem += " (a derivative-style symbol: market: futures?)"
    else:
        other = "futures" if market_kind == "spot" else "spot"
        problem = (
            f"{exchange.id} lists {symbol!r} as a {market['type']} market, not a {market_kind} "
            f"one (set market: {other}, or name the {market_kind} symbol)"
        )
    raise ConfigError(
        f"{problem}; close matches: {close or 'none'} ({len(listed)} {market_kind} symbols "
        "listed, e.g. 'BTC/USDT' spot, 'BTC/USDT:USDT' perpetual)."
    )


# ---- the download -----------------------------------------------------------------------


def download_candles(
    warehouse: Warehouse,
    source: SourceConfig,
    quality_cfg: QualityConfig,
    *,
    now: pd.Timestamp | None = None,
    progress: ProgressFn | None = None,
    sleep: Callable[[float], None] = time.sleep,
    enable_rate_limit: bool = True,
    backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
) -> DownloadResult:
    """Download ``source``'s symbols into ``warehouse``, resuming after the stored bars.

    ``now`` (default: current UTC time) decides which bar is still forming and
    bounds the gate's future check. Raises ``ConfigError`` for an unknown symbol or
    timeframe, ``DownloadError`` when retries run out or the exchange refuses.
    A quarantined page does not raise: its symbol stops and the result says so.
    """
    now = to_naive_utc(now if now is not None else pd.Timestamp.now(tz="UTC"))
    retry = _Retry(source.max_retries, backoff_s, max_backoff_s, sleep)
    exchange = make_exchange(source, enable_rate_limit=enable_rate_limit)
    _check_timeframe(exchange, source.timeframe)  # static in ccxt: before any request
    _, n_market_retries = retry.call(
        lambda: _ccxt_call(exchange.load_markets, f"{exchange.id} load_markets()"),
        lambda: f"{source.exchange} load_markets()",
    )
    markets = [_resolve_market(exchange, s, source.market) for s in source.symbols]
    result = DownloadResult(source.exchange, source.market, source.timeframe, [], n_market_retries)
    for market in markets:
        result.symbols.append(
            _download_symbol(
                warehouse,
                exchange,
                market,
                source,
                quality_cfg,
                now=now,
                retry=retry,
                progress=progress,
            )
        )
    log.info(
        "%s %s %s: %d new bars, quarantined: %s",
        *(source.exchange, source.market, source.timeframe, result.n_new, result.quarantined),
    )
    return result


def download_sources(
    warehouse: Warehouse,
    sources: Sequence[SourceConfig],
    quality_cfg: QualityConfig,
    **options: Any,
) -> list[DownloadResult]:
    """Run ``download_candles`` for each source in order (``options`` are passed on)."""
    return [download_candles(warehouse, s, quality_cfg, **options) for s in sources]


def _download_symbol(
    warehouse: Warehouse,
    exchange: ccxt.Exchange,
    market: dict,
    source: SourceConfig,
    quality_cfg: QualityConfig,
    *,
    now: pd.Timestamp,
    retry: _Retry,
    progress: ProgressFn | None,
) -> SymbolDownload:
    """Page one symbol into the warehouse; stops at the newest complete bar or a bad page."""
    symbol, timeframe = market["symbol"], source.timeframe
    step = pd.Timedelta(seconds=timeframe_seconds(timeframe))
    last = _last_stored_ts(warehouse, symbol, timeframe)
    done = SymbolDownload(symbol, last + step if last is not None else _first_since(source, now))
    label = f"{source.exchange}:{source.market}:{symbol}:{timeframe}"
    n_stored = 0
    pages = _pages(exchange, market, source, since=done.since, now=now, retry=retry)
    for batch in _batches(_noting_progress(pages, done), source.batch_bars):
        for page in batch:
            done.n_pages += 1
            done.n_fetched += page.n_fetched
            done.n_forming += page.n_forming
            done.n_retries += page.n_retries
        frame = pd.concat([p.frame for p in batch], ignore_index=True)
        if frame.empty:
            continue
        try:
            loaded = ingest_frame(warehouse, frame, quality_cfg, source=label, now=now)
        except QualityGateError as exc:
            done.quarantined_batch_id, done.quarantine_reason = exc.batch_id, str(exc)
            log.warning(
                "%s: pages %d-%d quarantined (batch %s); stopped",
                *(label, done.n_pages - len(batch) + 1, done.n_pages, exc.batch_id),
            )
            break
        done.n_new += loaded.n_new
        done.n_updated += loaded.n_updated
        n_stored += len(frame)
        first, newest = frame["ts"].min(), frame["ts"].max()
        done.first_ts = first if done.first_ts is None else min(done.first_ts, first)
        done.last_ts = newest if done.last_ts is None else max(done.last_ts, newest)
        log.info("%s: page %d, %d bars stored, up to %s", label, done.n_pages, n_stored, newest)
        if progress is not None:
            progress(symbol, n_stored, done.last_ts)
    return done


def _batches(pages: Iterator[_Page], batch_bars: int) -> Iterator[list[_Page]]:
    """Consecutive pages grouped until they hold ``batch_bars`` bars: one gate batch each
    (the gate costs ~0.5 s a batch whatever its size, so one batch per page is slow)."""
    batch: list[_Page] = []
    n = 0
    for page in pages:
        batch.append(page)
        n += len(page.frame)
        if n >= batch_bars:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch


def _noting_progress(pages: Iterator[_Page], done: SymbolDownload) -> Iterator[_Page]:
    """``pages``; a ``DownloadError`` is extended by what this run stored before it."""
    try:
        yield from pages
    except DownloadError as exc:
        stored = f"bars up to {done.last_ts}" if done.last_ts is not None else "nothing"
        exc.args = (f"{exc.args[0]} Stored for {done.symbol} before it: {stored}.",)
        raise


@dataclass(frozen=True)
class _Page:
    frame: pd.DataFrame  # the complete bars of one answer (malformed rows kept)
    n_fetched: int
    n_forming: int
    n_retries: int


def _pages(
    exchange: ccxt.Exchange,
    market: dict,
    source: SourceConfig,
    *,
    since: pd.Timestamp,
    now: pd.Timestamp,
    retry: _Retry,
) -> Iterator[_Page]:
    """Pages of ``fetch_ohlcv`` from ``since`` until no newer complete bar can exist or comes."""
    symbol, timeframe = market["symbol"], source.timeframe
    step_ms = timeframe_seconds(timeframe) * 1000
    now_ms, since_ms = _epoch_ms(now), _epoch_ms(since)
    while since_ms + step_ms <= now_ms:  # a bar opening at since_ms would be closed by now

        def fetch(start: int = since_ms) -> list[list]:
            return _fetch_ohlcv(exchange, symbol, timeframe, start, source.page_limit)

        def what(start: int = since_ms) -> str:
            at = pd.Timestamp(start, unit="ms")
            return f"{exchange.id} fetch_ohlcv({symbol!r}, {timeframe!r}, since={at.isoformat()})"

        rows, n_retries = retry.call(fetch, what)
        rows = _with_unparsed_rows(exchange, market, rows, since_ms)
        if not rows:
            return
        opens = [_number(r[0]) for r in rows]
        complete = [  # a row without an open time stays in: the gate rejects it
            r for r, t in zip(rows, opens, strict=True) if math.isnan(t) or t + step_ms <= now_ms
        ]
        yield _Page(
            ohlcv_frame(complete, symbol=symbol, timeframe=timeframe),
            n_fetched=len(rows),
            n_forming=len(rows) - len(complete),
            n_retries=n_retries,
        )
        known = [t for t in opens if math.isfinite(t) and t + step_ms <= now_ms]
        if len(complete) < len(rows) or not known or max(known) < since_ms:
            return  # reached the forming bar, or nothing newer came back
        since_ms = int(max(known)) + step_ms


def _fetch_ohlcv(
    exchange: ccxt.Exchange, symbol: str, timeframe: str, since_ms: int, limit: int
) -> list[list]:
    at = pd.Timestamp(since_ms, unit="ms").isoformat()
    return _ccxt_call(
        lambda: exchange.fetch_ohlcv(symbol, timeframe, since=since_ms, limit=limit),
        f"{exchange.id} fetch_ohlcv({symbol!r}, {timeframe!r}, since={at})",
    )


def _ccxt_call(fn: Callable[[], _T], what: str) -> _T:
    """``fn()``; a ccxt error other than a network error becomes ``DownloadError``."""
    try:
        return fn()
    except ccxt.NetworkError:
        raise  # retried by the caller
    except ccxt.BaseError as exc:
        raise DownloadError(
            f"{what} was refused: {type(exc).__name__}: {exc}. This error is not retried; "
            "check the exchange, symbol, timeframe and urls."
        ) from exc


def _with_unparsed_rows(
    exchange: ccxt.Exchange, market: dict, rows: list[list], since_ms: int
) -> list[list]:
    """ccxt's rows, plus the raw rows it dropped for lack of an open time (as ts None)."""
    raw = exchange.last_json_response
    if not isinstance(raw, list) or len(raw) <= len(rows):
        return rows
    reparsed = [_parse_row(exchange, r, market) for r in raw]
    if not any(r[0] is None for r in reparsed):
        return rows  # ccxt only dropped rows before since
    return [r for r in reparsed if r[0] is None or _number(r[0]) >= since_ms]


def _parse_row(exchange: ccxt.Exchange, row: Any, market: dict) -> list:
    try:
        return list(exchange.parse_ohlcv(row, market))
    except Exception:  # noqa: BLE001 - an unparseable row becomes an all-missing row
        return [None] * 6


# ---- small helpers ----------------------------------------------------------------------


def _check_timeframe(exchange: ccxt.Exchange, timeframe: str) -> None:
    if not exchange.has.get("fetchOHLCV"):
        raise ConfigError(
            f"ccxt's {exchange.id} cannot fetch candles (has['fetchOHLCV'] is false); "
            "choose another exchange."
        )
    served = list(exchange.timeframes or {})
    if served and timeframe not in served:
        raise ConfigError(
            f"{exchange.id} does not serve timeframe {timeframe!r}; it serves {served}."
        )


def _last_stored_ts(warehouse: Warehouse, symbol: str, timeframe: str) -> pd.Timestamp | None:
    if not warehouse.exists:
        return None
    with warehouse.connect(read_only=True) as con:
        row = con.execute(
            "SELECT max(ts) FROM candles WHERE symbol = ? AND timeframe = ?", [symbol, timeframe]
        ).fetchone()
    return None if row is None or row[0] is None else pd.Timestamp(row[0])


def _first_since(source: SourceConfig, now: pd.Timestamp) -> pd.Timestamp:
    """``source.since`` as naive UTC, else the longer of 30 days and 1000 bars before now."""
    if source.since is not None:
        return to_naive_utc(pd.Timestamp(source.since))
    step = pd.Timedelta(seconds=timeframe_seconds(source.timeframe))
    return (now - max(DEFAULT_HISTORY, DEFAULT_HISTORY_BARS * step)).floor(step)


def _epoch_ms(ts: pd.Timestamp) -> int:
    return int(to_naive_utc(ts).value // 1_000_000)  # .value is ns whatever the unit
