"""The Great Expectations candle suite and the soft findings (real GX, no mocks)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest

from ml_core.config import QualityConfig
from ml_core.errors import DataContractError
from ml_core.quality import QualityReport, validate_candles
from ml_core.quality.suite import _gx_validation

NOW = pd.Timestamp("2024-06-01 00:00:00")


def make_candles(
    n: int = 30,
    *,
    symbol: str = "BTC/USDT",
    timeframe: str = "1m",
    start: str = "2024-01-01 00:00:00",
    price: float = 100.0,
) -> pd.DataFrame:
    """``n`` clean candles: gently rising closes, high/low around open/close, volume > 0."""
    step = pd.Timedelta(timeframe.replace("m", "min"))
    close = price * (1.0 + 0.001 * np.arange(1, n + 1))
    open_ = np.r_[price, close[:-1]]
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "ts": pd.date_range(start, periods=n, freq=step).astype("datetime64[us]"),
            "open": open_,
            "high": np.maximum(open_, close) + 0.5,
            "low": np.minimum(open_, close) - 0.5,
            "close": close,
            "volume": np.full(n, 10.0),
        }
    )


def test_clean_batch_passes_with_every_critical_expectation_run() -> None:
    report = validate_candles(make_candles(), QualityConfig(), now=NOW)
    assert report.passed
    assert report.failures == [] and report.findings == []
    assert report.symbols == ["BTC/USDT"] and report.timeframes == ["1m"]
    names = set(report.expectations_run)
    assert {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_be_in_set",
    } <= names
    assert len(report.expectations_run) == 28
    assert report.summary().startswith("Batch passed all 28 critical expectations (30 rows")


def test_failure_names_expectation_symbols_counts_and_examples() -> None:
    good = make_candles(symbol="ETH/USDT")
    bad = make_candles(symbol="BTC/USDT")
    bad.loc[[3, 5], "high"] = 10.0  # below open and close
    batch = pd.concat([good, bad], ignore_index=True)
    report = validate_candles(batch, QualityConfig(), now=NOW)
    assert not report.passed
    high_close = next(f for f in report.failures if f["label"] == "high >= close")
    assert high_close["expectation"] == "expect_column_pair_values_a_to_be_greater_than_b"
    assert high_close["columns"] == ["high", "close"]
    assert high_close["symbols"] == ["BTC/USDT"] and high_close["by_symbol"] == {"BTC/USDT": 2}
    assert high_close["n_rows"] == 2
    assert high_close["examples"][0] == {
        "symbol": "BTC/USDT",
        "timeframe": "1m",
        "ts": "2024-01-01T00:03:00",
        "high": 10.0,
        "close": pytest.approx(100.4),
    }
    assert report.failed_expectations == ["expect_column_pair_values_a_to_be_greater_than_b"]
    assert (
        "expect_column_pair_values_a_to_be_greater_than_b (high >= close) for BTC/USDT: 2 rows, "
        "e.g. ts=2024-01-01 00:03 high=10.0 close=100.4" in report.summary()
    )
    assert report.summary().startswith("Batch failed 2 critical expectations:")


def test_examples_are_capped_and_symbols_listed() -> None:
    frames = [make_candles(symbol=s) for s in ["A/USDT", "B/USDT", "C/USDT", "D/USDT"]]
    batch = pd.concat(frames, ignore_index=True)
    batch["volume"] = -1.0
    report = validate_candles(batch, QualityConfig(), now=NOW)
    (failure,) = report.failures
    assert failure["label"] == "volume >= 0" and failure["n_rows"] == 120
    assert len(failure["examples"]) == 5
    assert failure["by_symbol"] == {s: 30 for s in ["A/USDT", "B/USDT", "C/USDT", "D/USDT"]}
    assert "for A/USDT, B/USDT, C/USDT and 1 more: 120 rows" in report.summary()


def test_report_json_round_trips() -> None:
    batch = make_candles()
    batch.loc[2, "close"] = np.nan
    report = validate_candles(batch, QualityConfig(), now=NOW)
    data = json.loads(report.to_json())
    assert data["passed"] is False
    assert data["failures"][0]["examples"][0]["close"] is None
    assert QualityReport.from_json(report.to_json()) == report


def test_future_tolerance_and_now_default() -> None:
    batch = make_candles(n=3, start="2024-06-01 00:00:00")  # last bar opens 00:02
    strict = validate_candles(batch, QualityConfig(), now=NOW)
    assert strict.failures[0]["label"] == "ts <= 2024-06-01 00:00:00 (no future bars)"
    assert strict.failures[0]["n_rows"] == 2
    lenient = validate_candles(batch, QualityConfig(max_future_seconds=120), now=NOW)
    assert lenient.passed
    assert validate_candles(batch, QualityConfig()).passed  # now = the real clock, 2024 is past


def test_alignment_per_timeframe_and_weekly_monday() -> None:
    weekly = make_candles(n=4, timeframe="1d", start="2024-01-01")  # Monday
    weekly["timeframe"] = "1w"
    weekly["ts"] = pd.date_range("2024-01-01", periods=4, freq="7D").astype("datetime64[us]")
    assert validate_candles(weekly, QualityConfig(), now=NOW).passed
    hourly = make_candles(n=4, timeframe="1h", start="2024-01-01 00:30")
    report = validate_candles(hourly, QualityConfig(), now=NOW)
    assert [f["label"] for f in report.failures] == ["ts aligned to the timeframe"]
    assert "ts=2024-01-01 00:30 timeframe=1h" in report.summary()


def test_unknown_timeframe_is_critical() -> None:
    batch = make_candles(n=4)
    batch["timeframe"] = "7m"
    report = validate_candles(batch, QualityConfig(), now=NOW)
    assert [f["label"] for f in report.failures] == ["timeframe is known"]


def test_null_symbol_is_reported_as_null() -> None:
    batch = make_candles(n=4)
    batch.loc[1, "symbol"] = None
    report = validate_candles(batch, QualityConfig(), now=NOW)
    (failure,) = report.failures
    assert failure["label"] == "no nulls in symbol" and failure["symbols"] == ["<null>"]


def test_input_frame_is_not_mutated_and_aware_ts_accepted() -> None:
    batch = make_candles(n=5)
    batch["ts"] = batch["ts"].dt.tz_localize("UTC")
    before = batch.copy(deep=True)
    assert validate_candles(batch, QualityConfig(), now=NOW).passed
    pd.testing.assert_frame_equal(batch, before)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda df: df.drop(columns="volume"), r"lacks column\(s\) \['volume'\]"),
        (lambda df: df.assign(ts=df["ts"].astype(str)), "'ts' has dtype .*expected datetime64"),
        (lambda df: df.assign(close=df["close"].astype(str)), "'close' has dtype .*float64"),
    ],
)
def test_non_candle_frames_raise_contract_errors(change, match: str) -> None:
    with pytest.raises(DataContractError, match=match):
        validate_candles(change(make_candles(n=3)), QualityConfig(), now=NOW)


# ---- soft findings ---------------------------------------------------------------------


def test_gap_is_a_soft_finding() -> None:
    batch = make_candles(n=40).drop(index=[10, 11, 12, 30]).reset_index(drop=True)
    report = validate_candles(batch, QualityConfig(), now=NOW)
    assert report.passed
    (gap,) = report.findings
    assert gap["check"] == "gaps" and gap["symbol"] == "BTC/USDT" and gap["timeframe"] == "1m"
    assert gap["n"] == 2
    assert gap["stats"]["n_missing_bars"] == 4 and gap["stats"]["max_gap_bars"] == 3
    assert gap["detail"] == "2 gap(s), 4 missing bar(s); largest 3 bar(s) after 2024-01-01 00:09"


def test_extreme_move_is_a_soft_finding_respecting_threshold() -> None:
    batch = make_candles(n=10)
    batch.loc[5:, ["open", "high", "low", "close"]] *= 11.0  # +1000% memecoin bar
    batch.loc[5, "open"] = batch.loc[4, "close"]
    batch.loc[5, "low"] = batch.loc[5, "open"] - 0.5
    report = validate_candles(batch, QualityConfig(), now=NOW)
    assert report.passed
    (move,) = report.findings
    assert move["check"] == "extreme_returns" and move["n"] == 1
    assert move["stats"]["max_abs_return"] == pytest.approx(10.0, rel=1e-2)
    assert move["stats"]["max_return_ts"] == "2024-01-01T00:05:00"
    assert validate_candles(batch, QualityConfig(max_abs_bar_return=20), now=NOW).findings == []


def test_flat_stretch_is_a_soft_finding() -> None:
    batch = make_candles(n=30)
    batch.loc[10:19, ["open", "high", "low", "close"]] = batch.loc[9, "close"]
    batch.loc[10:19, "volume"] = 0.0  # 10 dead bars after bar 9
    report = validate_candles(batch, QualityConfig(max_flat_bars=10), now=NOW)
    assert report.passed
    (flat,) = [f for f in report.findings if f["check"] == "flat_stretches"]
    assert flat["n"] == 1 and flat["stats"]["max_flat_bars"] == 10
    assert flat["stats"]["max_flat_start_ts"] == "2024-01-01T00:10:00"
    shorter = validate_candles(batch, QualityConfig(max_flat_bars=11), now=NOW)
    assert [f for f in shorter.findings if f["check"] == "flat_stretches"] == []


# ---- the cached GX context ---------------------------------------------------------------


def test_cached_gx_objects_are_reused_and_runs_do_not_leak() -> None:
    bad = make_candles(n=5, start="2024-06-01 00:00:00")
    bad.loc[0, "open"] = 0.0
    labels = [f["label"] for f in validate_candles(bad, QualityConfig(), now=NOW).failures]
    assert "open > 0" in labels
    assert "ts <= 2024-06-01 00:00:00 (no future bars)" in labels
    import great_expectations as gx

    gx.get_context(mode="ephemeral")  # another context in the process must not disturb ours
    good = make_candles(n=5, start="2024-06-01 00:00:00")
    later = NOW + pd.Timedelta(hours=1)
    assert validate_candles(good, QualityConfig(), now=later).passed  # new frame, new bound
    definition = _gx_validation()
    assert definition is _gx_validation()
    assert len(definition.suite.expectations) == 28  # runs add nothing to the shared suite


def test_concurrent_validations_in_threads_are_independent() -> None:
    bad = make_candles(n=5, symbol="BAD/USDT")
    bad.loc[2, "low"] = 1000.0
    frames = [make_candles(n=5), bad] * 2
    reports: dict[int, QualityReport] = {}

    def run(i: int) -> None:
        reports[i] = validate_candles(frames[i], QualityConfig(), now=NOW)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [reports[i].passed for i in range(4)] == [True, False, True, False]
    assert reports[3].failures[0]["symbols"] == ["BAD/USDT"]


def test_no_progress_bars_or_noise_on_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    validate_candles(make_candles(n=5), QualityConfig(), now=NOW)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
