"""Files from the usual places, each checked against the warehouse before and after:
kinds never overwrite one another, funding-rate files never fail the candle files
beside them, one asset is one series whatever its spelling, zips and json.gz load."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_core.config import QualityConfig
from ml_core.data.ingest import ingest_paths, ingest_run
from ml_core.data.warehouse import Warehouse

CFG = QualityConfig()
NOW = pd.Timestamp("2025-01-01")


def ohlcv(n: int = 24, *, price: float = 100.0, volume: float = 5.0) -> pd.DataFrame:
    close = price * (1 + 0.001 * np.arange(n))
    open_ = np.r_[price, close[:-1]]
    return pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) + 0.1,
            "low": np.minimum(open_, close) - 0.1,
            "close": close,
            "volume": volume,
        }
    )


def binance_rows(frame: pd.DataFrame) -> str:
    """data.binance.vision kline CSV (no header; open time in ms, close time)."""
    ms = frame["date"].astype("int64") // 10**6
    out = pd.DataFrame(
        {
            0: ms,
            1: frame["open"],
            2: frame["high"],
            3: frame["low"],
            4: frame["close"],
            5: frame["volume"],
            6: ms + 3_599_999,
        }
    )
    return out.to_csv(index=False, header=False)


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


def test_mark_file_after_the_futures_file_is_its_own_series(wh: Warehouse, tmp_path: Path) -> None:
    trade = tmp_path / "BTC_USDT_USDT-1h-futures.feather"
    mark = tmp_path / "BTC_USDT_USDT-1h-mark.feather"
    ohlcv().to_feather(trade)
    ohlcv(price=100.05, volume=0.0).to_feather(mark)
    ingest_paths(wh, [trade], CFG, now=NOW)
    before = wh.read_candles(symbols=["BTC/USDT:USDT"])
    (res,) = ingest_paths(wh, [mark], CFG, now=NOW)
    assert res.symbols == ["BTC/USDT:USDT@mark"] and res.n_new == 24 and res.n_updated == 0
    pd.testing.assert_frame_equal(wh.read_candles(symbols=["BTC/USDT:USDT"]), before)
    assert (before["volume"] == 5.0).all()  # the trade candles keep their volume


def test_funding_rate_file_beside_candle_files_is_skipped_not_fatal(
    wh: Warehouse, tmp_path: Path
) -> None:
    folder = tmp_path / "futures"
    folder.mkdir()
    ohlcv().to_feather(folder / "BTC_USDT_USDT-1h-futures.feather")
    funding = pd.DataFrame(
        {"date": pd.date_range("2024-01-01", periods=3, freq="8h", tz="UTC"), "open": 1e-4}
    )
    funding.to_feather(folder / "BTC_USDT_USDT-8h-funding_rate.feather")
    ohlcv(price=50.0).to_feather(folder / "ETH_USDT_USDT-1h-futures.feather")
    run = ingest_run(wh, [folder], CFG, now=NOW)
    assert run.failed is None
    assert [Path(p).name for p, _ in run.skipped] == ["BTC_USDT_USDT-8h-funding_rate.feather"]
    assert "funding-rate" in run.skipped[0][1]
    stored = wh.read_candles()
    assert sorted(stored["symbol"].unique()) == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert len(stored) == 48


def test_two_spellings_of_one_asset_land_in_one_series(wh: Warehouse, tmp_path: Path) -> None:
    frame = ohlcv(48)
    frame.iloc[:24].to_csv(tmp_path / "BTCUSDT.csv", index=False)
    cdd = tmp_path / "Binance_BTCUSDT_1h.csv"
    cdd.write_text("https://www.cryptodatadownload.com\n" + frame.iloc[12:].to_csv(index=False))
    first = ingest_paths(wh, [tmp_path / "BTCUSDT.csv"], CFG, now=NOW)
    second = ingest_paths(wh, [cdd], CFG, now=NOW)
    assert first[0].symbols == second[0].symbols == ["BTC/USDT"]
    assert (second[0].n_new, second[0].n_unchanged) == (24, 12)  # the overlap is the same bars
    stored = wh.read_candles()
    assert stored["symbol"].unique().tolist() == ["BTC/USDT"] and len(stored) == 48


def test_binance_zip_and_freqtrade_json_gz(wh: Warehouse, tmp_path: Path) -> None:
    spot = tmp_path / "BTCUSDT-1h-2024-01.zip"
    with zipfile.ZipFile(spot, "w") as zf:
        zf.writestr("BTCUSDT-1h-2024-01.csv", binance_rows(ohlcv()))
    ft = tmp_path / "ETH_USDT-1h.json.gz"
    frame = ohlcv(price=50.0)
    rows = [
        [int(t.value // 10**6), o, h, lo, c, v]
        for t, o, h, lo, c, v in frame.itertuples(index=False)
    ]
    with gzip.open(ft, "wt") as fh:
        json.dump(rows, fh)
    results = ingest_paths(wh, [spot, ft], CFG, now=NOW)  # no --symbol needed
    assert [(r.symbols, r.timeframe, r.n_new) for r in results] == [
        (["BTC/USDT"], "1h", 24),
        (["ETH/USDT"], "1h", 24),
    ]
    eth = wh.read_candles(symbols=["ETH/USDT"])
    np.testing.assert_allclose(eth["close"].to_numpy(), frame["close"].to_numpy())


def test_a_coincast_home_inside_the_folder_is_not_searched(wh: Warehouse, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    (folder / "home" / "reports").mkdir(parents=True)
    (folder / "home" / "warehouse.duckdb").write_bytes(b"")
    pd.DataFrame({"metric": ["auc"], "value": [0.5]}).to_csv(
        folder / "home" / "reports" / "val_metrics.csv", index=False
    )
    ohlcv().to_csv(folder / "BTCUSDT-1h.csv", index=False)
    run = ingest_run(wh, [folder], CFG, now=NOW)
    assert run.failed is None and [r.n_new for r in run.results] == [24]
    assert [(Path(p).name, why) for p, why in run.skipped] == [
        ("home", "a coincast home (its own state), not searched")
    ]


@pytest.mark.parametrize(
    "first_ms",
    [-3_600_000 * 30, 7 * 10**10],  # 1969 (negative) and 1972 in ms (read as seconds: 4188)
    ids=["negative", "ms-before-1973"],
)
def test_implausible_epoch_times_are_refused_not_stored_decades_off(
    wh: Warehouse, tmp_path: Path, first_ms: int
) -> None:
    from ml_core.errors import DataContractError, QualityGateError

    frame = ohlcv(24).drop(columns="date")
    frame.insert(0, "timestamp", first_ms + 3_600_000 * np.arange(24))
    path = tmp_path / "BTCUSDT-1h.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataContractError, match="epoch milliseconds before 1973"):
        ingest_paths(wh, [path], CFG, now=NOW)  # the spacing gives the misreading away
    with pytest.raises(QualityGateError, match=r"ts (>= 2009-01-03|<= \d{4})"):
        ingest_paths(wh, [path], CFG, now=NOW, timeframe="1h")  # the gate refuses the times
    assert wh.read_candles().empty
