"""Shared fixtures: paths to the embedded sample and small real candle frames."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "data"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config: pytest.Config) -> None:
    """Set Prefect's logging up once, on the real stderr. Left to the first flow, it could
    happen inside a CliRunner test and bind that test's stream, closed when it ends."""
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()


@pytest.fixture(scope="session")
def sample_1m() -> pd.DataFrame:
    """The embedded 1m sample as shipped (real Binance perpetual candles)."""
    return pd.read_parquet(SAMPLE_DIR / "sample_1m.parquet")


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session (~16 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def fake_exchange():
    """A started local fake of Binance (``tests/fake_exchange.py``) and a source pointing at it.

    Yields ``(fake, source)``: BTC/USDT and ETH/USDT 1h bars from 2024-01-01 to
    ``fake.now`` = 2024-01-02 00:30 (24 closed bars and the forming one), and a
    ``SourceConfig`` for BTC/USDT with ``page_limit=10`` (three pages) and ``urls``
    on the fake. Change the fake's switches or ``source.model_copy(update=...)``.
    """
    from ml_core.config import SourceConfig
    from tests.fake_exchange import FakeBinance

    with FakeBinance(
        ["BTC/USDT", "ETH/USDT"], start="2024-01-01", now="2024-01-02 00:30", forming=True
    ) as fake:
        yield (
            fake,
            SourceConfig(
                symbols=["BTC/USDT"], timeframe="1h", page_limit=10, batch_bars=1, urls=fake.urls
            ),
        )
