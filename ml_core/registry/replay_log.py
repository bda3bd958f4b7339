"""A replay as one MLflow run: its parameters, per-policy summary metrics, the report files.

Logged in its own experiment (``coincast-replay``) of the ``coincast`` policy's
registry, or of a tracking database in the replay's output folder; the
replay itself never touches MLflow (``ml_core.replay`` does not import it).

Example::

    run_id = log_replay_run(tracking, params={"start": "2024-03-04", ...},
                            metrics={"coincast_auc": 0.52}, artifacts=[html, csv])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ml_core.registry.tracking import TrackingContext

#: MLflow experiment of the replay runs.
REPLAY_EXPERIMENT = "coincast-replay"
_MAX_PARAM = 500  # MLflow rejects longer parameter values


def log_replay_run(
    tracking: TrackingContext,
    *,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    artifacts: Sequence[Path | str] = (),
    tags: Mapping[str, Any] | None = None,
) -> str:
    """One FINISHED run with ``params`` (stringified, shortened), ``metrics`` and files; its id."""
    with tracking.start_run("replay", tags={"coincast.kind": "replay", **(tags or {})}) as run_id:
        tracking.log_params({k: _short(v) for k, v in params.items()})
        tracking.log_metrics(metrics)
        for path in artifacts:
            tracking.log_artifact(path)
    return run_id


def _short(value: Any) -> str:
    text = ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 3] + "..."
