"""Flow `tune`: model frame -> split -> regimes -> one Optuna study per (model, horizon group)."""

from __future__ import annotations

from prefect import flow
from pydantic import Field

from flows.naming import run_name
from flows.orphans import PROCESS_HOOKS
from flows.params import RunParams
from ml_core.compute import limit_blas_threads
from ml_core.config import CoincastConfig
from tasks.features import load_model_frame, split_frame
from tasks.training import fit_regime_model, with_regimes
from tasks.tuning import (
    log_tuning_runs,
    plan_tuning,
    prepare_tuning,
    publish_tuning,
    save_tuning,
    tune_study,
)


class TuneParams(RunParams):
    """What to tune and how long; the rest comes from `tuning` in the config."""

    candidates: list[str] | None = Field(
        default=None, description="Models to tune (none: tuning.models of the config)."
    )
    n_trials: int | None = Field(
        default=None, ge=1, description="New trials per study (none: tuning.n_trials)."
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="Seconds per study (none: tuning.timeout_s)."
    )

    def load(self) -> CoincastConfig:
        cfg = super().load()
        update = {
            k: v
            for k, v in {
                "models": self.candidates,
                "n_trials": self.n_trials,
                "timeout_s": self.timeout_s,
            }.items()
            if v is not None
        }
        return cfg.model_copy(update={"tuning": cfg.tuning.model_copy(update=update)})


@flow(name="tune", flow_run_name=run_name, log_prints=True, on_running=PROCESS_HOOKS)
def tune_flow(params: TuneParams = TuneParams()) -> dict:  # noqa: B008 - typed default
    """Tune the configured models on purged validation; the next retrain uses the best."""
    cfg = params.load()
    limit_blas_threads(cfg.models.blas_threads)
    plan = plan_tuning(cfg)
    frame = load_model_frame(cfg)
    parts = split_frame(cfg, frame)
    regime_model = fit_regime_model(cfg, parts)
    parts = with_regimes(parts, regime_model)
    data = prepare_tuning(cfg, parts, regime_model)
    outcomes = [tune_study(cfg, data, cand, group, hs) for cand, group, hs in plan]
    saved = save_tuning(cfg, outcomes)
    run_id = log_tuning_runs(cfg, outcomes)
    publish_tuning(cfg, outcomes)
    return {
        "model_name": cfg.model_name,
        "studies": [
            {
                "study_name": o.study_name,
                "best_value": o.best_value,
                "best_params": o.best_params,
                "n_trials_new": len(o.new_trials),
                "n_trials_total": o.n_trials_total,
            }
            for o in outcomes
        ],
        "tuned_params": saved["entries"],
        "tuned_params_path": saved["path"],
        "mlflow_run_id": run_id,
        "tracking_uri": cfg.tracking_uri,
    }
