"""An existing warehouse is migrated in place to canonical symbol names, once, audited."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import pytest

from ml_core.data.warehouse import CANONICAL_SYMBOLS, SCHEMA_SQL, Warehouse

LEGACY_SCHEMA = SCHEMA_SQL.split("CREATE TABLE IF NOT EXISTS migrations")[0]


def _legacy_warehouse(path: Path) -> None:
    """A warehouse as coincast wrote it before canonical names (no migrations table)."""
    with duckdb.connect(str(path)) as con:
        con.execute(LEGACY_SCHEMA)
        rows = [
            # BTCUSDT (from BTCUSDT.csv) and BTC/USDT (from CryptoDataDownload): one asset
            ("BTCUSDT", "1h", "2024-01-01 00:00", 100.0),
            ("BTCUSDT", "1h", "2024-01-01 01:00", 101.0),
            ("BTC/USDT", "1h", "2024-01-01 01:00", 101.0),  # same bar, same values
            ("BTC/USDT", "1h", "2024-01-01 02:00", 102.0),
            # ETH_USDT has a bar that ETH/USDT holds with another close: a conflict
            ("ETH_USDT", "1h", "2024-01-01 00:00", 10.0),
            ("ETH_USDT", "1h", "2024-01-01 01:00", 11.0),
            ("ETH/USDT", "1h", "2024-01-01 01:00", 11.5),
            ("WEIRDCOIN", "1h", "2024-01-01 00:00", 1.0),  # no known quote asset
        ]
        for sym, tf, ts, close in rows:
            con.execute(
                "INSERT INTO candles (symbol, timeframe, ts, open, high, low, close, volume) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 1.0)",
                [sym, tf, ts, close, close + 1, close - 1, close],
            )
        con.execute(
            "INSERT INTO predictions (model_name, model_version, alias, symbol, timeframe, ts, "
            "horizon, p_up, scored_at) VALUES ('coincast-1h', '1', 'champion', 'BTCUSDT', '1h', "
            "'2024-01-01 00:00', 1, 0.6, '2024-01-01 00:05')"
        )


def _series(wh: Warehouse) -> dict[str, list[tuple]]:
    with wh.connect(read_only=True) as con:
        got = con.execute(
            "SELECT symbol, strftime(ts, '%H:%M'), close FROM candles ORDER BY symbol, ts"
        ).fetchall()
    out: dict[str, list[tuple]] = {}
    for sym, ts, close in got:
        out.setdefault(sym, []).append((ts, close))
    return out


def test_legacy_names_are_merged_into_canonical_series(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "warehouse.duckdb"
    _legacy_warehouse(path)
    wh = Warehouse(path)
    with caplog.at_level(logging.WARNING), wh.connect() as con:  # the first read-write open
        (name, _, detail_json) = con.execute("SELECT * FROM migrations").fetchone()
        pred = con.execute("SELECT symbol FROM predictions").fetchall()
    assert name == CANONICAL_SYMBOLS
    assert _series(wh) == {
        "BTC/USDT": [("00:00", 100.0), ("01:00", 101.0), ("02:00", 102.0)],
        "ETH/USDT": [("00:00", 10.0), ("01:00", 11.5)],  # the stored canonical bar kept
        "ETH_USDT": [("01:00", 11.0)],  # the conflicting bar, not lost, not overwritten
        "WEIRDCOIN": [("00:00", 1.0)],
    }
    assert pred == [("BTC/USDT",)]
    detail = json.loads(detail_json)
    assert {r["from"]: r["rows"] for r in detail["renamed"]} == {"BTCUSDT": 2, "ETH_USDT": 1}
    assert detail["conflicts"] == [{"symbol": "ETH_USDT", "to": "ETH/USDT", "rows": 1}]
    assert detail["unresolved"] == ["WEIRDCOIN"]
    assert "BTCUSDT -> BTC/USDT (2 rows)" in caplog.text and "ETH_USDT: 1 bar(s)" in caplog.text


def test_migration_runs_once(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    _legacy_warehouse(path)
    wh = Warehouse(path)
    with wh.connect():
        pass
    with duckdb.connect(str(path)) as con:  # a legacy name written after the migration
        con.execute(
            "INSERT INTO candles (symbol, timeframe, ts, open, high, low, close, volume) "
            "VALUES ('SOLUSDT', '1h', '2024-01-01', 1, 2, 0.5, 1, 1)"
        )
    with wh.connect() as con:
        assert con.execute("SELECT count(*) FROM migrations").fetchone()[0] == 1
    assert "SOLUSDT" in _series(wh)  # left alone: the migration is recorded as done


def test_a_new_warehouse_records_the_migration_with_nothing_to_do(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.connect() as con:
        detail = json.loads(con.execute("SELECT detail_json FROM migrations").fetchone()[0])
    assert detail == {"renamed": [], "conflicts": [], "unresolved": []}
