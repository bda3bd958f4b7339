"""Monitor evaluations as MLflow runs in the ``coincast-monitor`` experiment.

One run per evaluation: the champion's realized summary as metrics, every
version and horizon as ``<metric>_v<version>_h<horizon>``, the change
detector's numbers as ``detector_*``, the drift table and the decision as JSON
artifacts, and tags naming the model, aliases, decision, the rule that
triggered it and evaluation id (the key of the warehouse rows).

Example::

    run_id = log_monitor_evaluation(tracking, model_name="coincast",
                                    evaluation=ev.summary(), metrics=ev.metrics,
                                    drift=drift)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ml_core.registry.tracking import TrackingContext

_KEYS = ("auc", "accuracy", "brier", "log_loss", "trading_return", "n_outcomes")
_DETECTOR_KEYS = (
    "detector_statistic",
    "detector_threshold",
    "detector_n_outcomes",
    "detector_mean_diff",
    "detector_mean_diff_since_change",
)


def log_monitor_evaluation(
    tracking: TrackingContext,
    *,
    model_name: str,
    evaluation: Mapping[str, Any],
    metrics: pd.DataFrame,
    drift: pd.DataFrame,
) -> str:
    """Log one evaluation (``MonitorEvaluation.summary()`` + tables) as a run; its id."""
    aliases = dict(evaluation.get("aliases") or {})
    tags = {
        "coincast.model_name": model_name,
        "coincast.evaluation_id": evaluation.get("evaluation_id"),
        "coincast.champion": aliases.get("champion", ""),
        "coincast.previous": aliases.get("previous", ""),
        "coincast.breach": evaluation.get("breach"),
        "coincast.rollback": evaluation.get("rollback"),
        "coincast.trigger": evaluation.get("trigger") or "",
        "coincast.reason": str(evaluation.get("reason", ""))[:4000],
    }
    with tracking.start_run(f"monitor-{model_name}", tags=tags) as run_id:
        tracking.log_metrics(_flatten(metrics, aliases.get("champion")))
        if not drift.empty:
            tracking.log_metrics(
                {
                    "drift_psi_max": float(drift["psi"].max()),
                    "drift_n_features_drifted": float(drift["drifted"].sum()),
                }
            )
        detector = evaluation.get("detector") or {}
        tracking.log_metrics(
            {
                k: float(detector[k])
                for k in _DETECTOR_KEYS
                if isinstance(detector.get(k), int | float) and math.isfinite(detector[k])
            }
        )
        tracking.log_dict(_jsonable(dict(evaluation)), "decision.json")
        tracking.log_text(metrics.to_csv(index=False), "monitor_metrics.csv")
        if not drift.empty:
            tracking.log_text(drift.to_csv(index=False), "drift_metrics.csv")
    return run_id


def _flatten(metrics: pd.DataFrame, champion: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in metrics.to_dict(orient="records"):
        version, horizon = str(row["model_version"]), int(row["horizon"])
        for key in _KEYS:
            value = float(row[key])
            if not math.isfinite(value):
                continue
            out[f"{key}_v{version}_h{horizon}"] = value
            if version == str(champion) and horizon == 0:
                out[f"champion_{key}"] = value
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
