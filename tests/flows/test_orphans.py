"""A command killed mid-run leaves no run 'Running' for ever: the next command ends them.

Real processes, a real `kill -9`, the real Prefect database and MLflow registry of the
home: the runs the killed process left are read back from their sqlite files. The
killed process runs a coincast-style flow (the flows' process hook, an MLflow run
opened by ``TrackingContext``) that waits; the next command is a real `coincast score`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from coincast_cli import app
from tests.flows.test_cli import _candles

CHILD = """
import sys, time
from prefect import flow
from flows.orphans import PROCESS_HOOKS
from ml_core.registry.tracking import TrackingContext

@flow(name="retrain", on_running=PROCESS_HOOKS)
def busy(uri: str, artifacts: str) -> None:
    tracking = TrackingContext(uri, artifacts, "coincast")
    with tracking.start_run("retrain"):
        with tracking.start_run("lightgbm", nested=True):
            print("running", flush=True)
            time.sleep(600)

busy(sys.argv[1], sys.argv[2])
"""


def _query(db: Path, sql: str) -> list[tuple]:
    if not db.is_file():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()


def test_runs_a_killed_command_left_running_are_ended_by_the_next_command(tmp_path):
    home = tmp_path / "home"
    data = tmp_path / "ABC_USDT-1m.csv"
    _candles().to_csv(data, index=False)
    assert CliRunner().invoke(app, ["ingest", str(data), "--home", str(home)]).exit_code == 0
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)
    prefect_db, mlflow_db = tmp_path / "prefect" / "prefect.db", home / "mlflow.db"
    running_flows = (
        "SELECT id, infrastructure_pid FROM flow_run WHERE state_type = 'RUNNING' "
        "AND infrastructure_pid IS NOT NULL"
    )
    running_mlflow = "SELECT run_uuid FROM runs WHERE status = 'RUNNING'"

    uri, artifacts = f"sqlite:///{mlflow_db}", (home / "mlartifacts").as_uri()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, uri, artifacts],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
        start_new_session=True,  # its own group: Prefect's ephemeral server goes with it
    )
    try:
        assert proc.stdout.readline().strip() == b"running", "the flow never ran"
        flows, runs = _query(prefect_db, running_flows), _query(mlflow_db, running_mlflow)
        assert len(flows) == 1 and len(runs) == 2  # the flow run; a run and its nested run
        assert flows[0][1].endswith(f":{proc.pid}")
        os.killpg(proc.pid, signal.SIGKILL)  # the flow's process and the server it started
        proc.wait(timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    assert _query(prefect_db, running_flows) and _query(mlflow_db, running_mlflow)  # left
    exe = Path(sys.executable).with_name("coincast")
    after = subprocess.run(
        [str(exe), "score", "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    said = " ".join(after.stderr.split())
    assert "left 1 Prefect flow run(s) Running (now marked Crashed) and 2 MLflow" in said, said
    states = dict(_query(prefect_db, "SELECT id, state_type FROM flow_run"))
    assert states[flows[0][0]] == "CRASHED"
    status = dict(_query(mlflow_db, "SELECT run_uuid, status FROM runs"))
    assert {status[r] for (r,) in runs} == {"KILLED"}
    ended = _query(mlflow_db, "SELECT value FROM tags WHERE key = 'coincast.ended'")
    assert len(ended) == 2 and f":{proc.pid} ended" in ended[0][0]
    assert not _query(prefect_db, "SELECT id FROM task_run WHERE state_type = 'RUNNING'")
