"""What a flow command shows while it runs: one line per finished step, a spinner between.

Prefect logs every task and flow run at INFO (a retrain prints ~150 lines); by default
the CLI keeps the console at WARNING and shows instead::

    ✓ ingest          2.1 s
    ✓ validate        3.4 s
    ⠋ train  · fit-candidates done · 0:41

The lines come from Prefect's own run records (``Beginning subflow run ... for flow
...`` and each run's ``Finished in state ...``), so every flow command gets them
without code in the flows. ``coincast -v`` keeps Prefect's log lines instead.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.text import Text

_BEGIN = re.compile(r"Beginning (?:sub)?flow run '(?P<run>[^']+)' for flow '(?P<flow>[^']+)'")
_FINISHED = re.compile(r"Finished in state (?P<state>\w+)")

#: Loggers whose console output the quiet mode lowers to WARNING.
QUIET_LOGGERS = ("", "prefect", "mlflow", "alembic")


class StepProgress(logging.Handler):
    """A logging handler that turns Prefect's run records into step lines on ``console``."""

    def __init__(self, console: Console) -> None:
        super().__init__(level=logging.INFO)
        self.console = console
        self.started: dict[str, tuple[str, float]] = {}  # flow run name -> (flow, start)
        self.status = None
        self.last_task = ""
        self.steps: list[tuple[str, str, float]] = []  # (flow, state, seconds)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad record must not break the command
            return
        if (begin := _BEGIN.search(message)) is not None:
            self.started[begin["run"]] = (begin["flow"], time.monotonic())
            self.last_task = ""
            self._update()
            return
        finished = _FINISHED.match(message)
        if finished is None:
            return
        task = getattr(record, "task_name", None)
        if task:
            self.last_task = str(task)
            self._update()
            return
        run = getattr(record, "flow_run_name", None)
        if run in self.started:
            flow, start = self.started.pop(run)
            self._line(flow, finished["state"], time.monotonic() - start)
            self._update()

    def _line(self, flow: str, state: str, seconds: float) -> None:
        self.steps.append((flow, state, seconds))
        ok = state == "Completed"
        mark = ("✓", "green") if ok else ("✗", "bold red")
        self.console.print(
            Text.assemble(
                (f"  {mark[0]} ", mark[1]),
                (f"{flow:<16}", "bold" if ok else "red"),
                f"{_seconds(seconds):>8}",
                ("" if ok else f"  {state}", "red"),
            ),
            highlight=False,
        )

    def _update(self) -> None:
        if self.status is None or not self.started:
            return
        run, (flow, start) = next(reversed(self.started.items()))
        elapsed = _seconds(time.monotonic() - start)
        after = f" · {self.last_task} done" if self.last_task else ""
        self.status.update(Text.assemble((flow, "bold"), f"{after} · {elapsed}"))


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)}:{int(seconds % 60):02d}"


class _NoServerStop(logging.Filter):
    """Drops Prefect's "Stopping temporary server" line, logged at exit after the step
    lines (the start line is dropped with the rest of the INFO lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno < logging.WARNING
            and record.name == "prefect"
            and str(record.msg).startswith("Stopping temporary server")
        )


def _drop_server_stop(handler: logging.Handler) -> None:
    if not any(isinstance(f, _NoServerStop) for f in handler.filters):
        handler.addFilter(_NoServerStop())


@contextmanager
def quiet_progress(console: Console, *, verbose: bool) -> Iterator[StepProgress | None]:
    """Step lines and a spinner on ``console`` while Prefect's INFO lines stay off the
    console (its log file still gets them); ``verbose``: leave the console as it is."""
    if verbose:
        yield None
        return
    mlflow_level = os.environ.get("MLFLOW_LOGGING_LEVEL")
    os.environ["MLFLOW_LOGGING_LEVEL"] = mlflow_level or "WARNING"  # read when mlflow loads
    lowered = []
    for name in QUIET_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                lowered.append((handler, handler.level))
                handler.setLevel(max(handler.level, logging.WARNING))
                _drop_server_stop(handler)  # stays: the line comes at process exit
    progress = StepProgress(console)
    root = logging.getLogger()
    root.addHandler(progress)
    try:
        with console.status("starting", spinner="dots") as status:
            progress.status = status
            yield progress
    finally:
        root.removeHandler(progress)
        for handler, level in lowered:
            handler.setLevel(level)
        if mlflow_level is None:
            os.environ.pop("MLFLOW_LOGGING_LEVEL", None)
