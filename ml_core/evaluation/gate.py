"""The promotion gate: the numbers that decide whether a challenger becomes champion.

Gate v1 (all on the same test window, mean AUC over horizons):

1. The challenger must beat the best naive baseline by ``min_baseline_margin``.
2. If a champion exists, it is re-scored on the same window and the challenger
   must beat it by ``min_improvement``.

Gate v2 (``registry.gate.gate_version = 2``, the default) keeps rule 1 and
reports rule 2's same-window numbers, and decides on distributions instead:

3. **PBO**: the probability of backtest overfitting of this retrain's
   selection among its candidate configurations (CSCV over per-period AUCs,
   :func:`selection_overfitting`) must be below ``pbo_threshold``.
4. **CPCV paired bootstrap**: challenger and champion configurations are
   refit on the same CPCV splits (``ml_core.validation.cpcv_eval``); over the
   same time blocks the challenger's mean AUC gain must have a lower bound
   above 0 at ``confidence`` and a mean of at least ``min_improvement``.
   Without a champion the challenger's CPCV distribution against 0.5 (a coin
   flip) is reported, not enforced.

The gate is pure: it returns a ``GateResult``; the registry applies and audits it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import kurtosis, skew

from ml_core.config import EvaluationConfig, GateConfig, RegistryConfig
from ml_core.errors import CoincastError, ConfigError
from ml_core.evaluation.baselines import BASELINE_NAMES, fit_baselines
from ml_core.evaluation.paired import PairedBootstrap, paired_bootstrap
from ml_core.evaluation.skill import HorizonSkill
from ml_core.validation.cpcv import time_blocks, to_ns
from ml_core.validation.cpcv_eval import CPCVEvaluation, auc_score
from ml_core.validation.pbo import deflated_sharpe_ratio, probability_of_backtest_overfitting

if TYPE_CHECKING:
    from ml_core.models.training import CandidateResult
    from ml_core.validation.split import SplitParts

CHALLENGER = "challenger"
CHAMPION = "champion"


@dataclass(frozen=True)
class GateResult:
    """The decision and every number it was based on."""

    promote: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)
    rule: str = (
        ""  # the rule that decided: undefined, baseline, first_champion, champion, pbo, cpcv
    )
    #: first | replace | refresh | no_new_data | latest (the weekly retrain's kinds)
    kind: str = ""
    #: horizons served (skill shown); None = not assessed (all horizons served)
    edge_horizons: tuple[int, ...] | None = None


@dataclass(frozen=True)
class SelectionStats:
    """How much the choice among this retrain's configurations may be overfit.

    ``pbo`` is None when fewer than two configurations were tried (no choice
    was made) or the validation + test window is too short for CSCV.
    """

    n_trials: int
    n_configs: int
    pbo: float | None
    n_periods: int
    n_partitions: int
    prob_oos_loss: float | None
    dsr: float | None
    dsr_by_horizon: dict[int, float | None]
    note: str = ""

    def as_metrics(self) -> dict[str, Any]:
        """Flat numbers for a decision record."""
        return {
            "pbo": self.pbo,
            "pbo_n_trials": self.n_trials,
            "pbo_n_configs": self.n_configs,
            "pbo_n_periods": self.n_periods,
            "pbo_n_partitions": self.n_partitions,
            "pbo_prob_oos_loss": self.prob_oos_loss,
            "dsr": self.dsr,
            **{f"dsr_h{h}": v for h, v in self.dsr_by_horizon.items()},
            "pbo_note": self.note,
        }


def decide_promotion(
    *,
    challenger: pd.DataFrame,
    baselines: pd.DataFrame,
    champion: pd.DataFrame | None,
    cfg: RegistryConfig,
    cpcv: CPCVEvaluation | None = None,
    selection: SelectionStats | None = None,
) -> GateResult:
    """Apply the configured gate (v1 or v2) to per-horizon test metrics.

    ``challenger`` and ``champion`` have one row per horizon with an ``auc``
    column; ``baselines`` has columns ``baseline``, ``horizon``, ``auc``.
    Gate v2 also needs ``cpcv`` (configurations ``"challenger"`` and, with a
    champion, ``"champion"``) and uses ``selection`` for the PBO rule.
    """
    v1 = _decide_v1(challenger=challenger, baselines=baselines, champion=champion, cfg=cfg)
    if cfg.gate.gate_version == 1:
        return v1
    if cpcv is None:
        raise ConfigError(
            "gate_version=2 needs the CPCV comparison (cpcv=evaluate_on_cpcv(...)); pass it, "
            "or set registry.gate.gate_version=1."
        )
    if champion is not None and CHAMPION not in cpcv.configs:
        raise ConfigError(
            f"the CPCV comparison holds {list(cpcv.configs)} but a champion exists; evaluate "
            f"both configurations ({CHALLENGER!r} and {CHAMPION!r}) on the same splits."
        )
    return _decide_v2(v1, champion is not None, cpcv, selection, cfg)


def _decide_v2(
    v1: GateResult,
    has_champion: bool,
    cpcv: CPCVEvaluation,
    selection: SelectionStats | None,
    cfg: RegistryConfig,
) -> GateResult:
    gate = cfg.gate
    numbers = {**v1.metrics, "gate_version": 2, "confidence": gate.confidence}
    numbers.update(_cpcv_numbers(cpcv, has_champion))
    numbers.update(compare_on_cpcv(cpcv, gate))
    numbers.update(selection.as_metrics() if selection is not None else {"pbo": None})
    rules: dict[str, str] = {}
    numbers["rules"] = rules
    if v1.rule in ("undefined", "baseline"):
        rules[v1.rule] = "failed"
        return GateResult(False, v1.reason, numbers, v1.rule)
    rules["baseline"] = "passed" if numbers["baseline_rule"] == "enforced" else "skipped"
    pbo = None if selection is None else selection.pbo
    if pbo is not None and pbo >= gate.pbo_threshold:
        rules["pbo"] = "failed"
        n_configs = selection.n_configs if selection is not None else 0
        return GateResult(
            False,
            f"PBO {pbo:.3f} of choosing among {n_configs} configurations is not below the "
            f"threshold {gate.pbo_threshold:.3f}: the selection is likely overfit",
            numbers,
            "pbo",
        )
    rules["pbo"] = "passed" if pbo is not None else "not applicable"
    pbo_text = f"PBO {pbo:.3f} < {gate.pbo_threshold:.3f}" if pbo is not None else "PBO n/a"
    if not has_champion:
        rules["cpcv"] = "reported"
        return GateResult(
            True,
            f"{v1.reason}; CPCV: mean path AUC {numbers['cpcv_challenger_path_auc_mean']:.4f} "
            f"over {cpcv.n_paths} paths, vs 0.5 {numbers['cpcv_vs_coin_mean_diff']:+.4f} "
            f"(lower {gate.confidence:.0%} bound {numbers['cpcv_vs_coin_ci_low']:+.4f}); "
            f"{pbo_text}",
            numbers,
            "first_champion",
        )
    diff, low, p = (numbers[f"cpcv_{k}"] for k in ("mean_diff", "ci_low", "p_value"))
    head = (
        f"CPCV paired bootstrap over {numbers['cpcv_n_units']} time blocks: AUC gain "
        f"{diff:+.4f}, lower {gate.confidence:.0%} bound {low:+.4f}, p={p:.3f}"
    )
    same = f"; same-window test AUC gain {numbers.get('improvement', math.nan):+.4f}"
    if numbers["cpcv_same_configuration"]:
        same += " (same configuration as the champion: CPCV compares recipes, so only data "
        same += "and regime features differ)"
    if low > 0 and diff >= cfg.min_improvement:
        rules["cpcv"] = "passed"
        return GateResult(
            True,
            f"challenger beats the champion: {head} (> 0, gain >= {cfg.min_improvement:.4f}); "
            f"{pbo_text}{same}",
            numbers,
            "cpcv",
        )
    rules["cpcv"] = "failed"
    why = (
        "lower bound is not above 0"
        if low <= 0
        else (f"gain is below the margin {cfg.min_improvement:.4f}")
    )
    return GateResult(
        False, f"challenger does not beat the champion: {head}; {why}{same}", numbers, "cpcv"
    )


def _cpcv_numbers(cpcv: CPCVEvaluation, has_champion: bool) -> dict[str, Any]:
    gate_numbers: dict[str, Any] = {
        "cpcv_groups": cpcv.n_groups,
        "cpcv_test_groups": cpcv.n_test_groups,
        "cpcv_paths": cpcv.n_paths,
        "cpcv_horizons": list(cpcv.horizons),
    }
    if has_champion:
        gate_numbers["cpcv_same_configuration"] = cpcv.same_configuration(CHALLENGER, CHAMPION)
    for name in (CHALLENGER, CHAMPION) if has_champion else (CHALLENGER,):
        gate_numbers.update({f"cpcv_{name}_{k}": v for k, v in cpcv.summary(name).items()})
    return gate_numbers


def compare_on_cpcv(cpcv: CPCVEvaluation, gate: GateConfig) -> dict[str, Any]:
    """Paired bootstrap numbers: challenger vs champion (or vs 0.5 without a champion)."""
    chal = cpcv.block_auc(CHALLENGER)
    kw = {"confidence": gate.confidence, "n_boot": gate.n_boot, "seed": gate.seed}
    out = paired_bootstrap(chal.to_numpy(), 0.5, **kw).as_metrics("cpcv_vs_coin_")
    if CHAMPION in cpcv.configs:
        champ = cpcv.block_auc(CHAMPION).reindex(chal.index)
        out.update(paired_bootstrap(chal.to_numpy(), champ.to_numpy(), **kw).as_metrics("cpcv_"))
    return out


def selection_overfitting(
    parts: SplitParts,
    results: Sequence[CandidateResult],
    *,
    chosen: str,
    horizons: Sequence[int],
    gate: GateConfig,
    eval_cfg: EvaluationConfig,
    timeframe: str,
    n_trials_extra: int = 0,
    include_baselines: bool = True,
) -> SelectionStats:
    """PBO of choosing among ``results`` and the deflated Sharpe of the chosen one.

    PBO: a (time period x configuration) matrix of mean AUC over horizons on
    the validation + test rows (``gate.pbo_periods`` equal time periods), by
    CSCV with ``gate.pbo_partitions``. The naive baselines are configurations
    too (``include_baselines``): with only two similar candidates CSCV is
    degenerate (the in-sample winner of two equals is the out-of-sample loser
    by construction, PBO near 1); against the baselines PBO asks whether the
    chosen one's edge over the alternatives holds out of sample. DSR: the chosen candidate's per-period
    test trading returns (after fees) per horizon, deflated for
    ``len(results) + n_trials_extra`` trials; ``dsr`` is the median over horizons.
    """
    n_trials = len(results) + int(n_trials_extra)
    by_name = {r.name: r for r in results}
    if chosen not in by_name:
        raise CoincastError(f"chosen candidate {chosen!r} is not among {sorted(by_name)}.")
    dsr = _deflated_sharpes(parts.test, by_name[chosen], horizons, n_trials, eval_cfg, timeframe)
    finite = [v for v in dsr.values() if v is not None]
    common = {
        "n_trials": n_trials,
        "n_configs": len(results),
        "dsr": float(np.median(finite)) if finite else None,
        "dsr_by_horizon": dsr,
    }
    n_configs = len(results) + (len(BASELINE_NAMES) if include_baselines else 0)
    common["n_configs"] = n_configs
    if n_configs < 2:
        note = "one configuration: no selection to overfit"
        return SelectionStats(
            pbo=None, n_periods=0, n_partitions=0, prob_oos_loss=None, note=note, **common
        )
    perf = _period_auc_matrix(parts, results, horizons, gate.pbo_periods, include_baselines)
    n_partitions = min(gate.pbo_partitions, (len(perf) // 2) // 2 * 2)
    if n_partitions < 2:
        return SelectionStats(
            pbo=None,
            n_periods=len(perf),
            n_partitions=0,
            prob_oos_loss=None,
            note=f"only {len(perf)} periods with both classes: too few for CSCV",
            **common,
        )
    res = probability_of_backtest_overfitting(perf, n_partitions=n_partitions, metric="mean")
    return SelectionStats(
        pbo=res.pbo,
        n_periods=len(perf),
        n_partitions=n_partitions,
        prob_oos_loss=None,  # AUC has no sign of loss; see pbo for the rank-based view
        note=f"CSCV over mean AUC per period: {len(results)} candidates"
        + (f" + {len(BASELINE_NAMES)} naive baselines" if include_baselines else ""),
        **common,
    )


def _period_auc_matrix(
    parts: SplitParts,
    results: Sequence[CandidateResult],
    horizons: Sequence[int],
    n: int,
    include_baselines: bool,
) -> np.ndarray:
    """Rows: time periods of val + test; columns: configurations; mean AUC over horizons."""
    frame = pd.concat([parts.val, parts.test], ignore_index=True)
    ts_ns = to_ns(frame["ts"].to_numpy(), "ts")
    n_periods = max(1, min(n, len(np.unique(ts_ns))))
    period = time_blocks(ts_ns, ts_ns, n_periods).block
    probs: list[dict[int, np.ndarray]] = []
    for r in results:
        val_probs = r.pipeline.predict_features(parts.val)
        probs.append({h: np.concatenate([val_probs[h], r.test_probs[h]]) for h in horizons})
    if include_baselines:
        fitted = {h: fit_baselines(parts.train, h) for h in horizons}
        for name in BASELINE_NAMES:
            probs.append({h: fitted[h][name].predict_proba(frame) for h in horizons})
    columns = []
    for config in probs:
        per_h = []
        for h in horizons:
            y, p = frame[f"up_{h}"].to_numpy(dtype=float), config[h]
            per_h.append([auc_score(y[period == k], p[period == k]) for k in range(n_periods)])
        columns.append(np.nanmean(np.array(per_h, dtype=float), axis=0))
    perf = np.column_stack(columns)
    return perf[np.isfinite(perf).all(axis=1)]


def _deflated_sharpes(
    test: pd.DataFrame,
    result: CandidateResult,
    horizons: Sequence[int],
    n_trials: int,
    eval_cfg: EvaluationConfig,
    timeframe: str,
) -> dict[int, float | None]:
    from ml_core.evaluation.trading import equity_curve

    out: dict[int, float | None] = {}
    for h in horizons:
        eq = equity_curve(
            test, result.test_probs[h], horizon=h, cfg=eval_cfg, timeframe=timeframe
        ).to_numpy(dtype=float)
        r = eq[1:] / eq[:-1] - 1.0 if eq.size > 1 else np.empty(0)
        std = r.std(ddof=1) if r.size > 2 else 0.0
        if std <= 0:
            out[h] = None
            continue
        try:
            out[h] = deflated_sharpe_ratio(
                float(r.mean() / std),
                n_trials=max(1, n_trials),
                n_obs=int(r.size),
                skew=float(skew(r)),
                kurtosis=float(kurtosis(r, fisher=False)),
            )
        except ConfigError:
            out[h] = None
    return out


def _decide_v1(
    *,
    challenger: pd.DataFrame,
    baselines: pd.DataFrame,
    champion: pd.DataFrame | None,
    cfg: RegistryConfig,
) -> GateResult:
    metric = cfg.primary_metric
    chal = _mean(challenger, metric)
    per_baseline = baselines.groupby("baseline")[metric].mean()
    best_name = str(per_baseline.idxmax()) if not per_baseline.dropna().empty else "none"
    best_base = float(per_baseline.max()) if not per_baseline.dropna().empty else 0.5
    numbers: dict[str, Any] = {
        f"challenger_{metric}": chal,
        f"best_baseline_{metric}": best_base,
        "best_baseline": best_name,
        "min_baseline_margin": cfg.min_baseline_margin,
        "min_improvement": cfg.min_improvement,
        f"champion_{metric}": None,
    }
    if not np.isfinite(chal):
        return GateResult(
            False,
            f"challenger {metric} is undefined (single-class test labels)",
            numbers,
            "undefined",
        )
    numbers["baseline_rule"] = "enforced" if cfg.require_beat_baselines else "skipped"
    if cfg.require_beat_baselines and chal <= best_base + cfg.min_baseline_margin:
        return GateResult(
            False,
            f"challenger mean test {metric.upper()} {chal:.4f} does not beat the best naive "
            f"baseline ({best_name}, {best_base:.4f}) by the margin {cfg.min_baseline_margin:.4f}",
            numbers,
            "baseline",
        )
    if champion is None:
        return GateResult(
            True,
            f"first champion: mean test {metric.upper()} {chal:.4f} "
            + (
                f"beats the best naive baseline ({best_name}, {best_base:.4f})"
                if cfg.require_beat_baselines and chal > best_base
                else f"(baseline rule {numbers['baseline_rule']}; best baseline {best_name} "
                f"{best_base:.4f})"
            ),
            numbers,
            "first_champion",
        )
    champ = _mean(champion, metric)
    numbers[f"champion_{metric}"] = champ
    numbers["improvement"] = chal - champ
    if chal >= champ + cfg.min_improvement:
        return GateResult(
            True,
            f"challenger mean test {metric.upper()} {chal:.4f} beats the champion re-scored on "
            f"the same window ({champ:.4f}) by {chal - champ:+.4f} >= {cfg.min_improvement:.4f}",
            numbers,
            "champion",
        )
    return GateResult(
        False,
        f"challenger mean test {metric.upper()} {chal:.4f} vs champion {champ:.4f} on the same "
        f"window: improvement {chal - champ:+.4f} is below the margin {cfg.min_improvement:.4f}",
        numbers,
        "champion",
    )


def _mean(frame: pd.DataFrame, metric: str) -> float:
    values = frame[metric].to_numpy(dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


# ---- the weekly retrain: first champion, replace, refresh (ml_core.evaluation.weekly) ----


def absolute_rules(
    skills: Sequence[HorizonSkill], selection: SelectionStats | None, cfg: RegistryConfig
) -> tuple[str | None, dict[str, Any], tuple[int, ...] | None]:
    """The rules every promoted model passes: per-horizon skill and PBO.

    Returns ``(failure reason or None, numbers, edge horizons)``; edge horizons
    are None when the skill rule is switched off (``require_beat_baselines``).
    """
    numbers: dict[str, Any] = {"confidence": cfg.gate.confidence}
    for s in skills:
        numbers.update(s.as_metrics())
    numbers.update(selection.as_metrics() if selection is not None else {"pbo": None})
    rules: dict[str, str] = {}
    numbers["rules"] = rules
    edge: tuple[int, ...] | None = None
    if cfg.require_beat_baselines:
        edge = tuple(s.horizon for s in skills if s.has_skill)
        numbers["edge_horizons"] = list(edge)
        numbers["skill_confidence_per_horizon"] = skills[0].confidence if skills else None
        if not edge:
            rules["skill"] = "failed"
            detail = "; ".join(s.summary() for s in skills)
            return f"no horizon shows skill over the best naive baseline ({detail})", numbers, edge
        rules["skill"] = "passed"
    else:
        rules["skill"] = "skipped"
        numbers["edge_horizons"] = None
    pbo = None if selection is None else selection.pbo
    if pbo is not None and pbo >= cfg.gate.pbo_threshold:
        rules["pbo"] = "failed"
        return (
            f"PBO {pbo:.3f} is not below the threshold {cfg.gate.pbo_threshold:.3f}: the "
            "selection among the candidates is likely overfit",
            numbers,
            edge,
        )
    rules["pbo"] = "passed" if pbo is not None else "not applicable"
    return None, numbers, edge


def edge_text(skills: Sequence[HorizonSkill], edge: tuple[int, ...] | None) -> str:
    """``skill at h=1, 4 (h=12, 24: no edge)`` or ``skill rule skipped``."""
    if edge is None:
        return "skill rule skipped (require_beat_baselines=false): every horizon served"
    none = [s.horizon for s in skills if s.horizon not in edge]
    served = ", ".join(f"h={h}" for h in edge)
    return f"skill at {served}" + (
        f" ({', '.join(f'h={h}' for h in none)}: no edge)" if none else ""
    )


def decide_first(
    skills: Sequence[HorizonSkill], selection: SelectionStats | None, cfg: RegistryConfig
) -> GateResult:
    """No champion yet: promote only with per-horizon skill over the naive baselines."""
    failed, numbers, edge = absolute_rules(skills, selection, cfg)
    if failed:
        return GateResult(False, f"no first champion: {failed}", numbers, "skill", "first", edge)
    lines = "; ".join(s.summary() for s in skills if edge is None or s.horizon in edge)
    return GateResult(
        True,
        f"first champion: {edge_text(skills, edge)} ({lines})",
        numbers,
        "skill",
        "first",
        edge,
    )


def decide_replace(
    cpcv: CPCVEvaluation,
    skills: Sequence[HorizonSkill],
    selection: SelectionStats | None,
    cfg: RegistryConfig,
) -> GateResult:
    """Another recipe than the champion's: superior on the CPCV paths, and the absolute rules."""
    numbers: dict[str, Any] = {"gate_version": 2}
    numbers.update(_cpcv_numbers(cpcv, True))
    numbers.update(compare_on_cpcv(cpcv, cfg.gate))
    failed, absolute, edge = absolute_rules(skills, selection, cfg)
    numbers.update(absolute)
    diff, low, p = (numbers[f"cpcv_{k}"] for k in ("mean_diff", "ci_low", "p_value"))
    head = (
        f"CPCV paired bootstrap over {numbers['cpcv_n_units']} time blocks vs the champion: "
        f"AUC gain {diff:+.4f}, lower {cfg.gate.confidence:.0%} bound {low:+.4f}, p={p:.3f}"
    )
    if failed:
        return GateResult(False, f"no replace: {failed}; {head}", numbers, "skill", "replace", edge)
    if low > 0 and diff >= cfg.min_improvement:
        numbers["rules"]["cpcv"] = "passed"
        return GateResult(
            True,
            f"replace: {head} (> 0, gain >= {cfg.min_improvement:.4f}); {edge_text(skills, edge)}",
            numbers,
            "cpcv",
            "replace",
            edge,
        )
    numbers["rules"]["cpcv"] = "failed"
    why = "lower bound is not above 0" if low <= 0 else f"gain below {cfg.min_improvement:.4f}"
    return GateResult(False, f"no replace: {head}; {why}", numbers, "cpcv", "replace", edge)


def decide_refresh(
    comparison: PairedBootstrap | None,
    skills: Sequence[HorizonSkill],
    selection: SelectionStats | None,
    cfg: RegistryConfig,
    *,
    window_note: str,
) -> GateResult:
    """The champion's recipe on newer data: non-inferior on the newest unseen window."""
    margin = cfg.gate.refresh_margin
    failed, numbers, edge = absolute_rules(skills, selection, cfg)
    numbers["refresh_margin"] = margin
    numbers["refresh_window"] = window_note
    if comparison is not None:
        numbers.update(comparison.as_metrics("refresh_"))
    if comparison is None:
        return GateResult(False, f"no refresh: {window_note}", numbers, "refresh", "refresh", edge)
    head = (
        f"refresh - champion on {window_note}: AUC {comparison.mean_diff:+.4f}, lower "
        f"{cfg.gate.confidence:.0%} bound {comparison.ci_low:+.4f} over {comparison.n_units} blocks"
    )
    if failed:
        return GateResult(False, f"no refresh: {failed}; {head}", numbers, "skill", "refresh", edge)
    if comparison.ci_low > -margin:
        numbers["rules"]["refresh"] = "passed"
        return GateResult(
            True,
            f"refresh: {head} > -{margin:.4f} (non-inferior); {edge_text(skills, edge)}",
            numbers,
            "refresh",
            "refresh",
            edge,
        )
    numbers["rules"]["refresh"] = "failed"
    return GateResult(
        False,
        f"no refresh: {head} is not above -{margin:.4f}: the refit is worse than the champion",
        numbers,
        "refresh",
        "refresh",
        edge,
    )


def decide_no_new_data(champion_end: Any, data_end: Any) -> GateResult:
    """The champion's recipe on the same data: nothing to refresh, nothing moves."""
    return GateResult(
        False,
        f"no new data: the latest candle ({data_end}) is not after the champion's data end "
        f"({champion_end}); nothing moves",
        {"data_end": str(data_end), "champion_data_end": str(champion_end)},
        "refresh",
        "no_new_data",
    )


def decide_latest(skills: Sequence[HorizonSkill]) -> GateResult:
    """Policy ``latest``: every new challenger is promoted (the usual MLOps template)."""
    numbers: dict[str, Any] = {"policy": "latest"}
    for s in skills:
        numbers.update(s.as_metrics())
    return GateResult(
        True,
        "policy latest: every new challenger is promoted (skill reported, not enforced: "
        + "; ".join(s.summary() for s in skills)
        + ")",
        numbers,
        "policy",
        "latest",
        None,
    )
