"""Tasks that publish results: metric tables, the decision, the HTML report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from ml_core.config import CoincastConfig
from ml_core.models.training import CandidateResult
from ml_core.registry.tracking import TrackingContext
from ml_core.reporting.assemble import build_run_report
from ml_core.reporting.report import write_report
from ml_core.validation.split import SplitParts
from tasks.artifacts import publish_markdown, publish_table

METRIC_COLUMNS = [
    "horizon",
    "auc",
    "accuracy",
    "f1",
    "brier",
    "log_loss",
    "total_return",
    "sharpe",
    "max_drawdown",
    "bh_total_return",
]


@task(name="publish-metrics", cache_policy=NONE)
def publish_metrics(
    cfg: CoincastConfig, results: list[CandidateResult], baselines: pd.DataFrame
) -> None:
    """Test metrics per horizon of every candidate and baseline as table artifacts."""
    tf = cfg.data.timeframe
    for r in results:
        cols = [c for c in METRIC_COLUMNS if c in r.test_metrics.columns]
        publish_table(
            f"test-metrics-{tf}-{r.name}",
            r.test_metrics[cols],
            f"{r.name}: test metrics per horizon ({tf}); val AUC {r.val_auc:.4f}",
        )
    cols = ["baseline"] + [c for c in METRIC_COLUMNS if c in baselines.columns]
    publish_table(
        f"test-metrics-{tf}-baselines", baselines[cols], f"Naive baselines on test ({tf})."
    )


@task(name="publish-decision", cache_policy=NONE)
def publish_decision(cfg: CoincastConfig, decision: dict) -> None:
    lines = [
        f"## {cfg.model_name}: {'PROMOTED' if decision['promote'] else 'not promoted'}"
        f" ({decision.get('kind') or 'on demand'})",
        "",
        f"**Why:** {decision['reason']}",
        "",
        f"champion before: `{decision['champion_before']}`, after: `{decision['champion_after']}`,"
        f" challenger: `{decision['challenger_version']}`",
        "",
        "| number | value |",
        "|---|---|",
    ]
    lines += [
        f"| {k} | {v if not isinstance(v, float) else round(v, 5)} |"
        for k, v in decision["metrics"].items()
    ]
    publish_markdown(
        f"promotion-decision-{cfg.model_name}",
        "\n".join(lines),
        "The promotion gate's decision with its numbers.",
    )


@task(name="write-report", cache_policy=NONE)
def write_run_report(
    cfg: CoincastConfig,
    parts: SplitParts,
    results: list[CandidateResult],
    baselines: pd.DataFrame,
    decision: dict,
    run_id: str | None,
    extra_tables: list[tuple[str, str, pd.DataFrame]] | None = None,
) -> Path:
    """The HTML report in COINCAST_HOME/reports, also logged to the MLflow run."""
    report = build_run_report(
        title=f"coincast retrain: {cfg.model_name} ({cfg.data.timeframe})",
        parts=parts,
        results=results,
        baselines=baselines,
        decision=decision,
        eval_cfg=cfg.evaluation,
        timeframe=cfg.data.timeframe,
        horizons=cfg.horizons,
        extra_tables=extra_tables or [],
    )
    path = write_report(report, cfg.reports_dir / cfg.model_name)
    if run_id:
        tracking = TrackingContext(
            cfg.tracking_uri, cfg.artifact_location, cfg.registry.experiment_name
        )
        tracking.client.log_artifact(run_id, str(path), "report")
    publish_markdown(f"report-{cfg.model_name}", f"Report: `{path}`", "Where the HTML report is.")
    return path
