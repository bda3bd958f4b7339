"""Exchange downloads through real ccxt against a local fake Binance, into real DuckDB files.

No internet and no mocks of ccxt: ``tests/fake_exchange.py`` serves the endpoints ccxt's
binance calls. Each page is one gate batch (~0.4 s of Great Expectations), so the
scenarios use a day of 1h bars in pages of 10.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from ml_core.config import CoincastConfig, QualityConfig, SourceConfig
from ml_core.data.exchange import (
    DownloadError,
    download_candles,
    download_sources,
    make_exchange,
    ohlcv_frame,
)
from ml_core.data.warehouse import Warehouse
from ml_core.errors import ConfigError
from tests.fake_exchange import FakeBinance

CFG = QualityConfig()
SOURCE_LABEL = "binance:spot:BTC/USDT:1h"


class Stop(Exception):
    """Raised from a progress callback: the run is killed between two pages."""


def run(wh: Warehouse, fake: FakeBinance, source: SourceConfig, **kw: object):
    kw.setdefault("sleep", lambda s: None)
    return download_candles(wh, source, CFG, now=fake.now, enable_rate_limit=False, **kw)


def rows(wh: Warehouse, sql: str) -> list[tuple]:
    with wh.connect(read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


def test_pages_store_exactly_the_closed_series(wh: Warehouse, fake_exchange) -> None:
    fake, source = fake_exchange
    seen: list[tuple] = []
    result = run(wh, fake, source, progress=lambda *a: seen.append(a))

    pd.testing.assert_frame_equal(wh.read_candles(), fake.expected("BTC/USDT"), check_dtype=False)
    (done,) = result.symbols
    assert (done.n_pages, done.n_fetched, done.n_new, done.n_forming) == (3, 25, 24, 1)
    assert (done.first_ts, done.last_ts) == (
        pd.Timestamp("2024-01-01"),
        pd.Timestamp("2024-01-01 23:00"),
    )
    # no since configured: 1000 bars back (longer than 30 days), floored to the hour
    assert done.since == pd.Timestamp("2024-01-02 00:00") - pd.Timedelta(hours=1000)
    assert seen == [
        ("BTC/USDT", 10, pd.Timestamp("2024-01-01 09:00")),
        ("BTC/USDT", 20, pd.Timestamp("2024-01-01 19:00")),
        ("BTC/USDT", 24, pd.Timestamp("2024-01-01 23:00")),
    ]
    klines = [r.params for r in fake.requests if r.path.endswith("klines")]
    assert [int(p["startTime"]) for p in klines[1:]] == [
        fake.start_ms + h * 3_600_000 for h in (10, 20)
    ]
    assert {p["limit"] for p in klines} == {"10"} and fake.n_requests("klines") == 3
    # spot only: the futures market lists are not loaded
    assert [r.path for r in fake.requests if "exchangeInfo" in r.path] == ["/api/v3/exchangeInfo"]
    logged = rows(wh, "SELECT source, n_rows, n_new, status FROM ingest_log ORDER BY created_at")
    assert logged == [(SOURCE_LABEL, n, n, "loaded") for n in (10, 10, 4)]
    assert result.as_dict()["symbols"][0]["last_ts"] == "2024-01-01T23:00:00"


def test_forming_candle_is_counted_not_stored(wh: Warehouse, fake_exchange) -> None:
    fake, source = fake_exchange
    source = source.model_copy(update={"page_limit": 30})
    (done,) = run(wh, fake, source).symbols
    forming = pd.Timestamp("2024-01-02 00:00")  # opened 00:00, closes 01:00 > now 00:30
    served = [r for r in fake.requests if r.path.endswith("klines")]
    assert len(served) == 1 and (done.n_fetched, done.n_forming, done.n_new) == (25, 1, 24)
    assert forming not in set(wh.read_candles()["ts"])
    assert rows(wh, "SELECT count(*) FROM quarantine_candles") == [(0,)]
    # the next run asks for that bar again (it is not stored) but not before it closes
    again = run(wh, fake, source).symbols[0]
    assert (again.since, again.n_pages, fake.n_requests("klines")) == (forming, 0, 1)


def test_killed_run_resumes_without_duplicates_or_holes(wh: Warehouse, fake_exchange) -> None:
    fake, source = fake_exchange

    def kill_after_first_page(symbol: str, n_bars: int, last_ts: pd.Timestamp) -> None:
        raise Stop

    with pytest.raises(Stop):
        run(wh, fake, source, progress=kill_after_first_page)
    assert len(wh.read_candles()) == 10

    (done,) = run(wh, fake, source).symbols
    assert done.since == pd.Timestamp("2024-01-01 10:00")  # last stored bar + 1h
    assert (done.n_pages, done.n_new) == (2, 14)
    stored = wh.read_candles()
    pd.testing.assert_frame_equal(stored, fake.expected("BTC/USDT"), check_dtype=False)
    assert not stored.duplicated(["symbol", "timeframe", "ts"]).any()


def test_429_and_5xx_are_retried_with_capped_jittered_backoff(wh: Warehouse, fake_exchange) -> None:
    fake, source = fake_exchange
    for status in (429, 500, 502, 503):
        fake.fail_next(1, status)
    delays: list[float] = []
    source = source.model_copy(update={"page_limit": 30})
    (done,) = run(wh, fake, source, sleep=delays.append, backoff_s=1.0, max_backoff_s=3.0).symbols

    assert done.n_retries == 4 and done.n_new == 24
    assert [r.status for r in fake.requests if r.path.endswith("klines")] == [
        429,
        500,
        502,
        503,
        200,
    ]
    ceilings = [1.0, 2.0, 3.0, 3.0]  # doubling, capped at max_backoff_s
    assert len(delays) == 4
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays


def test_retries_run_out_with_a_clear_error_then_the_next_run_resumes(
    wh: Warehouse, fake_exchange
) -> None:
    fake, source = fake_exchange
    source = source.model_copy(update={"max_retries": 2})

    def outage_after_first_page(symbol: str, n_bars: int, last_ts: pd.Timestamp) -> None:
        if n_bars == 10:
            fake.fail_next(3, 503)

    with pytest.raises(DownloadError) as err:
        run(wh, fake, source, progress=outage_after_first_page)
    message = str(err.value)
    for part in (
        "binance",
        "'BTC/USDT'",
        "since=2024-01-01T10:00:00",
        "3 time(s)",
        "503",
        "Stored for BTC/USDT before it: bars up to 2024-01-01 09:00:00",
    ):
        assert part in message, message
    assert len(wh.read_candles()) == 10

    (done,) = run(wh, fake, source).symbols
    assert (done.since, done.n_new) == (pd.Timestamp("2024-01-01 10:00"), 14)
    pd.testing.assert_frame_equal(wh.read_candles(), fake.expected("BTC/USDT"), check_dtype=False)


def test_load_markets_is_retried_too(wh: Warehouse, fake_exchange) -> None:
    fake, source = fake_exchange
    fake.fail_next(2, 502, endpoint="exchangeInfo")
    source = source.model_copy(update={"since": "2024-01-02T00:00:00"})  # nothing to fetch yet
    result = run(wh, fake, source)
    assert result.n_market_retries == 2 and result.symbols[0].n_pages == 0
    assert fake.n_requests("exchangeInfo") == 3 and fake.n_requests("klines") == 0
    fake.fail_next(3, 503, endpoint="exchangeInfo")
    with pytest.raises(DownloadError, match=r"binance load_markets\(\) failed 3 time\(s\)"):
        run(wh, fake, source.model_copy(update={"max_retries": 2}))


def test_non_retryable_refusal_is_not_retried(wh: Warehouse, fake_exchange) -> None:
    fake, source = fake_exchange
    fake.fail_next(1, 401)  # ccxt: AuthenticationError, not a NetworkError
    with pytest.raises(DownloadError, match=r"fetch_ohlcv\('BTC/USDT'.*refused.*not retried"):
        run(wh, fake, source)
    assert fake.n_requests("klines") == 1


def test_gap_stays_a_gap(wh: Warehouse, fake_exchange) -> None:
    fake, source = fake_exchange
    fake.add_gap("BTC/USDT", "2024-01-01 08:00", "2024-01-01 12:00")  # across a page boundary
    (done,) = run(wh, fake, source).symbols
    stored = wh.read_candles()
    assert done.n_new == 19 and len(stored) == 19
    hours = set(stored["ts"].dt.hour)
    assert hours.isdisjoint({8, 9, 10, 11, 12}) and {7, 13} <= hours
    pd.testing.assert_frame_equal(stored, fake.expected("BTC/USDT"), check_dtype=False)


def test_malformed_page_is_quarantined_other_symbols_go_on_and_the_fix_resumes(
    wh: Warehouse, fake_exchange
) -> None:
    fake, source = fake_exchange
    source = source.model_copy(update={"symbols": ["BTC/USDT", "ETH/USDT"]})
    fake.malform("BTC/USDT", 12, "null_ts")  # page 2; ccxt itself drops such a row
    result = run(wh, fake, source)

    btc, eth = result.symbols
    assert result.quarantined == ["BTC/USDT"] and btc.status == "quarantined"
    assert (btc.n_pages, btc.n_new, btc.last_ts) == (2, 10, pd.Timestamp("2024-01-01 09:00"))
    assert fake.n_requests("klines", symbol="BTC/USDT") == 2  # page 3 never fetched
    assert "no nulls in ts" in btc.quarantine_reason
    (q,) = rows(wh, "SELECT batch_id, source, n_rows FROM quarantine")
    assert q == (btc.quarantined_batch_id, SOURCE_LABEL, 10)
    bad_ts = rows(
        wh, f"SELECT count(*) FROM quarantine_candles WHERE ts IS NULL AND batch_id = '{q[0]}'"
    )
    assert bad_ts == [(1,)]
    stored = wh.read_candles()
    pd.testing.assert_frame_equal(
        stored[stored.symbol == "BTC/USDT"].reset_index(drop=True),
        fake.expected("BTC/USDT").iloc[:10],
        check_dtype=False,
    )
    assert eth.status == "complete" and eth.n_new == 24

    fake.repair()
    btc2, eth2 = run(wh, fake, source).symbols
    assert (btc2.since, btc2.n_new, eth2.n_new) == (pd.Timestamp("2024-01-01 10:00"), 14, 0)
    expected = pd.concat([fake.expected("BTC/USDT"), fake.expected("ETH/USDT")], ignore_index=True)
    pd.testing.assert_frame_equal(wh.read_candles(), expected, check_dtype=False)


def test_pages_are_grouped_into_gate_batches_and_a_bad_row_holds_back_its_batch(
    wh: Warehouse, fake_exchange
) -> None:
    fake, source = fake_exchange
    source = source.model_copy(update={"batch_bars": 20})  # pages 1+2, then page 3
    (done,) = run(wh, fake, source).symbols
    with wh.connect(read_only=True) as con:
        batches = con.execute("SELECT n_rows FROM ingest_log ORDER BY created_at").fetchall()
    assert batches == [(20,), (4,)] and done.n_new == 24 and done.n_pages == 3

    fake.malform("BTC/USDT", 12, "null_ts")  # on page 2 of a fresh warehouse
    wh2 = Warehouse(wh.path.with_name("second.duckdb"))
    (bad,) = run(wh2, fake, source).symbols
    assert bad.status == "quarantined" and bad.n_new == 0  # page 1 is held back with page 2
    (q,) = rows(wh2, "SELECT n_rows FROM quarantine")
    assert q == (20,) and rows(wh2, "SELECT count(*) FROM candles") == [(0,)]


def test_short_row_on_the_first_page_stores_nothing(wh: Warehouse, fake_exchange) -> None:
    fake, source = fake_exchange
    fake.malform("BTC/USDT", 3, "short_row")
    (done,) = run(wh, fake, source).symbols
    assert done.quarantined_batch_id is not None and done.n_new == 0 and done.last_ts is None
    assert rows(wh, "SELECT count(*) FROM candles") == [(0,)]
    nulls = rows(wh, "SELECT count(*) FROM quarantine_candles WHERE close IS NULL")
    assert nulls == [(1,)]


def test_futures_download_the_usdm_perpetual(wh: Warehouse, fake_exchange) -> None:
    fake, source = fake_exchange
    source = source.model_copy(update={"market": "futures", "page_limit": 30})
    (done,) = run(wh, fake, source).symbols
    assert done.symbol == "BTC/USDT:USDT"  # 'BTC/USDT' resolved to the perpetual
    assert {r.path for r in fake.requests} == {"/fapi/v1/exchangeInfo", "/fapi/v1/klines"}
    expected = fake.expected("BTC/USDT", kind="swap").assign(symbol="BTC/USDT:USDT")
    pd.testing.assert_frame_equal(wh.read_candles(), expected, check_dtype=False)
    logged = rows(wh, "SELECT source FROM ingest_log")
    assert logged == [("binance:futures:BTC/USDT:USDT:1h",)]


def test_download_sources_runs_each_source(wh: Warehouse, fake_exchange) -> None:
    fake, source = fake_exchange
    one = source.model_copy(update={"page_limit": 30, "since": "2024-01-01T12:00:00Z"})
    two = one.model_copy(update={"symbols": ["ETH/USDT"]})
    results = download_sources(wh, [one, two], CFG, now=fake.now, enable_rate_limit=False)
    assert [(r.symbols[0].symbol, r.n_new) for r in results] == [("BTC/USDT", 12), ("ETH/USDT", 12)]
    assert results[0].symbols[0].first_ts == pd.Timestamp("2024-01-01 12:00")


@pytest.mark.parametrize(
    ("symbols", "market", "match"),
    [
        (["BTC/USDTT"], "spot", r"no spot market 'BTC/USDTT'; close matches: \['BTC/USDT', "),
        (["PEPE/TRY"], "spot", r"no spot market 'PEPE/TRY'; close matches: none \(2 spot"),
        (
            ["BTC/USDT:USDT"],
            "spot",
            r"'BTC/USDT:USDT' \(a derivative-style symbol: market: futures\?\)",
        ),
        (
            ["BTC/USDTT"],
            "futures",
            r"no futures market 'BTC/USDTT'; close matches: \['BTC/USDT:USDT', ",
        ),
    ],
)
def test_bad_symbol_names_what_exists(
    wh: Warehouse, fake_exchange, symbols: list[str], market: str, match: str
) -> None:
    fake, source = fake_exchange
    source = source.model_copy(update={"symbols": ["ETH/USDT", *symbols], "market": market})
    with pytest.raises(ConfigError, match=match):
        run(wh, fake, source)
    assert fake.n_requests("klines") == 0 and not wh.exists  # checked before any download


def test_timeframe_the_exchange_lacks_fails_before_any_request(wh: Warehouse) -> None:
    source = SourceConfig(exchange="kraken", symbols=["BTC/USD"], timeframe="3m", max_retries=0)
    with pytest.raises(ConfigError, match=r"kraken does not serve timeframe '3m'; it serves \["):
        download_candles(wh, source, CFG, sleep=lambda s: None)


def test_make_exchange_rate_limit_urls_and_market_types(fake_exchange) -> None:
    fake, source = fake_exchange
    with pytest.raises(
        ConfigError, match=r"not API base URLs of binance; use some of \[.*'public'"
    ):
        make_exchange(source.model_copy(update={"urls": {"spot": fake.base_url}}))
    ok = make_exchange(source)
    assert ok.enableRateLimit is True and ok.urls["api"]["public"] == f"{fake.base_url}/api/v3"
    assert ok.urls["api"]["sapi"] == "https://api.binance.com/sapi/v1"  # others untouched
    assert ok.options["fetchMarkets"]["types"] == ["spot"]
    assert make_exchange(source, enable_rate_limit=False).enableRateLimit is False


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"exchange": "binanse"}, r"Unknown exchange 'binanse'.*close matches: \[.*'binance'"),
        ({"timeframe": "7m"}, r"Unknown timeframe '7m'"),
        ({"since": "last tuesday"}, r"sources.since='last tuesday' is not an ISO date"),
        ({"symbols": "BTC/USDT,BTC/USDT"}, r"names a symbol twice"),
        ({"urls": {"public": "ftp://x"}}, r"must be http\(s\) base URLs"),
    ],
)
def test_source_config_refuses_bad_values(values: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SourceConfig.model_validate({"symbols": ["BTC/USDT"], **values})


def test_source_config_in_the_main_config() -> None:
    cfg = CoincastConfig(sources=[{"symbols": "BTC/USDT, ETH/USDT", "since": "2024-01-01"}])
    (src,) = cfg.sources
    assert (src.exchange, src.symbols, src.timeframe, src.market) == (
        "binance",
        ["BTC/USDT", "ETH/USDT"],
        "1h",
        "spot",
    )
    assert CoincastConfig().sources == []


def test_ohlcv_frame_keeps_malformed_rows_as_missing() -> None:
    rows = [
        [1704067200000, 1.0, 2.0, 0.5, 1.5, 10.0],
        [1704070800000, "1.5", "n/a", 1.0, None, 3.0],  # text and None
        [1704074400000, 1.0, 2.0],  # short
        [None, 1.0, 2.0, 0.5, 1.5, 10.0],  # no open time
        "garbage",  # not a row at all
        [1704078000000, 1.0, math.inf, 0.5, True, 1.0, "extra"],  # inf, bool, too long
    ]
    frame = ohlcv_frame(rows, symbol="BTC/USDT", timeframe="1h")
    assert list(frame.columns) == [
        "symbol",
        "timeframe",
        "ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
    ]
    assert len(frame) == 6 and str(frame["ts"].dtype) == "datetime64[us]"
    assert (frame[["open", "high", "low", "close", "volume"]].dtypes == "float64").all()
    assert frame["ts"].isna().tolist() == [False, False, False, True, True, False]
    assert frame.loc[0, "ts"] == pd.Timestamp("2024-01-01 00:00")
    assert frame.loc[1, "open"] == 1.5 and frame.loc[1, ["high", "close"]].isna().all()
    assert frame.loc[2, ["low", "close", "volume"]].isna().all()
    assert frame.loc[5, ["high", "close"]].isna().all() and frame.loc[5, "volume"] == 1.0
    assert ohlcv_frame([], symbol="X/Y", timeframe="1h").empty
