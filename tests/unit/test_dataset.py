"""The model frame is built after dead tails are trimmed: no label sees a dead tail."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_core.config import CoincastConfig
from ml_core.data.warehouse import Warehouse
from ml_core.features.dataset import build_dataset


def _candles(symbol: str, n: int, *, flat_tail: int = 0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    volume = rng.uniform(1, 5, n)
    if flat_tail:
        close[-flat_tail:] = close[-flat_tail - 1]
        volume[-flat_tail:] = 0.0
    ts = pd.date_range("2025-01-01", periods=n, freq="1min")
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": "1m",
            "ts": ts,
            "open": close,
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "volume": volume,
        }
    )


def test_dead_tail_is_trimmed_before_labels(tmp_path):
    cfg = CoincastConfig(home=tmp_path, labels={"horizons": {"1m": [5, 15]}})
    wh = Warehouse(cfg.warehouse_path)
    candles = pd.concat([_candles("LIVE", 800), _candles("DEAD", 800, flat_tail=150, seed=1)])
    with wh.connect() as con:
        con.register("c", candles)
        con.execute(
            "INSERT INTO candles BY NAME SELECT symbol, timeframe, ts, open, high, low, close, volume "
            "FROM c"
        )
    ds = build_dataset(wh, cfg)
    cats = ds.lifecycle.set_index("symbol")["category"]
    assert cats["DEAD"] == "dead" and cats["LIVE"] == "normal"
    dead = ds.frame[ds.frame["symbol"] == "DEAD"]
    first_flat = candles[candles["symbol"] == "DEAD"]["ts"].iloc[-150]
    # only the configured context of the flat tail is kept, and no label ends inside the rest
    keep = cfg.lifecycle.keep_context_bars
    assert dead["ts"].max() == first_flat + pd.Timedelta(minutes=keep - 1)
    assert dead["t1_15"].max() < first_flat + pd.Timedelta(minutes=keep)
    assert set(ds.frame.loc[ds.frame["symbol"] == "DEAD", "lifecycle"]) == {"dead"}
    assert len(ds.frame[ds.frame["symbol"] == "LIVE"]) == 800
    assert int(ds.trimmed["n_rows_trimmed"].iloc[0]) == 150 - keep
