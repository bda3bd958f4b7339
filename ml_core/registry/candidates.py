"""Record a training round in MLflow: one parent run, a nested run per candidate.

The best candidate's run also logs and registers the pyfunc pipeline, which
then becomes the ``challenger`` once the gate has ruled on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ml_core.errors import RegistryError
from ml_core.evaluation.regression import return_model_metrics
from ml_core.models.training import CandidateResult
from ml_core.registry.store import ModelVersionInfo, log_pipeline
from ml_core.registry.tracking import TrackingContext

log = logging.getLogger(__name__)

#: Test metrics logged per horizon (the full table goes in as a JSON artifact).
LOGGED_TEST_METRICS = ("auc", "accuracy", "brier", "log_loss", "total_return", "sharpe")


@dataclass(frozen=True)
class TrainingRecord:
    """Where a training round went: parent run, candidate runs, registered version."""

    parent_run_id: str
    candidate_runs: dict[str, str]
    registered: ModelVersionInfo
    candidate: str


def candidate_metrics(result: CandidateResult) -> dict[str, float]:
    """Flat MLflow metric dict: ``val_auc_mean``, ``test_auc_h15``, ..."""
    out = {
        "val_auc_mean": result.val_auc,
        "test_auc_mean": result.test_auc,
        "fit_seconds": result.fit_seconds,
    }
    for row in result.test_metrics.to_dict(orient="records"):
        h = int(row["horizon"])
        out.update({f"test_{m}_h{h}": float(row[m]) for m in LOGGED_TEST_METRICS if m in row})
    for row in result.val_metrics.to_dict(orient="records"):
        out[f"val_auc_h{int(row['horizon'])}"] = float(row["auc"])
    return out


def record_training(
    tracking: TrackingContext,
    results: list[CandidateResult],
    best: CandidateResult,
    *,
    model_name: str,
    input_example: pd.DataFrame,
    params: dict[str, Any],
    baselines: pd.DataFrame,
    split_summary: pd.DataFrame,
    served: Any = None,
    decision_tags: dict[str, str] | None = None,
) -> TrainingRecord:
    """Log every candidate, register ``best`` as a new version of ``model_name``.

    ``served`` (default: ``best.pipeline``) is the pipeline actually registered,
    e.g. ``best``'s recipe refit on more rows (``registry.final_fit``); the
    logged metrics stay those of the evaluated ``best``.
    """
    runs: dict[str, str] = {}
    with tracking.start_run("train", tags={"coincast.model_name": model_name}) as parent:
        tracking.log_params(params)
        tracking.log_text(baselines.to_csv(index=False), "baselines_test.csv")
        tracking.log_text(split_summary.to_csv(index=False), "split_summary.csv")
        if not best.regression_metrics.empty:  # return models (shared by all candidates)
            tracking.log_text(best.regression_metrics.to_csv(index=False), "return_models.csv")
            tracking.log_metrics(return_model_metrics(best.regression_metrics))
        regime = best.pipeline.regime_model
        if regime is not None:
            tracking.log_text(regime.transition_matrix().to_csv(), "regime_transition_matrix.csv")
            tracking.log_dict(
                {
                    "converged": bool(regime.converged_),
                    "persistence_bars": regime.persistence().to_dict(),
                },
                "regime_summary.json",
            )
        registered = None
        for r in results:
            with tracking.start_run(f"candidate-{r.name}", nested=True) as run_id:
                runs[r.name] = run_id
                pipe = r.pipeline
                model = (
                    pipe.frame_model
                    if pipe.frame_model is not None
                    else pipe.models[pipe.horizons[0]]
                )
                tracking.log_params({"candidate": r.name, **model.params()})
                tracking.log_metrics(candidate_metrics(r))
                tracking.log_text(r.test_metrics.to_csv(index=False), "test_metrics.csv")
                tracking.log_text(r.val_metrics.to_csv(index=False), "val_metrics.csv")
                for column, sliced in r.test_sliced_metrics.items():
                    tracking.log_text(sliced.to_csv(index=False), f"test_metrics_by_{column}.csv")
                if r is best:
                    tracking.set_tags({"coincast.best": "true"})
                    pipe_out = served if served is not None else r.pipeline
                    edge = getattr(pipe_out, "edge_horizons", None)
                    registered = log_pipeline(
                        pipe_out,
                        tracking=tracking,
                        model_name=model_name,
                        input_example=input_example,
                        metrics={"val_auc_mean": r.val_auc, "test_auc_mean": r.test_auc},
                        tags={
                            "coincast.candidate": r.name,
                            "coincast.final_fit": str(getattr(pipe_out, "final_fit", "train")),
                            "coincast.edge_horizons": "all"
                            if edge is None
                            else ",".join(str(h) for h in edge) or "none",
                            **(decision_tags or {}),
                        },
                    )
        if registered is None:
            raise RegistryError(f"best candidate {best.name!r} is not among the results.")
        tracking.set_tags(
            {
                "coincast.registered_version": registered.version,
                "coincast.best_candidate": best.name,
            }
        )
    log.info("registered %s v%s (%s)", model_name, registered.version, best.name)
    return TrainingRecord(parent, runs, registered, best.name)
