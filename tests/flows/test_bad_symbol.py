"""One symbol's bad stored candles (written before the gate refused inf) must not stop
the retrain of the others: validate leaves it out, features are built for the rest."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml_core.config import QualityConfig
from ml_core.data.ingest import ingest_frame
from ml_core.data.warehouse import Warehouse


def _candles(symbol: str, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(abs(hash(symbol)) % 2**32)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": "1h",
            "ts": pd.date_range("2024-01-01", periods=n, freq="1h"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.uniform(1, 10, n),
        }
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    for sym in ("BTC/USDT", "ETH/USDT", "WIF/USDT"):
        ingest_frame(wh, _candles(sym), QualityConfig(), source=sym, now=pd.Timestamp("2025-01-01"))
    with duckdb.connect(str(wh.path)) as con:  # as an older coincast let it in
        con.execute(
            "UPDATE candles SET volume = 'inf'::DOUBLE WHERE symbol = 'WIF/USDT' "
            "AND ts = TIMESTAMP '2024-01-05 00:00:00'"
        )
    return tmp_path


def test_validate_leaves_the_bad_symbol_out_and_features_build_for_the_rest(
    prefect_harness, home: Path
) -> None:
    from flows.build_features import build_features_flow
    from flows.params import RunParams
    from flows.validate import validate_flow

    run = RunParams(home=str(home), timeframe="1h")
    checked = validate_flow(run)
    assert list(checked["left_out"]) == ["WIF/USDT"]
    assert "volume <= 1e+18" in checked["left_out"]["WIF/USDT"]
    build_features_flow(run.model_copy(update={"exclude_symbols": ["WIF/USDT"]}))
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        built = {r[0] for r in con.execute("SELECT DISTINCT symbol FROM features_v1").fetchall()}
    assert built == {"BTC/USDT", "ETH/USDT"}


def test_all_symbols_bad_still_fails_clearly(prefect_harness, home: Path) -> None:
    from flows.params import RunParams
    from flows.validate import validate_flow
    from ml_core.errors import DataContractError

    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("UPDATE candles SET high = 'inf'::DOUBLE WHERE ts = TIMESTAMP '2024-01-06'")
    with pytest.raises(DataContractError, match="Stored candles fail the candle suite"):
        validate_flow(RunParams(home=str(home), timeframe="1h"))
