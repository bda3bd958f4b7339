"""Flow `train`: model frame -> split -> fit_regimes -> baselines + candidates (held-out time)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from prefect import flow

from flows.naming import run_name
from flows.orphans import PROCESS_HOOKS
from flows.params import RunParams
from ml_core.compute import limit_blas_threads
from ml_core.config import CoincastConfig
from ml_core.models.training import CandidateResult
from ml_core.validation.split import SplitParts
from tasks.features import load_model_frame, split_frame
from tasks.registry import overfitting_stats
from tasks.reporting import publish_metrics
from tasks.training import (
    baseline_metrics,
    fit_candidates,
    fit_regime_model,
    triple_barrier_target,
    with_regimes,
)
from tasks.tuning import apply_tuning, tuned_trials


@dataclass
class TrainOutcome:
    cfg: CoincastConfig
    parts: SplitParts
    results: list[CandidateResult]
    baselines: pd.DataFrame
    selection: dict | None = None
    extra_tables: list = field(default_factory=list)
    tuned: dict = field(default_factory=dict)


@flow(name="train", flow_run_name=run_name, log_prints=True, on_running=PROCESS_HOOKS)
def train_flow(params: RunParams) -> TrainOutcome:
    """Fit every configured candidate and score it on held-out time (nothing is registered)."""
    cfg, tuned = apply_tuning(params.load())  # tuned params of the `tune` flow, if any
    limit_blas_threads(cfg.models.blas_threads)  # small matrices: threaded BLAS only spins
    frame = load_model_frame(cfg)
    parts = split_frame(cfg, frame)
    regime_model = fit_regime_model(cfg, parts)
    parts = with_regimes(parts, regime_model)
    baselines = baseline_metrics(cfg, parts)
    results = fit_candidates(cfg, parts, regime_model)
    triple_barrier = triple_barrier_target(cfg, parts, regime_model)
    publish_metrics(cfg, results, baselines)
    # Optuna trials tried for these candidates count as configurations too (deflated Sharpe)
    selection = overfitting_stats(cfg, parts, results, n_trials_extra=tuned_trials(cfg))
    return TrainOutcome(cfg, parts, results, baselines, selection, triple_barrier, tuned)
