"""From what a replay recorded to its report: outcomes, weekly metrics, coverage.

Example::

    report = assemble_report(title="Replay", spec=spec, served=served, candles=candles,
                             model_frame=frame, weeks=weeks, windows=windows,
                             timeline=timeline, policies=["coincast", "latest"],
                             horizons=[1, 4], eval_cfg=cfg.evaluation, timeframe="1h")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ml_core.config import EvaluationConfig
from ml_core.replay.clock import ReplayWeek
from ml_core.replay.metrics import weekly_metrics
from ml_core.replay.report import ReplayReport
from ml_core.replay.served import realize_outcomes, scoring_coverage
from ml_core.replay.timeline import TIMELINE_COLUMNS

WindowList = Sequence[tuple[pd.Timestamp | None, pd.Timestamp]]


def assemble_report(
    *,
    title: str,
    spec: Mapping[str, Any],
    served: pd.DataFrame,
    candles: pd.DataFrame,
    model_frame: pd.DataFrame,
    weeks: Sequence[ReplayWeek],
    windows: Mapping[str, WindowList],
    timeline: pd.DataFrame,
    policies: Sequence[str],
    horizons: Sequence[int],
    eval_cfg: EvaluationConfig,
    timeframe: str,
    timings: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
) -> ReplayReport:
    """The :class:`ReplayReport` of a finished replay.

    ``served``: every policy's served rows (``SERVED_COLUMNS``); ``windows``:
    per policy the ``(after, at]`` windows of its predict runs that served;
    ``candles``: the replayed candles (their closes realize the outcomes).
    """
    realized = realize_outcomes(served, candles, timeframe)
    weekly = weekly_metrics(
        realized,
        weeks,
        model_frame=model_frame,
        horizons=horizons,
        eval_cfg=eval_cfg,
        timeframe=timeframe,
        policies=policies,
    )
    coverage = [
        scoring_coverage(
            served[served["policy"] == p],
            candles,
            policy=p,
            windows=windows.get(p, []),
            horizons=horizons,
            timeframe=timeframe,
        )
        for p in policies
    ]
    n_open = int(realized["up"].isna().sum())
    lines = [
        f"{len(served):,} served predictions, {len(served) - n_open:,} realized "
        f"({n_open:,} still open at the data's end or after a gap).",
        *notes,
    ]
    return ReplayReport(
        title=title,
        spec=dict(spec),
        weekly=weekly,
        timeline=timeline.reindex(columns=TIMELINE_COLUMNS),
        policies=list(policies),
        coverage=coverage,
        timings=timings if timings is not None else pd.DataFrame(),
        notes=lines,
        served=realized,
    )
