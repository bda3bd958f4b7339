"""A local fake of the Binance REST endpoints that ccxt's ``binance`` uses for candles.

``FakeBinance`` serves, on 127.0.0.1 and a free port, from a deterministic
in-memory candle series per market:

- ``GET /api/v3/exchangeInfo`` (spot), ``/fapi/v1/exchangeInfo`` (USDⓈ-M perpetuals),
  ``/dapi/v1/exchangeInfo`` (COIN-M, empty): what ``load_markets`` reads;
- ``GET /api/v3/klines`` and ``/fapi/v1/klines``: rows ``[open_time, "open", "high",
  "low", "close", "volume", close_time, ...]`` with prices as strings, honouring
  ``symbol``, ``interval``, ``startTime``, ``endTime`` and ``limit`` as Binance does
  (``startTime`` given: the first ``limit`` bars from it; else the last ``limit`` bars up
  to ``endTime`` or the newest bar).

Switches for the failure paths: ``fail_next`` (answer the next requests with HTTP
429 or a 5xx), ``gaps`` (bars that do not exist), ``forming`` (the series runs to
the bar that holds ``now``), ``malform`` (one row of the series is broken in every
answer that holds it; ``repair`` fixes it). Every request is recorded.

Example::

    with FakeBinance(["BTC/USDT"], start="2024-01-01", now="2024-01-02") as fake:
        SourceConfig(symbols=["BTC/USDT"], urls=fake.urls)
"""

from __future__ import annotations

import json
import math
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

INTERVAL_MS = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
MALFORMED_KINDS = ("null_close", "text_price", "short_row", "null_ts")
_MAX_LIMIT = {"api": 1000, "fapi": 1500}
_KIND_OF_PREFIX = {"api": "spot", "fapi": "swap"}


@dataclass(frozen=True)
class Request:
    """One request the fake answered: path, query and the status it sent."""

    path: str
    params: dict[str, str]
    status: int


def _ms(ts: str | pd.Timestamp) -> int:
    t = pd.Timestamp(ts)
    t = t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t
    return int(t.value // 1_000_000)


def market_id(symbol: str) -> str:
    """'BTC/USDT' or 'BTC/USDT:USDT' -> Binance's id 'BTCUSDT'."""
    return symbol.split(":")[0].replace("/", "")


class FakeBinance:
    """The fake server; a context manager (``start`` / ``close``) that is also a plain object."""

    def __init__(
        self,
        symbols: list[str],
        *,
        start: str = "2024-01-01",
        now: str = "2024-01-03",
        forming: bool = False,
    ) -> None:
        self.symbols = [s.split(":")[0] for s in symbols]
        self.start_ms = _ms(start)
        self.now = pd.Timestamp(now)
        self.forming = forming
        self.gaps: dict[str, list[tuple[int, int]]] = {}
        self.requests: list[Request] = []
        self._failures: dict[str, list[int]] = {}
        self._malformed: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeBinance:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeBinance is not started; call start() or use `with`.")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def urls(self) -> dict[str, str]:
        """``SourceConfig.urls`` that point ccxt's binance at this server."""
        base = self.base_url
        return {
            "public": f"{base}/api/v3",
            "fapiPublic": f"{base}/fapi/v1",
            "dapiPublic": f"{base}/dapi/v1",
        }

    # ---- switches ------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 429, *, endpoint: str = "klines") -> None:
        """Answer the next ``n`` requests to ``endpoint`` ('klines' or 'exchangeInfo') with
        HTTP ``status`` (429, 500, 502, 503...)."""
        with self._lock:
            self._failures.setdefault(endpoint, []).extend([status] * n)

    def add_gap(self, symbol: str, first: str, last: str) -> None:
        """Bars of ``symbol`` opening in [first, last] do not exist (any market kind)."""
        self.gaps.setdefault(symbol.split(":")[0], []).append((_ms(first), _ms(last)))

    def malform(self, symbol: str, index: int, kind: str = "null_close") -> None:
        """Break bar number ``index`` (0 = the first bar of the series) of ``symbol``."""
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"kind={kind!r}; use one of {MALFORMED_KINDS}")
        with self._lock:
            self._malformed[(market_id(symbol), index)] = kind

    def repair(self) -> None:
        """Fix every malformed row."""
        with self._lock:
            self._malformed.clear()

    # ---- what the series holds -------------------------------------------------------------

    def n_requests(self, endpoint: str = "klines", *, symbol: str | None = None) -> int:
        """Requests whose path ends with ``endpoint`` (for ``symbol`` when given)."""
        with self._lock:
            return sum(
                r.path.endswith(endpoint)
                and (symbol is None or r.params.get("symbol") == market_id(symbol))
                for r in self.requests
            )

    def end_ms(self, interval: str) -> int:
        """Open time bound (exclusive) of the series: the forming bar is in when ``forming``."""
        step = INTERVAL_MS[interval]
        now_ms = _ms(self.now)
        last_closed_end = now_ms - now_ms % step  # bars opening before this are closed
        return last_closed_end + step if self.forming else last_closed_end

    def bar_exists(self, symbol: str, open_ms: int) -> bool:
        return not any(a <= open_ms <= b for a, b in self.gaps.get(symbol.split(":")[0], []))

    def expected(self, symbol: str, interval: str = "1h", *, kind: str = "spot") -> pd.DataFrame:
        """The closed bars of ``symbol`` the fake serves, as a canonical candle frame."""
        step = INTERVAL_MS[interval]
        now_ms = _ms(self.now)
        rows = [
            _values(kind, market_id(symbol), i, self.start_ms + i * step, step)
            for i in range((self.end_ms(interval) - self.start_ms) // step)
            if self.bar_exists(symbol, self.start_ms + i * step)
            and self.start_ms + (i + 1) * step <= now_ms
        ]
        frame = pd.DataFrame(rows, columns=["ms", "open", "high", "low", "close", "volume"])
        frame.insert(0, "ts", pd.to_datetime(frame.pop("ms"), unit="ms").astype("datetime64[us]"))
        for col in ["open", "high", "low", "close", "volume"]:
            frame[col] = frame[col].astype("float64")
        frame.insert(0, "timeframe", interval)
        frame.insert(0, "symbol", symbol)
        return frame

    # ---- answering -----------------------------------------------------------------------

    def _klines(self, prefix: str, params: dict[str, str]) -> tuple[int, Any]:
        symbol_id, interval = params.get("symbol"), params.get("interval")
        known = {market_id(s): s for s in self.symbols}
        if symbol_id not in known:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        if interval not in INTERVAL_MS:
            return 400, {"code": -1120, "msg": "Invalid interval."}
        step = INTERVAL_MS[interval]
        limit = min(int(params.get("limit", 500)), _MAX_LIMIT[prefix])
        end_ms = min(self.end_ms(interval), int(params.get("endTime", 2**62)) + 1)
        first = self.start_ms
        if "startTime" in params:
            start = int(params["startTime"])
            first = max(first, start + (-(start - self.start_ms)) % step)
        opens = (t for t in range(first, end_ms, step) if self.bar_exists(known[symbol_id], t))
        if "startTime" in params:
            picked = [t for _, t in zip(range(limit), opens, strict=False)]
        else:
            picked = list(opens)[-limit:]
        kind = _KIND_OF_PREFIX[prefix]
        return 200, [self._row(kind, symbol_id, t, step) for t in picked]

    def _row(self, kind: str, symbol_id: str, open_ms: int, step: int) -> list[Any]:
        index = (open_ms - self.start_ms) // step
        _, o, h, low, c, v = _values(kind, symbol_id, index, open_ms, step)
        row: list[Any] = [open_ms, o, h, low, c, v, open_ms + step - 1, "0", 10, "0", "0", "0"]
        if open_ms + step > _ms(self.now):  # the forming bar: only part of its volume yet
            row[5] = f"{float(v) / 3:.8f}"
        broken = self._malformed.get((symbol_id, index))
        if broken == "null_close":
            row[4] = None
        elif broken == "text_price":
            row[2] = "n/a"
        elif broken == "short_row":
            row = row[:4]
        elif broken == "null_ts":
            row[0] = None
        return row

    def _exchange_info(self, prefix: str) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        for symbol in self.symbols if prefix in _MAX_LIMIT else []:
            base, quote = symbol.split("/")
            entry: dict[str, Any] = {
                "symbol": market_id(symbol),
                "status": "TRADING",
                "baseAsset": base,
                "quoteAsset": quote,
                "baseAssetPrecision": 8,
                "quotePrecision": 8,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.01", "tickSize": "0.01"},
                    {"filterType": "LOT_SIZE", "minQty": "0.00001", "stepSize": "0.00001"},
                ],
            }
            if prefix == "fapi":
                entry |= {
                    "contractType": "PERPETUAL",
                    "marginAsset": quote,
                    "deliveryDate": 4133404800000,
                    "onboardDate": self.start_ms,
                }
            entries.append(entry)
        return {"timezone": "UTC", "serverTime": _ms(self.now), "symbols": entries}

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        """Status and JSON body (or text for 5xx) for one GET request."""
        prefix, endpoint = path.strip("/").split("/")[0], path.rsplit("/", 1)[-1]
        with self._lock:
            queue = self._failures.get(endpoint)
            failure = queue.pop(0) if queue else None
        status: int
        body: Any
        if failure == 429:
            status, body = 429, {"code": -1003, "msg": "Too much request weight used."}
        elif failure is not None:
            status, body = failure, f"<html><body>{failure} Server Error</body></html>"
        elif endpoint == "exchangeInfo":
            status, body = 200, self._exchange_info(prefix)
        elif endpoint == "klines" and prefix in _MAX_LIMIT:
            status, body = self._klines(prefix, params)
        else:
            status, body = 404, {"code": -1, "msg": f"no endpoint {path}"}
        with self._lock:
            self.requests.append(Request(path, params, status))
        return status, body


def _values(kind: str, symbol_id: str, index: int, open_ms: int, step: int) -> list[Any]:
    """Deterministic bar ``index`` of a market: [open_ms, open, high, low, close, volume] as text."""
    seed = zlib.crc32(f"{kind}:{symbol_id}".encode())
    base = 50.0 + seed % 1000
    phase = (seed % 628) / 100.0

    def close(i: int) -> float:
        return base * (1.0 + 0.02 * math.sin(0.37 * i + phase)) * (1.0 + 1e-4 * i)

    o, c = (base if index == 0 else close(index - 1)), close(index)
    h, low = max(o, c) * 1.001, min(o, c) * 0.999
    v = 1.0 + (index * 7919 % 1000) / 10.0
    return [open_ms, *(f"{x:.8f}" for x in (o, h, low, c, v))]


def _handler_for(fake: FakeBinance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as ccxt's requests session expects

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = urlsplit(self.path)
            status, body = fake.answer(parts.path, dict(parse_qsl(parts.query)))
            is_text = isinstance(body, str)
            data = (body if is_text else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if is_text else "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 429:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return  # quiet: tests read fake.requests instead

    return Handler
