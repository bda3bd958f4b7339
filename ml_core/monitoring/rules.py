"""The degradation rule: realized champion metrics in, a rollback decision out (pure).

One evaluation of the champion *breaches* when, with at least
``min_outcomes`` realized outcomes in the window,

* its mean AUC over horizons is below ``auc_floor``, or
* (``compare_previous``) it trails the shadow AUC of the ``previous`` version on
  the *same* rows by more than ``previous_margin`` (only with ``min_outcomes``
  paired rows too).

With fewer outcomes the evaluation decides nothing (``breach=None``); such
evaluations neither extend nor reset a streak. The *streak* rule is due when
the current breach ends a streak of ``consecutive_breaches`` breaching
evaluations of the *same* champion version.

Beside it the *detector* rule (``monitor.detector``) is due when the
sequential change detector on the champion's paired log-loss difference
(:mod:`ml_core.monitoring.detector`) has raised its alarm. Either rule may
trigger; ``RollbackDecision.trigger`` says which (``"streak"``,
``"detector"`` or ``"streak+detector"``). The champion is rolled back when a
rule is due, the rollback is ``enabled`` and a ``previous`` version exists to
return to.

Example::

    ev = ChampionEvidence(version="3", auc=0.47, n_outcomes=900,
                          previous_version="2", previous_auc=0.52, n_paired=900)
    d = decide_rollback(ev, past_breaches=[True], cfg=MonitorConfig())
    d.rollback, d.reason   # True, 'champion v3 breached 2 evaluations in a row: ...'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ml_core.config import MonitorConfig
from ml_core.monitoring.detector import DetectorState, describe_state, state_metrics


@dataclass(frozen=True)
class ChampionEvidence:
    """What one evaluation measured about the champion (and ``previous`` on the same rows)."""

    version: str
    auc: float
    n_outcomes: int
    previous_version: str | None = None
    previous_auc: float = math.nan
    n_paired: int = 0
    champion_paired_auc: float = math.nan


@dataclass(frozen=True)
class RollbackDecision:
    """The rule's verdict with its numbers (written to the audit row when it rolls back)."""

    breach: bool | None
    rollback: bool
    reason: str
    n_consecutive: int
    champion_version: str
    previous_version: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    trigger: str | None = None  # the rule(s) due: "streak", "detector", "streak+detector"


def assess_breach(ev: ChampionEvidence, cfg: MonitorConfig) -> tuple[bool | None, list[str]]:
    """Whether this evaluation breaches (None: too few outcomes), with the reasons."""
    if ev.n_outcomes < cfg.min_outcomes or not math.isfinite(ev.auc):
        return None, [
            f"{ev.n_outcomes} realized outcomes (< min_outcomes={cfg.min_outcomes}) "
            "or undefined AUC: no decision"
        ]
    reasons = []
    if ev.auc < cfg.auc_floor:
        reasons.append(f"realized AUC {ev.auc:.4f} < auc_floor {cfg.auc_floor:.4f}")
    if (
        cfg.compare_previous
        and ev.previous_version is not None
        and ev.n_paired >= cfg.min_outcomes
        and math.isfinite(ev.previous_auc)
        and math.isfinite(ev.champion_paired_auc)
        and ev.champion_paired_auc < ev.previous_auc - cfg.previous_margin
    ):
        reasons.append(
            f"AUC {ev.champion_paired_auc:.4f} trails previous v{ev.previous_version} "
            f"({ev.previous_auc:.4f}) by more than {cfg.previous_margin:.4f} "
            f"on the same {ev.n_paired} rows"
        )
    return bool(reasons), reasons


def trailing_breaches(past_breaches: Sequence[bool | None]) -> int:
    """Breaching evaluations in a row at the head of ``past_breaches`` (newest first).

    Undecided evaluations (None) are skipped; the first non-breach ends the run.
    """
    count = 0
    for flag in past_breaches:
        if flag is None:
            continue
        if not flag:
            break
        count += 1
    return count


def decide_rollback(
    ev: ChampionEvidence,
    *,
    past_breaches: Sequence[bool | None],
    cfg: MonitorConfig,
    detector: DetectorState | None = None,
) -> RollbackDecision:
    """Apply the streak rule to this evaluation and the champion's earlier ones (newest
    first) and the detector rule to the champion's detector state (None: detector off)."""
    breach, reasons = assess_breach(ev, cfg)
    streak = trailing_breaches(past_breaches) + 1 if breach else 0
    metrics = {
        "auc": ev.auc,
        "n_outcomes": ev.n_outcomes,
        "previous_auc": ev.previous_auc,
        "champion_paired_auc": ev.champion_paired_auc,
        "n_paired": ev.n_paired,
        "n_consecutive": streak,
        "auc_floor": cfg.auc_floor,
        "consecutive_breaches": cfg.consecutive_breaches,
        "min_outcomes": cfg.min_outcomes,
    }
    if detector is not None:
        metrics.update(state_metrics(detector))
    what = "; ".join(reasons)
    if not breach:
        streak_text = (
            what if breach is None else f"champion v{ev.version} healthy (AUC {ev.auc:.4f})"
        )
    else:
        streak_text = f"champion v{ev.version} breached {streak} evaluation(s) in a row: {what}"
    streak_due = cfg.streak_rollback and bool(breach) and streak >= cfg.consecutive_breaches
    alarm = detector is not None and detector.alarm is not None
    due = [name for name, on in (("streak", streak_due), ("detector", alarm)) if on]
    trigger = "+".join(due) or None
    metrics["trigger"] = trigger
    detector_text = describe_state(detector) if detector is not None else None
    common = {
        "breach": breach,
        "n_consecutive": streak,
        "champion_version": str(ev.version),
        "previous_version": ev.previous_version,
        "metrics": metrics,
        "trigger": trigger,
    }
    if not due:
        waiting = f"; waiting for {cfg.consecutive_breaches} before rolling back" if breach else ""
        reason = "; ".join(t for t in (streak_text + waiting, detector_text) if t)
        return RollbackDecision(rollback=False, reason=reason, **common)
    parts = ([streak_text] if streak_due else []) + ([detector_text] if alarm else [])
    head = "; ".join(t for t in parts if t)
    if alarm and not streak_due:
        head = f"champion v{ev.version}: {head}"
    if not cfg.enabled:
        return RollbackDecision(
            rollback=False, reason=f"{head}; automatic rollback disabled", **common
        )
    if ev.previous_version is None:
        reason = f"{head}; no previous version to roll back to (retrain, or roll back by hand)"
        return RollbackDecision(rollback=False, reason=reason, **common)
    return RollbackDecision(rollback=True, reason=head, **common)
