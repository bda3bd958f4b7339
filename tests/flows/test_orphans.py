"""A command killed mid-run leaves no run 'Running' for ever: the next command ends them.

Real processes, a real `kill -9`, the real Prefect database and MLflow registry of the
home: the runs the killed retrain left are read back from their sqlite files.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from coincast_cli import app

SAMPLE_1H = Path(__file__).resolve().parents[2] / "data" / "sample_1h.parquet"


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


def test_runs_a_killed_retrain_left_running_are_ended_by_the_next_command(tmp_path):
    home = tmp_path / "home"
    assert CliRunner().invoke(app, ["ingest", str(SAMPLE_1H), "--home", str(home)]).exit_code == 0
    exe = Path(sys.executable).with_name("coincast")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    prefect_db, mlflow_db = tmp_path / "prefect" / "prefect.db", home / "mlflow.db"
    running_flows = (
        "SELECT id, infrastructure_pid FROM flow_run WHERE state_type = 'RUNNING' "
        "AND infrastructure_pid IS NOT NULL"
    )
    running_mlflow = "SELECT run_uuid FROM runs WHERE status = 'RUNNING'"

    proc = subprocess.Popen(
        [str(exe), "retrain", "--home", str(home), "-t", "1h"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if _query(prefect_db, running_flows) and _query(mlflow_db, running_mlflow):
                break
            time.sleep(0.5)
        flows, runs = _query(prefect_db, running_flows), _query(mlflow_db, running_mlflow)
        assert flows and runs, "the retrain never had a flow and an MLflow run running"
        assert all(pid.endswith(f":{proc.pid}") for _, pid in flows)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()

    # left behind: still 'Running' in both stores
    assert _query(prefect_db, running_flows) and _query(mlflow_db, running_mlflow)
    after = subprocess.run(
        [str(exe), "score", "--home", str(home), "-t", "1h"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "now marked Crashed" in " ".join(after.stderr.split()), after.stderr[-2000:]
    states = dict(_query(prefect_db, "SELECT id, state_type FROM flow_run"))
    assert {states[i] for i, _ in flows} == {"CRASHED"}
    status = dict(_query(mlflow_db, "SELECT run_uuid, status FROM runs"))
    assert {status[r] for (r,) in runs} == {"KILLED"}
    ended = _query(mlflow_db, "SELECT value FROM tags WHERE key = 'coincast.ended'")
    assert len(ended) == len(runs) and f":{proc.pid} ended" in ended[0][0]
    assert not _query(prefect_db, "SELECT id FROM task_run WHERE state_type = 'RUNNING'")
