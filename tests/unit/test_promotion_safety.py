"""Kill tests: a promotion or rollback stopped between any two steps leaves a valid
champion, and the next run completes (or reverts) the move and audits it as 'repair'.

Real MLflow sqlite registry (one per module), real DuckDB warehouse per test; the
faults are real exceptions raised from ``moves._FAULT_HOOK`` at each named step,
plus one real ``SIGKILL`` of a subprocess paused in the middle of a promotion.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ml_core.data.warehouse import Warehouse
from ml_core.errors import RegistryError
from ml_core.registry import moves
from ml_core.registry.moves import read_moves, repair_unfinished, unfinished_moves
from ml_core.registry.promotion import Decision, apply_decision, read_audit, rollback
from ml_core.registry.store import RegistryStore

ROOT = Path(__file__).resolve().parents[2]
PROMOTE_STEPS = ["intent", "alias:challenger", "alias:previous", "alias:champion", "audit", "tags"]
ROLLBACK_STEPS = ["intent", "alias:champion", "alias:previous", "audit", "tags"]


class InjectedFault(RuntimeError):
    """Stands for the process dying at a step."""


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_registered_models()  # migrate once per module
    return uri


@pytest.fixture
def make_store(tracking_uri: str, tmp_path: Path) -> Callable[[int], RegistryStore]:
    """A new registered model (named after the test) with ``n`` versions."""
    client = MlflowClient(tracking_uri=tracking_uri)
    counter = iter(range(100))

    def make(n_versions: int = 3) -> RegistryStore:
        name = f"{tmp_path.name}-{next(counter)}"
        client.create_registered_model(name)
        for i in range(n_versions):
            client.create_model_version(name, source=str(tmp_path / f"model-{i}"))
        return RegistryStore(tracking_uri, name)

    return make


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


@pytest.fixture
def fault_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], None]]:
    """``fault_at(step)`` makes the next move raise ``InjectedFault`` right after ``step``."""

    def arm(step: str | None) -> None:
        def hook(reached: str) -> None:
            if reached == step:
                raise InjectedFault(f"killed after {reached}")

        monkeypatch.setattr(moves, "_FAULT_HOOK", hook if step else None)

    yield arm
    monkeypatch.setattr(moves, "_FAULT_HOOK", None)


def _decide(store: RegistryStore, version: str, promote: bool = True) -> Decision:
    return Decision(
        promote=promote,
        reason=f"test decision on v{version}",
        challenger_version=version,
        champion_before=store.aliases().get("champion"),
        metrics={"auc_delta": 0.01},
    )


def assert_consistent(store: RegistryStore, warehouse: Warehouse) -> None:
    """No open intent; the newest audit row and the newest move agree with the aliases."""
    aliases = store.aliases()
    assert unfinished_moves(warehouse, store.model_name) == []
    audit = read_audit(warehouse, store.model_name, limit=1).iloc[0]
    assert audit["champion_after"] == aliases.get("champion")
    move = read_moves(warehouse, store.model_name, limit=1).iloc[0]
    assert move["audit_id"] == audit["id"]
    planned = json.loads(
        _one(warehouse, "SELECT planned_json FROM alias_moves WHERE id = ?", move["id"])
    )
    if move["status"] in ("done", "completed_by_repair"):
        assert {a: p["after"] for a, p in planned.items()} == {a: aliases.get(a) for a in planned}


def _one(warehouse: Warehouse, sql: str, *params: object) -> object:
    with warehouse.connect(read_only=True) as con:
        return con.execute(sql, list(params)).fetchone()[0]


def _promotions(warehouse: Warehouse, model_name: str) -> int:
    return int(_one(warehouse, "SELECT count(*) FROM promotions WHERE model_name = ?", model_name))


# ---------------------------------------------------------------- promotion, fault at each step
@pytest.mark.parametrize("step", PROMOTE_STEPS)
def test_promotion_stopped_at_each_step_keeps_a_champion_and_is_repaired(
    step: str, make_store, warehouse: Warehouse, fault_at
) -> None:
    store = make_store(3)
    apply_decision(store, warehouse, _decide(store, "1"))
    decision = _decide(store, "2")
    fault_at(step)
    with pytest.raises(InjectedFault, match=f"after {step}"):
        apply_decision(store, warehouse, decision)
    fault_at(None)

    # Whatever step it died at, the champion names an existing version.
    champion = store.aliases()["champion"]
    assert champion in {"1", "2"}
    assert store.get_version(champion).version == champion
    finished = step in ("audit", "tags")
    assert len(unfinished_moves(warehouse, store.model_name)) == (0 if finished else 1)

    # The next run (here a retry of the same decision, as a Prefect retry would do).
    row = apply_decision(store, warehouse, decision)
    assert store.aliases() == {"challenger": "2", "champion": "2", "previous": "1"}
    assert (row["action"], row["champion_before"], row["champion_after"]) == ("promote", "1", "2")
    assert _promotions(warehouse, store.model_name) == 2  # no second row for the retry
    assert_consistent(store, warehouse)
    move = read_moves(warehouse, store.model_name, limit=1).iloc[0]
    if finished:
        assert (move["status"], row["actor"]) == ("done", "retrain")
    else:
        assert (move["status"], row["actor"]) == ("completed_by_repair", "repair")
        assert "completed by repair" in row["decision"]
        assert row["created_at"] == decision.created_at.isoformat()
    # Tags point at the audit row that recorded the move (re-written by the retry).
    assert store.version_tags("2")["coincast.audit_id"] == row["id"]


def test_next_different_run_repairs_first_then_applies_its_own_decision(
    make_store, warehouse: Warehouse, fault_at
) -> None:
    store = make_store(3)
    apply_decision(store, warehouse, _decide(store, "1"))
    fault_at("alias:previous")  # previous=1 set, champion still 1
    with pytest.raises(InjectedFault):
        apply_decision(store, warehouse, _decide(store, "2"))
    fault_at(None)
    assert store.aliases() == {"challenger": "2", "champion": "1", "previous": "1"}

    # The next retrain decides against the champion it sees after repair.
    repaired = repair_unfinished(store, warehouse)
    assert [r["actor"] for r in repaired] == ["repair"]
    assert repair_unfinished(store, warehouse) == []  # idempotent
    row = apply_decision(store, warehouse, _decide(store, "3", promote=False))
    assert store.aliases() == {"challenger": "3", "champion": "2", "previous": "1"}
    assert row["action"] == "reject"
    audit = read_audit(warehouse, store.model_name)
    assert list(audit["action"]) == ["reject", "promote", "promote"]
    assert list(audit["actor"]) == ["retrain", "repair", "retrain"]
    assert_consistent(store, warehouse)


# ---------------------------------------------------------------- rollback, fault at each step
@pytest.mark.parametrize("step", ROLLBACK_STEPS)
def test_rollback_stopped_at_each_step_is_repaired(
    step: str, make_store, warehouse: Warehouse, fault_at
) -> None:
    store = make_store(2)
    for version in ("1", "2"):
        apply_decision(store, warehouse, _decide(store, version))
    fault_at(step)
    with pytest.raises(InjectedFault):
        rollback(store, warehouse, reason="realized auc 0.47", actor="monitor")
    fault_at(None)
    assert store.aliases()["champion"] in {"1", "2"}

    repaired = repair_unfinished(store, warehouse)
    assert store.aliases() == {"challenger": "2", "champion": "1"}
    assert len(repaired) == (0 if step in ("audit", "tags") else 1)
    audit = read_audit(warehouse, store.model_name, limit=1).iloc[0]
    assert (audit["action"], audit["champion_before"], audit["champion_after"]) == (
        "rollback",
        "2",
        "1",
    )
    assert audit["actor"] == ("monitor" if step in ("audit", "tags") else "repair")
    assert_consistent(store, warehouse)
    # The rollback's own next call sees the repaired state (previous consumed).
    with pytest.raises(RegistryError, match="no 'previous' alias"):
        rollback(store, warehouse, reason="again", actor="monitor")


# ---------------------------------------------------------------- revert, superseded, live
def test_move_whose_target_version_vanished_is_reverted(
    make_store, warehouse: Warehouse, fault_at, tracking_uri: str
) -> None:
    store = make_store(3)
    for version in ("1", "2"):
        apply_decision(store, warehouse, _decide(store, version))
    fault_at("alias:challenger")
    with pytest.raises(InjectedFault):
        apply_decision(store, warehouse, _decide(store, "3"))
    fault_at(None)
    MlflowClient(tracking_uri=tracking_uri).delete_model_version(store.model_name, "3")

    (row,) = repair_unfinished(store, warehouse)
    assert store.aliases() == {"challenger": "2", "champion": "2", "previous": "1"}
    assert (row["action"], row["actor"], row["champion_after"]) == ("revert", "repair", "2")
    assert "version(s) 3 no longer exist" in row["decision"]
    assert read_moves(warehouse, store.model_name, limit=1)["status"].iloc[0] == "reverted"
    assert_consistent(store, warehouse)


def test_move_overtaken_by_a_manual_alias_change_is_abandoned(
    make_store, warehouse: Warehouse, fault_at
) -> None:
    store = make_store(3)
    apply_decision(store, warehouse, _decide(store, "1"))
    fault_at("intent")
    with pytest.raises(InjectedFault):
        apply_decision(store, warehouse, _decide(store, "2"))
    fault_at(None)
    store.set_alias("champion", "3")  # someone moved it by hand since

    (row,) = repair_unfinished(store, warehouse)
    assert store.aliases() == {"challenger": "1", "champion": "3"}
    assert (row["action"], row["champion_after"]) == ("abandon", "3")
    assert "champion->3" in row["decision"]
    assert read_moves(warehouse, store.model_name, limit=1)["status"].iloc[0] == "superseded"
    assert_consistent(store, warehouse)


def test_repair_leaves_moves_of_live_runs_alone(
    make_store, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(2)
    seen: list[list] = []

    def hook(step: str) -> None:  # a repair in this process while the move is running
        if step == "alias:challenger":
            seen.append(repair_unfinished(store, warehouse, stale_after_s=0))

    monkeypatch.setattr(moves, "_FAULT_HOOK", hook)
    apply_decision(store, warehouse, _decide(store, "1"))
    assert seen == [[]]
    assert read_moves(warehouse, store.model_name)["status"].tolist() == ["done"]

    # An intent owned by another live process is skipped until it is stale.
    monkeypatch.setattr(moves, "_FAULT_HOOK", _raise_at("intent"))
    with pytest.raises(InjectedFault):
        apply_decision(store, warehouse, _decide(store, "2"))
    monkeypatch.setattr(moves, "_FAULT_HOOK", None)
    with warehouse.connect() as con:
        con.execute("UPDATE alias_moves SET pid = ? WHERE status = 'intent'", [os.getppid()])
    assert repair_unfinished(store, warehouse) == []
    assert len(unfinished_moves(warehouse, store.model_name)) == 1
    (row,) = repair_unfinished(store, warehouse, stale_after_s=0)
    assert row["actor"] == "repair" and store.aliases()["champion"] == "2"
    assert_consistent(store, warehouse)


def _raise_at(step: str) -> Callable[[str], None]:
    def hook(reached: str) -> None:
        if reached == step:
            raise InjectedFault(reached)

    return hook


# ---------------------------------------------------------------- a real SIGKILL
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from ml_core.data.warehouse import Warehouse
    from ml_core.registry import moves
    from ml_core.registry.promotion import Decision, apply_decision
    from ml_core.registry.store import RegistryStore

    uri, name, wh_path, marker, step = sys.argv[1:6]
    store = RegistryStore(uri, name)

    def pause(reached):
        if reached == step:
            Path(marker).write_text(reached)
            time.sleep(120)  # the parent kills us here

    moves._FAULT_HOOK = pause
    decision = Decision(promote=True, reason="child promotes v2", challenger_version="2",
                        champion_before="1", metrics={})
    apply_decision(store, Warehouse(wh_path), decision, actor="retrain")
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_mid_promotion_leaves_a_champion_and_next_run_repairs(
    make_store, warehouse: Warehouse, tmp_path: Path
) -> None:
    store = make_store(2)
    apply_decision(store, warehouse, _decide(store, "1"))
    marker = tmp_path / "paused"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, store.tracking_uri, store.model_name, str(warehouse.path),
         str(marker), "alias:previous"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "child never reached the step"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)  # reap: a zombie would still look alive
    assert child.returncode == -signal.SIGKILL

    # Killed after previous=1, before champion moved: the champion is still valid.
    assert store.aliases() == {"challenger": "2", "champion": "1", "previous": "1"}
    (intent,) = unfinished_moves(warehouse, store.model_name)
    assert intent.pid == child.pid and intent.actor == "retrain"
    assert intent.planned == {"challenger": ("1", "2"), "previous": (None, "1"),
                              "champion": ("1", "2")}  # fmt: skip

    # The next run (a monitor rollback, say) repairs first, then does its own move.
    rollback(store, warehouse, reason="after the crash", actor="monitor")
    assert store.aliases() == {"challenger": "2", "champion": "1"}
    audit = read_audit(warehouse, store.model_name)
    assert list(audit["action"]) == ["rollback", "promote", "promote"]
    assert list(audit["actor"]) == ["monitor", "repair", "retrain"]
    assert list(audit["champion_after"]) == ["1", "2", "1"]
    statuses = read_moves(warehouse, store.model_name)["status"].tolist()
    assert statuses == ["done", "completed_by_repair", "done"]
    assert_consistent(store, warehouse)


def test_concurrent_repairs_close_a_move_once(
    make_store, warehouse: Warehouse, fault_at, tracking_uri: str
) -> None:
    """Three threads (e.g. a monitor and a retrain starting together) repair the same move."""
    store = make_store(2)
    apply_decision(store, warehouse, _decide(store, "1"))
    fault_at("alias:champion")
    with pytest.raises(InjectedFault):
        apply_decision(store, warehouse, _decide(store, "2"))
    fault_at(None)
    barrier = threading.Barrier(3)
    results: list[list[dict]] = []

    def repair() -> None:
        own_store = RegistryStore(tracking_uri, store.model_name)
        barrier.wait(timeout=30)
        results.append(repair_unfinished(own_store, warehouse))

    threads = [threading.Thread(target=repair) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 3  # no thread raised
    ids = {row["id"] for rows in results for row in rows}
    assert len(ids) == 1  # every thread that closed or lost the race reports the same row
    assert _promotions(warehouse, store.model_name) == 2
    assert read_moves(warehouse, store.model_name)["status"].tolist() == [
        "completed_by_repair",
        "done",
    ]
    assert store.aliases() == {"challenger": "2", "champion": "2", "previous": "1"}
    assert_consistent(store, warehouse)


# ---------------------------------------------------------------- readers repair first
@pytest.mark.parametrize("step", ["intent", "alias:previous"])
def test_readers_of_the_champion_repair_a_killed_promotion_first(
    step: str, make_store, warehouse: Warehouse, fault_at
) -> None:
    """score / monitor / status / retrain read the champion through ``serving_aliases``:
    after a promotion killed half-way they see the finished move, not the half one."""
    from ml_core.registry.moves import serving_aliases

    store = make_store(2)
    apply_decision(store, warehouse, _decide(store, "1"))
    fault_at(step)
    with pytest.raises(InjectedFault):
        apply_decision(store, warehouse, _decide(store, "2"))
    fault_at(None)
    assert len(unfinished_moves(warehouse, store.model_name)) == 1

    aliases = serving_aliases(store, warehouse)
    assert aliases == {"challenger": "2", "champion": "2", "previous": "1"}
    assert unfinished_moves(warehouse, store.model_name) == []
    assert read_audit(warehouse, store.model_name, limit=1).iloc[0]["actor"] == "repair"
    assert_consistent(store, warehouse)
