"""New candles arrive by themselves: `coincast download` and the ingest / predict flows
pull the configured sources from a local fake Binance (real ccxt, real DuckDB, real
Prefect). No internet."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from coincast_cli import app
from ml_core.data.warehouse import Warehouse
from ml_core.errors import ConfigError
from tests.fake_exchange import FakeBinance

runner = CliRunner()


@pytest.fixture
def fake():
    # "now" is in the past, so every bar is closed by the real clock the CLI uses
    with FakeBinance(["BTC/USDT", "ETH/USDT"], start="2024-01-01", now="2024-01-03") as f:
        yield f


def _config(tmp_path: Path, fake: FakeBinance, **source: object) -> Path:
    spec = {"symbols": ["BTC/USDT", "ETH/USDT"], "timeframe": "1h", "since": "2024-01-01"}
    spec |= {"urls": fake.urls, **source}
    path = tmp_path / "coincast.json"
    path.write_text(json.dumps({"sources": [spec]}))
    return path


def test_cli_download_from_config_then_resume(tmp_path: Path, fake: FakeBinance) -> None:
    home, cfg = tmp_path / "home", _config(tmp_path, fake)
    first = runner.invoke(app, ["download", "--home", str(home), "--config", str(cfg)])
    assert first.exit_code == 0, first.output
    assert "BTC/USDT" in first.output and "48" in first.output
    stored = Warehouse(home / "warehouse.duckdb").read_candles()
    expected = pd.concat([fake.expected("BTC/USDT"), fake.expected("ETH/USDT")])
    pd.testing.assert_frame_equal(stored, expected.reset_index(drop=True), check_dtype=False)
    n_before = fake.n_requests("klines")
    again = runner.invoke(app, ["download", "--home", str(home), "--config", str(cfg)])
    assert again.exit_code == 0 and "no new bar" in again.output
    assert fake.n_requests("klines") - n_before == 2  # one empty answer per symbol


def test_cli_download_quarantine_exits_2_naming_the_symbol(
    tmp_path: Path, fake: FakeBinance
) -> None:
    fake.malform("ETH/USDT", 5, "null_close")
    home, cfg = tmp_path / "home", _config(tmp_path, fake)
    result = runner.invoke(app, ["download", "--home", str(home), "--config", str(cfg)])
    assert result.exit_code == 2
    assert "quarantined" in result.output and "ETH/USDT" in result.output
    stored = Warehouse(home / "warehouse.duckdb").read_candles()
    assert set(stored["symbol"]) == {"BTC/USDT"}  # the good symbol loaded, the bad one not


def test_cli_download_without_symbols_or_sources_says_how(tmp_path: Path) -> None:
    result = runner.invoke(app, ["download", "--home", str(tmp_path / "h")])
    assert result.exit_code == 1 and "--symbols" in result.output and "sources:" in result.output


def test_ingest_flow_with_no_files_downloads_the_configured_sources(
    prefect_harness, tmp_path: Path, fake: FakeBinance
) -> None:
    from flows.ingest import ingest_flow
    from flows.params import IngestParams

    home, cfg = tmp_path / "home", _config(tmp_path, fake)
    ingest_flow(IngestParams(home=str(home), config_path=str(cfg)))  # timeframe from sources
    stored = Warehouse(home / "warehouse.duckdb").read_candles()
    assert len(stored) == 96 and set(stored["timeframe"]) == {"1h"}

    with pytest.raises(ConfigError, match="Nothing to ingest for 1d"):
        ingest_flow(IngestParams(home=str(home), config_path=str(cfg), timeframe="1d"))
    assert len(Warehouse(home / "warehouse.duckdb").read_candles()) == 96  # nothing changed
