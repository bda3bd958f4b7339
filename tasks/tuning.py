"""Tasks of the tune flow (studies, tuned params file, MLflow, artifact) and of applying them."""

from __future__ import annotations

import json

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from ml_core.config import CoincastConfig
from ml_core.features import FEATURE_COLUMNS
from ml_core.models.pipeline import regime_columns
from ml_core.models.tuning import (
    StudyOutcome,
    TrialRecord,
    TuningData,
    apply_tuned_params,
    prepare_tuning_data,
    run_study,
    save_tuned_params,
    tuned_params_for,
    tuned_params_path,
    tuning_plan,
)
from ml_core.regime.hmm import RegimeModel
from ml_core.registry.tracking import TrackingContext
from ml_core.registry.tuning_log import log_applied_tuning, log_tuning, redact_url
from ml_core.validation.split import SplitParts
from tasks.artifacts import publish_table
from tasks.retrying import transient_only


@task(name="plan-tuning", cache_policy=NONE)
def plan_tuning(cfg: CoincastConfig) -> list[tuple[str, str, list[int]]]:
    """(candidate, horizon group, horizons) per study; fails early on an untunable model."""
    plan = tuning_plan(cfg)
    get_run_logger().info("tuning plan: %s", [(c, g, hs) for c, g, hs in plan])
    return plan


@task(name="prepare-tuning-data", cache_policy=NONE)
def prepare_tuning(
    cfg: CoincastConfig, parts: SplitParts, regime_model: RegimeModel | None
) -> TuningData:
    """Recent training rows and validation rows, scaled once for every trial."""
    data = prepare_tuning_data(
        parts,
        columns=list(FEATURE_COLUMNS) + regime_columns(regime_model),
        horizons=cfg.horizons,
        max_train_rows=cfg.tuning.max_train_rows,
    )
    get_run_logger().info(
        "tuning data: %d train rows, %d validation rows", len(data.train), len(data.val)
    )
    return data


@task(name="tune-study", cache_policy=NONE)
def tune_study(
    cfg: CoincastConfig, data: TuningData, candidate: str, group: str, horizons: list[int]
) -> StudyOutcome:
    """Resume (or start) one study and run its trial budget; logs each trial as it ends."""
    logger = get_run_logger()

    def on_trial(t: TrialRecord) -> None:
        value = "-" if t.value is None else f"{t.value:.4f}"
        logger.info(
            "%s/%s trial %d %s: val AUC %s %s", candidate, group, t.number, t.state, value, t.params
        )

    outcome = run_study(cfg, candidate, group, horizons, data, on_trial=on_trial)
    logger.info(
        "%s: best val AUC %s (trial %s) after %d trials in storage; %d new",
        outcome.study_name,
        outcome.best_value,
        outcome.best_trial,
        outcome.n_trials_total,
        len(outcome.new_trials),
    )
    return outcome


@task(name="save-tuned-params", cache_policy=NONE)
def save_tuning(cfg: CoincastConfig, outcomes: list[StudyOutcome]) -> dict:
    """Best params into ``<home>/tuned_params.json`` (used by the next retrain): path, entries."""
    entries = save_tuned_params(cfg, outcomes)
    path = tuned_params_path(cfg)
    get_run_logger().info("tuned params saved to %s", path)
    return {"path": str(path), "entries": entries}


@task(name="log-tuning-runs", cache_policy=NONE)
def log_tuning_runs(cfg: CoincastConfig, outcomes: list[StudyOutcome]) -> str:
    """MLflow: parent run 'tune', a nested run per study and per trial; the parent id."""
    t = cfg.tuning
    tracking = TrackingContext(cfg.tracking_uri, cfg.artifact_location, t.experiment_name)
    return log_tuning(
        tracking,
        outcomes,
        params={
            "model_name": cfg.model_name,
            "timeframe": cfg.data.timeframe,
            "horizons": cfg.horizons,
            "candidates": t.models,
            "n_trials": t.n_trials,
            "timeout_s": t.timeout_s,
            "horizon_groups": t.horizon_groups,
            "max_train_rows": t.max_train_rows,
            "seed": t.seed,
            "storage": redact_url(outcomes[0].storage_url) if outcomes else "",
        },
    )


@task(name="publish-tuning", cache_policy=NONE)
def publish_tuning(cfg: CoincastConfig, outcomes: list[StudyOutcome]) -> pd.DataFrame:
    """A table artifact of each study's best params."""
    table = pd.DataFrame(
        [
            {
                "study": o.study_name,
                "candidate": o.candidate,
                "horizon_group": o.horizon_group,
                "horizons": ",".join(str(h) for h in o.horizons),
                "best_val_auc": o.best_value,
                "best_trial": o.best_trial,
                "n_trials_new": len(o.new_trials),
                "n_trials_total": o.n_trials_total,
                "n_pruned": o.n_pruned,
                "best_params": json.dumps(o.best_params, sort_keys=True, default=str),
            }
            for o in outcomes
        ]
    )
    publish_table(
        f"tuning-{cfg.model_name}",
        table,
        f"Optuna best parameters per study (validation AUC); saved to {tuned_params_path(cfg)} "
        "and used by the next retrain.",
    )
    return table


@task(name="apply-tuned-params", cache_policy=NONE)
def apply_tuning(cfg: CoincastConfig) -> tuple[CoincastConfig, dict]:
    """The config with tuned params merged in (``tuning.apply``), and what was applied."""
    applied = tuned_params_for(cfg)
    logger = get_run_logger()
    if applied:
        logger.info("using tuned params from %s: %s", tuned_params_path(cfg), applied)
    else:
        logger.info(
            "no tuned params applied (none saved for %s, or tuning.apply off)", cfg.model_name
        )
    return apply_tuned_params(cfg), applied


@task(
    name="record-tuned-params",
    cache_policy=NONE,
    retries=1,
    retry_condition_fn=transient_only,
    retry_delay_seconds=3,
)
def record_applied_tuning(cfg: CoincastConfig, applied: dict, run_id: str) -> None:
    """Tuned params a retrain used, as params of its MLflow train run."""
    log_applied_tuning(cfg.tracking_uri, run_id, applied)


@task(name="count-tuning-trials", cache_policy=NONE)
def tuned_trials(cfg: CoincastConfig) -> int:
    """Finished Optuna trials of this data set's candidates (0 without tuning)."""
    from ml_core.models.tuning import tuned_trial_count

    return sum(tuned_trial_count(cfg, candidate=name) for name in cfg.models.candidates)
