"""One canonical name per candle series: every spelling, every file-name convention."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from ml_core.data.symbols import (
    KINDS,
    QUOTES,
    FileName,
    canonical_symbol,
    is_trade_series,
    parse_file_name,
    series_kind,
    split_pair,
)
from ml_core.errors import ConfigError, DataContractError

SPOT_SPELLINGS = [
    "BTCUSDT",
    "btcusdt",
    " BTCUSDT ",
    "BTC_USDT",
    "BTC-USDT",
    "BTC/USDT",
    "btc/usdt",
    "Binance_BTCUSDT_1h",  # CryptoDataDownload file stem
    "Binance_BTCUSDT_d",
    "Binance_BTCUSDT_2021_minute",
    "BTCUSDT-1h-2024-01",  # data.binance.vision monthly dump
    "BTCUSDT-1h-2024-01-05",  # ... and daily dump
    "BINANCE_BTCUSDT, 60",  # TradingView export stem
    "BINANCE:BTCUSDT",  # TradingView ticker
    "BTC_USDT-1h",  # freqtrade spot
    "BTC_USDT-1h-spot",
]
PERP_SPELLINGS = [
    "BTC/USDT:USDT",
    "BTC_USDT_USDT",
    "BTC_USDT_USDT-1h-futures",  # freqtrade futures file stem
    "BTCUSDT.P",  # TradingView perpetual
    "BINANCE:BTCUSDT.P",
    "BINANCE_BTCUSDT.P, 240",
    "BTCUSDT_PERP",
    "btcusdt_perp",
    "BTC-USDT-SWAP",  # OKX
    "BTCUSDTPERP",
]


@pytest.mark.parametrize("text", SPOT_SPELLINGS)
def test_every_spot_spelling_lands_on_one_name(text: str) -> None:
    assert canonical_symbol(text) == "BTC/USDT"


@pytest.mark.parametrize("text", PERP_SPELLINGS)
def test_every_perpetual_spelling_lands_on_one_name(text: str) -> None:
    assert canonical_symbol(text) == "BTC/USDT:USDT"


@pytest.mark.parametrize("text", SPOT_SPELLINGS + PERP_SPELLINGS + ["BTC/USDT:USDT@mark"])
def test_canonical_is_a_fixed_point(text: str) -> None:
    once = canonical_symbol(text)
    assert canonical_symbol(once) == once


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BTCFDUSD", "BTC/FDUSD"),  # not BTCFD/USD: longest quote first
        ("BTCTUSD", "BTC/TUSD"),
        ("BNBBUSD", "BNB/BUSD"),
        ("USDCUSDT", "USDC/USDT"),
        ("USDTTRY", "USDT/TRY"),
        ("ETHBTC", "ETH/BTC"),
        ("WBTCBTC", "WBTC/BTC"),
        ("BTCEUR", "BTC/EUR"),
        ("BTCBRL", "BTC/BRL"),
        ("1000PEPEUSDT", "1000PEPE/USDT"),
        ("PEPE_FDUSD", "PEPE/FDUSD"),
        ("HTX_USDT", "HTX/USDT"),  # HTX is also an exchange name
        ("a_ETHUSDT", "ETH/USDT"),  # a sort prefix before a compact pair
        ("Bitstamp_BTCUSD_d", "BTC/USD"),
    ],
)
def test_quotes_split_longest_first(text: str, expected: str) -> None:
    assert canonical_symbol(text) == expected


def test_quotes_are_longest_first_and_include_the_named_ones() -> None:
    assert [len(q) for q in QUOTES] == sorted((len(q) for q in QUOTES), reverse=True)
    for quote in ["USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "USD", "EUR", "GBP", "TRY"]:
        assert quote in QUOTES
    for quote in ["BRL", "JPY", "BTC", "ETH", "BNB"]:
        assert quote in QUOTES


def test_market_hint_decides_only_when_the_text_does_not() -> None:
    assert canonical_symbol("BTCUSDT", market="futures") == "BTC/USDT:USDT"
    assert canonical_symbol("BTC/USDT", market="futures") == "BTC/USDT:USDT"
    assert canonical_symbol("BTCUSDT", market="spot") == "BTC/USDT"
    assert canonical_symbol("BTCUSDT.P", market="spot") == "BTC/USDT:USDT"  # the text says perp
    assert canonical_symbol("BTC_USDT-1h-spot", market="futures") == "BTC/USDT"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BTCUSD_PERP", "BTC/USD:BTC"),  # Binance COIN-M: settled in the base coin
        ("ETHUSD_PERP", "ETH/USD:ETH"),
        ("BTC_USD_BTC", "BTC/USD:BTC"),  # freqtrade's spelling of it
        ("BTCUSDT_240628", "BTC/USDT:USDT-240628"),  # dated quarterly future
        ("BTC/USDT:USDT-240628", "BTC/USDT:USDT-240628"),
    ],
)
def test_coin_margined_and_dated_contracts(text: str, expected: str) -> None:
    assert canonical_symbol(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BTC_USDT_USDT-1h-mark", "BTC/USDT:USDT@mark"),
        ("BTC_USDT_USDT-1h-index", "BTC/USDT:USDT@index"),
        ("BTC_USDT_USDT-1h-premiumIndex", "BTC/USDT:USDT@premium"),
        ("BTCUSDT-markPriceKlines-1h-2024-01", "BTC/USDT:USDT@mark"),
        ("BTC/USDT:USDT@MARK", "BTC/USDT:USDT@mark"),
        ("BTCUSDT@premium", "BTC/USDT:USDT@premium"),  # a non-trade kind implies futures
    ],
)
def test_kinds_are_suffixes_distinct_from_the_trade_series(text: str, expected: str) -> None:
    symbol = canonical_symbol(text)
    assert symbol == expected
    assert symbol != canonical_symbol("BTC_USDT_USDT-1h-futures")
    assert not is_trade_series(symbol)
    assert series_kind(symbol) == expected.rsplit("@", 1)[1]


def test_kind_argument_and_trade_series() -> None:
    assert canonical_symbol("BTCUSDT", kind="mark") == "BTC/USDT:USDT@mark"
    assert canonical_symbol("BTCUSDT", kind="trade") == "BTC/USDT"
    assert KINDS == ("trade", "mark", "index", "premium")
    assert is_trade_series("BTC/USDT") and is_trade_series("BTC/USDT:USDT")
    assert [series_kind(f"BTC/USDT:USDT@{k}") for k in KINDS[1:]] == ["mark", "index", "premium"]
    with pytest.raises(DataContractError, match=r"names 'index' candles but 'mark' candles"):
        canonical_symbol("BTC/USDT:USDT@index", kind="mark")


@pytest.mark.parametrize("text", ["XYZ", "my candles", "USDT", "btc_data", "BTC/", "", "BTC_XYZ"])
def test_unknown_text_names_itself_and_asks_for_symbol(text: str) -> None:
    with pytest.raises(DataContractError, match=r"--symbol BASE/QUOTE") as err:
        canonical_symbol(text)
    assert repr(text) in str(err.value)


def test_bad_market_and_kind_arguments() -> None:
    with pytest.raises(ConfigError, match=r"Unknown market 'perp'; use one of spot, futures"):
        canonical_symbol("BTCUSDT", market="perp")
    with pytest.raises(ConfigError, match=r"Unknown candle kind 'last'"):
        canonical_symbol("BTCUSDT", kind="last")
    with pytest.raises(DataContractError, match=r"Unknown candle kind 'funding' in symbol"):
        canonical_symbol("BTC/USDT:USDT@funding")


def test_split_pair_keeps_its_old_contract() -> None:
    assert split_pair("pepeusdt") == "PEPE/USDT"
    assert split_pair("ETHFDUSD") == "ETH/FDUSD"
    assert split_pair("USDT") == "USDT"  # nothing fits: upper-cased, unsplit


# ---- file names -------------------------------------------------------------------------

VISION = "data/futures/um/monthly"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("BTCUSDT.csv", FileName("BTC/USDT", None)),
        ("BTCUSDT-1h-2024-01.csv", FileName("BTC/USDT", "1h")),
        ("BTCUSDT-1h-2024-01.zip", FileName("BTC/USDT", "1h")),
        ("BTCUSDT-5m-2024-01-05.zip", FileName("BTC/USDT", "5m")),
        ("BTCUSDT-1h-2024-01 (1).zip", FileName("BTC/USDT", "1h")),  # a browser's second copy
        ("data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip", FileName("BTC/USDT", "1h")),
        (
            f"{VISION}/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip",
            FileName("BTC/USDT:USDT", "1h", "trade", "futures"),
        ),
        (
            f"{VISION}/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip",
            FileName("BTC/USDT:USDT@mark", "1h", "mark", "futures"),
        ),
        (
            f"{VISION}/indexPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip",
            FileName("BTC/USDT:USDT@index", "1h", "index", "futures"),
        ),
        (
            f"{VISION}/premiumIndexKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip",
            FileName("BTC/USDT:USDT@premium", "1h", "premium", "futures"),
        ),
        (
            "data/futures/cm/monthly/klines/BTCUSD_PERP/1d/BTCUSD_PERP-1d-2024-01.zip",
            FileName("BTC/USD:BTC", "1d", "trade", "futures"),
        ),
        (
            "user_data/data/binance/futures/BTC_USDT_USDT-1h-futures.feather",
            FileName("BTC/USDT:USDT", "1h", "trade", "futures"),
        ),
        (
            "user_data/data/binance/futures/BTC_USDT_USDT-1h-mark.feather",
            FileName("BTC/USDT:USDT@mark", "1h", "mark", "futures"),
        ),
        (
            "user_data/data/binance/futures/ETH_USDT_USDT-4h-premiumIndex.feather",
            FileName("ETH/USDT:USDT@premium", "4h", "premium", "futures"),
        ),
        ("user_data/data/binance/BTC_USDT-1h.json.gz", FileName("BTC/USDT", "1h")),
        ("Binance_ETHBTC_1h.csv.gz", FileName("ETH/BTC", "1h")),
        ("Binance_BTCUSDT_minute.csv", FileName("BTC/USDT", "1m")),
        ("BTC_USDT_1h.csv", FileName("BTC/USDT", "1h")),
        ("BINANCE_BTCUSDT, 60.csv", FileName("BTC/USDT", "1h")),
        ("BINANCE_SOLUSDT.P, 1D.csv", FileName("SOL/USDT:USDT", "1d", "trade", "futures")),
        ("BTCUSDT-1mo-2024-01.zip", FileName("BTC/USDT", None)),  # no monthly timeframe
        ("BTC_USDT_USDT-8h-mark.feather", FileName("BTC/USDT:USDT@mark", "8h", "mark", "futures")),
        ("sample_1h.parquet", FileName(None, None)),  # says no symbol: the column must
        ("BTC_USDT-1h-backup.feather", FileName(None, "1h")),  # an unknown word: unsure
    ],
)
def test_parse_file_name(path: str, expected: FileName) -> None:
    assert parse_file_name(PurePosixPath(path)) == expected


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("user_data/data/binance/futures/BTC_USDT_USDT-8h-funding_rate.feather", "funding-rate"),
        (f"{VISION}/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01.zip", "funding-rate"),
        ("data/spot/monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01.zip", "aggregate-trades"),
        ("data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-01-05.zip", "trades"),
        ("user_data/data/binance/BTC_USDT-trades.feather", "trades"),
        ("data/futures/um/daily/metrics/BTCUSDT/BTCUSDT-metrics-2024-01-05.zip", "metrics"),
        ("data/futures/um/daily/bookDepth/BTCUSDT/BTCUSDT-bookDepth-2024-01-05.zip", "depth"),
    ],
)
def test_non_candle_names_give_a_skip_reason(path: str, what: str) -> None:
    said = parse_file_name(path)
    assert said.symbol is None
    assert said.skip_reason is not None and what in said.skip_reason
    assert said.skip_reason.endswith("not candles: skipped")


def test_market_precedence_name_then_hint_then_folder() -> None:
    spot_named = "futures/BTC_USDT-1h-spot.feather"
    assert parse_file_name(spot_named, market="futures").symbol == "BTC/USDT"  # name wins
    in_futures = "data/futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip"
    assert parse_file_name(in_futures, market="spot").symbol == "BTC/USDT"  # hint over folder
    assert parse_file_name("BTCUSDT-1h-2024-01.zip", market="futures").symbol == "BTC/USDT:USDT"
    nested = "futures/archive/spot/BTCUSDT-1h-2024-01.csv"
    assert parse_file_name(nested).market == "spot"  # the nearest folder says it
