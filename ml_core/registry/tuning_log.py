"""MLflow records of tuning: a parent ``tune`` run, a nested run per study and per trial.

Trials are logged after their study ran (from ``TrialRecord`` values), each as
its own run nested under its study's run, with its real start and end times,
its parameters, the mean validation AUC (``value``), the AUC per horizon, the
pruning curve (``value_running`` by step) and its state (COMPLETE -> FINISHED,
PRUNED -> KILLED, FAIL -> FAILED; the Optuna state is also a tag).

``log_applied_tuning`` marks a train run with the tuned parameters a retrain used.

Example::

    tracking = TrackingContext(cfg.tracking_uri, cfg.artifact_location, "coincast-tune")
    parent_id = log_tuning(tracking, outcomes, params={"n_trials": 20})
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mlflow.entities import Metric, Param, RunTag

from ml_core.models.tuning import StudyOutcome, TrialRecord
from ml_core.registry.tracking import TrackingContext, make_client

_PARENT_TAG = "mlflow.parentRunId"
_RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
_PASSWORD = re.compile(r"(://[^:/@]+):[^@]*@")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to log)."""
    return _PASSWORD.sub(r"\1:***@", url)


def log_tuning(
    tracking: TrackingContext,
    outcomes: list[StudyOutcome],
    *,
    params: Mapping[str, Any] | None = None,
    run_name: str = "tune",
) -> str:
    """One parent run for a tune run, a nested run per study and per new trial; its id."""
    with tracking.start_run(run_name, tags={"coincast.kind": "tune"}) as parent_id:
        tracking.log_params(dict(params or {}))
        tracking.log_metrics(
            {
                "n_studies": len(outcomes),
                "n_trials_new": sum(len(o.new_trials) for o in outcomes),
            }
        )
        for outcome in outcomes:
            _log_study(tracking, outcome)
    return parent_id


def _log_study(tracking: TrackingContext, o: StudyOutcome) -> None:
    tags = {
        "optuna.study_name": o.study_name,
        "optuna.storage": redact_url(o.storage_url),
        "coincast.kind": "tune-study",
    }
    with tracking.start_run(o.study_name, tags=tags, nested=True) as study_run_id:
        tracking.log_params(
            {
                "candidate": o.candidate,
                "horizon_group": o.horizon_group,
                "horizons": o.horizons,
                "n_trials_new": len(o.new_trials),
                **{f"best.{k}": v for k, v in (o.best_params or {}).items()},
            }
        )
        tracking.log_metrics(
            {
                "best_value": math.nan if o.best_value is None else o.best_value,
                "best_trial": math.nan if o.best_trial is None else o.best_trial,
                "n_trials_total": o.n_trials_total,
                "n_complete": o.n_complete,
                "n_pruned": o.n_pruned,
            }
        )
        for trial in o.new_trials:
            _log_trial(tracking, study_run_id, o, trial)


def _log_trial(tracking: TrackingContext, parent_id: str, o: StudyOutcome, t: TrialRecord) -> None:
    client = tracking.client
    start_ms = _ms(t.datetime_start)
    end_ms = _ms(t.datetime_complete) or start_ms
    run = client.create_run(
        tracking.experiment_id,
        start_time=start_ms,
        run_name=f"{o.study_name}-trial-{t.number}",
        tags={
            _PARENT_TAG: parent_id,
            "optuna.study_name": o.study_name,
            "optuna.trial_number": str(t.number),
            "optuna.state": t.state,
            "coincast.kind": "tune-trial",
        },
    )
    step_ts = end_ms or 0
    metrics = [Metric("value_running", v, step_ts, step) for step, v in t.intermediate.items()]
    values = {"value": t.value, **{f"val_{k}": v for k, v in t.aucs.items()}}
    metrics += [
        Metric(k, float(v), step_ts, 0)
        for k, v in values.items()
        if v is not None and math.isfinite(float(v))
    ]
    client.log_batch(
        run.info.run_id,
        metrics=metrics,
        params=[Param(k, str(v)) for k, v in t.params.items()],
        tags=[RunTag("optuna.value", str(t.value))],
    )
    client.set_terminated(
        run.info.run_id, status=_RUN_STATUS.get(t.state, "FAILED"), end_time=end_ms
    )


def log_applied_tuning(
    tracking_uri: str, run_id: str, applied: Mapping[str, Mapping[str, Any]]
) -> None:
    """Record on run ``run_id`` which tuned params a retrain used (``tuned.<model>.<param>``)."""
    client = make_client(tracking_uri)
    client.log_param(run_id, "tuned_params_applied", ",".join(sorted(applied)) or "none")
    for name, values in applied.items():
        for key, value in values.items():
            client.log_param(run_id, f"tuned.{name}.{key}", str(value))


def _ms(ts: datetime | None) -> int | None:
    return None if ts is None else int(ts.timestamp() * 1000)
