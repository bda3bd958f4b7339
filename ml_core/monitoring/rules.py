"""The degradation rule: realized champion metrics in, a rollback decision out (pure).

One evaluation of the champion *breaches* when, with at least
``min_outcomes`` realized outcomes in the window,

* its mean AUC over horizons is below ``auc_floor``, or
* (``compare_previous``) it trails the shadow AUC of the ``previous`` version on
  the *same* rows by more than ``previous_margin`` (only with ``min_outcomes``
  paired rows too).

With fewer outcomes the evaluation decides nothing (``breach=None``); such
evaluations neither extend nor reset a streak. The champion is rolled back
when the current breach ends a streak of ``consecutive_breaches`` breaching
evaluations of the *same* champion version, the rule is ``enabled`` and a
``previous`` version exists to return to.

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
    ev: ChampionEvidence, *, past_breaches: Sequence[bool | None], cfg: MonitorConfig
) -> RollbackDecision:
    """Apply the rule to this evaluation and the champion's earlier ones (newest first)."""
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
    common = {
        "breach": breach,
        "n_consecutive": streak,
        "champion_version": str(ev.version),
        "previous_version": ev.previous_version,
        "metrics": metrics,
    }
    what = "; ".join(reasons)
    if not breach:
        reason = what if breach is None else f"champion v{ev.version} healthy (AUC {ev.auc:.4f})"
        return RollbackDecision(rollback=False, reason=reason, **common)
    head = f"champion v{ev.version} breached {streak} evaluation(s) in a row: {what}"
    if streak < cfg.consecutive_breaches:
        reason = f"{head}; waiting for {cfg.consecutive_breaches} before rolling back"
        return RollbackDecision(rollback=False, reason=reason, **common)
    if not cfg.enabled:
        return RollbackDecision(
            rollback=False, reason=f"{head}; automatic rollback disabled", **common
        )
    if ev.previous_version is None:
        reason = f"{head}; no previous version to roll back to (retrain, or roll back by hand)"
        return RollbackDecision(rollback=False, reason=reason, **common)
    return RollbackDecision(rollback=True, reason=head, **common)
