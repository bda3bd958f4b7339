"""Which data set a command uses when the user did not say: real warehouse files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coincast_cli import app
from ml_core.config import QualityConfig, load_config
from ml_core.data.datasets import require_candles, resolve_timeframe, stored_timeframes
from ml_core.data.ingest import ingest_frame
from ml_core.data.warehouse import Warehouse
from ml_core.errors import ConfigError, DataContractError
from ml_core.serving import stale_symbols

NOW = pd.Timestamp("2025-06-01")


def _candles(timeframe: str, n: int = 30, symbol: str = "BTC/USDT") -> pd.DataFrame:
    freq = {"1m": "1min", "1h": "1h", "1d": "1D"}[timeframe]
    close = 100.0 + np.arange(n)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "ts": pd.date_range("2025-01-01", periods=n, freq=freq).astype("datetime64[us]"),
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": 1.0,
        }
    )


def _home(tmp_path: Path, *timeframes: str) -> Path:
    home = tmp_path / "home"
    wh = Warehouse(home / "warehouse.duckdb")
    for tf in timeframes:
        ingest_frame(wh, _candles(tf), QualityConfig(), source=tf, now=NOW)
    return home


def test_one_stored_timeframe_is_the_default(tmp_path: Path) -> None:
    home = _home(tmp_path, "1h")
    cfg = resolve_timeframe(load_config(None, home=home))
    assert (cfg.data.timeframe, cfg.model_name) == ("1h", "coincast-1h")
    require_candles(cfg)  # does not raise


def test_explicit_timeframe_wins_and_fails_fast_naming_what_exists(tmp_path: Path) -> None:
    home = _home(tmp_path, "1h")
    cfg = resolve_timeframe(load_config(None, home=home, data={"timeframe": "5m"}))
    assert cfg.data.timeframe == "5m"
    with pytest.raises(DataContractError, match=r"No 5m candles .* it holds 1h\. Use -t 1h"):
        require_candles(cfg)


def test_several_timeframes_must_be_chosen(tmp_path: Path) -> None:
    home = _home(tmp_path, "1d", "1m", "1h")
    assert stored_timeframes(Warehouse(home / "warehouse.duckdb")) == ["1m", "1h", "1d"]
    with pytest.raises(ConfigError, match=r"3 timeframes: 1m, 1h, 1d\. .*--timeframe"):
        resolve_timeframe(load_config(None, home=home))


def test_fresh_home_keeps_the_default_and_says_what_to_ingest(tmp_path: Path) -> None:
    cfg = resolve_timeframe(load_config(None, home=tmp_path / "fresh"))
    assert cfg.data.timeframe == "1m"
    with pytest.raises(DataContractError, match="No candles in .* yet"):
        require_candles(cfg)


def test_files_to_ingest_decide_the_data_set_of_a_fresh_home(tmp_path: Path) -> None:
    """`coincast retrain --ingest sample_1h.parquet` on a fresh home is the 1h data set:
    as the ingest will store the files (their rows' spacing)."""
    unnamed = tmp_path / "sample.parquet"
    _candles("1h").drop(columns="timeframe").to_parquet(unnamed)
    home = tmp_path / "fresh"
    assert resolve_timeframe(load_config(None, home=home), [unnamed]).data.timeframe == "1h"
    named = tmp_path / "ETH_USDT-1d.csv"
    _candles("1d").drop(columns=["timeframe", "symbol"]).to_csv(named, index=False)
    assert resolve_timeframe(load_config(None, home=home), [named]).data.timeframe == "1d"
    with pytest.raises(ConfigError, match=r"files to ingest\) holds 2 timeframes: 1h, 1d"):
        resolve_timeframe(load_config(None, home=home), [unnamed, named])
    stored = _home(tmp_path, "1m")  # stored 1m + incoming 1h: the user must choose
    with pytest.raises(ConfigError, match="2 timeframes: 1m, 1h"):
        resolve_timeframe(load_config(None, home=stored), [unnamed])
    explicit = load_config(None, home=stored, data={"timeframe": "1m"})
    assert resolve_timeframe(explicit, [unnamed]).data.timeframe == "1m"


def test_cli_retrain_in_a_1h_home_with_the_wrong_timeframe_fails_fast(tmp_path: Path) -> None:
    home = _home(tmp_path, "1h")
    result = CliRunner().invoke(app, ["retrain", "--home", str(home), "-t", "1m"])
    assert result.exit_code == 1
    assert "it holds 1h" in result.output and "Traceback" not in result.output
    assert "flow run" not in result.output and not (home / "logs").exists()  # no flow ran


def test_stale_symbols_are_those_more_than_two_bars_old() -> None:
    preds = pd.DataFrame(
        {
            "symbol": ["A", "A", "B", "C"],
            "ts": pd.to_datetime(
                ["2025-01-01 09:00", "2025-01-01 10:00", "2025-01-01 07:00", "2025-01-01 03:00"]
            ),
        }
    )
    now = pd.Timestamp("2025-01-01 11:00")  # A closed 11:00 (fresh), B 08:00, C 04:00
    assert stale_symbols(preds, "1h", now=now) == {"C": "0 days 07:00:00", "B": "0 days 03:00:00"}
    assert stale_symbols(preds, "1d", now=now) == {}
