"""One monitor evaluation: realized metrics per version, the rule's decision, drift, storage.

``evaluate_models`` joins the stored predictions with their realized outcomes
over the window, scores every version, measures the champion beside the
shadow score of ``previous`` on the same rows, reads the champion's earlier
breach flags from ``monitor_metrics`` (the streak lives in the warehouse, so
it survives restarts), resumes the champion's change detector from
``detector_state`` and feeds it the outcomes realized since its last run
(:func:`ml_core.monitoring.loss_stream.run_detector`), and applies
:func:`ml_core.monitoring.rules.decide_rollback` (streak rule and detector
rule). Writing the rows (``write_monitor_metrics``, ``write_detector_state``)
comes *before* any rollback, so a crash between the two repeats the decision on
the next run instead of losing it (the detector's alarm stays in its state).

Example::

    ev = evaluate_models(wh, model_name="coincast", timeframe="1m",
                         aliases={"champion": "3", "previous": "2"},
                         monitor_cfg=cfg.monitor, eval_cfg=cfg.evaluation)
    write_monitor_metrics(wh, ev, flow_run_id=None)
    write_detector_state(wh, ev.model_name, ev.detector, evaluation_id=ev.evaluation_id)
    ev.decision.rollback, ev.decision.trigger, ev.decision.reason
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from ml_core.config import EvaluationConfig, FeatureConfig, MonitorConfig
from ml_core.data.warehouse import Warehouse
from ml_core.monitoring.detector import state_metrics
from ml_core.monitoring.drift import drift_samples, feature_drift
from ml_core.monitoring.loss_stream import DetectorRun, run_detector
from ml_core.monitoring.predictions import utc_now
from ml_core.monitoring.realized import (
    METRIC_COLUMNS,
    SUMMARY_HORIZON,
    paired_auc,
    realized_outcomes,
    summary_row,
    version_metrics,
)
from ml_core.monitoring.rules import ChampionEvidence, RollbackDecision, decide_rollback

log = logging.getLogger(__name__)

MONITOR_COLUMNS = [
    "evaluation_id",
    "evaluated_at",
    "flow_run_id",
    "model_name",
    "model_version",
    "alias",
    "horizon",
    "window_start",
    "window_end",
    "n_outcomes",
    "auc",
    "accuracy",
    "brier",
    "log_loss",
    "trading_return",
    "bh_return",
    "previous_auc",
    "breach",
    "decision",
]


@dataclass(frozen=True)
class MonitorEvaluation:
    """Everything one monitor run measured and decided (nothing applied yet)."""

    evaluation_id: str
    evaluated_at: datetime
    model_name: str
    timeframe: str
    aliases: dict[str, str]
    window_start: pd.Timestamp | None
    window_end: pd.Timestamp | None
    metrics: pd.DataFrame
    decision: RollbackDecision | None
    n_outcomes: int = 0
    extra: dict[str, object] = field(default_factory=dict)
    detector: DetectorRun | None = None

    def summary(self) -> dict[str, object]:
        """Plain numbers for logs, artifacts and the flow's return value."""
        d = self.decision
        return {
            "evaluation_id": self.evaluation_id,
            "model_name": self.model_name,
            "aliases": dict(self.aliases),
            "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end),
            "n_outcomes": self.n_outcomes,
            "breach": None if d is None else d.breach,
            "rollback": bool(d and d.rollback),
            "n_consecutive": 0 if d is None else d.n_consecutive,
            "trigger": None if d is None else d.trigger,
            "reason": "no champion" if d is None else d.reason,
            "detector": self.detector_summary(),
        }

    def detector_summary(self) -> dict[str, object] | None:
        """The detector's numbers after this run (None when off or without a champion)."""
        run = self.detector
        if run is None:
            return None
        return {
            **state_metrics(run.state),
            "n_new_outcomes": run.n_new,
            "restarted": run.reset_reason,
        }


def evaluate_models(
    warehouse: Warehouse,
    *,
    model_name: str,
    timeframe: str,
    aliases: Mapping[str, str],
    monitor_cfg: MonitorConfig,
    eval_cfg: EvaluationConfig,
) -> MonitorEvaluation:
    """Realized metrics of every version with outcomes in the window, and the decision."""
    window = realized_outcomes(
        warehouse, model_name=model_name, timeframe=timeframe, window_days=monitor_cfg.window_days
    )
    metrics = version_metrics(window.outcomes, eval_cfg=eval_cfg, timeframe=timeframe)
    champion = aliases.get("champion")
    previous = aliases.get("previous")
    decision, detector = None, None
    if champion is not None:
        evidence = _evidence(window.outcomes, metrics, champion, previous)
        history = champion_breach_history(warehouse, model_name, champion)
        detector = run_detector(
            warehouse,
            model_name=model_name,
            timeframe=timeframe,
            champion=str(champion),
            previous=None if previous is None else str(previous),
            monitor_cfg=monitor_cfg,
            window_start=window.window_start,
        )
        decision = decide_rollback(
            evidence,
            past_breaches=history,
            cfg=monitor_cfg,
            detector=None if detector is None else detector.state,
        )
        log.info("monitor %s: %s", model_name, decision.reason)
    return MonitorEvaluation(
        evaluation_id=uuid.uuid4().hex,
        evaluated_at=utc_now(),
        model_name=model_name,
        timeframe=timeframe,
        aliases={str(k): str(v) for k, v in aliases.items()},
        window_start=window.window_start,
        window_end=window.window_end,
        metrics=metrics,
        decision=decision,
        n_outcomes=len(window.outcomes),
        detector=detector,
    )


def champion_breach_history(
    warehouse: Warehouse, model_name: str, version: str
) -> list[bool | None]:
    """Breach flags of the champion rows of ``model_name``, newest first, up to the first
    evaluation where another version was champion (the streak is per champion version)."""
    if not warehouse.exists:
        return []
    with warehouse.connect(read_only=True) as con:
        rows = con.execute(
            """SELECT model_version, breach FROM monitor_metrics
               WHERE model_name = ? AND horizon = ? AND decision IS NOT NULL
               ORDER BY evaluated_at DESC""",
            [model_name, SUMMARY_HORIZON],
        ).fetchall()
    out: list[bool | None] = []
    for row_version, breach in rows:
        if str(row_version) != str(version):
            break
        out.append(None if breach is None else bool(breach))
    return out


def monitor_rows(ev: MonitorEvaluation, flow_run_id: str | None) -> pd.DataFrame:
    """``MONITOR_COLUMNS`` rows of one evaluation (the champion's summary row holds the flag)."""
    if ev.metrics.empty:
        return pd.DataFrame(columns=MONITOR_COLUMNS)
    by_version: dict[str, list[str]] = {}
    for alias, version in ev.aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    frame = ev.metrics[METRIC_COLUMNS].copy()
    frame["alias"] = frame["model_version"].map(lambda v: ",".join(sorted(by_version.get(v, []))))
    d = ev.decision
    is_champ = (frame["model_version"] == (d.champion_version if d else None)) & (
        frame["horizon"] == SUMMARY_HORIZON
    )
    frame["previous_auc"] = math.nan
    frame["breach"] = pd.Series(pd.NA, index=frame.index, dtype="boolean")
    frame["decision"] = pd.Series(None, index=frame.index, dtype="object")
    if d is not None and is_champ.any():
        frame.loc[is_champ, "previous_auc"] = d.metrics.get("previous_auc", math.nan)
        frame.loc[is_champ, "breach"] = d.breach if d.breach is not None else pd.NA
        frame.loc[is_champ, "decision"] = ("rollback: " if d.rollback else "") + d.reason
    frame = frame.assign(
        evaluation_id=ev.evaluation_id,
        evaluated_at=ev.evaluated_at,
        flow_run_id=flow_run_id,
        model_name=ev.model_name,
        window_start=ev.window_start,
        window_end=ev.window_end,
    )
    return frame[MONITOR_COLUMNS]


def write_monitor_metrics(
    warehouse: Warehouse, ev: MonitorEvaluation, *, flow_run_id: str | None
) -> int:
    """Append this evaluation's rows to ``monitor_metrics`` (one short write); rows written."""
    frame = monitor_rows(ev, flow_run_id)
    if frame.empty:
        return 0
    with warehouse.connect() as con:
        con.register("monitor_in", frame)
        con.execute(
            f"INSERT INTO monitor_metrics ({', '.join(MONITOR_COLUMNS)}) "
            f"SELECT {', '.join(MONITOR_COLUMNS)} FROM monitor_in"
        )
    return len(frame)


def measure_drift(
    warehouse: Warehouse,
    ev: MonitorEvaluation,
    *,
    feature_cfg: FeatureConfig,
    monitor_cfg: MonitorConfig,
    lookback_bars: int,
    feature_columns: list[str] | None = None,
) -> pd.DataFrame:
    """PSI / KS per feature of the live window against the pre-scoring reference.

    Empty when there is no champion or no realized window yet.
    """
    from ml_core.features import FEATURE_COLUMNS

    champion = ev.aliases.get("champion")
    if champion is None or ev.window_start is None:
        return pd.DataFrame()
    scored_from = earliest_scored(warehouse, ev.model_name, champion)
    reference, live = drift_samples(
        warehouse,
        timeframe=ev.timeframe,
        feature_cfg=feature_cfg,
        scored_from=scored_from,
        live_start=ev.window_start,
        reference_bars=monitor_cfg.reference_bars,
        lookback_bars=lookback_bars,
    )
    drift = feature_drift(
        reference,
        live,
        feature_columns or list(FEATURE_COLUMNS),
        bins=monitor_cfg.psi_bins,
        psi_alert=monitor_cfg.psi_alert,
    )
    return drift.assign(
        reference_start=_bound(reference, "min"),
        reference_end=_bound(reference, "max"),
        live_start=_bound(live, "min"),
        live_end=_bound(live, "max"),
    )


def write_drift_metrics(warehouse: Warehouse, ev: MonitorEvaluation, drift: pd.DataFrame) -> int:
    """Append the drift rows of this evaluation to ``drift_metrics``; rows written."""
    if drift.empty:
        return 0
    frame = drift.assign(
        evaluation_id=ev.evaluation_id, evaluated_at=ev.evaluated_at, model_name=ev.model_name
    )
    cols = [
        "evaluation_id",
        "evaluated_at",
        "model_name",
        "feature",
        "psi",
        "ks_stat",
        "ks_pvalue",
        "n_reference",
        "n_live",
        "reference_start",
        "reference_end",
        "live_start",
        "live_end",
        "drifted",
    ]
    with warehouse.connect() as con:
        con.register("drift_in", frame[cols])
        con.execute(f"INSERT INTO drift_metrics ({', '.join(cols)}) SELECT * FROM drift_in")
    return len(frame)


def earliest_scored(warehouse: Warehouse, model_name: str, version: str) -> dict[str, pd.Timestamp]:
    """symbol -> the first ts ``version`` scored (where the drift reference ends)."""
    with warehouse.connect(read_only=True) as con:
        rows = con.execute(
            "SELECT symbol, min(ts) FROM predictions WHERE model_name = ? AND model_version = ? "
            "GROUP BY symbol ORDER BY symbol",
            [model_name, str(version)],
        ).fetchall()
    return {str(s): pd.Timestamp(t) for s, t in rows}


# ---- helpers --------------------------------------------------------------------------------
def _evidence(
    outcomes: pd.DataFrame, metrics: pd.DataFrame, champion: str, previous: str | None
) -> ChampionEvidence:
    row = summary_row(metrics, champion)
    auc = float(row["auc"]) if row else math.nan
    n = int(row["n_outcomes"]) if row else 0
    pair = {"auc_a": math.nan, "auc_b": math.nan, "n": 0}
    if previous is not None and previous != champion:
        pair = paired_auc(outcomes, champion, previous)
    return ChampionEvidence(
        version=str(champion),
        auc=auc,
        n_outcomes=n,
        previous_version=None if previous == champion else previous,
        previous_auc=float(pair["auc_b"]),
        n_paired=int(pair["n"]),
        champion_paired_auc=float(pair["auc_a"]),
    )


def _bound(frame: pd.DataFrame, how: str) -> pd.Timestamp | None:
    if frame.empty or "ts" not in frame:
        return None
    return getattr(frame["ts"], how)()


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).isoformat()
