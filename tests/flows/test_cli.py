"""The command line as a user meets it: clear messages and exit codes, no tracebacks."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from coincast_cli import app

runner = CliRunner()


def _candles(n: int = 300) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=n, freq="1min", tz="UTC")
    close = 100 + pd.Series(range(n), dtype=float) * 0.01
    return pd.DataFrame(
        {
            "timestamp": ts,
            "open": close,
            "high": close + 0.5,
            "low": close - 0.5,
            "close": close,
            "volume": 1.0,
        }
    )


def test_ingest_good_then_bad_file(tmp_path):
    home = tmp_path / "home"
    good = tmp_path / "ABC_USDT-1m.csv"
    _candles().to_csv(good, index=False)
    result = runner.invoke(app, ["ingest", str(good), "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "ABC_USDT-1m.csv" in result.output and "300" in result.output

    bad_frame = _candles()
    bad_frame.loc[5, "volume"] = -3.0
    (tmp_path / "later").mkdir()
    bad = tmp_path / "later" / "ABC_USDT-1m.csv"
    bad_frame.to_csv(bad, index=False)
    result = runner.invoke(app, ["ingest", str(bad), "--home", str(home)])
    assert result.exit_code == 2
    assert "volume" in result.output and "ABC/USDT" in result.output
    assert "quarantined" in result.output
    assert "Traceback" not in result.output


def test_unmappable_columns_name_what_is_missing(tmp_path):
    path = tmp_path / "weird.csv"
    pd.DataFrame({"when": [1, 2], "price": [1.0, 2.0]}).to_csv(path, index=False)
    result = runner.invoke(app, ["ingest", str(path), "--home", str(tmp_path / "h")])
    assert result.exit_code == 1
    assert "weird.csv" in result.output and "Traceback" not in result.output


def test_status_and_predict_on_an_empty_home_say_what_to_do(tmp_path):
    home = tmp_path / "empty"
    result = runner.invoke(app, ["status", "--home", str(home)])
    assert result.exit_code == 0
    assert "coincast ingest" in result.output
    result = runner.invoke(app, ["predict", "--home", str(home)])
    assert result.exit_code == 1
    assert "retrain" in result.output


def test_version_and_json_outputs_parse(tmp_path):
    import json

    import ml_core

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"coincast {ml_core.__version__}"

    home = tmp_path / "h"
    path = tmp_path / "ABC_USDT-1m.csv"
    _candles().to_csv(path, index=False)
    (tmp_path / "later").mkdir()
    result = runner.invoke(app, ["ingest", str(path), "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)
    assert [(r["symbols"], r["n_new"]) for r in run["loaded"]] == [(["ABC/USDT"], 300)]
    assert run["failed"] is None

    bad = _candles()
    bad.loc[5, "volume"] = -3.0
    bad_path = tmp_path / "later" / "ABC_USDT-1m.csv"
    bad.to_csv(bad_path, index=False)
    result = runner.invoke(app, ["ingest", str(bad_path), "--home", str(home), "--json"])
    assert result.exit_code == 2
    run = json.loads(result.stdout)  # the report on stdout, the error line on stderr
    assert run["failed"]["status"] == "quarantined" and "volume" in run["failed"]["error"]

    result = runner.invoke(app, ["status", "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["candles"][0]["rows"] == 300 and info["quarantine"] == 1
    assert info["models"] == [] and info["home"] == str(home.resolve())


def test_config_show_says_where_each_setting_came_from(tmp_path, monkeypatch):
    import json

    file = tmp_path / "c.yaml"
    file.write_text("registry:\n  min_improvement: 0.02\n")
    monkeypatch.setenv("COINCAST_EVALUATION__FEE_BPS", "7")
    result = runner.invoke(
        app,
        ["config", "show", "--config", str(file), "-t", "1h", "--profile", "full", "--json"],
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["registry.min_improvement"] == {"value": 0.02, "source": f"file {file}"}
    assert shown["evaluation.fee_bps"] == {"value": 7.0, "source": "environment"}
    assert shown["data.timeframe"] == {"value": "1h", "source": "command line"}
    assert shown["models.candidates"]["source"] == "profile full"
    assert "xgboost" in shown["models.candidates"]["value"]
    assert shown["quality.max_price"]["source"] == "default"

    result = runner.invoke(app, ["config", "show", "--config", str(file), "--changed"])
    assert result.exit_code == 0, result.output
    assert "registry.min_improvement" in result.output and "split." not in result.output

    file.write_text("registry:\n  min_improvment: 0.02\n")
    result = runner.invoke(app, ["config", "show", "--config", str(file)])
    assert result.exit_code == 1
    assert "did you mean registry.min_improvement?" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_failing_flow_prints_one_error_line_and_logs_the_traceback(tmp_path):
    """A real process, as a user runs it: Prefect's tracebacks go to the log file only."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    home = tmp_path / "home"
    bad = _candles()
    bad.loc[5, "volume"] = -3.0
    path = tmp_path / "ABC_USDT-1m.csv"
    bad.to_csv(path, index=False)
    exe = Path(sys.executable).with_name("coincast")
    env = dict(os.environ)  # a fresh home: Prefect's own home inside it, made in time
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)
    proc = subprocess.run(
        [str(exe), "retrain", "--home", str(home), "-t", "1m", "--ingest", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert "error:" in out and "volume" in out and "quarantined" in out
    assert "Failed to create the Prefect home" not in out and (home / "prefect").is_dir()
    assert "✗ ingest" in out and "✗ retrain" in out  # the step lines say where it stopped
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        n = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert n == 1  # a data error is not retried (it quarantined the batch twice before)
    log_file = home / "logs" / "coincast.log"
    assert f"traceback in {log_file}" in out.replace("\n", "")
    assert "Traceback (most recent call last)" in log_file.read_text()


def test_user_strings_are_printed_as_written_not_as_markup(tmp_path):
    """A path or symbol with rich markup in it ('[/]', '[bold red]') is shown, not parsed."""
    folder = tmp_path / "x[/]y [bold red]z"  # two folders: 'x[' and ']y [bold red]z'
    folder.mkdir(parents=True)
    bad = _candles()
    bad.loc[5, "volume"] = -3.0
    path = folder / "ABC_USDT-1m.csv"
    bad.to_csv(path, index=False)
    result = runner.invoke(app, ["ingest", str(path), "--home", str(tmp_path / "home")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "MarkupError" not in result.output
    assert "x[/]y [bold red]z" in result.output.replace("\n", "")


def _children(pid: int) -> list[int]:
    from pathlib import Path

    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            out.append(int(status.parent.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_a_killed_command_leaves_no_temporary_prefect_server(tmp_path):
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    path = tmp_path / "ABC_USDT-1m.csv"
    _candles().to_csv(path, index=False)
    exe = Path(sys.executable).with_name("coincast")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [str(exe), "retrain", "--home", str(tmp_path / "h"), "-t", "1m", "--ingest", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        servers: list[int] = []
        while time.monotonic() < deadline and not servers and proc.poll() is None:
            servers = [
                c
                for c in _children(proc.pid)
                if b"uvicorn" in Path(f"/proc/{c}/cmdline").read_bytes()
            ]
            time.sleep(0.2)
        assert servers, "the temporary Prefect server never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and Path(f"/proc/{servers[0]}").exists():
            time.sleep(0.2)
        alive = Path(f"/proc/{servers[0]}/status")
        state = alive.read_text() if alive.exists() else ""
        assert not alive.exists() or "State:\tZ" in state, "the server outlived the command"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_status_on_a_corrupt_registry_is_one_clear_error(tmp_path):
    home = tmp_path / "home"
    good = tmp_path / "ABC_USDT-1m.csv"
    _candles().to_csv(good, index=False)
    assert runner.invoke(app, ["ingest", str(good), "--home", str(home)]).exit_code == 0
    (home / "mlflow.db").write_bytes(b"this is not a sqlite file" * 200)
    result = runner.invoke(app, ["status", "--home", str(home)])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "cannot be read (DatabaseError" in said and "restore it from a backup" in said
    assert "Traceback" not in said and isinstance(result.exception, SystemExit)


def test_a_bad_batch_is_found_by_id_and_removed_with_confirmation(tmp_path):
    home = tmp_path / "home"
    first = tmp_path / "ABC_USDT-1m.csv"
    _candles(300).to_csv(first, index=False)
    glitch = tmp_path / "more" / "ABC_USDT-1m.csv"
    glitch.parent.mkdir()
    later = _candles(400).iloc[300:].copy()
    later[["open", "high", "low", "close"]] *= 1.5  # a plausible but wrong feed
    later.to_csv(glitch, index=False)
    for path in (first, glitch):
        assert runner.invoke(app, ["ingest", str(path), "--home", str(home)]).exit_code == 0

    listed = runner.invoke(app, ["batches", "--home", str(home)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    newest = listed.output.split("┡")[1].splitlines()[1].split("│")[1].strip()
    assert len(newest) == 8 and "loaded" in listed.output

    refused = runner.invoke(app, ["remove-batch", newest, "--home", str(home)], input="n\n")
    assert refused.exit_code == 1 and "deletes 100 candle(s)" in refused.output
    assert "Nothing changed" in refused.output
    done = runner.invoke(
        app, ["remove-batch", newest, "--home", str(home), "--reason", "wrong feed"], input="y\n"
    )
    assert done.exit_code == 0, done.output
    assert "100 deleted" in done.output and "batch_removals" in done.output
    status = runner.invoke(app, ["status", "--home", str(home)])
    assert "│ 1m        │ 1       │ 300" in status.output
    again = runner.invoke(app, ["remove-batch", newest, "-y", "--home", str(home)])
    assert again.exit_code == 1 and "removed already" in again.output


def test_first_commands_in_parallel_on_a_new_home_all_get_a_working_registry(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    home = tmp_path / "new"
    path = tmp_path / "ABC_USDT-1m.csv"
    _candles().to_csv(path, index=False)
    assert runner.invoke(app, ["ingest", str(path), "--home", str(home)]).exit_code == 0
    assert not (home / "mlflow.db").exists()
    exe = Path(sys.executable).with_name("coincast")
    procs = [
        subprocess.Popen(
            [str(exe), "predict", "--home", str(home)],
            env={**os.environ, "COLUMNS": "200"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=180)[0].decode() for p in procs]
    for p, out in zip(procs, outputs, strict=True):  # each creates or finds mlflow.db
        assert p.returncode == 1 and "No champion for model 'coincast' yet" in out, out
    assert (home / "mlflow.db").is_file()


def test_an_unwritable_home_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")  # as root, chmod does not stop writes: a file does
    data = tmp_path / "ABC_USDT-1m.csv"
    _candles().to_csv(data, index=False)
    for command in (["predict"], ["ingest", str(data)]):
        result = runner.invoke(app, [*command, "--home", str(blocker / "home")])
        assert result.exit_code == 1, result.output
        assert result.exception.__class__ is SystemExit  # no traceback
        one_line = result.output.replace("\n", "")
        assert f"{blocker / 'home'}" in one_line and "Not a directory" in one_line
    status = runner.invoke(app, ["status", "--home", str(blocker / "home")])
    warning = " ".join(status.output.split())
    assert status.exit_code == 0  # status only reads: it works, and says what will not
    assert f"cannot be created: {blocker} is a file" in warning and "will fail" in warning


def _silent_server():
    """A socket that accepts connections and never answers (a hung tracking server)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


@pytest.mark.parametrize("server", ["refused", "silent"])
def test_an_unreachable_tracking_server_is_one_line_within_bounded_time(
    tmp_path, monkeypatch, server
):
    import socket
    import time

    if server == "silent":
        sock = _silent_server()
        port = sock.getsockname()[1]
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")  # the default bound is 10 s
    else:
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    uri = f"http://coincast:s3cret@127.0.0.1:{port}"
    monkeypatch.setenv("COINCAST_REGISTRY__TRACKING_URI", uri)
    started = time.monotonic()
    try:
        result = runner.invoke(app, ["status", "--home", str(tmp_path / "h")])
    finally:
        if server == "silent":
            sock.close()
    took = time.monotonic() - started
    one_line = result.output.replace("\n", " ")
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit, result.output
    assert f"tracking server at http://coincast:***@127.0.0.1:{port} did not answer" in (
        " ".join(one_line.split())
    )
    assert "s3cret" not in result.output
    assert ("timed out" if server == "silent" else "connection refused") in one_line
    assert took < 60  # 2 retries, 1 s apart (MLflow's defaults retry for minutes)


def test_a_missing_postgresql_driver_says_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("psycopg2") is not None:
        pytest.skip("psycopg2 is installed here")
    monkeypatch.setenv(
        "COINCAST_REGISTRY__TRACKING_URI", "postgresql+psycopg2://mlflow:s3cret@127.0.0.1/mlflow"
    )
    result = runner.invoke(app, ["status", "--home", str(tmp_path / "h")])
    one_line = " ".join(result.output.split())
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit, result.output
    assert "needs the postgresql driver" in one_line and "pip install psycopg2-binary" in one_line
    assert "s3cret" not in result.output
