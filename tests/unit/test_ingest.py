"""Ingestion behind the quality gate, on real DuckDB files and real Great Expectations."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_core.config import QualityConfig
from ml_core.data.ingest import IngestResult, ingest_frame, ingest_paths, ingest_run
from ml_core.data.warehouse import Warehouse
from ml_core.errors import DataContractError, QualityGateError, RevisionError

SAMPLE_1H = Path(__file__).resolve().parents[2] / "data" / "sample_1h.parquet"
NOW = pd.Timestamp("2024-06-01 00:00:00")
CFG = QualityConfig()


def make_candles(
    n: int = 20, *, symbol: str = "BTC/USDT", start: str = "2024-01-01 00:00:00"
) -> pd.DataFrame:
    """``n`` clean 1m candles."""
    close = 100.0 * (1.0 + 0.001 * np.arange(1, n + 1))
    open_ = np.r_[100.0, close[:-1]]
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": "1m",
            "ts": pd.date_range(start, periods=n, freq="1min").astype("datetime64[us]"),
            "open": open_,
            "high": np.maximum(open_, close) + 0.5,
            "low": np.minimum(open_, close) - 0.5,
            "close": close,
            "volume": np.full(n, 10.0),
        }
    )


def rows(wh: Warehouse, table: str, order: str = "ALL") -> list[tuple]:
    with wh.connect(read_only=True) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()


@pytest.fixture(scope="module")
def loaded_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse file already holding one good batch (built once per module)."""
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    ingest_frame(Warehouse(path), make_candles(), CFG, source="seed", now=NOW)
    return path


@pytest.fixture
def wh(loaded_file: Path, tmp_path: Path) -> Warehouse:
    """A private copy of the loaded warehouse."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(loaded_file, path)
    return Warehouse(path)


def test_good_batch_loads_with_log_and_counts(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    batch = make_candles(5)
    before = batch.copy(deep=True)
    result = ingest_frame(wh, batch, CFG, source="unit", now=NOW)
    pd.testing.assert_frame_equal(batch, before)  # input untouched
    assert isinstance(result, IngestResult) and len(result.batch_id) == 32
    assert (result.symbols, result.timeframe, result.n_rows) == (["BTC/USDT"], "1m", 5)
    assert (result.n_new, result.n_updated, result.findings) == (5, 0, [])
    stored = wh.read_candles()
    pd.testing.assert_frame_equal(stored, batch, check_dtype=False)
    (log,) = rows(wh, "ingest_log")
    assert log[0] == result.batch_id and log[2:] == ("unit", "BTC/USDT", "1m", 5, 5, "loaded", 0)
    assert rows(wh, "quarantine") == [] and rows(wh, "quality_findings") == []


def test_double_ingest_changes_nothing(wh: Warehouse) -> None:
    before = rows(wh, "candles")
    again = ingest_frame(wh, make_candles(), CFG, source="seed", now=NOW)
    assert (again.n_new, again.n_updated, again.n_rows) == (0, 0, 20)
    assert rows(wh, "candles") == before
    logs = rows(wh, "ingest_log", order="created_at")
    assert [r[6] for r in logs] == [20, 0] and [r[7] for r in logs] == ["loaded", "loaded"]


def test_revision_is_refused_and_quarantined_then_allowed(wh: Warehouse) -> None:
    batch = make_candles(25)  # 20 known + 5 new
    batch.loc[19, ["close", "high", "volume"]] = [batch.loc[19, "close"] + 0.1, 200.0, 99.0]
    before = rows(wh, "candles")
    with pytest.raises(
        RevisionError, match=r"BTC/USDT 1m: 1 bar\(s\) from 2024-01-01 00:19:00"
    ) as err:
        ingest_frame(wh, batch, CFG, source="refetch", now=NOW)
    assert "--allow-revisions" in str(err.value) and "890.000%" in str(err.value)
    assert rows(wh, "candles") == before  # not even the 5 new bars
    (rev,) = err.value.revisions
    assert (rev["symbol"], rev["bars"]) == ("BTC/USDT", 1) and rev["max_rel_change"] == 8.9
    (q,) = rows(wh, "quarantine")
    assert q[0] == err.value.batch_id and q[6] == "no_silent_revision" and q[5] == 25

    result = ingest_frame(wh, batch, CFG, source="refetch", now=NOW, allow_revisions=True)
    assert (result.n_new, result.n_updated, result.n_unchanged) == (5, 1, 19)
    assert [r["bars"] for r in result.revisions] == [1]
    with wh.connect(read_only=True) as con:
        logged = con.execute(
            "SELECT n_new, n_updated FROM ingest_log WHERE batch_id = ?", [result.batch_id]
        ).fetchone()
    assert logged == (5, 1)
    stored = wh.read_candles()
    assert len(stored) == 25
    pd.testing.assert_frame_equal(stored, batch, check_dtype=False)


def test_float_noise_is_not_a_revision(wh: Warehouse) -> None:
    before = rows(wh, "candles")
    batch = make_candles()
    batch["close"] *= 1 + 1e-12  # e.g. a CSV round trip
    result = ingest_frame(wh, batch, CFG, source="csv-again", now=NOW)
    assert (result.n_new, result.n_updated, result.n_unchanged) == (0, 0, 20)
    assert rows(wh, "candles") == before  # the stored values stay as first stored
    with pytest.raises(RevisionError):
        ingest_frame(wh, batch, QualityConfig(revision_tolerance=0.0), source="strict", now=NOW)


def test_forming_bar_is_not_stored_and_counted(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    batch = make_candles(5)  # 1m bars 00:00 .. 00:04
    now = pd.Timestamp("2024-01-01 00:04:45")  # the 00:04 bar closes at 00:05
    result = ingest_frame(wh, batch, CFG, source="live", now=now)
    assert (result.n_rows, result.n_new, result.n_forming) == (5, 4, 1)
    assert wh.read_candles()["ts"].max() == pd.Timestamp("2024-01-01 00:03:00")
    later = ingest_frame(wh, batch, CFG, source="live", now=pd.Timestamp("2024-01-01 00:05:00"))
    assert (later.n_new, later.n_forming, later.n_unchanged) == (1, 0, 4)


def test_one_symbol_for_files_naming_different_symbols_is_refused(
    wh: Warehouse, tmp_path: Path
) -> None:
    for name in ["BTCUSDT.csv", "ETHUSDT.csv"]:
        make_candles(5).drop(columns=["symbol", "timeframe"]).to_csv(tmp_path / name, index=False)
    counts = wh.table_counts()
    with pytest.raises(DataContractError, match=r"--symbol BTC/USDT was given for 2 files"):
        ingest_paths(
            wh,
            [tmp_path / "BTCUSDT.csv", tmp_path / "ETHUSDT.csv"],
            CFG,
            symbol="BTC/USDT",
            now=NOW,
        )
    assert wh.table_counts() == counts  # refused before any file was read


def bad(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[], pd.DataFrame]:
    return lambda: change(make_candles(10, symbol="PEPE/USDT", start="2024-02-01"))


def _set(df: pd.DataFrame, row: int, **values: object) -> pd.DataFrame:
    out = df.copy()
    for col, value in values.items():
        out.loc[row, col] = value
    return out


CRITICAL_CASES = {
    "null_close": (
        bad(lambda d: _set(d, 3, close=np.nan)),
        "expect_column_values_to_not_be_null",
        "no nulls in close",
    ),
    "zero_open": (
        bad(lambda d: _set(d, 3, open=0.0)),
        "expect_column_values_to_be_between",
        "open > 0",
    ),
    "negative_low": (
        bad(lambda d: _set(d, 3, low=-1.0)),
        "expect_column_values_to_be_between",
        "low > 0",
    ),
    "high_below_close": (
        bad(lambda d: _set(d, 3, high=d.loc[3, "close"] - 0.01)),
        "expect_column_pair_values_a_to_be_greater_than_b",
        "high >= close",
    ),
    "low_above_open": (
        bad(lambda d: _set(d, 3, low=d.loc[3, "open"] + 0.01)),
        "expect_column_pair_values_a_to_be_greater_than_b",
        "open >= low",
    ),
    "negative_volume": (
        bad(lambda d: _set(d, 3, volume=-5.0)),
        "expect_column_values_to_be_between",
        "volume >= 0",
    ),
    "duplicate_key": (
        bad(lambda d: pd.concat([d, d.iloc[[4]]], ignore_index=True)),
        "expect_compound_columns_to_be_unique",
        "(symbol, timeframe, ts) unique",
    ),
    "misaligned_ts": (
        bad(lambda d: _set(d, 3, ts=pd.Timestamp("2024-02-01 00:03:30"))),
        "expect_column_values_to_be_in_set",
        "ts aligned to the timeframe",
    ),
    "infinite_volume": (
        bad(lambda d: _set(d, 3, volume=np.inf)),
        "expect_column_values_to_be_between",
        "volume <= 1e+18 (finite, plausible)",
    ),
    "absurd_high": (
        bad(lambda d: _set(d, 3, high=1e30)),
        "expect_column_values_to_be_between",
        "high <= 1e+12 (finite, plausible)",
    ),
    "before_2009": (
        bad(lambda d: _set(d, 3, ts=pd.Timestamp("1971-08-01 00:03:00"))),
        "expect_column_values_to_be_between",
        "ts >= 2009-01-03 (quality.min_ts)",
    ),
    "future_ts": (
        bad(lambda d: _set(d, 9, ts=NOW + pd.Timedelta(minutes=1))),
        "expect_column_values_to_be_between",
        "ts <= 2024-06-01 00:00:00 (no future bars)",
    ),
}


@pytest.mark.parametrize("symbol", ["[/]EVIL", "BTC/USDT\nETH", " BTC/USDT", "X" * 65, "💩/USDT"])
def test_implausible_symbols_are_quarantined(wh: Warehouse, symbol: str) -> None:
    before = rows(wh, "candles")
    with pytest.raises(QualityGateError, match="symbol is letters, digits"):
        ingest_frame(wh, make_candles(5, symbol=symbol), CFG, source="hostile", now=NOW)
    assert rows(wh, "candles") == before


@pytest.mark.parametrize("case", list(CRITICAL_CASES))
def test_critical_failure_quarantines_whole_batch(wh: Warehouse, case: str) -> None:
    make_bad, expectation, label = CRITICAL_CASES[case]
    batch = make_bad()
    candles_before = rows(wh, "candles")
    pattern = rf"{expectation} \({re.escape(label)}\) for PEPE/USDT: \d+ rows?, e\.g\. ts="
    with pytest.raises(QualityGateError, match=pattern) as err:
        ingest_frame(wh, batch, CFG, source=f"bad-{case}", now=NOW)
    assert rows(wh, "candles") == candles_before  # byte-for-byte: same rows, same values
    batch_id = err.value.batch_id
    assert expectation in [f["expectation"] for f in err.value.failures]
    assert f"Batch {batch_id} from bad-{case} was quarantined" in str(err.value)
    (q,) = rows(wh, "quarantine")
    assert q[0] == batch_id and q[2] == f"bad-{case}" and q[5] == len(batch)
    assert expectation in q[6].split(",") and q[7] == str(err.value)
    assert json.loads(q[8])["passed"] is False
    with wh.connect(read_only=True) as con:
        kept = con.execute(
            "SELECT count(*), count(DISTINCT batch_id) FROM quarantine_candles WHERE batch_id = ?",
            [batch_id],
        ).fetchone()
        status = con.execute(
            "SELECT status, n_new FROM ingest_log WHERE batch_id = ?", [batch_id]
        ).fetchone()
        critical = con.execute(
            "SELECT symbol, expectation FROM quality_findings "
            "WHERE batch_id = ? AND severity = 'critical'",
            [batch_id],
        ).fetchall()
    assert kept == (len(batch), 1)  # the whole batch, good rows included
    assert status == ("quarantined", 0)
    assert ("PEPE/USDT", expectation) in critical


def test_quarantined_rows_are_stored_as_given(wh: Warehouse) -> None:
    batch = _set(make_candles(4, symbol="WIF/USDT"), 1, close=np.nan)
    with pytest.raises(QualityGateError, match="no nulls in close") as err:
        ingest_frame(wh, batch, CFG, source="nulls", now=NOW)
    with wh.connect(read_only=True) as con:
        stored = con.execute(
            "SELECT symbol, timeframe, ts, open, high, low, close, volume FROM quarantine_candles "
            "WHERE batch_id = ? ORDER BY ts",
            [err.value.batch_id],
        ).df()
    pd.testing.assert_frame_equal(stored, batch, check_dtype=False)


def test_soft_findings_recorded_without_failing(wh: Warehouse) -> None:
    batch = make_candles(80, symbol="BONK/USDT", start="2024-03-01")
    batch = batch.drop(index=[5, 6]).reset_index(drop=True)  # gap of 2 bars
    batch.loc[20:, ["open", "high", "low", "close"]] *= 3.0  # +200% bar
    batch.loc[20, ["open", "low"]] = [batch.loc[19, "close"], batch.loc[19, "close"] - 0.5]
    batch.loc[40:70, ["open", "high", "low", "close"]] = batch.loc[39, "close"]
    batch.loc[40:70, "volume"] = 0.0  # 31 dead bars
    result = ingest_frame(wh, batch, QualityConfig(max_flat_bars=30), source="meme", now=NOW)
    assert result.n_new == len(batch)
    assert sorted(f["check"] for f in result.findings) == [
        "extreme_returns",
        "flat_stretches",
        "gaps",
    ]
    with wh.connect(read_only=True) as con:
        stored = con.execute(
            "SELECT symbol, timeframe, expectation, severity, n_rows, detail "
            "FROM quality_findings WHERE batch_id = ? ORDER BY expectation",
            [result.batch_id],
        ).fetchall()
    assert [s[:5] for s in stored] == [
        ("BONK/USDT", "1m", "extreme_returns", "soft", 1),
        ("BONK/USDT", "1m", "flat_stretches", "soft", 1),
        ("BONK/USDT", "1m", "gaps", "soft", 1),
    ]
    assert stored[2][5].startswith("1 gap(s), 2 missing bar(s)")


def test_ingest_paths_one_batch_per_file_and_stops_at_first_failure(
    wh: Warehouse, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    make_candles(5, start="2024-01-02").drop(columns=["symbol", "timeframe"]).to_csv(
        folder / "a_ETHUSDT.csv", index=False
    )
    broken = make_candles(5, start="2024-01-03").drop(columns=["symbol", "timeframe"])
    broken.loc[2, "volume"] = -1.0
    broken.to_csv(folder / "b_ETHUSDT.csv", index=False)
    make_candles(5, start="2024-01-04").drop(columns=["symbol", "timeframe"]).to_csv(
        folder / "c_ETHUSDT.csv", index=False
    )
    with pytest.raises(QualityGateError, match=r"\(volume >= 0\) for ETH/USDT: 1 row") as err:
        ingest_paths(wh, folder, CFG, symbol="ETH/USDT", now=NOW)
    assert "Loaded before it: a_ETHUSDT.csv (5 new). Not read: c_ETHUSDT.csv." in str(err.value)
    sources = [r[2] for r in rows(wh, "ingest_log", order="created_at")]
    assert sources == ["seed", str(folder / "a_ETHUSDT.csv"), str(folder / "b_ETHUSDT.csv")]
    assert len(wh.read_candles(symbols=["ETH/USDT"])) == 5  # a loaded, c never read
    (done,) = ingest_paths(wh, [folder / "c_ETHUSDT.csv"], CFG, symbol="ETH/USDT", now=NOW)
    assert (done.n_new, done.timeframe, done.symbols) == (5, "1m", ["ETH/USDT"])


def test_ingest_paths_errors_name_the_problem(wh: Warehouse, tmp_path: Path) -> None:
    with pytest.raises(DataContractError, match="No candle files in"):
        ingest_paths(wh, tmp_path, CFG, now=NOW)
    with pytest.raises(DataContractError, match="nope.csv does not exist"):
        ingest_paths(wh, [tmp_path / "nope.csv"], CFG, now=NOW)


def test_non_candle_frame_is_refused_before_any_write(wh: Warehouse) -> None:
    counts = wh.table_counts()
    with pytest.raises(DataContractError, match=r"lacks column\(s\) \['timeframe'\]"):
        ingest_frame(wh, make_candles().drop(columns="timeframe"), CFG, source="x", now=NOW)
    assert wh.table_counts() == counts


def test_empty_batch_is_logged_and_changes_no_candle(wh: Warehouse) -> None:
    before = rows(wh, "candles")
    result = ingest_frame(wh, make_candles(3).iloc[:0], CFG, source="nothing-new", now=NOW)
    assert (result.n_rows, result.n_new, result.symbols) == (0, 0, [])
    assert rows(wh, "candles") == before
    assert ("nothing-new", 0, "loaded") in [(r[2], r[5], r[7]) for r in rows(wh, "ingest_log")]


def test_real_sample_file_ingests_idempotently(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    (first,) = ingest_paths(wh, SAMPLE_1H, CFG)
    raw = pd.read_parquet(SAMPLE_1H)
    assert first.n_new == len(raw) and first.timeframe == "1h"
    assert first.symbols == sorted(raw["symbol"].unique())
    before = rows(wh, "candles")
    (second,) = ingest_paths(wh, [SAMPLE_1H], CFG)
    assert (second.n_new, second.n_updated) == (0, 0)
    assert rows(wh, "candles") == before


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_large_files_are_ingested_in_chunks_with_the_same_result(
    tmp_path: Path, suffix: str
) -> None:
    frame = make_candles(50).drop(columns=["symbol", "timeframe"])
    path = tmp_path / f"BTCUSDT-1m{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
    whole, chunked = Warehouse(tmp_path / "a.duckdb"), Warehouse(tmp_path / "b.duckdb")
    (one,) = ingest_run(whole, [path], CFG, now=NOW).results
    (many,) = ingest_run(chunked, [path], CFG, now=NOW, chunk_rows=12).results
    assert (one.n_batches, many.n_batches) == (1, 5)
    assert (many.n_rows, many.n_new, many.symbols, many.timeframe) == (50, 50, ["BTC/USDT"], "1m")
    pd.testing.assert_frame_equal(chunked.read_candles(), whole.read_candles())


def test_a_bad_chunk_stops_the_file_and_says_what_was_loaded(tmp_path: Path) -> None:
    frame = make_candles(50).drop(columns=["symbol", "timeframe"])
    frame.loc[30, "volume"] = -1.0  # in the third chunk of 12
    path = tmp_path / "BTCUSDT-1m.csv"
    frame.to_csv(path, index=False)
    wh = Warehouse(tmp_path / "w.duckdb")
    run = ingest_run(wh, [path], CFG, now=NOW, chunk_rows=12)
    assert run.failed is not None and "its first 24 rows" in str(run.failed[1])
    assert len(wh.read_candles()) == 24 and run.results[0].n_new == 24
