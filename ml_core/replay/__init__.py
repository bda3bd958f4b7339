"""Replay: the deployed weekly loop run over history on a clock, one home per policy.

Pure logic only (no Prefect, no MLflow): the clock and schedule from the
deployments' cron strings, the closed-bar rule, what each policy served, the
weekly realized metrics beside the naive baselines, the champion timeline and
the report. ``flows/replay.py`` runs the real flows on this clock.
"""

from ml_core.replay.clock import (
    STEP_KINDS,
    ClockStep,
    ClockViolation,
    ReplayWeek,
    check_clock,
    closed_between,
    closed_by,
    cron_times,
    last_closed_open,
    replay_schedule,
    replay_weeks,
    scoring_windows,
)
from ml_core.replay.homes import POLICIES, check_policies, home_config
from ml_core.replay.metrics import confident_hit_rate, weekly_metrics, worse_weeks
from ml_core.replay.served import Coverage, realize_outcomes, scoring_coverage, served_rows

__all__ = [
    "POLICIES",
    "STEP_KINDS",
    "ClockStep",
    "ClockViolation",
    "Coverage",
    "ReplayWeek",
    "check_clock",
    "check_policies",
    "closed_between",
    "closed_by",
    "confident_hit_rate",
    "cron_times",
    "home_config",
    "last_closed_open",
    "realize_outcomes",
    "replay_schedule",
    "replay_weeks",
    "scoring_coverage",
    "scoring_windows",
    "served_rows",
    "weekly_metrics",
    "worse_weeks",
]
