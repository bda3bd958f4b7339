"""Exchange download throughput from the local fake Binance (no network), rate limit off.

Usage: python benchmarks/bench_download.py [--symbols 2] [--bars 50000] [--page-limit 1000]
       [--rate-limit]

Serves ``bars`` closed 1m bars per symbol from ``tests/fake_exchange.py`` on
127.0.0.1 and times, with ccxt's ``enableRateLimit`` off (``--rate-limit`` turns
it on: binance then spaces kline requests by its rate limit x request weight):

1. fetch only: ccxt ``fetch_ohlcv`` page by page plus ``ohlcv_frame`` (HTTP, JSON,
   ccxt parsing, frame building) - the ceiling of the download path;
2. ``download_candles`` into a fresh DuckDB warehouse: the same pages, each through
   the quality gate (Great Expectations) and its own write transaction;
3. ``download_candles`` again: nothing newer, so no kline request (resume check).

Figures: pages, kline requests, seconds and bars per second; the gate's share is
(2) minus (1). The first Great Expectations run of a process (~5 s) is paid
before the timing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fake_exchange

from ml_core.config import QualityConfig, SourceConfig  # noqa: E402
from ml_core.data.exchange import download_candles, make_exchange, ohlcv_frame  # noqa: E402
from ml_core.data.warehouse import Warehouse  # noqa: E402
from ml_core.quality import validate_candles  # noqa: E402
from tests.fake_exchange import FakeBinance  # noqa: E402

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "DOGE/USDT", "XRP/USDT", "ADA/USDT"]


def fetch_only(source: SourceConfig, fake: FakeBinance, *, rate_limit: bool) -> tuple[int, int]:
    """(bars, pages) read through ccxt and framed, without the gate or the warehouse."""
    exchange = make_exchange(source, enable_rate_limit=rate_limit)
    exchange.load_markets()
    n_bars = n_pages = 0
    for symbol in source.symbols:
        since = fake.start_ms
        while True:
            rows = exchange.fetch_ohlcv(symbol, "1m", since=since, limit=source.page_limit)
            if not rows:
                break
            ohlcv_frame(rows, symbol=symbol, timeframe="1m")
            n_bars, n_pages = n_bars + len(rows), n_pages + 1
            since = rows[-1][0] + 60_000
    return n_bars, n_pages


def report(label: str, n_bars: int, n_pages: int, n_requests: int, seconds: float) -> None:
    rate = f"{n_bars / seconds:,.0f} bars/s" if n_bars else "-"
    print(
        f"{label:<32} {n_bars:>9,} bars {n_pages:>5} pages {n_requests:>5} requests "
        f"{seconds:>7.2f} s  {rate}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=2)
    parser.add_argument("--bars", type=int, default=50_000)
    parser.add_argument("--page-limit", type=int, default=1000)
    parser.add_argument("--rate-limit", action="store_true", help="ccxt enableRateLimit on")
    args = parser.parse_args()
    symbols = SYMBOLS[: args.symbols]
    start = pd.Timestamp("2024-01-01")
    now = start + pd.Timedelta(minutes=args.bars)
    cfg = QualityConfig()
    validate_candles(FakeBinance(symbols).expected(symbols[0]).head(3), cfg, now=now)  # GX warm-up
    print(
        f"{len(symbols)} symbols x {args.bars:,} 1m bars, page_limit={args.page_limit}, "
        f"enableRateLimit={args.rate_limit}"
    )
    with FakeBinance(symbols, start=str(start), now=str(now)) as fake:
        source = SourceConfig(
            symbols=symbols,
            timeframe="1m",
            since=str(start),
            page_limit=args.page_limit,
            urls=fake.urls,
        )
        t0 = time.perf_counter()
        n_bars, n_pages = fetch_only(source, fake, rate_limit=args.rate_limit)
        fetch_s = time.perf_counter() - t0
        report("fetch + frame (no gate)", n_bars, n_pages, fake.n_requests(), fetch_s)

        with tempfile.TemporaryDirectory() as tmp:
            wh = Warehouse(Path(tmp) / "warehouse.duckdb")
            for label in ["download_candles (fresh)", "download_candles (resume)"]:
                before = fake.n_requests()
                t0 = time.perf_counter()
                result = download_candles(
                    wh, source, cfg, now=now, enable_rate_limit=args.rate_limit
                )
                seconds = time.perf_counter() - t0
                pages = sum(s.n_pages for s in result.symbols)
                report(label, result.n_new, pages, fake.n_requests() - before, seconds)
                if label.endswith("(fresh)"):
                    stored = sum(len(fake.expected(s, "1m")) for s in symbols)
                    assert result.n_new == stored, (result.n_new, stored)
                    gate_s = seconds - fetch_s
                    print(
                        f"{'':<32} gate + warehouse: {gate_s:.2f} s "
                        f"({gate_s / max(pages, 1) * 1000:.0f} ms/page, "
                        f"{gate_s / seconds:.0%} of the download)"
                    )


if __name__ == "__main__":
    main()
