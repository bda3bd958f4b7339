"""Tasks of the train step: baselines and candidates."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from ml_core.config import CoincastConfig
from ml_core.evaluation.baselines import score_baselines
from ml_core.models.training import CandidateResult, train_candidates
from ml_core.regime.hmm import RegimeModel, add_regime_features, fit_regimes
from ml_core.validation.split import SplitParts


@task(name="score-baselines", cache_policy=NONE)
def baseline_metrics(cfg: CoincastConfig, parts: SplitParts) -> pd.DataFrame:
    """Naive baselines (always-up, persistence, momentum sign) on the test part."""
    return score_baselines(
        parts.train, parts.test, cfg.horizons, cfg.evaluation, cfg.data.timeframe
    )


@task(name="fit-regimes", cache_policy=NONE)
def fit_regime_model(cfg: CoincastConfig, parts: SplitParts) -> RegimeModel | None:
    """HMM regimes fit on the training part only (None when disabled in config)."""
    if not cfg.regime.enabled:
        return None
    model = fit_regimes(parts.train, cfg.regime)
    logger = get_run_logger()
    logger.info("regimes: converged=%s, %s", model.converged_, model.convergence_)
    logger.info("transition matrix:\n%s", model.transition_matrix().round(4).to_string())
    logger.info("expected duration (bars): %s", model.persistence().round(1).to_dict())
    return model


@task(name="add-regime-features", cache_policy=NONE)
def with_regimes(parts: SplitParts, model: RegimeModel | None) -> SplitParts:
    """Forward-filtered regime probabilities on every part (causal: filter only)."""
    if model is None:
        return parts
    return replace(
        parts,
        train=add_regime_features(parts.train, model),
        val=add_regime_features(parts.val, model),
        test=add_regime_features(parts.test, model),
    )


@task(name="train-candidates", cache_policy=NONE)
def fit_candidates(
    cfg: CoincastConfig, parts: SplitParts, regime_model: RegimeModel | None = None
) -> list[CandidateResult]:
    """Fit every configured candidate and score it on validation and test."""
    results = train_candidates(parts, cfg, regime_model)
    logger = get_run_logger()
    for r in results:
        logger.info(
            "%s: val AUC %.4f, test AUC %.4f, fit %.1fs",
            r.name,
            r.val_auc,
            r.test_auc,
            r.fit_seconds,
        )
    return results


@task(name="triple-barrier-target", cache_policy=NONE)
def triple_barrier_target(
    cfg: CoincastConfig, parts: SplitParts, regime_model: RegimeModel | None = None
) -> list[tuple[str, str, pd.DataFrame]]:
    """SELL / HOLD / BUY classifier on the triple-barrier labels, scored on test.

    Returns report sections (empty when ``labels.triple_barrier.enabled`` is off).
    """
    from ml_core.features import FEATURE_COLUMNS
    from ml_core.models.multiclass import fit_triple_barrier
    from ml_core.models.pipeline import regime_columns
    from tasks.artifacts import publish_table

    tb = cfg.labels.triple_barrier
    if not tb.enabled:
        return []
    result = fit_triple_barrier(
        parts,
        horizons=cfg.horizons,
        feature_columns=list(FEATURE_COLUMNS) + regime_columns(regime_model),
        cfg=tb,
        seed=cfg.models.seed,
    )
    cols = ["model", "horizon", "n", "balanced_accuracy", "macro_f1", "accuracy", "log_loss"]
    cols += ["share_sell", "share_hold", "share_buy"]
    table = result.metrics[[c for c in cols if c in result.metrics.columns]]
    note = (
        f"3-class target tb_h (take-profit {tb.pt_mult} / stop-loss {tb.sl_mult} h-bar stds, "
        f"vertical barrier h; touches by {tb.touch}); {tb.model} fit on train, scored on test. "
        "HOLD dominates, so read balanced accuracy and macro F1 against the baselines."
    )
    publish_table(f"triple-barrier-{cfg.data.timeframe}", table, note)
    best = table[table["model"] == tb.model]
    get_run_logger().info(
        "triple barrier (%s): mean test balanced accuracy %.4f over %d horizons",
        tb.model,
        float(best["balanced_accuracy"].mean()) if not best.empty else float("nan"),
        len(best),
    )
    return [("Triple-barrier target: SELL / HOLD / BUY", note, table)]
