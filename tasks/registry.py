"""Tasks of the registry steps: register, re-score, decide and audit."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from ml_core.config import CoincastConfig
from ml_core.data.warehouse import Warehouse
from ml_core.evaluation.gate import SelectionStats, selection_overfitting
from ml_core.evaluation.weekly import WeeklyVerdict, decide_week
from ml_core.models.pipeline import CandlePipeline, refit_for_serving
from ml_core.models.training import CandidateResult, select_best
from ml_core.registry.candidates import record_training
from ml_core.registry.moves import serving_aliases
from ml_core.registry.promotion import (
    Decision,
    apply_decision,
    record_no_move,
)
from ml_core.registry.store import RegistryStore
from ml_core.registry.tracking import TrackingContext
from ml_core.reporting.model_card import model_card
from ml_core.validation.split import SplitParts
from tasks.retrying import transient_only


def _tracking(cfg: CoincastConfig) -> TrackingContext:
    return TrackingContext(cfg.tracking_uri, cfg.artifact_location, cfg.registry.experiment_name)


@task(
    name="register-challenger",
    cache_policy=NONE,
    retries=1,
    retry_condition_fn=transient_only,
    retry_delay_seconds=3,
)
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


# ---- the weekly decision (retrain): first / replace / refresh / keep / no new data ----


@task(name="load-champion", cache_policy=NONE)
def load_champion(cfg: CoincastConfig) -> tuple[str | None, CandlePipeline | None]:
    """The current champion's version and pipeline (None, None without one)."""
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    version = serving_aliases(store, Warehouse(cfg.warehouse_path)).get("champion")
    if version is None:
        return None, None
    return version, store.load_pipeline(version)


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


@task(
    name="register-served",
    cache_policy=NONE,
    retries=1,
    retry_condition_fn=transient_only,
    retry_delay_seconds=3,
)
def register_served(
    cfg: CoincastConfig,
    verdict: WeeklyVerdict,
    results: list[CandidateResult],
    baselines: pd.DataFrame,
    parts: SplitParts,
    selection: dict | None = None,
) -> dict | None:
    """Refit the decided candidate per ``registry.final_fit`` and register it (None: nothing).

    ``selection`` (this retrain's PBO / deflated Sharpe over its candidates) is kept on the
    version (tag ``coincast.selection``), so an on-demand promote of it applies the same
    rules as the weekly retrain that registered it."""
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
        decision_tags={
            "coincast.week_kind": verdict.kind,
            **({SELECTION_TAG: json.dumps(selection)} if selection is not None else {}),
        },
    )
    card = model_card(
        name=cfg.model_name,
        verdict=verdict,
        chosen=chosen,
        results=results,
        parts=parts,
        final_fit=final_fit,
        fee_bps=cfg.evaluation.fee_bps,
    )
    RegistryStore(cfg.tracking_uri, cfg.model_name).describe_version(
        record.registered.version, card
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
    metrics = {
        **verdict.gate.metrics,
        "kind": verdict.kind,
        "rule": verdict.gate.rule,
        "steps": verdict.steps,
    }
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


@task(name="decide-registered", cache_policy=NONE)
def decide_registered(
    cfg: CoincastConfig,
    parts: SplitParts,
    version: str,
    champion_version: str | None,
    champion: CandlePipeline | None,
) -> tuple[WeeklyVerdict, dict | None]:
    """The weekly rules applied to an already registered version (on-demand promote)."""
    from ml_core.evaluation.gate import GateResult
    from ml_core.models.training import evaluate_pipeline

    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    registered = {"version": str(version), "run_id": None}
    if champion_version is not None and str(version) == str(champion_version):
        gate = GateResult(False, f"v{version} is already the champion; nothing to decide.")
        return WeeklyVerdict(gate, None), None
    pipe = store.load_pipeline(version)
    if pipe.final_fit != "train":
        gate = GateResult(
            False,
            f"v{version} was refit on {pipe.final_fit} for serving, so this run's test window "
            "is inside its training data and its skill cannot be checked on demand; the weekly "
            "retrain judges its evaluated fit instead",
            {"final_fit": pipe.final_fit},
        )
        return WeeklyVerdict(gate, None), registered
    result = evaluate_pipeline(pipe, parts, cfg)
    tags = store.version_tags(version)
    selection = json.loads(tags[SELECTION_TAG]) if SELECTION_TAG in tags else None
    verdict = decide_week(
        parts, [result], champion=champion, selection=_selection(selection), cfg=cfg
    )
    if verdict.register is None:  # "no new data": nothing moves
        return verdict, None
    get_run_logger().info("v%s on demand: %s - %s", version, verdict.kind, verdict.gate.reason)
    return verdict, registered


#: Version tag holding the PBO / deflated-Sharpe stats of the retrain that registered it.
SELECTION_TAG = "coincast.selection"


def _selection(values: dict | None) -> SelectionStats | None:
    """``SelectionStats`` back from its dict (horizon keys may arrive as strings)."""
    if values is None:
        return None
    dsr = {int(h): v for h, v in dict(values.get("dsr_by_horizon") or {}).items()}
    return SelectionStats(**{**values, "dsr_by_horizon": dsr})
