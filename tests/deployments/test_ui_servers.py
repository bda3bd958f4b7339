"""`coincast ui`: Prefect server, MLflow UI and the deployment server on 127.0.0.1, all
stopped on Ctrl-C (SIGINT) with no process left behind.

Runs the real command in a subprocess on free ports with a temp home.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from deployments.servers import free_port, http_ok, port_is_free


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def _descendants(root: int) -> set[int]:
    table = _proc_table()
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a LISTEN socket on ``port`` (from /proc/net/tcp)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            out.add(".".join(str(int(addr_hex[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return out


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> str:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        out = path.read_text(errors="replace")
        if text in out:
            return out
        if proc.poll() is not None:
            pytest.fail(f"coincast ui exited with {proc.returncode}:\n{out}")
        time.sleep(0.5)
    pytest.fail(f"no {text!r} after {timeout_s} s:\n{path.read_text(errors='replace')}")


@pytest.mark.slow  # three real servers: ~45 s idle, minutes on a busy 2-core box
def test_ui_starts_all_servers_on_localhost_and_stops_them_on_ctrl_c(tmp_path):
    prefect_port, mlflow_port = free_port(), free_port()
    out_path = tmp_path / "ui.out"
    home = tmp_path / "home"
    cmd = [sys.executable, "-m", "coincast_cli", "ui", "--home", str(home)]
    cmd += ["--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)]
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)
    with out_path.open("wb") as out:
        ui = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        text = _wait_for(out_path, "Press Ctrl-C", ui, timeout_s=240)
        assert f"http://127.0.0.1:{prefect_port}" in text
        assert f"http://127.0.0.1:{mlflow_port}" in text
        assert http_ok(f"http://127.0.0.1:{prefect_port}/api/health")
        assert http_ok(f"http://127.0.0.1:{mlflow_port}/health")
        # the UI in the browser talks to this server, not to the default port 4200
        with urllib.request.urlopen(f"http://127.0.0.1:{prefect_port}/ui-settings") as resp:
            assert json.load(resp)["api_url"] == f"http://127.0.0.1:{prefect_port}/api"
        for port in (prefect_port, mlflow_port):
            assert _listening_addresses(port) == {"127.0.0.1"}, port
        # the Prefect home, its database and the logs are inside COINCAST_HOME
        assert (tmp_path / "home" / "prefect" / "prefect.db").exists()
        assert (tmp_path / "home" / "logs" / "deployment-server.log").exists()
        children = _descendants(ui.pid)
        assert len(children) >= 3  # prefect server, mlflow (+ its worker), coincast serve

        # a command on this home runs its flow on the UI's server (no temporary server),
        # so the run is in the UI; here `score` on a home with no model yet
        from tests.flows.test_cli import _candles

        data = tmp_path / "ABC_USDT-1m.csv"
        _candles().to_csv(data, index=False)
        cli = [sys.executable, "-m", "coincast_cli"]
        for args in (["ingest", str(data)], ["score"]):
            done = subprocess.run(
                [*cli, *args, "--home", str(home)],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            said = done.stdout + done.stderr
            assert "temporary server" not in said, said
        request = urllib.request.Request(
            f"http://127.0.0.1:{prefect_port}/api/flow_runs/filter",
            data=b"{}",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as resp:
            runs = json.load(resp)
        assert len(runs) == 1 and runs[0]["state_type"] in {"COMPLETED", "FAILED"}, said

        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=90) == 0
    finally:
        if ui.poll() is None:
            ui.kill()
    assert "All servers stopped." in out_path.read_text()
    assert not (home / "prefect" / "ui-server.json").exists()
    assert port_is_free("127.0.0.1", prefect_port) and port_is_free("127.0.0.1", mlflow_port)
    assert not (children & set(_proc_table())), "orphaned server processes"


def test_ui_refuses_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = [sys.executable, "-m", "coincast_cli", "ui", "--home", str(tmp_path)]
        cmd += ["--prefect-port", str(port), "--mlflow-port", str(free_port())]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in done.stderr
    assert not (tmp_path / "logs").exists()  # nothing was started


@pytest.mark.slow  # two real servers
def test_a_killed_ui_leaves_no_server_behind(tmp_path):
    prefect_port, mlflow_port = free_port(), free_port()
    out_path = tmp_path / "ui.out"
    cmd = [sys.executable, "-m", "coincast_cli", "ui", "--home", str(tmp_path / "home")]
    cmd += ["--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port), "--no-serve"]
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)
    with out_path.open("wb") as out:
        ui = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_for(out_path, "Press Ctrl-C", ui, timeout_s=240)
        children = _descendants(ui.pid)
        assert http_ok(f"http://127.0.0.1:{prefect_port}/api/health")
        ui.send_signal(signal.SIGKILL)  # no chance to stop anything itself
        ui.wait(timeout=10)
    finally:
        if ui.poll() is None:
            ui.kill()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and children & set(_proc_table()):
        time.sleep(0.5)
    assert not (children & set(_proc_table())), "servers outlived a killed `coincast ui`"
    assert port_is_free("127.0.0.1", prefect_port) and port_is_free("127.0.0.1", mlflow_port)
