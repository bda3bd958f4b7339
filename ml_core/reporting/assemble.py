"""Turn a retrain's results into the plain data of a ``RunReport``."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ml_core.config import EvaluationConfig
from ml_core.evaluation.baselines import baseline_equity_curves
from ml_core.evaluation.metrics import calibration_table
from ml_core.evaluation.trading import (
    buy_and_hold_curve,
    equity_curve,
    fee_sensitivity,
    probability_deciles,
)
from ml_core.models.training import CandidateResult
from ml_core.reporting.report import RunReport, summarize_data
from ml_core.validation.split import SplitParts


def build_run_report(
    *,
    title: str,
    parts: SplitParts,
    results: list[CandidateResult],
    baselines: pd.DataFrame,
    decision: dict[str, Any],
    eval_cfg: EvaluationConfig,
    timeframe: str,
    horizons: list[int],
    extra_tables: list[tuple[str, str, pd.DataFrame]] | None = None,
) -> RunReport:
    """Metrics, equity curves, calibration and importance of every candidate on test."""
    test = parts.test
    metrics = pd.concat(
        [r.test_metrics.assign(candidate=r.name) for r in results], ignore_index=True
    )
    kw = {"cfg": eval_cfg, "timeframe": timeframe}
    curves: dict[tuple[str, int], pd.Series] = {}
    calibration: dict[tuple[str, int], pd.DataFrame] = {}
    for r in results:
        for h in horizons:
            p = r.test_probs[h]
            curves[(r.name, h)] = equity_curve(test, p, horizon=h, **kw).rename(r.name)
            calibration[(r.name, h)] = calibration_table(test[f"up_{h}"].to_numpy(float), p)
    curves.update(baseline_equity_curves(parts.train, test, horizons, eval_cfg, timeframe))
    bh = {h: buy_and_hold_curve(test, horizon=h, **kw) for h in horizons}
    best = next((r for r in results if r.name == decision.get("candidate")), results[0])
    importance = best.pipeline.feature_importance()
    imp_series = (
        importance.groupby("feature")["importance"].mean().sort_values(ascending=False)
        if not importance.empty
        else None
    )
    summary = summarize_data(
        {"train": parts.train, "val": parts.val, "test": parts.test}, timeframe=timeframe
    )
    summary["horizons (bars)"] = ", ".join(str(h) for h in horizons)
    summary["fees (bps per turnover)"] = eval_cfg.fee_bps
    extra = [_sliced_table(results, column) for column in SLICE_NOTES]
    extra = [t for t in extra if t is not None] + list(extra_tables or [])
    extra += _calibration_tables(results, best, calibration)
    extra += _trader_tables(best, test, horizons, eval_cfg, timeframe)
    if not best.regression_metrics.empty:
        from ml_core.evaluation.regression import REPORT_NOTE, REPORT_TITLE, report_table

        extra.append((REPORT_TITLE, REPORT_NOTE, report_table(best.regression_metrics)))
    regime_model = best.pipeline.regime_model
    if regime_model is not None:
        tm = regime_model.transition_matrix().reset_index(names="from \\ to")
        extra.append(("Regime transition matrix", "Fitted on the training part only.", tm))
        dur = regime_model.persistence().rename_axis("regime").reset_index(name="expected bars")
        extra.append(("Regime persistence", "Expected duration 1 / (1 - p_ii) in bars.", dur))
    return RunReport(
        title=title,
        metrics=metrics,
        decision=decision,
        baseline_metrics=baselines,
        data_summary=summary,
        equity_curves=curves,
        buy_and_hold=bh,
        calibration=calibration,
        feature_importance=imp_series,
        extra_tables=extra,
    )


def _trader_tables(
    best: CandidateResult,
    test: pd.DataFrame,
    horizons: list[int],
    eval_cfg: EvaluationConfig,
    timeframe: str,
) -> list[tuple[str, str, pd.DataFrame]]:
    """Fee sensitivity and P(up) deciles of the served candidate on the test part."""
    if test.empty:
        return []
    kw = {"cfg": eval_cfg, "timeframe": timeframe}
    fees = pd.concat(
        [fee_sensitivity(test, best.test_probs[h], horizon=h, **kw) for h in horizons],
        ignore_index=True,
    )
    deciles = pd.concat(
        [probability_deciles(test, best.test_probs[h], horizon=h) for h in horizons],
        ignore_index=True,
    )
    out = [
        (
            f"Fee sensitivity of {best.name} (test)",
            f"The trading view ({eval_cfg.mode}, P(up) > {eval_cfg.threshold}, non-overlapping "
            "h-bar blocks, equal weight over symbols) at 0, 4, 10 and 20 bps per unit of "
            "turnover, beside buy-and-hold on the same blocks at the same fee.",
            fees.round(4),
        )
    ]
    if not deciles.empty:
        out.append(
            (
                f"P(up) deciles of {best.name} (test)",
                "Test rows ranked by calibrated P(up) into ten equal groups: the share that "
                "went up (hit rate) and the mean forward simple return per group; with an "
                "edge both rise from decile 1 to 10.",
                deciles.round(4),
            )
        )
    return out


def _calibration_tables(
    results: list[CandidateResult],
    best: CandidateResult,
    bins: dict[tuple[str, int], pd.DataFrame],
) -> list[tuple[str, str, pd.DataFrame]]:
    """The calibration summary of every candidate, and the served one's reliability bins
    with their counts."""
    summary = [r.calibration.assign(candidate=r.name) for r in results if not r.calibration.empty]
    out = []
    if summary:
        table = pd.concat(summary, ignore_index=True)
        cols = ["candidate", "horizon", "method", "n_val", "n_test"]
        cols += ["test_ece_raw", "test_ece", "test_auc_raw", "test_auc"]
        cols += [c for c in ("set_coverage", "set_abstain") if c in table.columns]
        out.append(
            (
                "Calibration",
                "P(up) calibrated on the validation part (method chosen by log loss on its "
                "latest third: none, sigmoid or isotonic), scored on the test part: expected "
                "calibration error (ECE, 10 equal-width bins, weighted by rows; 0 = the "
                "forecast is the observed frequency) and AUC, raw and calibrated; the conformal "
                "direction sets' realized coverage on test (target models.conformal_confidence) "
                "and the share of 'both' sets (abstain).",
                table[cols].round(4),
            )
        )
    reliability = [
        t.assign(horizon=h)[["horizon", "p_lo", "p_hi", "n", "mean_p", "frac_up"]]
        for (name, h), t in sorted(bins.items(), key=lambda kv: kv[0][1])
        if name == best.name and not t.empty
    ]
    if reliability:
        out.append(
            (
                f"Reliability of {best.name} (test)",
                "Calibrated P(up) in bins: the rows per bin (n), the mean forecast and the "
                "observed share of up moves; a calibrated forecast has mean_p = frac_up.",
                pd.concat(reliability, ignore_index=True).round(4),
            )
        )
    return out


SLICE_NOTES = {
    "regime": (
        "Metrics by regime",
        "Test part, sliced by the HMM regime at t (forward-filtered, causal).",
    ),
    "lifecycle": (
        "Metrics by token lifecycle",
        "Test part, by the symbol's lifecycle category (normal, extreme, dead, gappy); "
        "dead tails are trimmed before labels.",
    ),
}


def _sliced_table(
    results: list[CandidateResult], column: str
) -> tuple[str, str, pd.DataFrame] | None:
    """One report section of test metrics sliced by ``column``, all candidates stacked."""
    frames = [
        r.test_sliced_metrics[column].assign(candidate=r.name)
        for r in results
        if column in r.test_sliced_metrics
    ]
    if not frames:
        return None
    table = pd.concat(frames, ignore_index=True)
    title, note = SLICE_NOTES[column]
    return title, note, table[["candidate", "horizon", column, "n", "auc", "accuracy", "brier"]]
