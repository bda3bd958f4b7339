"""Reading candle files of many shapes into the canonical candle frame."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_core.data.sources import (
    candle_files,
    parse_timestamps,
    read_candle_file,
    split_pair,
    symbol_from_filename,
    timeframe_from_filename,
)
from ml_core.data.symbols import is_trade_series
from ml_core.data.warehouse import CANDLE_COLUMNS
from ml_core.errors import ConfigError, DataContractError, NotCandlesError

SAMPLE_1H = Path(__file__).resolve().parents[2] / "data" / "sample_1h.parquet"
START = pd.Timestamp("2024-01-01 00:00:00")


def ohlcv(n: int = 5, *, step: str = "1min", start: pd.Timestamp = START) -> pd.DataFrame:
    """Raw file content with canonical names; ts naive UTC."""
    close = 100.0 + np.arange(n)
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq=step),
            "open": close - 0.5,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "volume": np.arange(n) + 1.0,
        }
    )


def assert_canonical(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == CANDLE_COLUMNS
    assert frame["ts"].dtype == "datetime64[us]"
    for col in ["open", "high", "low", "close", "volume"]:
        assert frame[col].dtype == "float64"
    ordered = frame.sort_values(["symbol", "timeframe", "ts"], kind="mergesort")
    assert frame.index.equals(pd.RangeIndex(len(frame)))
    pd.testing.assert_frame_equal(frame, ordered.reset_index(drop=True))


def test_sample_parquet_reads_whole_and_canonical() -> None:
    raw = pd.read_parquet(SAMPLE_1H)
    frame = read_candle_file(SAMPLE_1H)
    assert_canonical(frame)
    assert len(frame) == len(raw)  # nothing dropped
    assert set(frame["timeframe"]) == {"1h"}
    assert set(frame["symbol"]) == set(raw["symbol"])
    assert frame["ts"].min() == raw["ts"].min().tz_localize(None)


def test_multi_symbol_csv_sorted_and_timeframe_inferred_per_symbol(tmp_path: Path) -> None:
    a = ohlcv(4, step="1h").assign(pair="SOL/USDT")
    b = ohlcv(3, step="1D").assign(pair="BTC/USDT")
    pd.concat([a, b]).iloc[::-1].to_csv(tmp_path / "mixed.csv", index=False)
    frame = read_candle_file(tmp_path / "mixed.csv")
    assert_canonical(frame)
    assert frame.groupby("symbol")["timeframe"].first().to_dict() == {
        "BTC/USDT": "1d",
        "SOL/USDT": "1h",
    }
    assert frame["ts"].iloc[0] == START


@pytest.mark.parametrize(
    "names",
    [
        {"ts": "Timestamp", "open": "Open", "volume": "Volume"},
        {"ts": "open_time", "open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"},
        {"ts": "DATE", "volume": "volume_base"},
        {"ts": "Open Time", "open": "OPEN", "volume": "Base Volume"},
        {"ts": "datetime", "volume": "vol"},
    ],
)
def test_column_spellings_map_case_insensitively(tmp_path: Path, names: dict[str, str]) -> None:
    raw = ohlcv().rename(columns=names).assign(quote_volume=1e9, trades=7)
    raw.to_csv(tmp_path / "ETHUSDT.csv", index=False)
    frame = read_candle_file(tmp_path / "ETHUSDT.csv")
    assert_canonical(frame)
    assert frame["symbol"].unique().tolist() == ["ETH/USDT"]  # canonical from the name
    assert frame["volume"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]  # never quote_volume
    assert frame["open"].tolist() == (ohlcv()["open"]).tolist()


@pytest.mark.parametrize(
    ("factor", "label"),
    [(1, "seconds"), (1_000, "milliseconds"), (1_000_000, "microseconds"), (10**9, "nanoseconds")],
)
def test_epoch_units_detected_by_magnitude(tmp_path: Path, factor: int, label: str) -> None:
    raw = ohlcv(3, step="1h")
    raw["unix"] = (raw.pop("ts").astype("datetime64[s]").astype("int64") * factor).astype("int64")
    raw.to_parquet(tmp_path / "BTCUSDT.parquet")
    frame = read_candle_file(tmp_path / "BTCUSDT.parquet")
    assert frame["ts"].tolist() == list(pd.date_range(START, periods=3, freq="1h"))
    assert frame["timeframe"].unique().tolist() == ["1h"]


def test_epoch_unit_switch_midway_and_float_epochs() -> None:
    secs = pd.Series([1704067200, 1704067260])
    mixed = pd.Series([1704067200000, 1704067260000000], name="unix")  # ms then us (CDD 2025)
    floats = pd.Series([1704067200.0, np.nan], name="unix")
    expected = pd.to_datetime(secs, unit="s").astype("datetime64[us]").tolist()
    assert parse_timestamps(mixed).tolist() == expected
    parsed = parse_timestamps(floats)
    assert parsed.iloc[0] == START and pd.isna(parsed.iloc[1])  # null stays, row kept


def test_iso_strings_aware_converted_naive_taken_as_utc() -> None:
    text = pd.Series(["2024-01-01T02:00:00+02:00", "2024-01-01 00:01:00", "2024-01-01T00:02:00Z"])
    assert parse_timestamps(text).tolist() == list(pd.date_range(START, periods=3, freq="1min"))


def test_aware_datetime_column_converted_to_naive_utc(tmp_path: Path) -> None:
    raw = ohlcv(3)
    raw["date"] = raw.pop("ts").dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo")
    raw.to_parquet(tmp_path / "DOGEUSDT.parquet")
    frame = read_candle_file(tmp_path / "DOGEUSDT.parquet")
    assert frame["ts"].dt.tz is None
    assert frame["ts"].iloc[0] == START


def test_unparseable_time_text_raises(tmp_path: Path) -> None:
    raw = ohlcv(2).assign(ts=["soon", "later"])
    raw.to_csv(tmp_path / "XUSDT.csv", index=False)  # a bare 'X' is no symbol any more
    with pytest.raises(
        DataContractError, match=r"XUSDT.csv: time column 'ts' .*\['soon', 'later'\]"
    ):
        read_candle_file(tmp_path / "XUSDT.csv")


@pytest.mark.parametrize(
    ("filename", "symbol", "timeframe"),
    [
        ("BTC_USDT-1m.feather", "BTC/USDT", "1m"),
        ("BTC_USDT_USDT-1m-futures.feather", "BTC/USDT:USDT", "1m"),
        ("1000PEPE_USDT_USDT-5m-futures.feather", "1000PEPE/USDT:USDT", "5m"),
        ("Binance_BTCUSDT_d.csv", "BTC/USDT", "1d"),
        ("Binance_ETHBTC_1h.csv.gz", "ETH/BTC", "1h"),
        ("BTCUSDT.csv", "BTC/USDT", None),
    ],
)
def test_symbol_and_timeframe_from_filename(filename: str, symbol: str, timeframe: str) -> None:
    assert symbol_from_filename(filename) == symbol
    assert timeframe_from_filename(filename) == timeframe


def test_unknown_filename_without_symbol_column_asks_for_symbol(tmp_path: Path) -> None:
    ohlcv().to_csv(tmp_path / "my candles.csv", index=False)
    with pytest.raises(
        DataContractError, match=r"symbol of '.*my candles.csv'.*--symbol BASE/QUOTE"
    ):
        read_candle_file(tmp_path / "my candles.csv")
    frame = read_candle_file(tmp_path / "my candles.csv", symbol="WIF/USDT")
    assert frame["symbol"].unique().tolist() == ["WIF/USDT"]


def test_split_pair_on_known_quotes() -> None:
    assert split_pair("pepeusdt") == "PEPE/USDT"
    assert split_pair("ETHFDUSD") == "ETH/FDUSD"
    assert split_pair("USDT") == "USDT"


def test_freqtrade_feather_and_json(tmp_path: Path) -> None:
    raw = ohlcv(4).rename(columns={"ts": "date"})
    raw["date"] = raw["date"].dt.tz_localize("UTC")
    raw.to_feather(tmp_path / "BONK_USDT_USDT-1m-futures.feather")
    feather = read_candle_file(tmp_path / "BONK_USDT_USDT-1m-futures.feather")
    assert feather["symbol"].unique().tolist() == ["BONK/USDT:USDT"]
    rows = [[int(t.value // 10**6), o, h, lo, c, v] for t, o, h, lo, c, v in raw.itertuples(False)]
    (tmp_path / "BONK_USDT-1m.json").write_text(json.dumps(rows))
    from_json = read_candle_file(tmp_path / "BONK_USDT-1m.json")
    assert from_json["symbol"].unique().tolist() == ["BONK/USDT"]
    pd.testing.assert_frame_equal(
        from_json.drop(columns="symbol"), feather.drop(columns="symbol"), check_dtype=True
    )


def test_cryptodatadownload_csv_gz(tmp_path: Path) -> None:
    raw = ohlcv(3, step="1D")
    body = pd.DataFrame(
        {
            "Unix": raw["ts"].astype("datetime64[ms]").astype("int64"),
            "Date": raw["ts"].dt.strftime("%Y-%m-%d"),
            "Symbol": "BTCUSDT",
            "Open": raw["open"],
            "High": raw["high"],
            "Low": raw["low"],
            "Close": raw["close"],
            "Volume BTC": raw["volume"],
            "Volume USDT": raw["volume"] * raw["close"],
            "tradecount": 10,
        }
    ).iloc[::-1]  # CDD files are newest first
    path = tmp_path / "Binance_BTCUSDT_d.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("https://www.CryptoDataDownload.com\n" + body.to_csv(index=False))
    frame = read_candle_file(path)
    assert_canonical(frame)
    assert frame["symbol"].unique().tolist() == ["BTC/USDT"]  # file-name spelling preferred
    assert frame["timeframe"].unique().tolist() == ["1d"]
    assert frame["volume"].tolist() == [1.0, 2.0, 3.0]  # base volume, not USDT volume


def test_headerless_binance_klines(tmp_path: Path) -> None:
    raw = ohlcv(3, step="5min")
    ms = raw["ts"].astype("datetime64[ms]").astype("int64")
    klines = pd.DataFrame(
        [
            [t, o, h, lo, c, v, t + 299_999, 1.0, 5, 0.5, 0.5, 0]
            for t, o, h, lo, c, v in zip(
                ms, raw["open"], raw["high"], raw["low"], raw["close"], raw["volume"], strict=True
            )
        ]
    )
    klines.to_csv(tmp_path / "BTCUSDT-5m-2024-01.csv", index=False, header=False)
    frame = read_candle_file(tmp_path / "BTCUSDT-5m-2024-01.csv", symbol="BTC/USDT")
    assert frame["timeframe"].unique().tolist() == ["5m"]
    assert frame["close"].tolist() == raw["close"].tolist()


def test_unmappable_column_names_file_columns_and_spellings(tmp_path: Path) -> None:
    ohlcv().rename(columns={"close": "last"}).to_csv(tmp_path / "BTCUSDT.csv", index=False)
    with pytest.raises(
        DataContractError,
        match=r"BTCUSDT.csv: no column for 'close' among the columns found "
        r"\['ts', 'open', 'high', 'low', 'last', 'volume'\]; accepted spellings .*'close_price'",
    ):
        read_candle_file(tmp_path / "BTCUSDT.csv")


def test_non_numeric_prices_raise_with_examples(tmp_path: Path) -> None:
    raw = ohlcv(3).astype({"high": object})
    raw.loc[1, "high"] = "twelve"
    raw.to_csv(tmp_path / "BTCUSDT.csv", index=False)
    with pytest.raises(
        DataContractError, match=r"column 'high'.*1 non-numeric value\(s\).*'twelve'"
    ):
        read_candle_file(tmp_path / "BTCUSDT.csv")


def test_nulls_are_kept_not_dropped(tmp_path: Path) -> None:
    raw = ohlcv(4).assign(symbol=["BTC/USDT", "BTC/USDT", None, "BTC/USDT"])
    raw.loc[1, "close"] = np.nan
    raw.to_csv(tmp_path / "BTCUSDT.csv", index=False)
    frame = read_candle_file(tmp_path / "BTCUSDT.csv")
    assert len(frame) == 4  # the quality gate, not the reader, rejects these rows
    assert frame["close"].isna().sum() == 1
    assert frame["symbol"].isna().sum() == 1  # a real null, not the text 'nan'
    assert frame["timeframe"].isna().sum() == 1  # no symbol, no timeframe to infer


def test_timeframe_argument_and_errors(tmp_path: Path) -> None:
    ohlcv(4, step="2min").to_csv(tmp_path / "BTCUSDT.csv", index=False)
    with pytest.raises(DataContractError, match=r"spacing .* is 120 s.*pass timeframe="):
        read_candle_file(tmp_path / "BTCUSDT.csv")
    forced = read_candle_file(tmp_path / "BTCUSDT.csv", timeframe="1m")  # the gate judges it
    assert forced["timeframe"].unique().tolist() == ["1m"]
    with pytest.raises(ConfigError, match="Unknown timeframe '2m'"):
        read_candle_file(tmp_path / "BTCUSDT.csv", timeframe="2m")
    ohlcv(1).to_csv(tmp_path / "ETHUSDT.csv", index=False)
    with pytest.raises(DataContractError, match="fewer than two distinct timestamps"):
        read_candle_file(tmp_path / "ETHUSDT.csv")


def test_single_bar_uses_filename_timeframe(tmp_path: Path) -> None:
    ohlcv(1).to_csv(tmp_path / "Binance_SOLUSDT_1h.csv", index=False)
    frame = read_candle_file(tmp_path / "Binance_SOLUSDT_1h.csv")
    assert frame[["symbol", "timeframe"]].iloc[0].tolist() == ["SOL/USDT", "1h"]


def test_majority_spacing_wins_over_gaps(tmp_path: Path) -> None:
    raw = ohlcv(10, step="1h").drop(index=[3, 4, 7])
    raw.to_csv(tmp_path / "BTCUSDT.csv", index=False)
    assert read_candle_file(tmp_path / "BTCUSDT.csv")["timeframe"].unique().tolist() == ["1h"]


def test_symbol_argument_renames_one_symbol_file_only(tmp_path: Path) -> None:
    ohlcv().assign(ticker="PEPEUSDT").to_csv(tmp_path / "one.csv", index=False)
    assert read_candle_file(tmp_path / "one.csv")["symbol"].unique().tolist() == ["PEPE/USDT"]
    renamed = read_candle_file(tmp_path / "one.csv", symbol="wif_usdt")  # canonicalized too
    assert renamed["symbol"].unique().tolist() == ["WIF/USDT"]
    two = pd.concat([ohlcv().assign(symbol="A"), ohlcv().assign(symbol="B")])
    two.to_csv(tmp_path / "two.csv", index=False)
    with pytest.raises(DataContractError, match=r"holds 2 symbols .*can only rename a one-symbol"):
        read_candle_file(tmp_path / "two.csv", symbol="PEPE/USDT")


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("missing.csv", DataContractError, "missing.csv does not exist"),
        ("notes.txt", NotCandlesError, r"notes.txt: '.txt' file, not a candle file type"),
    ],
)
def test_missing_and_unsupported_files(
    tmp_path: Path, name: str, error: type[Exception], match: str
) -> None:
    if name.endswith(".txt"):
        (tmp_path / name).write_text("hello")
    with pytest.raises(error, match=match) as raised:
        read_candle_file(tmp_path / name)
    assert (raised.type is NotCandlesError) == (name == "notes.txt")  # missing is no skip


def test_empty_file_raises(tmp_path: Path) -> None:
    ohlcv(0).to_csv(tmp_path / "BTCUSDT.csv", index=False)
    with pytest.raises(DataContractError, match="holds no rows"):
        read_candle_file(tmp_path / "BTCUSDT.csv")


def test_reading_does_not_touch_the_file(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT.csv"
    ohlcv().to_csv(path, index=False)
    before = path.read_bytes()
    read_candle_file(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BTCUSDT.csv"]


# ---- data.binance.vision zips, freqtrade kinds, funding rates, folders ------------------

# Real Binance spot BTC/USDT 1h bars (2024-01-01 00:00-02:00 UTC, /work/shared/data) as
# data.binance.vision writes them: open time, o, h, l, c, base volume, close time, quote
# volume, trades, taker buy base, taker buy quote, ignore. Spot dumps from 2025 on write
# microseconds; futures dumps have a header line.
BTC_1H = [
    (1704067200000, 42283.58, 42554.57, 42261.02, 42475.23, 1271.68108),
    (1704070800000, 42475.23, 42775.0, 42431.65, 42613.56, 1196.37856),
    (1704074400000, 42613.57, 42638.41, 42500.0, 42581.1, 685.2198),
]
KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)


def kline_csv(rows: list[tuple], *, header: bool = False, unit: int = 1) -> str:
    """A data.binance.vision kline CSV; ``unit=1000`` writes microseconds."""
    lines = [KLINE_HEADER] if header else []
    for t, o, h, lo, c, v in rows:
        close_time = (t + 3_599_999) * unit
        lines.append(f"{t * unit},{o},{h},{lo},{c},{v},{close_time},{v * c:.4f},100,1.0,1.0,0")
    return "\n".join(lines) + "\n"


def write_zip(path: Path, members: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def test_binance_vision_zip_needs_no_symbol_and_reads_microseconds(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "BTCUSDT-1h-2024-01.zip",
        {"BTCUSDT-1h-2024-01.csv": kline_csv(BTC_1H, unit=1000)},
    )
    frame = read_candle_file(path)
    assert_canonical(frame)
    assert frame["symbol"].unique().tolist() == ["BTC/USDT"]
    assert frame["timeframe"].unique().tolist() == ["1h"]
    assert frame["ts"].tolist() == list(pd.date_range(START, periods=3, freq="1h"))
    assert frame["close"].tolist() == [42475.23, 42613.56, 42581.1]
    assert frame["volume"].tolist() == [1271.68108, 1196.37856, 685.2198]  # base, not quote


def test_binance_vision_csv_name_alone_gives_symbol_and_futures_folder(tmp_path: Path) -> None:
    spot = tmp_path / "BTCUSDT-1h-2024-01.csv"
    spot.write_text(kline_csv(BTC_1H))
    assert read_candle_file(spot)["symbol"].unique().tolist() == ["BTC/USDT"]
    assert read_candle_file(spot, market="futures")["symbol"].unique().tolist() == ["BTC/USDT:USDT"]
    folder = tmp_path / "data/futures/um/monthly/klines/BTCUSDT/1h"
    dump = write_zip(
        folder / "BTCUSDT-1h-2024-01.zip",
        {"BTCUSDT-1h-2024-01.csv": kline_csv(BTC_1H, header=True)},
    )
    frame = read_candle_file(dump)
    assert frame["symbol"].unique().tolist() == ["BTC/USDT:USDT"]
    assert frame["open"].tolist() == [42283.58, 42475.23, 42613.57]


def test_mark_index_premium_dumps_are_series_apart_from_trades(tmp_path: Path) -> None:
    symbols = {}
    for folder in ["klines", "markPriceKlines", "indexPriceKlines", "premiumIndexKlines"]:
        path = tmp_path / f"futures/um/monthly/{folder}/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip"
        write_zip(path, {"BTCUSDT-1h-2024-01.csv": kline_csv(BTC_1H, header=True)})
        (symbols[folder],) = read_candle_file(path)["symbol"].unique()
    assert symbols == {
        "klines": "BTC/USDT:USDT",
        "markPriceKlines": "BTC/USDT:USDT@mark",
        "indexPriceKlines": "BTC/USDT:USDT@index",
        "premiumIndexKlines": "BTC/USDT:USDT@premium",
    }
    assert [is_trade_series(s) for s in symbols.values()] == [True, False, False, False]


def test_freqtrade_kind_files_get_suffixed_symbols(tmp_path: Path) -> None:
    raw = ohlcv(4, step="1h").rename(columns={"ts": "date"})
    raw["date"] = raw["date"].dt.tz_localize("UTC")
    found = {}
    for suffix in ["futures", "mark", "index", "premiumIndex"]:
        path = tmp_path / "futures" / f"ETH_USDT_USDT-1h-{suffix}.feather"
        path.parent.mkdir(exist_ok=True)
        raw.to_feather(path)
        frame = read_candle_file(path)
        assert_canonical(frame)
        (found[suffix],) = frame["symbol"].unique()
    assert found == {
        "futures": "ETH/USDT:USDT",
        "mark": "ETH/USDT:USDT@mark",
        "index": "ETH/USDT:USDT@index",
        "premiumIndex": "ETH/USDT:USDT@premium",
    }


def test_zip_with_two_csvs_takes_symbols_from_member_names(tmp_path: Path) -> None:
    eth = [(t, o / 20, h / 20, lo / 20, c / 20, v * 3) for t, o, h, lo, c, v in BTC_1H]
    path = write_zip(
        tmp_path / "klines.zip",
        {
            "ETHUSDT-1h-2024-01.csv": kline_csv(eth),
            "BTCUSDT-1h-2024-01.csv": kline_csv(BTC_1H),
            "BTCUSDT-1h-2024-01.csv.CHECKSUM": "abc  BTCUSDT-1h-2024-01.csv\n",
            "__MACOSX/._BTCUSDT-1h-2024-01.csv": "junk",
        },
    )
    frame = read_candle_file(path)
    assert_canonical(frame)
    assert frame.groupby("symbol").size().to_dict() == {"BTC/USDT": 3, "ETH/USDT": 3}
    assert frame.loc[frame["symbol"] == "ETH/USDT", "close"].iloc[0] == 42475.23 / 20
    assert read_candle_file(path, market="futures")["symbol"].unique().tolist() == [
        "BTC/USDT:USDT",
        "ETH/USDT:USDT",
    ]
    with pytest.raises(DataContractError, match=r"holds CSVs of 2 symbols .*rename a one-symbol"):
        read_candle_file(path, symbol="BTC/USDT")


def test_zip_members_without_names_take_the_zip_name(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "SOLUSDT-1h-2024.zip",
        {"part2.csv": kline_csv(BTC_1H[2:]), "part1.csv": kline_csv(BTC_1H[:2])},
    )
    frame = read_candle_file(path)
    assert frame["symbol"].unique().tolist() == ["SOL/USDT"]
    assert frame["ts"].is_monotonic_increasing and len(frame) == 3


def test_zip_with_no_name_anywhere_asks_for_symbol(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "download.zip", {"data/part1.csv": kline_csv(BTC_1H)})
    with pytest.raises(DataContractError, match=r"download.zip\[data/part1.csv\]'.*--symbol"):
        read_candle_file(path)
    frame = read_candle_file(path, symbol="BTC/USDT", market="futures")
    assert frame["symbol"].unique().tolist() == ["BTC/USDT:USDT"]


def test_zip_without_candle_csv_is_not_candles(tmp_path: Path) -> None:
    funding = "calc_time,funding_interval_hours,last_funding_rate\n1704067200000,8,0.0001\n"
    path = write_zip(tmp_path / "download.zip", {"BTCUSDT-fundingRate-2024-01.csv": funding})
    with pytest.raises(NotCandlesError, match=r"download.zip: zip without a candle CSV .*funding"):
        read_candle_file(path)
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(DataContractError, match=r"broken.zip is not a readable zip") as err:
        read_candle_file(tmp_path / "broken.zip")
    assert err.type is DataContractError  # a broken download is an error, not a skip


def test_funding_rate_files_raise_not_candles(tmp_path: Path) -> None:
    freqtrade = tmp_path / "BTC_USDT_USDT-8h-funding_rate.feather"
    ohlcv(3, step="8h").rename(columns={"ts": "date"}).to_feather(freqtrade)  # OHLCV-shaped
    vision = write_zip(
        tmp_path / "BTCUSDT-fundingRate-2024-01.zip",
        {"BTCUSDT-fundingRate-2024-01.csv": "calc_time,funding_interval_hours,last_funding_rate\n"},
    )
    unnamed = tmp_path / "rates.csv"
    unnamed.write_text("calc_time,funding_interval_hours,last_funding_rate\n1704067200000,8,1e-4\n")
    for path in [freqtrade, vision, unnamed]:
        with pytest.raises(NotCandlesError, match=r"funding-rate file, not candles: skipped"):
            read_candle_file(path)
    assert issubclass(NotCandlesError, DataContractError)


def test_freqtrade_json_gz_equals_json(tmp_path: Path) -> None:
    rows = [[t, o, h, lo, c, v] for t, o, h, lo, c, v in BTC_1H]
    (tmp_path / "BTC_USDT-1h.json").write_text(json.dumps(rows))
    with gzip.open(tmp_path / "BTC_USDT-1h.json.gz", "wt") as fh:
        fh.write(json.dumps(rows))
    plain = read_candle_file(tmp_path / "BTC_USDT-1h.json")
    zipped = read_candle_file(tmp_path / "BTC_USDT-1h.json.gz")
    assert_canonical(zipped)
    pd.testing.assert_frame_equal(zipped, plain)
    assert zipped["symbol"].unique().tolist() == ["BTC/USDT"]
    assert zipped["high"].tolist() == [42554.57, 42775.0, 42638.41]


def test_tradingview_export(tmp_path: Path) -> None:
    seconds = [t // 1000 for t, *_ in BTC_1H]
    body = pd.DataFrame(
        {
            "time": seconds,
            "open": [r[1] for r in BTC_1H],
            "high": [r[2] for r in BTC_1H],
            "low": [r[3] for r in BTC_1H],
            "close": [r[4] for r in BTC_1H],
            "Volume": [r[5] for r in BTC_1H],
            "RSI": [50.0, 55.0, 52.0],
        }
    )
    body.to_csv(tmp_path / "BINANCE_BTCUSDT.P, 60.csv", index=False)
    frame = read_candle_file(tmp_path / "BINANCE_BTCUSDT.P, 60.csv")
    assert frame[["symbol", "timeframe"]].drop_duplicates().values.tolist() == [
        ["BTC/USDT:USDT", "1h"]
    ]


def test_symbol_column_values_and_argument_are_canonical(tmp_path: Path) -> None:
    mixed = pd.concat(
        [
            ohlcv(3).assign(pair="btcusdt"),
            ohlcv(3).assign(pair="ETH_USDT"),
            ohlcv(3).assign(pair="SOL/USDT"),
        ]
    )
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    frame = read_candle_file(tmp_path / "mixed.csv")
    assert sorted(frame["symbol"].unique()) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    futures = tmp_path / "futures"
    futures.mkdir()
    mixed.to_csv(futures / "mixed.csv", index=False)
    assert sorted(read_candle_file(futures / "mixed.csv")["symbol"].unique()) == [
        "BTC/USDT:USDT",
        "ETH/USDT:USDT",
        "SOL/USDT:USDT",
    ]
    ohlcv(3).assign(pair="ACME").to_csv(tmp_path / "acme.csv", index=False)
    with pytest.raises(DataContractError, match=r"acme.csv \(column 'pair'\): .*'ACME'.*--symbol"):
        read_candle_file(tmp_path / "acme.csv")
    assert read_candle_file(tmp_path / "acme.csv", symbol="acme-usdt")["symbol"].iloc[0] == (
        "ACME/USDT"
    )


def test_explicit_symbol_takes_the_file_kind(tmp_path: Path) -> None:
    path = tmp_path / "markPriceKlines" / "export.csv"
    path.parent.mkdir()
    path.write_text(kline_csv(BTC_1H, header=True))
    frame = read_candle_file(path, symbol="BTCUSDT")
    assert frame["symbol"].unique().tolist() == ["BTC/USDT:USDT@mark"]
    with pytest.raises(DataContractError, match=r"export.csv \(symbol argument\).*'index'"):
        read_candle_file(path, symbol="BTC/USDT:USDT@index")


def test_candle_files_walks_folders_in_order_with_reasons(tmp_path: Path) -> None:
    root = tmp_path / "downloads"
    write_zip(root / "spot/BTCUSDT-1h-2024-01.zip", {"BTCUSDT-1h-2024-01.csv": kline_csv(BTC_1H)})
    (root / "spot/BTCUSDT-1h-2024-01.zip.CHECKSUM").write_text("abc  BTCUSDT-1h-2024-01.zip\n")
    raw = ohlcv(3, step="1h").rename(columns={"ts": "date"})
    (root / "futures").mkdir()
    raw.to_feather(root / "futures/BTC_USDT_USDT-1h-futures.feather")
    ohlcv(3, step="8h").to_feather(root / "futures/BTC_USDT_USDT-8h-funding_rate.feather")
    (root / "README.md").write_text("# my data\n")
    (root / ".DS_Store").write_bytes(b"\0")
    (root / ".cache").mkdir()
    (root / ".cache/ETHUSDT.csv").write_text("x")
    (root / "older/deeper").mkdir(parents=True)
    ohlcv(3).to_csv(root / "older/deeper/ETHUSDT.csv", index=False)

    entries = candle_files([root, root / "README.md", tmp_path / "missing.csv"])
    listed = [(e.path.relative_to(tmp_path).as_posix(), e.skip_reason) for e in entries]
    assert [name for name, _ in listed] == [
        "downloads/.DS_Store",
        "downloads/.cache",
        "downloads/README.md",
        "downloads/futures/BTC_USDT_USDT-1h-futures.feather",
        "downloads/futures/BTC_USDT_USDT-8h-funding_rate.feather",
        "downloads/older/deeper/ETHUSDT.csv",
        "downloads/spot/BTCUSDT-1h-2024-01.zip",
        "downloads/spot/BTCUSDT-1h-2024-01.zip.CHECKSUM",
        "missing.csv",  # listed, unreasoned: reading it raises, naming it
    ]  # README.md named twice, listed once
    reasons = dict(listed)
    assert reasons["downloads/.DS_Store"].startswith("macOS folder metadata")
    assert reasons["downloads/.cache"] == "hidden folder, not searched: skipped"
    assert reasons["downloads/README.md"].startswith("'.md' file, not a candle file type")
    assert reasons["downloads/futures/BTC_USDT_USDT-8h-funding_rate.feather"] == (
        "funding-rate file, not candles: skipped"
    )
    assert reasons["downloads/spot/BTCUSDT-1h-2024-01.zip.CHECKSUM"].startswith("checksum file")
    to_read = [e.path for e in entries if e.skip_reason is None]
    assert len(to_read) == 4
    loaded = [read_candle_file(p) for p in to_read[:3]]
    assert [f["symbol"].iloc[0] for f in loaded] == ["BTC/USDT:USDT", "ETH/USDT", "BTC/USDT"]
    with pytest.raises(DataContractError, match="missing.csv does not exist"):
        read_candle_file(to_read[3])
    with pytest.raises(NotCandlesError, match=r"\.DS_Store: macOS folder metadata"):
        read_candle_file(root / ".DS_Store")


def test_candle_files_order_is_stable(tmp_path: Path) -> None:
    for name in ["b.csv", "A.csv", "a.csv", "c/z.csv"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    first = [e.path.name for e in candle_files(tmp_path)]
    assert first == ["A.csv", "a.csv", "b.csv", "z.csv"]
    assert [e.path.name for e in candle_files(str(tmp_path))] == first
    assert candle_files([]) == []
