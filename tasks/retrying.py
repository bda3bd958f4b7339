"""Which task failures are worth a retry: transient ones, not the ones a user must fix.

A task with ``retries`` retried every exception, so a bad candle file was quarantined
twice (two quarantine records, the error printed twice) before the retrain stopped.
A ``CoincastError`` (bad data, a bad setting, a refused revision) fails the same way
every time; a lock held by another process or a network error may not.
"""

from __future__ import annotations

from typing import Any

from ml_core.errors import CoincastError


def transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` of coincast's tasks: retry unless the error is a CoincastError."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            state.result()
        except BaseException as raised:  # noqa: BLE001 - we only classify it
            exc = raised
    return not isinstance(exc, CoincastError)
