"""Tasks of the registry steps: register, re-score, decide and audit."""

from __future__ import annotations

import copy
from dataclasses import asdict

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from ml_core.config import CoincastConfig
from ml_core.data.warehouse import Warehouse
from ml_core.evaluation.gate import (
    CHALLENGER,
    CHAMPION,
    SelectionStats,
    decide_promotion,
    selection_overfitting,
)
from ml_core.evaluation.weekly import WeeklyVerdict, cpcv_embargo_bars, decide_week
from ml_core.models.pipeline import CandlePipeline, refit_for_serving
from ml_core.models.training import CandidateResult, score_probabilities, select_best
from ml_core.registry.candidates import record_training
from ml_core.registry.promotion import (
    Decision,
    apply_decision,
    record_no_move,
    repair_unfinished,
)
from ml_core.registry.store import RegistryStore
from ml_core.registry.tracking import TrackingContext
from ml_core.validation.cpcv_eval import CPCVEvaluation, evaluate_on_cpcv
from ml_core.validation.split import SplitParts


def _tracking(cfg: CoincastConfig) -> TrackingContext:
    return TrackingContext(cfg.tracking_uri, cfg.artifact_location, cfg.registry.experiment_name)


@task(name="register-challenger", cache_policy=NONE, retries=1, retry_delay_seconds=3)
def register_best(
    cfg: CoincastConfig, results: list[CandidateResult], baselines: pd.DataFrame, parts: SplitParts
) -> dict:
    """Log all candidates to MLflow and register the best (by validation AUC)."""
    best = select_best(results)
    example = _input_example(cfg, best.pipeline.lookback_bars)
    record = record_training(
        _tracking(cfg),
        results,
        best,
        model_name=cfg.model_name,
        input_example=example,
        params={
            "timeframe": cfg.data.timeframe,
            "horizons": cfg.horizons,
            "feature_set": best.pipeline.feature_set,
            "candidates": cfg.models.candidates,
            "gap_bars": parts.gap_bars,
            "fee_bps": cfg.evaluation.fee_bps,
        },
        baselines=baselines,
        split_summary=parts.summary(),
    )
    get_run_logger().info(
        "registered %s v%s (%s)", cfg.model_name, record.registered.version, best.name
    )
    return {
        "version": record.registered.version,
        "run_id": record.parent_run_id,
        "candidate": best.name,
        "candidate_runs": record.candidate_runs,
    }


def _input_example(cfg: CoincastConfig, lookback_bars: int) -> pd.DataFrame:
    candles = Warehouse(cfg.warehouse_path).read_candles(timeframe=cfg.data.timeframe)
    first = candles["symbol"].iloc[0]
    return candles[candles["symbol"] == first].tail(lookback_bars + 5).drop(columns="timeframe")


@task(name="newest-version", cache_policy=NONE)
def newest_version(cfg: CoincastConfig) -> str:
    """The most recently registered version (the default challenger)."""
    versions = RegistryStore(cfg.tracking_uri, cfg.model_name).list_versions()
    if not versions:
        from ml_core.errors import RegistryError

        raise RegistryError(f"No versions of {cfg.model_name!r} yet. Run `coincast retrain` first.")
    return versions[-1].version


@task(name="current-champion", cache_policy=NONE)
def current_champion(cfg: CoincastConfig) -> str | None:
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    info = store.get_alias("champion") if store.exists() else None
    return None if info is None else info.version


@task(name="rescore-on-test", cache_policy=NONE)
def rescore(cfg: CoincastConfig, parts: SplitParts, version: str) -> pd.DataFrame:
    """Per-horizon test metrics of a registered version on this run's test window."""
    pipe = RegistryStore(cfg.tracking_uri, cfg.model_name).load_pipeline(version)
    probs = pipe.predict_features(parts.test)
    metrics = score_probabilities(
        parts.test, probs, eval_cfg=cfg.evaluation, timeframe=cfg.data.timeframe
    )
    get_run_logger().info("v%s re-scored: mean test AUC %.4f", version, metrics["auc"].mean())
    return metrics


@task(name="selection-overfitting", cache_policy=NONE)
def overfitting_stats(
    cfg: CoincastConfig,
    parts: SplitParts,
    results: list[CandidateResult],
    n_trials_extra: int = 0,
) -> dict:
    """PBO of choosing among this retrain's candidates and the chosen one's deflated Sharpe.

    Returned as a plain dict (``SelectionStats`` fields) so it can travel as a flow parameter.
    """
    stats = selection_overfitting(
        parts,
        results,
        chosen=select_best(results).name,
        horizons=cfg.horizons,
        gate=cfg.registry.gate,
        eval_cfg=cfg.evaluation,
        timeframe=cfg.data.timeframe,
        n_trials_extra=n_trials_extra,
    )
    pbo = "n/a" if stats.pbo is None else f"{stats.pbo:.3f}"
    get_run_logger().info(
        "selection: PBO %s over %d trials (%d periods), DSR %s",
        pbo,
        stats.n_trials,
        stats.n_periods,
        stats.dsr,
    )
    return asdict(stats)


@task(name="cpcv-compare", cache_policy=NONE)
def cpcv_compare(
    cfg: CoincastConfig, parts: SplitParts, challenger_version: str, champion_version: str | None
) -> CPCVEvaluation | None:
    """Refit the challenger's (and champion's) configuration on the same CPCV splits.

    None under gate v1. The development rows are the train and validation parts.
    """
    gate = cfg.registry.gate
    if gate.gate_version == 1:
        return None
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    pipelines = {CHALLENGER: store.load_pipeline(challenger_version)}
    if champion_version is not None and champion_version != challenger_version:
        pipelines[CHAMPION] = store.load_pipeline(champion_version)
    horizons = [h for h in cfg.horizons if h in (gate.cpcv_horizons or cfg.horizons)]
    if not horizons:
        from ml_core.errors import ConfigError

        raise ConfigError(
            f"registry.gate.cpcv_horizons={gate.cpcv_horizons} holds none of the label horizons "
            f"{cfg.horizons}; pick some of them, or None for all."
        )
    dev = pd.concat([parts.train, parts.val], ignore_index=True)
    result = evaluate_on_cpcv(
        dev,
        pipelines,
        horizons=horizons,
        n_groups=gate.cpcv_groups,
        n_test_groups=gate.cpcv_test_groups,
        embargo=cpcv_embargo_bars(dev, cfg),
        max_train_rows=gate.cpcv_max_train_rows,
        blocks_per_group=gate.cpcv_blocks_per_group,
        inner_val_frac=gate.cpcv_inner_val_frac,
    )
    logger = get_run_logger()
    for name in result.configs:
        logger.info(
            "CPCV %s: path AUCs %s (%.1fs)",
            name,
            result.summary(name)["path_auc"],
            result.fit_seconds[name],
        )
    return result


@task(name="decide-and-apply", cache_policy=NONE)
def decide_and_apply(
    cfg: CoincastConfig,
    *,
    challenger_version: str,
    challenger: pd.DataFrame,
    champion_version: str | None,
    champion: pd.DataFrame | None,
    baselines: pd.DataFrame,
    actor: str,
    run_id: str | None = None,
    cpcv: CPCVEvaluation | None = None,
    selection: dict | None = None,
) -> dict:
    """The configured gate (v1, or v2 with CPCV and PBO), then aliases and the audit row."""
    gate = decide_promotion(
        challenger=challenger,
        baselines=baselines,
        champion=champion,
        cfg=cfg.registry,
        cpcv=cpcv,
        selection=_selection(selection),
    )
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    decision = Decision(
        promote=gate.promote,
        reason=gate.reason,
        challenger_version=challenger_version,
        champion_before=champion_version,
        metrics=gate.metrics,
    )
    row = apply_decision(store, Warehouse(cfg.warehouse_path), decision, actor=actor, run_id=run_id)
    get_run_logger().info(decision.summary())
    return {**row, "promote": gate.promote, "metrics": gate.metrics}


def _selection(values: dict | None) -> SelectionStats | None:
    """``SelectionStats`` back from its dict (horizon keys may arrive as strings)."""
    if values is None:
        return None
    dsr = {int(h): v for h, v in dict(values.get("dsr_by_horizon") or {}).items()}
    return SelectionStats(**{**values, "dsr_by_horizon": dsr})


# ---- the weekly decision (retrain): first / replace / refresh / keep / no new data ----


@task(name="load-champion", cache_policy=NONE)
def load_champion(cfg: CoincastConfig) -> tuple[str | None, CandlePipeline | None]:
    """The current champion's version and pipeline (None, None without one)."""
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    info = store.get_alias("champion") if store.exists() else None
    if info is None:
        return None, None
    repair_unfinished(store, Warehouse(cfg.warehouse_path))
    info = store.get_alias("champion")
    return info.version, store.load_pipeline(info.version)


@task(name="decide-week", cache_policy=NONE)
def decide_weekly(
    cfg: CoincastConfig,
    parts: SplitParts,
    results: list[CandidateResult],
    champion: CandlePipeline | None,
    selection: dict | None,
) -> WeeklyVerdict:
    """Replace, refresh, keep, or a first champion: the gate on in-memory candidates."""
    verdict = decide_week(
        parts, results, champion=champion, selection=_selection(selection), cfg=cfg
    )
    logger = get_run_logger()
    for s in verdict.skills:
        logger.info("skill %s", s.summary())
    logger.info("week: %s - %s", verdict.kind, verdict.gate.reason)
    return verdict


@task(name="register-served", cache_policy=NONE, retries=1, retry_delay_seconds=3)
def register_served(
    cfg: CoincastConfig,
    verdict: WeeklyVerdict,
    results: list[CandidateResult],
    baselines: pd.DataFrame,
    parts: SplitParts,
) -> dict | None:
    """Refit the decided candidate per ``registry.final_fit`` and register it (None: nothing)."""
    chosen = verdict.register
    if chosen is None:
        return None
    final_fit = cfg.registry.final_fit if verdict.gate.promote else "train"
    served = refit_for_serving(chosen.pipeline, parts, final_fit, cfg.models)
    if served is chosen.pipeline:
        served = copy.copy(served)
    edge = verdict.gate.edge_horizons
    served.edge_horizons = None if edge is None else [int(h) for h in edge]
    record = record_training(
        _tracking(cfg),
        results,
        chosen,
        model_name=cfg.model_name,
        input_example=_input_example(cfg, served.lookback_bars),
        params={
            "timeframe": cfg.data.timeframe,
            "horizons": cfg.horizons,
            "feature_set": served.feature_set,
            "candidates": cfg.models.candidates,
            "gap_bars": parts.gap_bars,
            "fee_bps": cfg.evaluation.fee_bps,
            "final_fit": final_fit,
            "split_mode": cfg.split.mode,
        },
        baselines=baselines,
        split_summary=parts.summary(),
        served=served,
        decision_tags={"coincast.week_kind": verdict.kind},
    )
    get_run_logger().info(
        "registered %s v%s (%s, served fit on %s)",
        cfg.model_name,
        record.registered.version,
        chosen.name,
        final_fit,
    )
    return {
        "version": record.registered.version,
        "run_id": record.parent_run_id,
        "candidate": chosen.name,
        "candidate_runs": record.candidate_runs,
        "final_fit": final_fit,
    }


@task(name="apply-week", cache_policy=NONE)
def apply_weekly(
    cfg: CoincastConfig,
    verdict: WeeklyVerdict,
    registered: dict | None,
    champion_version: str | None,
    actor: str = "retrain",
) -> dict:
    """Move the aliases per the week's verdict and audit it (a "keep" row when nothing moves)."""
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    warehouse = Warehouse(cfg.warehouse_path)
    metrics = {**verdict.gate.metrics, "kind": verdict.kind, "steps": verdict.steps}
    if registered is None:
        row = record_no_move(
            store, warehouse, reason=verdict.gate.reason, metrics=metrics, actor=actor
        )
        get_run_logger().info(row["decision"])
        return {**row, "promote": False, "kind": verdict.kind, "metrics": metrics}
    decision = Decision(
        promote=verdict.gate.promote,
        reason=verdict.gate.reason,
        challenger_version=registered["version"],
        champion_before=champion_version,
        metrics=metrics,
        kind=verdict.kind,
    )
    row = apply_decision(store, warehouse, decision, actor=actor, run_id=registered["run_id"])
    get_run_logger().info(decision.summary())
    return {**row, "promote": decision.promote, "kind": verdict.kind, "metrics": metrics}
