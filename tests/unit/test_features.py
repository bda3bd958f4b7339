"""Feature set v1: causality (truncation), segments, scale-freedom, formulas, refresh."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from benchmarks.pandas_reference import pandas_features
from ml_core.config import FeatureConfig
from ml_core.data.warehouse import Warehouse
from ml_core.errors import ConfigError, DataContractError
from ml_core.features import (
    FEATURE_COLUMNS,
    FEATURE_LOOKBACK,
    LOOKBACK_BARS,
    OUTPUT_COLUMNS,
    compute_features,
    features_from_candles,
    read_features,
    refresh_features,
)
from ml_core.features._sql import gap_threshold_us

CFG = FeatureConfig(max_gap_bars=5)
SYMBOLS = ["BTC/USDT:USDT", "DOGE/USDT:USDT"]


def _candles(sample: pd.DataFrame, n_bars: int) -> pd.DataFrame:
    """``n_bars`` real 1m bars of two symbols with a small gap (3 bars, stays in
    the segment) and a large gap (30 bars, starts a second segment) in each."""
    parts = []
    for symbol in SYMBOLS:
        s = sample[sample["symbol"] == symbol].sort_values("ts").head(n_bars + 33)
        s = s.drop(s.index[n_bars // 3 : n_bars // 3 + 3])  # small gap
        s = s.drop(s.index[2 * n_bars // 3 : 2 * n_bars // 3 + 30])  # large gap
        parts.append(s)
    out = pd.concat(parts, ignore_index=True)
    out["ts"] = out["ts"].dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    out.insert(1, "timeframe", "1m")
    return out[["symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"]]


@pytest.fixture(scope="module")
def candles(sample_1m: pd.DataFrame) -> pd.DataFrame:
    return _candles(sample_1m, 3000)


def _con(candles: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE candles AS SELECT * FROM candles")
    return con


@pytest.fixture(scope="module")
def full(candles: pd.DataFrame) -> pd.DataFrame:
    return compute_features(_con(candles), timeframe="1m", cfg=CFG)


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, atol: float) -> None:
    """Same keys and segments; every feature equal to ``atol``, NULL where NULL."""
    assert len(a) == len(b) > 0
    assert (a["symbol"].to_numpy() == b["symbol"].to_numpy()).all()
    for col in ("ts", "segment_start"):
        assert (a[col].to_numpy("datetime64[us]") == b[col].to_numpy("datetime64[us]")).all()
    x, y = a[FEATURE_COLUMNS].to_numpy(float), b[FEATURE_COLUMNS].to_numpy(float)
    nan = np.isnan(x)
    assert (nan == np.isnan(y)).all()
    diff = np.abs(np.where(nan, 0.0, x - y)).max(axis=0)
    worst = {c: d for c, d in zip(FEATURE_COLUMNS, diff, strict=True) if d > atol}
    assert not worst, f"features differ by more than {atol}: {worst}"


def test_feature_set_has_25_plus_unique_columns_and_lookback() -> None:
    assert len(FEATURE_COLUMNS) >= 25
    assert len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS)
    assert LOOKBACK_BARS == max(FEATURE_LOOKBACK.values()) == 240
    assert OUTPUT_COLUMNS[:5] == ["symbol", "timeframe", "ts", "segment_start", "close"]


def test_output_shape_order_and_nulls_until_window_full(candles, full) -> None:
    assert list(full.columns) == OUTPUT_COLUMNS
    assert len(full) == len(candles)
    assert full.equals(full.sort_values(["symbol", "ts"], ignore_index=True))
    seg_row = full.groupby(["symbol", "segment_start"]).cumcount()
    for name, lookback in FEATURE_LOOKBACK.items():
        incomplete = full.loc[seg_row < lookback, name]
        assert incomplete.isna().all(), name
    complete = full.loc[seg_row >= LOOKBACK_BARS, FEATURE_COLUMNS]
    assert complete.notna().all().all()


def test_features_on_truncated_history_equal_full_history(candles, full) -> None:
    """Leakage test: at 40 random cut points and at every segment boundary, the
    features of history truncated at t equal the full-history ones (1e-12)."""
    rng = np.random.default_rng(7)
    first_rows = np.flatnonzero(full["ts"].to_numpy() == full["segment_start"].to_numpy())
    edges = np.union1d(first_rows, first_rows[first_rows > 0] - 1)  # first and last bars
    boundary = set(full["ts"].iloc[edges])
    assert len(boundary) >= 6  # 2 symbols x 2 segments
    cuts = sorted(set(full["ts"].iloc[rng.choice(len(full), 40, replace=False)]) | boundary)
    # Each truncated history is a separate copy (symbol renamed) in one query.
    copies, original = [], {}
    for i, cut in enumerate(cuts):
        part = candles[candles["ts"] <= cut].copy()
        for symbol in SYMBOLS:
            original[f"{i:03d}|{symbol}"] = symbol
        part["symbol"] = f"{i:03d}|" + part["symbol"]
        copies.append(part)
    got = compute_features(_con(pd.concat(copies, ignore_index=True)), timeframe="1m", cfg=CFG)
    assert got["symbol"].nunique() >= 80  # ~2 symbols per cut
    got["symbol"] = got["symbol"].map(original)
    want = got[["symbol", "ts"]].merge(full, on=["symbol", "ts"], how="left")
    _assert_same(got, want, atol=1e-12)
    # A few cuts also as genuinely separate calls on the truncated frame.
    for cut in sorted(boundary)[:3]:
        alone = features_from_candles(candles[candles["ts"] <= cut], CFG)
        ref = full[full["ts"] <= cut].reset_index(drop=True)
        _assert_same(alone, ref, atol=1e-12)


def test_features_match_an_independent_pandas_implementation(candles, full) -> None:
    ref = pandas_features(candles, CFG, "1m")
    _assert_same(full, ref, atol=2e-6)
    np.testing.assert_allclose(
        full[FEATURE_COLUMNS].to_numpy(float),
        ref[FEATURE_COLUMNS].to_numpy(float),
        rtol=1e-5,
        atol=1e-9,
        equal_nan=True,
    )


def test_features_are_scale_free(candles, full) -> None:
    scaled = candles.copy()
    is_btc = scaled["symbol"] == SYMBOLS[0]
    for col in ("open", "high", "low", "close"):
        scaled.loc[is_btc, col] *= 1000.0
    scaled["volume"] *= 1000.0
    got = compute_features(_con(scaled), timeframe="1m", cfg=CFG)
    _assert_same(got, full, atol=1e-9)


def test_segment_rule_small_gap_stays_large_gap_splits() -> None:
    bar_s = 60
    assert gap_threshold_us("1m", CFG) == (CFG.max_gap_bars + 1) * bar_s * 1_000_000
    minutes = [0, 1, 2, 3]  # contiguous
    minutes += [3 + CFG.max_gap_bars + 1]  # exactly max_gap_bars missing: same segment
    minutes += [minutes[-1] + 1, minutes[-1] + 2]
    minutes += [minutes[-1] + CFG.max_gap_bars + 2]  # one more missing: new segment
    minutes += [minutes[-1] + 1]
    ts = pd.Timestamp("2024-01-01") + pd.to_timedelta(minutes, unit="min")
    frame = pd.DataFrame(
        {"symbol": "X", "timeframe": "1m", "ts": ts, "close": np.linspace(1.0, 2.0, len(ts))}
    )
    frame["open"] = frame["high"] = frame["low"] = frame["close"]
    frame["volume"] = 1.0
    frame = pd.concat([frame, frame.assign(symbol="Y")], ignore_index=True)
    got = features_from_candles(frame, CFG)
    for _, one in got.groupby("symbol"):
        starts = one["segment_start"].to_numpy()
        assert (starts[:7] == ts[0].to_datetime64()).all()
        assert (starts[7:] == ts[7].to_datetime64()).all()
        assert one["logret_1"].isna().tolist() == [True] + [False] * 6 + [True, False]


def test_features_from_candles_runs_the_same_sql(candles, full) -> None:
    frame = candles.assign(ts=candles["ts"].dt.tz_localize("UTC")).drop(columns="timeframe")
    got = features_from_candles(frame, CFG, timeframe="1m")
    _assert_same(got, full, atol=0.0)
    # Recent candles only: token age still counts from the first candle ever seen.
    first = candles.groupby("symbol")["ts"].min().to_dict()
    recent = candles.groupby("symbol").tail(300)
    tail = features_from_candles(recent, CFG, first_ts=first)
    want = full.merge(tail[["symbol", "ts"]], on=["symbol", "ts"])
    np.testing.assert_array_equal(tail["token_age"], want["token_age"])


def test_bad_inputs_raise_clear_errors(candles) -> None:
    con = _con(candles)
    with pytest.raises(ConfigError, match="Unknown timeframe '7m'"):
        compute_features(con, timeframe="7m", cfg=CFG)
    with pytest.raises(ConfigError, match="not a plain table or view name"):
        compute_features(con, timeframe="1m", cfg=CFG, relation="candles; DROP TABLE x")
    with pytest.raises(DataContractError, match=r"lacks columns \['volume'\]"):
        features_from_candles(candles.drop(columns="volume"), CFG)
    mixed = pd.concat([candles.head(5), candles.head(5).assign(timeframe="5m")])
    with pytest.raises(DataContractError, match="pass timeframe="):
        features_from_candles(mixed, CFG)


def test_symbols_filter_returns_only_those_symbols(candles, full) -> None:
    got = compute_features(_con(candles), timeframe="1m", cfg=CFG, symbols=[SYMBOLS[1]])
    _assert_same(got, full[full["symbol"] == SYMBOLS[1]].reset_index(drop=True), atol=0.0)


# ---- materialized table and incremental refresh ----


@pytest.fixture()
def warehouse(tmp_path, sample_1m) -> tuple[Warehouse, pd.DataFrame, pd.DataFrame]:
    """A warehouse file holding all but the last 'day' (1440 bars) of each symbol."""
    candles = _candles(sample_1m, 1440 + 900)
    last_day = candles.groupby("symbol").tail(1440)
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    with wh.connect() as con:
        con.register("history", candles.drop(last_day.index))
        con.execute("INSERT INTO candles BY NAME SELECT * FROM history")
    return wh, candles, last_day


def test_incremental_refresh_equals_full_rebuild(warehouse) -> None:
    wh, candles, last_day = warehouse
    with wh.connect() as con:
        first = refresh_features(con, timeframe="1m", cfg=CFG)
        con.register("last_day", last_day)
        con.execute("INSERT INTO candles BY NAME SELECT * FROM last_day")
        step = refresh_features(con, timeframe="1m", cfg=CFG)
        stored = read_features(con, timeframe="1m")
        rebuilt = compute_features(con, timeframe="1m", cfg=CFG)
        again = refresh_features(con, timeframe="1m", cfg=CFG)
    assert first["mode"] == "full" and first["n_rows_written"] == len(candles) - len(last_day)
    assert step["mode"] == "incremental" and step["n_rows_written"] == len(last_day)
    _assert_same(stored, rebuilt, atol=0.0)  # bit for bit, segments included
    assert stored["segment_start"].nunique() > 2  # the appended day holds a new segment
    assert again["n_rows_recomputed"] == again["n_rows_written"] == 0


def test_incremental_refresh_recomputes_only_new_bars_plus_lookback(warehouse) -> None:
    wh, candles, last_day = warehouse
    with wh.connect() as con:
        refresh_features(con, timeframe="1m", cfg=CFG)
        con.register("hour", last_day.groupby("symbol").head(60))
        con.execute("INSERT INTO candles BY NAME SELECT * FROM hour")
        step = refresh_features(con, timeframe="1m", cfg=CFG)
    assert step["n_rows_written"] == 2 * 60
    assert step["n_rows_recomputed"] == 2 * (60 + LOOKBACK_BARS)


def test_refresh_rebuilds_symbols_with_backfilled_history_and_on_new_settings(warehouse) -> None:
    wh, candles, last_day = warehouse
    with wh.connect() as con:
        refresh_features(con, timeframe="1m", cfg=CFG)
        con.register("last_day", last_day)
        con.execute("INSERT INTO candles BY NAME SELECT * FROM last_day")
        early = candles.head(1).assign(ts=candles["ts"].min() - pd.Timedelta(minutes=1))
        con.register("early", early)
        con.execute("INSERT INTO candles BY NAME SELECT * FROM early")  # a backfilled first bar
        step = refresh_features(con, timeframe="1m", cfg=CFG)
        stored = read_features(con, timeframe="1m")
        rebuilt = compute_features(con, timeframe="1m", cfg=CFG)
        other = refresh_features(con, timeframe="1m", cfg=FeatureConfig(max_gap_bars=60))
    assert step["mode"] == "incremental" and step["n_symbols_rebuilt"] == 1
    _assert_same(stored, rebuilt, atol=0.0)
    assert other["mode"] == "full"
