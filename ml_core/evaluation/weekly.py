"""The weekly decision: first champion, replace, refresh, keep or "no new data".

Every weekly retrain fits the configured candidates (the champion's own recipe
among them) on the newest data and ends in exactly one of:

* ``first`` - no champion yet: the best candidate on validation must show
  per-horizon skill over the best naive baseline on CPCV paths and on the test
  window (:mod:`ml_core.evaluation.skill`); only those horizons are served.
* ``replace`` - the best candidate is another recipe than the champion's: it
  must beat the champion on the same CPCV paths (paired block bootstrap) and
  pass the absolute rules (skill, PBO).
* ``refresh`` - the champion's recipe refit on newer data (the best candidate,
  or the fallback when a replace fails): promoted when it is non-inferior to
  the champion on the newest test rows neither was fitted on, and it passes
  the absolute rules on this week's data.
* ``no_new_data`` - the champion's recipe, but no candle after the champion's
  data end: nothing moves.
* ``latest`` - ``registry.policy: latest``: every new challenger is promoted.

Rejected weeks keep the champion (the decision says why). The result names the
candidate to register (``register``; None for "no new data").

Example::

    week = decide_week(parts, results, champion=pipe, selection=stats, cfg=cfg)
    week.kind, week.gate.promote, week.register.name
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml_core.config import CoincastConfig
from ml_core.errors import DataContractError
from ml_core.evaluation.gate import (
    CHALLENGER,
    CHAMPION,
    GateResult,
    SelectionStats,
    decide_first,
    decide_latest,
    decide_no_new_data,
    decide_refresh,
    decide_replace,
)
from ml_core.evaluation.skill import (
    HorizonSkill,
    assess_skill,
    baseline_recipes,
    compare_on_window,
)
from ml_core.models.pipeline import CandlePipeline, recipe_key, refit_recipe
from ml_core.models.training import CandidateResult, evaluate_pipeline, select_best
from ml_core.validation.cpcv_eval import CPCVEvaluation, evaluate_on_cpcv
from ml_core.validation.split import SplitParts

log = logging.getLogger(__name__)


@dataclass
class WeeklyVerdict:
    """What this week's retrain decided, and which candidate (if any) to register."""

    gate: GateResult
    register: CandidateResult | None
    cpcv: CPCVEvaluation | None = None
    skills: list[HorizonSkill] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """first | replace | refresh | keep | no_new_data | latest."""
        if self.gate.kind in ("no_new_data", "latest") or self.gate.promote:
            return self.gate.kind
        return "keep" if self.gate.kind != "first" else "first"


def decide_week(
    parts: SplitParts,
    results: Sequence[CandidateResult],
    *,
    champion: CandlePipeline | None,
    selection: SelectionStats | None,
    cfg: CoincastConfig,
) -> WeeklyVerdict:
    """Decide this week's retrain from the fitted candidates and the current champion; the
    challenger's after-fee test returns are added to the decision's numbers, and with
    ``registry.gate.require_after_fee_edge`` a money-losing challenger is refused."""
    verdict = _decide(parts, results, champion=champion, selection=selection, cfg=cfg)
    return after_fee_rule(verdict, cfg)


def after_fee_rule(verdict: WeeklyVerdict, cfg: CoincastConfig) -> WeeklyVerdict:
    """``verdict`` with the registered candidate's after-fee test return per served horizon
    (and buy-and-hold on the same blocks) in its metrics (every horizon when none is
    served: for the record); refused when the rule is on, the policy is coincast and the
    mean over the served horizons is not above zero."""
    result = verdict.register
    if result is None or result.test_metrics.empty or "total_return" not in result.test_metrics:
        return verdict
    gate = verdict.gate
    metrics = result.test_metrics.set_index("horizon")
    served = [h for h in (gate.edge_horizons or metrics.index) if h in metrics.index]
    if not served:
        return verdict
    numbers: dict[str, Any] = {"after_fee_fee_bps": cfg.evaluation.fee_bps}
    for h in served:
        numbers[f"after_fee_return_h{h}"] = float(metrics.loc[h, "total_return"])
        numbers[f"after_fee_bh_return_h{h}"] = float(metrics.loc[h, "bh_total_return"])
    returns = [numbers[f"after_fee_return_h{h}"] for h in served]
    mean = float(np.nanmean(returns)) if np.isfinite(returns).any() else float("nan")
    numbers["after_fee_return_mean"] = mean
    gate.metrics.update(numbers)
    refuse = (
        cfg.registry.gate.require_after_fee_edge
        and cfg.registry.policy == "coincast"
        and gate.promote
        and not mean > 0
    )
    if not refuse:
        return verdict
    each = ", ".join(
        f"h={h} {numbers[f'after_fee_return_h{h}']:+.1%} "
        f"(buy-and-hold {numbers[f'after_fee_bh_return_h{h}']:+.1%})"
        for h in served
    )
    verdict.gate = GateResult(
        False,
        f"after fees ({cfg.evaluation.fee_bps:g} bps) the served horizons lose money on the "
        f"test window: mean {mean:+.1%} over {len(served)} horizon(s): {each}; "
        f"registry.gate.require_after_fee_edge refuses it (the gate had said: {gate.reason})",
        gate.metrics,
        "after_fee_edge",
        gate.kind,
        gate.edge_horizons,
    )
    return verdict


def after_fee_text(metrics: dict[str, Any]) -> str | None:
    """``after fees (4 bps, test window): h=12 -20.5% (buy-and-hold -38.1%)`` from a
    decision's metrics (``after_fee_rule``); None when it has none."""
    found = sorted(
        (int(k.removeprefix("after_fee_return_h")), float(v))
        for k, v in metrics.items()
        if k.startswith("after_fee_return_h")
    )
    if not found:
        return None
    each = ", ".join(
        f"h={h} {v:+.1%} (buy-and-hold "
        f"{float(metrics.get(f'after_fee_bh_return_h{h}', np.nan)):+.1%})"
        for h, v in found
    )
    return f"after fees ({float(metrics.get('after_fee_fee_bps', 0)):g} bps, test window): {each}"


def _decide(
    parts: SplitParts,
    results: Sequence[CandidateResult],
    *,
    champion: CandlePipeline | None,
    selection: SelectionStats | None,
    cfg: CoincastConfig,
) -> WeeklyVerdict:
    best = select_best(list(results))
    horizons = list(cfg.horizons)
    if cfg.registry.policy == "latest":
        skills = _skills(parts, best, cfg, None)
        return WeeklyVerdict(decide_latest(skills), best, None, skills, ["latest"])
    if champion is None:
        cpcv = _cpcv(parts, {CHALLENGER: best.pipeline}, cfg)
        skills = _skills(parts, best, cfg, cpcv)
        return WeeklyVerdict(decide_first(skills, selection, cfg.registry), best, cpcv, skills)
    own = recipe_key(champion) if not champion.recipe_key else champion.recipe_key
    refresh = next((r for r in results if r.pipeline.recipe_key == own), None)
    if refresh is None:  # e.g. tuned params changed the candidates: refit the champion's recipe
        refresh = _refit_champion(parts, champion, best, cfg)
    steps: list[str] = []
    if refresh is not best:
        cpcv = _cpcv(parts, {CHALLENGER: best.pipeline, CHAMPION: champion}, cfg)
        skills = _skills(parts, best, cfg, cpcv)
        replace = decide_replace(cpcv, skills, selection, cfg.registry)
        steps.append(replace.reason)
        if replace.promote or refresh is None:
            if refresh is None and not replace.promote:
                replace = _with_note(
                    replace,
                    f"; the champion's recipe ({champion.candidate}) is not among this "
                    "retrain's candidates, so it cannot be refreshed",
                )
            return WeeklyVerdict(replace, best, cpcv, skills, steps)
        # CPCV refits recipes: the champion's configuration there is the refresh's recipe
        verdict = _refresh(parts, refresh, champion, selection, cfg, horizons, cpcv, CHAMPION)
    else:
        verdict = _refresh(parts, refresh, champion, selection, cfg, horizons)
    if steps:  # a replace was tried first: say so
        verdict.gate = _with_note(verdict.gate, f" (tried first: {steps[0]})")
        verdict.steps = steps + verdict.steps
        if verdict.register is None:  # no new data for the refresh: keep the replace's record
            verdict.register = best
    return verdict


def _refresh(
    parts: SplitParts,
    refresh: CandidateResult,
    champion: CandlePipeline,
    selection: SelectionStats | None,
    cfg: CoincastConfig,
    horizons: list[int],
    cpcv: CPCVEvaluation | None = None,
    config: str = CHALLENGER,
) -> WeeklyVerdict:
    data_end = max(p["ts"].max() for p in (parts.train, parts.val, parts.test) if not p.empty)
    if champion.data_end_ts is not None and data_end <= champion.data_end_ts:
        gate = decide_no_new_data(champion.data_end_ts, data_end)
        return WeeklyVerdict(gate, None, None, [], ["no new data"])
    window, note = unseen_window(parts.test, champion)
    comparison = None
    if not window.empty:
        try:
            comparison = compare_on_window(
                window,
                refresh.pipeline.predict_features(window),
                champion.predict_features(window),
                horizons=horizons,
                gate=cfg.registry.gate,
            )
        except DataContractError as exc:
            note += f": too few to compare ({exc})"
    if cpcv is None:
        cpcv = _cpcv(parts, {CHALLENGER: refresh.pipeline}, cfg)
    skills = _skills(parts, refresh, cfg, cpcv, config)
    gate = decide_refresh(comparison, skills, selection, cfg.registry, window_note=note)
    return WeeklyVerdict(gate, refresh, cpcv, skills, [gate.reason])


def _refit_champion(
    parts: SplitParts, champion: CandlePipeline, best: CandidateResult, cfg: CoincastConfig
) -> CandidateResult | None:
    """The champion's recipe refit on this week's split (None when it cannot be refit)."""
    try:
        pipe = refit_recipe(champion, parts, cfg.models, best.pipeline.regime_model)
    except (DataContractError, KeyError, ValueError) as exc:
        log.warning("the champion's recipe (%s) could not be refit: %s", champion.candidate, exc)
        return None
    if pipe.feature_columns == best.pipeline.feature_columns:  # same rows, same scaling
        pipe.return_models = dict(best.pipeline.return_models)
    log.info("refit the champion's recipe (%s) beside the candidates", champion.candidate)
    return evaluate_pipeline(pipe, parts, cfg)


def unseen_window(test: pd.DataFrame, champion: CandlePipeline) -> tuple[pd.DataFrame, str]:
    """Test rows after the champion's last fitted label end: neither model was fitted on them."""
    end = champion.fit_label_end_ts
    window = test if end is None else test[test["ts"] > end]
    start = window["ts"].min() if not window.empty else None
    note = (
        f"{len(window)} unseen test rows from {start}"
        if start is not None
        else (f"no test rows after the champion's fitted data (ends {end})")
    )
    return window.reset_index(drop=True), note


def _cpcv(parts: SplitParts, pipelines: dict[str, Any], cfg: CoincastConfig) -> CPCVEvaluation:
    gate = cfg.registry.gate
    horizons = [h for h in cfg.horizons if h in (gate.cpcv_horizons or cfg.horizons)]
    if not horizons:
        from ml_core.errors import ConfigError

        raise ConfigError(
            f"registry.gate.cpcv_horizons={gate.cpcv_horizons} holds none of the label horizons "
            f"{cfg.horizons}; pick some of them, or None for all."
        )
    configs = {
        **pipelines,
        **(baseline_recipes(horizons) if cfg.registry.require_beat_baselines else {}),
    }
    dev = pd.concat([parts.train, parts.val], ignore_index=True)
    return evaluate_on_cpcv(
        dev,
        configs,
        horizons=horizons,
        n_groups=gate.cpcv_groups,
        n_test_groups=gate.cpcv_test_groups,
        embargo=cpcv_embargo_bars(dev, cfg),
        max_train_rows=gate.cpcv_max_train_rows,
        blocks_per_group=gate.cpcv_blocks_per_group,
        inner_val_frac=gate.cpcv_inner_val_frac,
    )


def cpcv_embargo_bars(dev: pd.DataFrame, cfg: CoincastConfig) -> int:
    """Bars embargoed after each CPCV test group: at least the longest feature window.

    CPCV trains on rows *after* a test group too. A training row whose features
    look back into the test group carries the test labels' returns in its
    inputs; the fitted model then tracks the test period's own noise and its
    CPCV score is biased upwards (on random walks, 8 of 15 horizon scores came
    out "significant" with a 1% embargo). So the embargo is the larger of
    ``gate.cpcv_embargo`` (share of the span) and the feature lookback (plus the
    regime volatility window when regimes are on).
    """
    from ml_core.features import LOOKBACK_BARS

    lookback = int(LOOKBACK_BARS) + (cfg.regime.vol_window if cfg.regime.enabled else 0)
    n_bars = int(dev["ts"].nunique())
    return max(lookback, int(np.ceil(cfg.registry.gate.cpcv_embargo * n_bars)))


def _skills(
    parts: SplitParts,
    result: CandidateResult,
    cfg: CoincastConfig,
    cpcv: CPCVEvaluation | None,
    config: str = CHALLENGER,
) -> list[HorizonSkill]:
    if not cfg.registry.require_beat_baselines:
        cpcv = None  # no baselines were refit: the skill rule is skipped
    return assess_skill(
        parts.test,
        result.test_probs,
        train=parts.train,
        horizons=cfg.horizons,
        gate=cfg.registry.gate,
        min_margin=cfg.registry.min_baseline_margin,
        cpcv=cpcv,
        config=config,
    )


def _with_note(gate: GateResult, note: str) -> GateResult:
    return GateResult(
        gate.promote, gate.reason + note, gate.metrics, gate.rule, gate.kind, gate.edge_horizons
    )
