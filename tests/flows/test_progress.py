"""The CLI's step lines come from real Prefect runs: one line per finished flow, the
INFO log lines kept off the console."""

from __future__ import annotations

import contextlib
import io
import logging

from prefect import flow, task
from rich.console import Console

from deployments.progress import quiet_progress


@task(name="inner-task")
def _inner_task() -> int:
    return 1


@flow(name="inner-step")
def _inner() -> int:
    return _inner_task()


@flow(name="failing-step")
def _failing() -> None:
    raise ValueError("boom")


@flow(name="outer-chain")
def _outer(fail: bool) -> int:
    total = _inner()
    if fail:
        _failing()
    return total


def _run(fail: bool) -> tuple[str, list]:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=False)
    # the failing case raises; its lines stay
    with quiet_progress(console, verbose=False) as progress, contextlib.suppress(ValueError):
        _outer(fail)
    return out.getvalue(), progress.steps


def test_each_finished_flow_is_one_line_and_info_logs_stay_off_the_console(prefect_harness, capsys):
    text, steps = _run(fail=False)
    assert [(flow, state) for flow, state, _ in steps] == [
        ("inner-step", "Completed"),
        ("outer-chain", "Completed"),
    ]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0].startswith("✓ inner-step") and lines[1].startswith("✓ outer-chain")
    assert len(lines) == 2
    console_err = capsys.readouterr().err
    assert "Finished in state" not in console_err and "Beginning" not in console_err
    root_consoles = [
        h for h in logging.getLogger().handlers if type(h).__name__ == "PrefectConsoleHandler"
    ]
    assert all(h.level < logging.WARNING for h in root_consoles)  # restored afterwards


def test_a_failed_step_is_marked_with_its_state(prefect_harness):
    _, steps = _run(fail=True)
    states = {flow: state for flow, state, _ in steps}
    assert states["inner-step"] == "Completed"
    assert states["failing-step"] == "Failed" and states["outer-chain"] == "Failed"
