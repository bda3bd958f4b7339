"""Removing a stored batch: the warehouse goes back to what it held without it, audited."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ml_core.config import FeatureConfig, QualityConfig
from ml_core.data.batches import list_batches, plan_removal, remove_batch
from ml_core.data.ingest import ingest_frame, ingest_paths
from ml_core.data.warehouse import Warehouse
from ml_core.errors import DataContractError, QualityGateError
from ml_core.features import compute_features, read_features, refresh_features
from tests.unit.test_features import _assert_same
from tests.unit.test_ingest import make_candles

NOW = pd.Timestamp("2024-06-01 00:00:00")
CFG = QualityConfig()


def candles(wh: Warehouse) -> list[tuple]:
    """Every stored candle with the batch that wrote it."""
    with wh.connect(read_only=True) as con:
        return con.execute("SELECT * FROM candles ORDER BY symbol, ts").fetchall()


def table(wh: Warehouse, sql: str) -> list[tuple]:
    with wh.connect(read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


def test_removing_an_appended_batch_leaves_the_warehouse_as_before_it(wh: Warehouse) -> None:
    ingest_frame(wh, make_candles(20), CFG, source="first", now=NOW)
    before = candles(wh)
    later = make_candles(30).iloc[20:]  # 10 newer bars
    added = ingest_frame(wh, later, CFG, source="second", now=NOW)
    assert len(candles(wh)) == 30 and {r[-1] for r in candles(wh)[20:]} == {added.batch_id}

    plan = plan_removal(wh, added.batch_id)
    assert (plan.n_deleted, plan.n_restored, plan.n_kept) == (10, 0, 0)
    assert len(candles(wh)) == 30  # planning changes nothing

    done = remove_batch(wh, added.batch_id, actor="tester", reason="bad feed")
    assert candles(wh) == before
    assert (done.n_deleted, done.actor, done.reason) == (10, "tester", "bad feed")
    ((status,),) = table(wh, f"SELECT status FROM ingest_log WHERE batch_id = '{added.batch_id}'")
    assert status == "removed"
    (audit,) = table(wh, "SELECT batch_id, actor, reason, source, n_deleted FROM batch_removals")
    assert audit == (added.batch_id, "tester", "bad feed", "second", 10)
    assert table(wh, "SELECT kind, symbol, n_rows FROM candle_edits") == [
        ("removed", "BTC/USDT", 10)
    ]


def test_removing_a_revising_batch_sets_the_revised_bars_back(wh: Warehouse) -> None:
    ingest_frame(wh, make_candles(20), CFG, source="first", now=NOW)
    before = candles(wh)
    fixed = make_candles(23)  # 3 new bars, 4 revised
    fixed.loc[10:13, "close"] += 0.2
    fixed.loc[10:13, "high"] += 0.2
    rev = ingest_frame(wh, fixed, CFG, source="refetch", now=NOW, allow_revisions=True)
    assert (rev.n_new, rev.n_updated) == (3, 4)
    assert table(wh, "SELECT count(*) FROM candle_revisions") == [(4,)]

    done = remove_batch(wh, rev.batch_id)
    assert (done.n_deleted, done.n_restored) == (3, 4)
    assert candles(wh) == before  # values and the batch ids they had
    assert done.actor  # the OS user when none is given


def test_bars_a_later_batch_revised_are_kept_and_its_removal_deletes_them(
    wh: Warehouse,
) -> None:
    first = ingest_frame(wh, make_candles(20), CFG, source="first", now=NOW)
    fixed = make_candles(20)
    fixed.loc[5:6, ["close", "high"]] += 0.3
    second = ingest_frame(wh, fixed, CFG, source="fix", now=NOW, allow_revisions=True)

    done = remove_batch(wh, first.batch_id)
    assert (done.n_deleted, done.n_restored, done.n_kept) == (18, 0, 2)
    kept = candles(wh)
    assert [r[-1] for r in kept] == [second.batch_id] * 2
    assert [r[6] for r in kept] == list(fixed.loc[5:6, "close"])

    # the values 'second' replaced came from a removed batch: they are not brought back
    again = remove_batch(wh, second.batch_id)
    assert (again.n_deleted, again.n_restored) == (2, 0) and candles(wh) == []


def test_a_file_in_chunks_is_removed_by_its_one_id(wh: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m.csv"
    make_candles(20).drop(columns=["symbol", "timeframe"]).to_csv(path, index=False)
    (result,) = ingest_paths(wh, [path], CFG, now=NOW, chunk_rows=7)
    assert result.n_batches == 3
    ids = sorted(r[0] for r in table(wh, "SELECT batch_id FROM ingest_log"))
    assert ids == sorted([result.batch_id, f"{result.batch_id}.2", f"{result.batch_id}.3"])
    listed = list_batches(wh)
    assert listed["batch_id"].tolist() == [result.batch_id]
    assert (listed["n_chunks"].item(), listed["n_rows"].item()) == (3, 20)

    done = remove_batch(wh, result.batch_id)
    assert (done.n_batches, done.n_deleted) == (3, 20) and candles(wh) == []
    with pytest.raises(DataContractError, match="not a file's batch id"):
        plan_removal(wh, f"{result.batch_id}.2")


def test_batches_that_cannot_be_removed_say_why_and_change_nothing(wh: Warehouse) -> None:
    kept = ingest_frame(wh, make_candles(20), CFG, source="first", now=NOW)
    bad = make_candles(25).iloc[20:].assign(volume=float("inf"))
    with pytest.raises(QualityGateError) as gate:
        ingest_frame(wh, bad, CFG, source="bad", now=NOW)
    counts = wh.table_counts()

    with pytest.raises(DataContractError, match="`coincast batches` lists"):
        remove_batch(wh, "feedbeef")
    with pytest.raises(DataContractError, match="quarantined: its candles never reached"):
        remove_batch(wh, gate.value.batch_id)
    remove_batch(wh, kept.batch_id)
    counts_after = wh.table_counts()
    with pytest.raises(DataContractError, match="removed already at .* by "):
        remove_batch(wh, kept.batch_id)
    assert wh.table_counts() == counts_after
    assert counts_after["candles"] == 0 and counts["candles"] == 20


def test_a_batch_stored_before_batch_ids_were_recorded_is_refused(wh: Warehouse) -> None:
    old = ingest_frame(wh, make_candles(20), CFG, source="old", now=NOW)
    with wh.connect() as con:
        con.execute("UPDATE candles SET batch_id = NULL")  # as an older coincast left it
    with pytest.raises(DataContractError, match="loaded before coincast recorded"):
        remove_batch(wh, old.batch_id)
    assert len(candles(wh)) == 20


def test_features_rebuild_after_a_removal_or_an_allowed_revision(wh: Warehouse) -> None:
    cfg = FeatureConfig()
    ingest_frame(wh, make_candles(400), CFG, source="first", now=NOW)
    added = ingest_frame(wh, make_candles(500).iloc[400:], CFG, source="more", now=NOW)
    with wh.connect() as con:
        assert refresh_features(con, timeframe="1m", cfg=cfg)["mode"] == "full"
        assert refresh_features(con, timeframe="1m", cfg=cfg)["mode"] == "incremental"

    remove_batch(wh, added.batch_id)
    with wh.connect() as con:
        step = refresh_features(con, timeframe="1m", cfg=cfg)
        stored, rebuilt = (
            read_features(con, timeframe="1m"),
            compute_features(con, timeframe="1m", cfg=cfg),
        )
    assert step["mode"] == "full" and len(stored) == 400
    _assert_same(stored, rebuilt, atol=0.0)

    fixed = make_candles(400)
    fixed.loc[200:210, ["close", "high"]] *= 1.01
    ingest_frame(wh, fixed, CFG, source="fix", now=NOW, allow_revisions=True)
    with wh.connect() as con:
        step = refresh_features(con, timeframe="1m", cfg=cfg)
        stored, rebuilt = (
            read_features(con, timeframe="1m"),
            compute_features(con, timeframe="1m", cfg=cfg),
        )
        assert refresh_features(con, timeframe="1m", cfg=cfg)["mode"] == "incremental"
    assert step["mode"] == "full"
    _assert_same(stored, rebuilt, atol=0.0)


def test_a_unique_start_of_an_id_names_the_batch(wh: Warehouse) -> None:
    a = ingest_frame(wh, make_candles(20), CFG, source="a", now=NOW, batch_id="abcdef01aa")
    ingest_frame(wh, make_candles(30).iloc[20:], CFG, source="b", now=NOW, batch_id="abcdef01bb")
    with pytest.raises(DataContractError, match="start of 2 batch ids"):
        plan_removal(wh, "abcdef01")
    assert plan_removal(wh, "abcdef01a").batch_id == a.batch_id
    with pytest.raises(DataContractError, match="No batch 'abc'"):
        plan_removal(wh, "abc")  # too short to be a start: an id
