"""Runs a killed process left behind: recorded when they start, ended when found.

A flow run records the process that executes it (``infrastructure_pid`` =
``<host>:<pid>``, the ``record_process`` hook on every coincast flow). ``sweep`` runs
when a coincast command starts flows (the CLI, ``coincast serve``): the Prefect flow
runs, and their task runs, still Running whose process is gone from this host become
Crashed, and MLflow runs left RUNNING become KILLED
(``ml_core.registry.tracking.end_orphaned_runs``). Runs of other hosts are never
touched: their process may be alive.
"""

from __future__ import annotations

import logging

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from prefect.states import Crashed

from ml_core.config import CoincastConfig
from ml_core.processes import process_token, token_gone
from ml_core.registry.tracking import end_orphaned_runs

log = logging.getLogger(__name__)


def record_process(flow: object, flow_run: object, state: object) -> None:
    """``on_running`` hook: the flow run's ``infrastructure_pid`` is this process."""
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, infrastructure_pid=process_token())  # type: ignore[attr-defined]


#: on_running hooks of every coincast flow
PROCESS_HOOKS = [record_process]


class _QuietHook(logging.Filter):
    """Prefect logs two INFO lines per hook run ("Running hook 'record_process' ...",
    "... finished running successfully"): bookkeeping, not news. Errors still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or "'record_process'" not in str(record.msg)


logging.getLogger("prefect.engine").addFilter(_QuietHook())


def sweep(cfg: CoincastConfig) -> dict[str, list[str]]:
    """End what killed processes left running; returns the ids, by kind. Each store is
    checked on its own: one that cannot be read is logged and skipped."""
    steps = {
        "flow_runs": crash_orphaned_flow_runs,
        "mlflow_runs": lambda: end_orphaned_runs(cfg.tracking_uri),
    }
    ended: dict[str, list[str]] = {kind: [] for kind in steps}
    for kind, step in steps.items():
        try:
            ended[kind] = step()
        except Exception as exc:  # noqa: BLE001 - the cleanup never stops a command
            log.warning("could not check for %s left running: %s", kind.replace("_", " "), exc)
    return ended


def crash_orphaned_flow_runs() -> list[str]:
    """Set Crashed the Running flow runs (and their Running task runs) whose process is gone."""
    running = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
    crashed: list[str] = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=running), sort=FlowRunSort.ID_DESC, limit=200
        )
        for run in runs:
            if not token_gone(run.infrastructure_pid):
                continue
            message = (
                f"Process {run.infrastructure_pid} ended (killed?) while this run was Running; "
                f"marked Crashed by {process_token()}."
            )
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
                task_run_filter=TaskRunFilter(
                    state=TaskRunFilterState(
                        type=TaskRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                    )
                ),
                sort=TaskRunSort.ID_DESC,
                limit=200,
            )
            for task in tasks:
                client.set_task_run_state(task.id, Crashed(message=message), force=True)
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            crashed.append(str(run.id))
    if crashed:
        log.warning(
            "%d flow run(s) left Running by killed processes marked Crashed: %s",
            len(crashed),
            ", ".join(crashed),
        )
    return crashed
