"""`coincast replay` refuses bad input with a message, before any flow starts."""

from __future__ import annotations

from typer.testing import CliRunner

from coincast_cli import app

runner = CliRunner()


def test_unknown_policy_is_refused_before_prefect_starts(tmp_path):
    result = runner.invoke(
        app,
        [
            "replay",
            "data/sample_1h.parquet",
            "--start",
            "2024-03-04",
            "--policy",
            "greedy",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1
    assert "greedy" in result.output and "choose from" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_replay_help_names_the_options():
    result = runner.invoke(app, ["replay", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ("--start", "--weeks", "--policy", "--retrain-cron", "--out", "--overwrite"):
        assert option in result.output
